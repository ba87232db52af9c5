"""The composition root: builds the store, provider, engine, watch hub, services and gRPC server.

`clusterops serve` and the tests build the same App; tests plug in a FakeClock, a
temporary database and provider settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
from clusterops.v1 import (
    addons_pb2,
    addons_pb2_grpc,
    clusters_pb2,
    clusters_pb2_grpc,
    notifications_pb2,
    notifications_pb2_grpc,
    orchestrations_pb2,
    orchestrations_pb2_grpc,
    simulator_pb2,
    simulator_pb2_grpc,
    upgrade_workflows_pb2,
    upgrade_workflows_pb2_grpc,
    work_requests_pb2,
    work_requests_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from clusterops_server.auth.tokens import TokenStore
from clusterops_server.clock import Clock, SystemClock
from clusterops_server.domain.addon_catalogue import CatalogueFile
from clusterops_server.domain.addons import ReconcileSettings
from clusterops_server.domain.filtering import parse_filter
from clusterops_server.domain.notifications import WebhookSettings
from clusterops_server.domain.orchestrations import OrchestrationSettings
from clusterops_server.domain.plans import PlanCatalogue
from clusterops_server.domain.upgrade_workflows import UpgradeSettings
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.engine.context import EngineSettings
from clusterops_server.engine.engine import Engine, OperationHandler
from clusterops_server.engine.operations.addons import (
    DisableAddon,
    EnableAddon,
    ReconcileAddon,
    UpdateAddon,
)
from clusterops_server.engine.operations.clusters import CreateCluster, DeleteCluster
from clusterops_server.engine.operations.node_pools import CreateNodePool, DeleteNodePool
from clusterops_server.engine.operations.orchestrations import RunOrchestration
from clusterops_server.engine.operations.upgrades import UpgradeCluster
from clusterops_server.engine.reconciler import AddonReconciler
from clusterops_server.metrics import Metrics
from clusterops_server.providers.base import Provider
from clusterops_server.providers.simulated import SimulatedProvider, SimulationSettings
from clusterops_server.services.addons import AddonService
from clusterops_server.services.idempotency import RETENTION
from clusterops_server.services.inventory import InventoryService
from clusterops_server.services.notifications import NotificationService
from clusterops_server.services.orchestrations import OrchestrationService
from clusterops_server.services.simulator import SimulatorControls
from clusterops_server.services.upgrade_workflows import UpgradeWorkflowService
from clusterops_server.services.work_requests import WorkRequestService
from clusterops_server.store.database import Database
from clusterops_server.store.migrate import upgrade_to_head
from clusterops_server.store.notify import CommitListener
from clusterops_server.store.uow import Store
from clusterops_server.watch import WatchHub
from clusterops_server.webhooks import WebhookDispatcher
from clusterops_server.wire.addons import AddonServicer
from clusterops_server.wire.clusters import ClusterServicer
from clusterops_server.wire.guard import MAX_REQUEST_BYTES, GuardInterceptor
from clusterops_server.wire.notifications import NotificationServicer, cloud_event
from clusterops_server.wire.orchestrations import OrchestrationServicer
from clusterops_server.wire.simulator import SimulatorServicer
from clusterops_server.wire.upgrade_workflows import UpgradeWorkflowServicer
from clusterops_server.wire.work_requests import FILTER_FIELDS, WorkRequestServicer

log = logging.getLogger(__name__)

# The documented request limit (MAX_REQUEST_BYTES) is enforced by the guard, which can
# answer INVALID_ARGUMENT; grpc itself stops reading at this hard ceiling, with
# RESOURCE_EXHAUSTED, so a huge message is never buffered.
MAX_TRANSPORT_BYTES = 4 * MAX_REQUEST_BYTES
# Every service this server exposes by name (reflection and health list them).
SERVICE_NAMES = (
    work_requests_pb2.DESCRIPTOR.services_by_name["WorkRequestService"].full_name,
    clusters_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
    upgrade_workflows_pb2.DESCRIPTOR.services_by_name["UpgradeWorkflowService"].full_name,
    addons_pb2.DESCRIPTOR.services_by_name["AddonService"].full_name,
    orchestrations_pb2.DESCRIPTOR.services_by_name["OrchestrationService"].full_name,
    notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name,
)
# The simulated provider's controls: served besides the above only by a simulated server.
SIMULATOR_SERVICE_NAME = simulator_pb2.DESCRIPTOR.services_by_name["SimulatorService"].full_name


class CannotListen(Exception):
    """The address is taken (or not ours to bind)."""

    def __init__(self, address: str, *, flag: str = "") -> None:
        prefix = f"{flag}: " if flag else ""
        super().__init__(f"{prefix}cannot listen on {address}: is another server using it?")
        self.address = address


@dataclass(frozen=True)
class TlsConfig:
    """PEM files. With `client_ca`, clients must present a certificate it signed (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


@dataclass
class ServerConfig:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 50051
    simulation: SimulationSettings = field(default_factory=SimulationSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    engine_poll_seconds: float = 2.0
    watch_poll_seconds: float = 1.0
    # Watch events older than this are compacted away; resuming before them is OUT_OF_RANGE.
    event_retention: timedelta = timedelta(hours=24)
    # Compaction (and page token key rotation) runs at start and then this often.
    maintenance_interval_seconds: float = 300.0
    # Bearer tokens and policies; None serves without authentication (local demos only).
    tokens: TokenStore | None = None
    tls: TlsConfig | None = None
    # Serve Prometheus metrics over HTTP on this port (0: any free port).
    metrics_port: int | None = None
    upgrades: UpgradeSettings = field(default_factory=UpgradeSettings)
    # Add-ons: the reconciler's intervals, and the operator's catalogue file (None: built in).
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    addon_catalogue_path: Path | None = None
    # In real time: how often the reconciler looks for checks it was not woken for (a
    # reconciliation another replica left, or one that failed without closing).
    reconciler_poll_seconds: float = 10.0
    orchestrations: OrchestrationSettings = field(default_factory=OrchestrationSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    # In real time: how often webhook deliveries look for work they were not woken for.
    webhook_poll_seconds: float = 1.0


ProviderFactory = Callable[[Store, Clock], Provider]


class App:
    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Clock | None = None,
        provider_factory: ProviderFactory | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.database = Database(config.database_url)
        self.store = Store(self.database, self.clock)
        self.addon_catalogue = CatalogueFile(config.addon_catalogue_path)
        self.provider: Provider = (
            SimulatedProvider(self.store, self.clock, config.simulation, self.addon_catalogue)
            if provider_factory is None
            else provider_factory(self.store, self.clock)
        )
        # The simulated fleet (its own tables, its own API), or None with a real provider.
        self.simulator: SimulatedProvider | None = (
            self.provider if isinstance(self.provider, SimulatedProvider) else None
        )
        # Every service this server exposes by name (reflection and health list them).
        self.service_names: tuple[str, ...] = SERVICE_NAMES + (
            (SIMULATOR_SERVICE_NAME,) if self.simulator is not None else ()
        )
        self.versions = VersionCatalogue.load()
        self.plans = PlanCatalogue.load()
        self.reconciler = AddonReconciler(
            self.store,
            self.clock,
            config.reconcile,
            poll_seconds=config.reconciler_poll_seconds,
        )
        addon_parts = (
            self.provider,
            self.addon_catalogue,
            config.reconcile,
            self.reconciler.wake,
        )
        handlers: list[OperationHandler] = [
            CreateCluster(self.provider),
            DeleteCluster(self.provider),
            CreateNodePool(self.provider),
            DeleteNodePool(self.provider),
            UpgradeCluster(self.provider, config.upgrades),
            EnableAddon(*addon_parts),
            UpdateAddon(*addon_parts),
            DisableAddon(*addon_parts),
            ReconcileAddon(*addon_parts),
            RunOrchestration(self.versions, config.orchestrations),
        ]
        self.engine = Engine(
            self.store,
            self.clock,
            {h.operation_type: h for h in handlers},
            settings=config.engine,
            poll_seconds=config.engine_poll_seconds,
        )
        self.hub = WatchHub(self.store, poll_seconds=config.watch_poll_seconds)
        self.store.on_commit(self.hub.notify)
        # Replicas sharing a PostgreSQL database hear each other's commits.
        self.commit_listener = (
            None
            if self.database.is_sqlite
            else CommitListener(self.database, self.store.notify_committed)
        )
        self.work_requests = WorkRequestService(self.store, self.clock, self.engine, self.hub)
        self.inventory = InventoryService(self.store, self.clock, self.versions, self.plans)
        self.upgrade_workflows = UpgradeWorkflowService(self.store, self.clock, self.versions)
        self.addons = AddonService(self.store, self.clock, self.provider, self.addon_catalogue)
        self.orchestrations = OrchestrationService(self.store, self.clock, self.versions)
        self.notifications = NotificationService(
            self.store,
            self.clock,
            lambda text: parse_filter(text, FILTER_FIELDS),
            wake=lambda: self.webhooks.wake(),
        )
        self.webhooks = WebhookDispatcher(
            self.store,
            self.clock,
            config.webhooks,
            owner=self.engine.owner,
            render=cloud_event,
            query_of=self.notifications.query_of,
            poll_seconds=config.webhook_poll_seconds,
        )
        self.store.on_commit(self.webhooks.wake)
        self.health = health_aio.HealthServicer()
        self.metrics = Metrics()
        self.metrics.gauge(
            "clusterops_operations_running",
            "Operations this server is running now.",
            lambda: len(self.engine.running),
        )
        self.metrics.gauge(
            "clusterops_watchers", "Open WatchWorkRequest streams.", lambda: self.hub.watchers
        )
        self.metrics.gauge(
            "clusterops_watch_revision",
            "The last revision fanned out to watchers.",
            lambda: self.hub.cursor,
        )
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.metrics_port = 0
        self._maintenance: asyncio.Task[None] | None = None
        # Set after each maintenance run (tests wait on it instead of sleeping).
        self.maintained = asyncio.Event()

    async def start(self) -> int:
        """Migrate the schema, bind, start the engine and serve; returns the bound port.

        Raises CannotListen, before any work starts, when the address is taken."""
        if self.simulator is not None:
            # First: the simulator takes over its rows from the service's schema, whose
            # next migration drops them.
            await self.simulator.migrate()
        await upgrade_to_head(self.database)
        # Before serving: history beyond the retention is gone at once, and a signing
        # key exists before the first list.
        await self.maintain()
        server = self._build_server()
        address = f"{self.config.host}:{self.config.port}"
        try:
            if self.config.tls is not None:
                self.port = server.add_secure_port(address, self.config.tls.credentials())
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError:
            await self.database.dispose()
            raise CannotListen(address) from None
        if self.config.metrics_port is not None:
            # Bound before anything starts, so a taken port stops nothing half-started.
            try:
                self.metrics_port = self.metrics.serve(self.config.host, self.config.metrics_port)
            except OSError:
                await self.database.dispose()
                raise CannotListen(
                    f"{self.config.host}:{self.config.metrics_port}", flag="--metrics-port"
                ) from None
        if self.commit_listener is not None:
            await self.commit_listener.start()
        await self.hub.start()
        await self.engine.start()
        await self.reconciler.start()
        await self.webhooks.start()
        await server.start()
        self.server = server
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._maintenance = asyncio.create_task(self._maintain(), name="maintenance")
        log.info("serving on %s:%d", self.config.host, self.port)
        return self.port

    def _build_server(self) -> grpc.aio.Server:
        server = grpc.aio.server(
            interceptors=[GuardInterceptor(self.config.tokens, self.metrics)],
            options=[
                ("grpc.max_receive_message_length", MAX_TRANSPORT_BYTES),
                ("grpc.max_send_message_length", MAX_TRANSPORT_BYTES),
                # grpc shares ports by default: a second server on a busy port would
                # split callers between two databases instead of failing to start.
                ("grpc.so_reuseport", 0),
            ],
        )
        work_requests_pb2_grpc.add_WorkRequestServiceServicer_to_server(
            WorkRequestServicer(self.work_requests), server
        )
        clusters_pb2_grpc.add_ClusterServiceServicer_to_server(
            ClusterServicer(self.inventory), server
        )
        upgrade_workflows_pb2_grpc.add_UpgradeWorkflowServiceServicer_to_server(
            UpgradeWorkflowServicer(self.upgrade_workflows), server
        )
        addons_pb2_grpc.add_AddonServiceServicer_to_server(AddonServicer(self.addons), server)
        orchestrations_pb2_grpc.add_OrchestrationServiceServicer_to_server(
            OrchestrationServicer(self.orchestrations), server
        )
        notifications_pb2_grpc.add_NotificationServiceServicer_to_server(
            NotificationServicer(self.notifications), server
        )
        if self.simulator is not None:
            # Kept out of the production API: a server with a real provider has no such
            # service (UNIMPLEMENTED), and reflection does not list it.
            simulator_pb2_grpc.add_SimulatorServiceServicer_to_server(
                SimulatorServicer(SimulatorControls(self.simulator)), server
            )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                *self.service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        return server

    async def stop(self, grace: float = 5.0) -> None:
        """Health NOT_SERVING, end watches, drain in-flight calls, stop the engine."""
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.hub.close()
        if self.server is not None:
            await self.server.stop(grace)
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.reconciler.stop()
        await self.webhooks.stop()
        await self.engine.stop()
        self.metrics.close()
        if self.commit_listener is not None:
            await self.commit_listener.close()
        await self.database.dispose()

    async def maintain(self) -> None:
        """Compact, and rotate the page token key when it is due."""
        await self.compact()
        await self.store.page_tokens.rotate()
        self.maintained.set()

    async def compact(self) -> int:
        """Drop watch history older than the retention and expired request_ids."""
        now = self.clock.now()
        async with self.store.write() as uow:
            watermark = await uow.events.compact(now - self.config.event_retention)
            await uow.idempotency.expire(now - RETENTION)
            await uow.commit()
        return watermark

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.config.maintenance_interval_seconds)
            try:
                await self.maintain()
            except Exception:
                log.exception("maintenance failed; will retry")
