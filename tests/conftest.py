"""Fixtures: an in-process server on a free port, a real SQLite file, the injectable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from clusterops.v1 import (
    addons_pb2_grpc,
    clusters_pb2_grpc,
    orchestrations_pb2_grpc,
    upgrade_workflows_pb2_grpc,
    work_requests_pb2_grpc,
)
from clusterops_server.app import App, ProviderFactory, ServerConfig
from clusterops_server.clock import FakeClock
from clusterops_server.domain.inventory import Cluster, ClusterState, MaintenanceWindow
from clusterops_server.ids import IdKind, new_id
from clusterops_server.providers.simulated import SimulatedProvider, SimulationSettings
from clusterops_server.store.database import default_sqlite_url

AppFactory = Callable[..., Awaitable[App]]


class Stubs:
    """Generated stubs over one channel to the server under test."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.work_requests = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
        self.clusters = clusters_pb2_grpc.ClusterServiceStub(channel)
        self.upgrade_workflows = upgrade_workflows_pb2_grpc.UpgradeWorkflowServiceStub(channel)
        self.addons = addons_pb2_grpc.AddonServiceStub(channel)
        self.orchestrations = orchestrations_pb2_grpc.OrchestrationServiceStub(channel)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[AppFactory]:
    """Start apps on free ports over SQLite files in tmp_path; all are stopped afterwards."""
    started: list[App] = []

    async def factory(
        *,
        simulation: SimulationSettings | None = None,
        database: str = "clusterops.db",
        port: int = 0,
        provider_factory: ProviderFactory | None = None,
        **config: Any,
    ) -> App:
        app = App(
            ServerConfig(
                database_url=default_sqlite_url(tmp_path / database),
                port=port,
                simulation=simulation or SimulationSettings(),
                engine_poll_seconds=0.2,
                watch_poll_seconds=0.2,
                **config,
            ),
            clock=clock,
            provider_factory=provider_factory,
        )
        await app.start()
        started.append(app)
        return app

    yield factory
    for app in started:
        await app.stop(grace=0)


@pytest.fixture
async def app(make_app: AppFactory) -> App:
    return await make_app()


@asynccontextmanager
async def connect(app: App) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield Stubs(channel)


@pytest.fixture
async def stubs(app: App) -> AsyncIterator[Stubs]:
    async with connect(app) as connected:
        yield connected


def simulator(app: App) -> SimulatedProvider:
    assert app.simulator is not None
    return app.simulator


async def seed_cluster(
    app: App,
    *,
    compartment: str = "dev",
    name: str | None = None,
    version: str = "v1.29.8",
    region: str = "eu-frankfurt-1",
    plan: str = "standard",
    window: tuple[str, str] | None = ("22:00", "02:00"),
    global_account: str = "ga-1",
    sub_account: str | None = None,
    shoot_name: str | None = None,
    state: ClusterState = ClusterState.ACTIVE,
) -> Cluster:
    """Put a cluster (ACTIVE unless told) straight into the inventory (no operation needed)."""
    now = app.clock.now()
    cluster_id = new_id(IdKind.CLUSTER)
    cluster = Cluster(
        id=cluster_id,
        compartment_id=compartment,
        name=name or f"c-{cluster_id[-8:]}",
        kubernetes_version=version,
        region=region,
        plan=plan,
        global_account_id=global_account,
        sub_account_id=sub_account if sub_account is not None else f"sa-{compartment}",
        shoot_name=shoot_name or f"shoot-{cluster_id[-8:]}",
        lifecycle_state=state,
        create_time=now,
        update_time=now,
        maintenance_window=(
            MaintenanceWindow(time.fromisoformat(window[0]), time.fromisoformat(window[1]))
            if window
            else None
        ),
    )
    async with app.store.write() as uow:
        await uow.inventory.add_cluster(cluster)
        await uow.commit()
    return cluster
