"""Fixtures: an in-process server on a free port, a real database, the injectable clock.

Apps run on SQLite files by default (`pytest --db-backend postgresql` runs them on
PostgreSQL instead). A test or module marked `both_backends` runs twice, the second time
on a fresh PostgreSQL database of its own (tests/postgres.py).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import time
from pathlib import Path
from typing import Any, Protocol

import grpc
import pytest
from clusterops.v1 import (
    addons_pb2_grpc,
    clusters_pb2_grpc,
    notifications_pb2_grpc,
    orchestrations_pb2_grpc,
    upgrade_workflows_pb2_grpc,
    work_requests_pb2_grpc,
)
from clusterops_server.app import App, ProviderFactory, ServerConfig
from clusterops_server.clock import Clock, FakeClock
from clusterops_server.domain.inventory import Cluster, ClusterState, MaintenanceWindow
from clusterops_server.domain.plans import PlanCatalogue
from clusterops_server.ids import IdKind, new_id
from clusterops_server.providers.simulated import SimulatedProvider, SimulationSettings
from clusterops_server.providers.simulated_store import SimulatorStore
from clusterops_server.store.database import Database, default_sqlite_url
from clusterops_server.store.migrate import upgrade_to_head
from clusterops_server.store.uow import Store

from tests import postgres

AppFactory = Callable[..., Awaitable[App]]
BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-backend",
        choices=BACKENDS,
        default="sqlite",
        help="database for tests that do not choose one (postgresql: run them all on it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run the test on SQLite and again on PostgreSQL"
    )
    config.addinivalue_line(
        "markers", "slow: takes seconds; runs first, so no worker ends the run with it alone"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Longest first: pytest-xdist hands tests out in this order (a stable sort keeps the rest).
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    asyncio.run(postgres.drop_template())
    if _sqlite_template is not None:
        shutil.rmtree(_sqlite_template.parent, ignore_errors=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("db_backend", BACKENDS, indirect=True)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database the test's apps use: --db-backend unless parametrized or overridden."""
    return str(getattr(request, "param", request.config.getoption("db_backend")))


_sqlite_template: Path | None = None


async def migrated_sqlite_file(path: Path) -> None:
    """A SQLite file at head, copied from one migrated once per test process (a copy takes
    a millisecond, migrating a tenth of a second; the apps still run their migrations on
    it, which then find nothing to do). Migrating an empty file is tested on its own."""
    global _sqlite_template
    if _sqlite_template is None:
        template = Path(tempfile.mkdtemp(prefix="clusterops-template-")) / "template.db"
        database = Database(default_sqlite_url(template))
        try:
            # As App.start does with the simulated provider: its tables first.
            await SimulatorStore(database).migrate()
            await upgrade_to_head(database)
        finally:
            await database.dispose()  # the last connection checkpoints the WAL into the file
        _sqlite_template = template
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, path)


class Databases:
    """One test's databases by name: SQLite files in tmp_path, or fresh PostgreSQL databases."""

    def __init__(self, backend: str, directory: Path) -> None:
        self.backend = backend
        self.directory = directory
        self._urls: dict[str, str] = {}

    async def url(self, name: str = "clusterops.db", *, migrated: bool = True) -> str:
        """The same name gives the same database (a restarted app finds its data).

        A new database comes migrated to head unless `migrated=False` (then it is empty)."""
        if name not in self._urls:
            if self.backend == "postgresql":
                self._urls[name] = await postgres.create_database(migrated=migrated)
            else:
                path = self.directory / name
                if migrated and not path.exists():
                    await migrated_sqlite_file(path)
                self._urls[name] = default_sqlite_url(path)
        return self._urls[name]

    async def drop(self) -> None:
        if self.backend == "postgresql":
            for url in self._urls.values():
                postgres.drop_database_soon(url)


@pytest.fixture
async def databases(db_backend: str, tmp_path: Path) -> AsyncIterator[Databases]:
    found = Databases(db_backend, tmp_path)
    yield found
    await found.drop()


class Stubs:
    """Generated stubs over one channel to the server under test."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.work_requests = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
        self.clusters = clusters_pb2_grpc.ClusterServiceStub(channel)
        self.upgrade_workflows = upgrade_workflows_pb2_grpc.UpgradeWorkflowServiceStub(channel)
        self.addons = addons_pb2_grpc.AddonServiceStub(channel)
        self.orchestrations = orchestrations_pb2_grpc.OrchestrationServiceStub(channel)
        self.notifications = notifications_pb2_grpc.NotificationServiceStub(channel)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_app(databases: Databases, clock: FakeClock) -> AsyncIterator[AppFactory]:
    """Start apps on free ports over the test's databases; all are stopped afterwards."""
    started: list[App] = []

    async def factory(
        *,
        simulation: SimulationSettings | None = None,
        database: str = "clusterops.db",
        port: int = 0,
        provider_factory: ProviderFactory | None = None,
        **config: Any,
    ) -> App:
        config.setdefault("engine_poll_seconds", 0.2)
        config.setdefault("watch_poll_seconds", 0.2)
        app = App(
            ServerConfig(
                database_url=await databases.url(database),
                port=port,
                simulation=simulation or SimulationSettings(),
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


class HasStore(Protocol):
    """What seeding needs: an App, or the unit layer's services (tests/unit/harness.py)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def store(self) -> Store: ...

    @property
    def plans(self) -> PlanCatalogue: ...


async def seed_cluster(
    app: HasStore,
    *,
    compartment: str = "dev",
    name: str | None = None,
    version: str = "v1.29.8",
    region: str = "eu-frankfurt-1",
    plan: str = "aws",
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
        plan_id=app.plans.plan_id(plan),
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
