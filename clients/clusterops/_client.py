"""`AsyncClient` and `Client`: one channel to a clusterops server, one namespace per service."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Self

import grpc

from clusterops._addons import Addons, AsyncAddons
from clusterops._clusters import AsyncClusters, Clusters
from clusterops._options import (
    DEFAULT_TARGET,
    ENV_SERVER,
    ENV_TOKEN,
    Metadata,
    TLSConfig,
    tls_from_env,
)
from clusterops._orchestrations import AsyncOrchestrations, Orchestrations
from clusterops._retry import RetryPolicy
from clusterops._simulator import AsyncSimulator, Simulator
from clusterops._subscriptions import AsyncSubscriptions, Subscriptions
from clusterops._sync import Portal
from clusterops._transport import Transport, checked_timeout
from clusterops._upgrade_workflows import AsyncUpgradeWorkflows, UpgradeWorkflows
from clusterops._work_requests import AsyncWorkRequests, WorkRequests

DEFAULT_TIMEOUT = 30.0
# Reconnect within seconds of a server coming back, rather than grpc's default of up to two
# minutes: waits follow work requests across server restarts.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)


def _user_agent() -> str:
    try:
        return f"clusterops-python/{version('clusterops')}"
    except PackageNotFoundError:  # pragma: no cover (running from a source tree)
        return "clusterops-python"


class AsyncClient:
    """An asyncio client of a clusterops server.

    ```
    async with AsyncClient("localhost:50051") as client:
        wr = await client.work_requests.get("wr-...")
    ```

    `tls` (a TLSConfig, or True for the system's trusted roots) encrypts the channel
    and can present a client certificate; `token` is sent as `authorization: Bearer`.
    `timeout` is the default deadline of each call in seconds (None: none) and `retry`
    the default retry policy; every call can override both, and add `metadata`.
    `channel_options` and `interceptors` (grpc.aio ones) go to the channel as they are.
    Create it inside the event loop that uses it (its channel belongs to that loop).
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        tls: TLSConfig | bool = False,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        channel_options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        checked_timeout(timeout)  # before a channel exists to leak
        options = [
            *_CHANNEL_OPTIONS,
            ("grpc.primary_user_agent", _user_agent()),
            *channel_options,
        ]
        tls_config = TLSConfig() if tls is True else tls or None
        if tls_config is None:
            channel = grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        else:
            if tls_config.server_name:
                options.append(("grpc.ssl_target_name_override", tls_config.server_name))
            channel = grpc.aio.secure_channel(
                target, tls_config.credentials(), options=options, interceptors=interceptors
            )
        headers = [*metadata]
        if token:
            headers.append(("authorization", f"Bearer {token}"))
        self.target = target
        self._transport = Transport(
            channel,
            timeout=timeout,
            retry=RetryPolicy() if retry is None else retry,
            metadata=headers,
        )
        self.work_requests = AsyncWorkRequests(self._transport)
        """Work requests: get, list, list_logs, list_errors, cancel, watch, wait, watch_many,
        wait_all."""
        self.clusters = AsyncClusters(self._transport, self.work_requests)
        """Clusters, node pools and nodes."""
        self.upgrade_workflows = AsyncUpgradeWorkflows(self._transport, self.work_requests)
        """Cluster upgrade workflows."""
        self.addons = AsyncAddons(self._transport, self.work_requests)
        """Cluster add-ons."""
        self.orchestrations = AsyncOrchestrations(self._transport, self.work_requests)
        """Fleet-wide orchestrations."""
        self.subscriptions = AsyncSubscriptions(self._transport)
        """Webhook subscriptions: work request changes pushed as signed CloudEvents."""
        self.simulator = AsyncSimulator(self._transport)
        """The simulated provider's controls (a demo or test server only)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AsyncClient:
        """A client configured by CLUSTEROPS_SERVER (default localhost:50051),
        CLUSTEROPS_TOKEN, CLUSTEROPS_TLS, CLUSTEROPS_CA_CERT, CLUSTEROPS_CLIENT_CERT and
        CLUSTEROPS_CLIENT_KEY; keyword arguments override them."""
        return cls(**{**_env_settings(environ), **overrides})

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._transport.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class Client:
    """A blocking client of a clusterops server (the AsyncClient on a private thread).

    ```
    with Client("localhost:50051") as client:
        op = client.clusters.create_node_pool("cls-...", name="workers", node_count=3)
        pool = op.result(timeout=600)
    ```

    Takes the same options as AsyncClient (its interceptors are grpc.aio ones, since
    they run on the client's loop). Safe to share between threads.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        tls: TLSConfig | bool = False,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        channel_options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> None:
        self._portal = Portal()

        async def build() -> AsyncClient:  # the channel belongs to the portal's loop
            return AsyncClient(
                target,
                tls=tls,
                token=token,
                timeout=timeout,
                retry=retry,
                metadata=metadata,
                channel_options=channel_options,
                interceptors=interceptors,
            )

        try:
            self._async = self._portal.call(build())
        except BaseException:
            self._portal.close()
            raise
        self.target = target
        self.work_requests = WorkRequests(self._portal, self._async.work_requests)
        """Work requests: get, list, list_logs, list_errors, cancel, watch, wait, watch_many,
        wait_all."""
        self.clusters = Clusters(self._portal, self._async.clusters)
        """Clusters, node pools and nodes."""
        self.upgrade_workflows = UpgradeWorkflows(self._portal, self._async.upgrade_workflows)
        """Cluster upgrade workflows."""
        self.addons = Addons(self._portal, self._async.addons)
        """Cluster add-ons."""
        self.orchestrations = Orchestrations(self._portal, self._async.orchestrations)
        """Fleet-wide orchestrations."""
        self.subscriptions = Subscriptions(self._portal, self._async.subscriptions)
        """Webhook subscriptions: work request changes pushed as signed CloudEvents."""
        self.simulator = Simulator(self._portal, self._async.simulator)
        """The simulated provider's controls (a demo or test server only)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Client:
        """A client configured by CLUSTEROPS_SERVER (default localhost:50051),
        CLUSTEROPS_TOKEN, CLUSTEROPS_TLS, CLUSTEROPS_CA_CERT, CLUSTEROPS_CLIENT_CERT and
        CLUSTEROPS_CLIENT_KEY; keyword arguments override them."""
        return cls(**{**_env_settings(environ), **overrides})

    def close(self) -> None:
        """Close the channel and stop the client's thread."""
        if self._portal.closed:
            return
        try:
            self._portal.call(self._async.close())
        finally:
            self._portal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _env_settings(environ: Mapping[str, str] | None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    settings: dict[str, Any] = {"target": env.get(ENV_SERVER) or DEFAULT_TARGET}
    if token := env.get(ENV_TOKEN):
        settings["token"] = token
    if tls := tls_from_env(env):
        settings["tls"] = tls
    return settings
