"""`client.addons`: OKE-style add-ons that reconcile themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clusterops._enums import EnumArg, enum_values
from clusterops._operation import AsyncOperation, blocking_operation
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._pager import AsyncPager, paged
from clusterops._sync import Facade, blocking, blocking_pager
from clusterops._transport import Transport
from clusterops._work_requests import AsyncWorkRequests, idempotency_key
from clusterops.v1 import addons_pb2 as pb
from clusterops.v1 import addons_pb2_grpc as pb_grpc
from clusterops.v1 import work_requests_pb2 as wr_pb


def _configurations(values: Mapping[str, str] | None) -> Iterable[pb.AddonConfiguration]:
    return [pb.AddonConfiguration(key=k, value=v) for k, v in (values or {}).items()]


class AsyncAddons:
    """Add-ons on clusters: install, update, disable; they repair their own drift."""

    def __init__(self, transport: Transport, work_requests: AsyncWorkRequests) -> None:
        self._transport = transport
        self._work_requests = work_requests
        self._stub = pb_grpc.AddonServiceStub(transport.channel)

    def _handle(
        self,
        work_request: wr_pb.WorkRequest,
        addon: pb.Addon,
        metadata: Metadata,
        *,
        disabling: bool = False,
    ) -> AsyncOperation[pb.Addon]:
        cluster_id, name = addon.cluster_id, addon.name
        read = self._disabled if disabling else self.get
        return AsyncOperation(
            self._work_requests,
            work_request,
            addon,
            lambda: read(cluster_id, name, metadata=metadata),
        )

    async def _disabled(self, cluster_id: str, name: str, *, metadata: Metadata) -> pb.Addon:
        # GetAddon answers NOT_FOUND for a DELETED add-on; ListAddons still shows it.
        deleted = self.list(cluster_id, lifecycle_states=["DELETED"], metadata=metadata)
        async for addon in deleted:
            if addon.name == name:
                return addon
        # Installed again since it was disabled: that add-on is the one there now.
        return await self.get(cluster_id, name, metadata=metadata)

    async def install(
        self,
        cluster_id: str,
        name: str,
        *,
        version: str = "",
        configurations: Mapping[str, str] | None = None,
        override_existing: bool = False,
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[pb.Addon]:
        """Start installing an add-on of the catalogue on an ACTIVE cluster.

        The handle's `resource` is the add-on CREATING; `result()` returns it ACTIVE, or
        raises OperationFailed (the add-on is then FAILED with its `addon_error`, or
        NEEDS_ATTENTION if it did not become healthy within about 30 minutes). An empty
        `version` follows the newest ACTIVE version; `configurations` maps keys to values.
        An unknown name, version or key, or a RECALLED version, raises InvalidArgument
        naming the field; a version that does not run on the cluster's Kubernetes version,
        or an add-on installed by hand (unless `override_existing`), FailedPrecondition.
        """
        response = await self._transport.unary(
            self._stub.InstallAddon,
            pb.InstallAddonRequest(
                cluster_id=cluster_id,
                name=name,
                version=version,
                configurations=_configurations(configurations),
                override_existing=override_existing,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return self._handle(response.work_request, response.addon, metadata)

    async def get(
        self,
        cluster_id: str,
        name: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Addon:
        """Get one add-on of a cluster; NotFound if it is not installed (or was disabled)."""
        response = await self._transport.unary(
            self._stub.GetAddon,
            pb.GetAddonRequest(cluster_id=cluster_id, name=name),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.addon

    def list(
        self,
        cluster_id: str,
        *,
        lifecycle_states: Iterable[EnumArg] = (),
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.Addon]:
        """The add-ons of a cluster by name, fetched lazily.

        `lifecycle_states` are names such as "ACTIVE" or "NEEDS_ATTENTION"; without them
        every add-on but the disabled (DELETED) ones is listed.
        """
        return paged(
            self._transport,
            self._stub.ListAddons,
            pb.ListAddonsRequest(
                cluster_id=cluster_id,
                lifecycle_states=enum_values(
                    pb.AddonLifecycleState, lifecycle_states, argument="lifecycle_states"
                ),
                page_size=page_size,
                page_token=page_token,
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.addons,
        )

    async def update(
        self,
        cluster_id: str,
        name: str,
        *,
        etag: str = "",
        version: str = "",
        follow_latest: bool = False,
        configurations: Mapping[str, str] | None = None,
        replace_configurations: bool = False,
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[pb.Addon]:
        """Start updating an add-on's version or configuration.

        `configurations` are merged into the current ones (replace them with
        `replace_configurations`); `follow_latest` switches to the newest ACTIVE version
        and cannot be combined with `version`. The handle's `resource` is the add-on
        UPDATING and `result()` returns it ACTIVE (OperationFailed if it is not healthy
        within about 30 minutes: it is then NEEDS_ATTENTION). An update that changes nothing still
        reconciles the add-on at once: the handle then follows that RECONCILE_ADDON
        work request. With `etag`, a stale add-on raises EtagMismatch; one with an
        operation in flight raises Conflict naming its work request.
        """
        response = await self._transport.unary(
            self._stub.UpdateAddon,
            pb.UpdateAddonRequest(
                cluster_id=cluster_id,
                name=name,
                etag=etag,
                version=version,
                follow_latest=follow_latest,
                configurations=_configurations(configurations),
                replace_configurations=replace_configurations,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return self._handle(response.work_request, response.addon, metadata)

    async def disable(
        self,
        cluster_id: str,
        name: str,
        *,
        remove_existing: bool = False,
        etag: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[pb.Addon]:
        """Start disabling an add-on (and, with `remove_existing`, removing what it
        installed; essential add-ons cannot be removed). The handle's `resource` is the
        add-on DELETING; `result()` returns it DELETED, as ListAddons keeps showing it
        (`get()` no longer finds it). With `etag`, a stale add-on raises EtagMismatch."""
        response = await self._transport.unary(
            self._stub.DisableAddon,
            pb.DisableAddonRequest(
                cluster_id=cluster_id,
                name=name,
                remove_existing=remove_existing,
                etag=etag,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return self._handle(response.work_request, response.addon, metadata, disabling=True)

    def list_options(
        self,
        *,
        kubernetes_version: str = "",
        addon_name: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.AddonOption]:
        """The catalogue by name, fetched lazily: add-ons, their versions (ACTIVE,
        DEPRECATED, PREVIEW, RECALLED) and configuration keys.

        `kubernetes_version` ("v1.29.8" or "v1.29") keeps the versions that run on it;
        `addon_name` keeps one add-on.
        """
        return paged(
            self._transport,
            self._stub.ListAddonOptions,
            pb.ListAddonOptionsRequest(
                kubernetes_version=kubernetes_version,
                addon_name=addon_name,
                page_size=page_size,
                page_token=page_token,
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.addon_options,
        )


class Addons(Facade[AsyncAddons]):
    """Add-ons on clusters: install, update, disable; they repair their own drift."""

    install = blocking_operation(AsyncAddons.install)
    get = blocking(AsyncAddons.get)
    list = blocking_pager(AsyncAddons.list)
    update = blocking_operation(AsyncAddons.update)
    disable = blocking_operation(AsyncAddons.disable)
    list_options = blocking_pager(AsyncAddons.list_options)
