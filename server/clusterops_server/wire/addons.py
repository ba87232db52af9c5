"""AddonService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from clusterops.v1 import addons_pb2 as pb
from clusterops.v1 import addons_pb2_grpc as pb_grpc

from clusterops_server.domain.addon_catalogue import (
    AddonOption,
    AddonVersion,
    AddonVersionStatus,
    minor_line,
)
from clusterops_server.domain.addons import Addon, AddonState
from clusterops_server.ids import IdKind
from clusterops_server.services.addons import (
    AddonService,
    Configurations,
    DisableAddonCommand,
    InstallAddonCommand,
    UpdateAddonCommand,
)
from clusterops_server.wire.convert import EnumMap, timestamp
from clusterops_server.wire.errors import servicer
from clusterops_server.wire.validate import Validator
from clusterops_server.wire.work_requests import work_request_to_proto

ADDON_STATE = EnumMap(pb.AddonLifecycleState, AddonState, "ADDON_LIFECYCLE_STATE_")
VERSION_STATUS = EnumMap(pb.AddonVersionStatus, AddonVersionStatus, "ADDON_VERSION_STATUS_")

MAX_CONFIGURATIONS = 64
MAX_KEY = 128
MAX_VALUE = 4096


def addon_to_proto(a: Addon) -> pb.Addon:
    return pb.Addon(
        cluster_id=a.cluster_id,
        compartment_id=a.compartment_id,
        name=a.name,
        version=a.version,
        current_installed_version=a.current_installed_version,
        configurations=[
            pb.AddonConfiguration(key=k, value=v) for k, v in sorted(a.configurations.items())
        ],
        lifecycle_state=ADDON_STATE.to_proto(a.lifecycle_state),  # type: ignore[arg-type]
        addon_error=(
            pb.AddonError(code=a.error.code, message=a.error.message, status=a.error.status)
            if a.error
            else None
        ),
        time_created=timestamp(a.create_time),
        time_updated=timestamp(a.update_time),
        etag=a.etag,
        work_request_id=a.work_request_id,
    )


def version_to_proto(v: AddonVersion) -> pb.AddonVersion:
    return pb.AddonVersion(
        version_number=v.version_number,
        status=VERSION_STATUS.to_proto(v.status),  # type: ignore[arg-type]
        description=v.description,
        kubernetes_versions=list(v.kubernetes_versions),
        configurations=[
            pb.AddonOptionConfiguration(
                key=c.key,
                description=c.description,
                default_value=c.default_value,
                is_required=c.is_required,
                value_type=c.spec.type.value,
                constraint=c.spec.describe(),
                needs=[n.describe() for n in c.spec.needs],
            )
            for c in v.configurations
        ],
    )


def option_to_proto(o: AddonOption) -> pb.AddonOption:
    return pb.AddonOption(
        name=o.name,
        description=o.description,
        is_essential=o.is_essential,
        versions=[version_to_proto(v) for v in o.versions],
    )


def _addon_name(check: Validator, value: str) -> str:
    return check.text("name", value, required=True, limit=64)


def _configurations(check: Validator, items: Iterable[pb.AddonConfiguration]) -> Configurations:
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if i >= MAX_CONFIGURATIONS:
            check.fail("configurations", f"at most {MAX_CONFIGURATIONS} configurations")
            break
        check.text(f"configurations[{i}].key", item.key, required=True, limit=MAX_KEY)
        if len(item.value) > MAX_VALUE:
            check.fail(f"configurations[{i}].value", f"must be at most {MAX_VALUE} characters")
        if item.key in seen:
            check.fail(f"configurations[{i}].key", f"{item.key!r} is given more than once")
        seen.add(item.key)
        found.append((item.key, item.value))
    return tuple(found)


@servicer
class AddonServicer(pb_grpc.AddonServiceServicer):
    def __init__(self, service: AddonService) -> None:
        self.service = service

    async def InstallAddon(  # noqa: N802 (gRPC method names)
        self, request: pb.InstallAddonRequest, context: Any
    ) -> pb.InstallAddonResponse:
        check = Validator()
        command = InstallAddonCommand(
            cluster_id=check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER),
            name=_addon_name(check, request.name),
            version=check.text("version", request.version, limit=32),
            configurations=_configurations(check, request.configurations),
            override_existing=request.override_existing,
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        addon, wr = await self.service.install(command)
        return pb.InstallAddonResponse(
            addon=addon_to_proto(addon), work_request=work_request_to_proto(wr)
        )

    async def GetAddon(  # noqa: N802
        self, request: pb.GetAddonRequest, context: Any
    ) -> pb.GetAddonResponse:
        check = Validator()
        check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER)
        _addon_name(check, request.name)
        check.check()
        addon = await self.service.get(request.cluster_id, request.name)
        return pb.GetAddonResponse(addon=addon_to_proto(addon))

    async def ListAddons(  # noqa: N802
        self, request: pb.ListAddonsRequest, context: Any
    ) -> pb.ListAddonsResponse:
        check = Validator()
        check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER)
        states = check.enums("lifecycle_states", request.lifecycle_states, ADDON_STATE)
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_addons(request.cluster_id, states, page)
        return pb.ListAddonsResponse(
            addons=[addon_to_proto(a) for a in result.items],
            next_page_token=result.next_page_token,
        )

    async def UpdateAddon(  # noqa: N802
        self, request: pb.UpdateAddonRequest, context: Any
    ) -> pb.UpdateAddonResponse:
        check = Validator()
        command = UpdateAddonCommand(
            cluster_id=check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER),
            name=_addon_name(check, request.name),
            etag=check.text("etag", request.etag, limit=64),
            version=check.text("version", request.version, limit=32),
            follow_latest=request.follow_latest,
            configurations=_configurations(check, request.configurations),
            replace_configurations=request.replace_configurations,
            request_id=check.request_id("request_id", request.request_id),
        )
        if request.version and request.follow_latest:
            check.fail("follow_latest", "cannot be set together with version")
        check.check()
        addon, wr = await self.service.update(command)
        return pb.UpdateAddonResponse(
            addon=addon_to_proto(addon), work_request=work_request_to_proto(wr)
        )

    async def DisableAddon(  # noqa: N802
        self, request: pb.DisableAddonRequest, context: Any
    ) -> pb.DisableAddonResponse:
        check = Validator()
        command = DisableAddonCommand(
            cluster_id=check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER),
            name=_addon_name(check, request.name),
            remove_existing=request.remove_existing,
            etag=check.text("etag", request.etag, limit=64),
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        addon, wr = await self.service.disable(command)
        return pb.DisableAddonResponse(
            addon=addon_to_proto(addon), work_request=work_request_to_proto(wr)
        )

    async def ListAddonOptions(  # noqa: N802
        self, request: pb.ListAddonOptionsRequest, context: Any
    ) -> pb.ListAddonOptionsResponse:
        check = Validator()
        minor = ""
        if request.kubernetes_version:
            minor = minor_line(request.kubernetes_version) or ""
            if not minor:
                check.fail(
                    "kubernetes_version",
                    f"{request.kubernetes_version[:40]!r} is not a version like "
                    '"v1.29.8" or "v1.29"',
                )
        name = check.text("addon_name", request.addon_name, limit=64)
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_options(minor, name, page)
        return pb.ListAddonOptionsResponse(
            addon_options=[option_to_proto(o) for o in result.items],
            next_page_token=result.next_page_token,
        )
