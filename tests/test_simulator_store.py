"""The simulator's state is the simulator's: its own tables, made by its own migrations, only
where the simulated provider runs; the service's schema has none of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from clusterops_server.app import App
from clusterops_server.clock import Clock
from clusterops_server.domain.addon_health import AddonSpec, AddonStatus
from clusterops_server.domain.inventory import Cluster, Node, NodePool
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType
from clusterops_server.providers.base import ProviderError
from clusterops_server.providers.simulated import SimulatedProvider
from clusterops_server.providers.simulated_store import MIGRATIONS, SimulatorBase, SimulatorStore
from clusterops_server.store.database import Database
from clusterops_server.store.migrate import alembic_config, current_revision, head_revision
from clusterops_server.store.uow import Store
from sqlalchemy import Connection, inspect, text

from tests.conftest import AppFactory, Databases, seed_cluster, simulator

SIMULATOR_TABLES = {"simulator_faults", "simulator_addons", "simulator_alembic_version"}


async def table_names(database: Database) -> set[str]:
    def names(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with database.engine.connect() as connection:
        return await connection.run_sync(names)


class NothingProvider:
    """A provider that is not the simulator: every action succeeds at once."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store

    async def create_cluster(self, cluster: Cluster) -> None:
        return None

    async def delete_cluster(self, cluster: Cluster) -> None:
        return None

    async def provision_node(self, cluster: Cluster, pool: NodePool, node: Node) -> None:
        return None

    async def delete_node(self, cluster: Cluster, pool: NodePool, node: Node) -> None:
        return None

    async def run_upgrade_task(
        self, cluster: Cluster, task_type: UpgradeTaskType, target_version: str
    ) -> None:
        return None

    async def inspect_addon(self, cluster: Cluster, name: str) -> AddonStatus | None:
        return None

    async def apply_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        return AddonStatus(spec.version, dict(spec.configurations), managed=True)

    async def repair_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        return await self.apply_addon(cluster, spec)

    async def remove_addon(self, cluster: Cluster, name: str) -> None:
        return None

    async def release_addon(self, cluster: Cluster, name: str) -> None:
        return None


@pytest.mark.both_backends
async def test_the_simulators_migrations_build_exactly_its_declared_tables(
    databases: Databases,
) -> None:
    database = Database(await databases.url("sim.db", migrated=False))
    try:
        await SimulatorStore(database).migrate()
        assert await current_revision(database, MIGRATIONS) == head_revision(MIGRATIONS)
        assert head_revision(MIGRATIONS) == "sim_0001"
        # Its own line: the service's version table is not touched.
        assert await current_revision(database) is None
        assert await table_names(database) == SIMULATOR_TABLES

        def diff(connection: Connection) -> list[object]:
            context = MigrationContext.configure(
                connection, opts={"version_table": MIGRATIONS.version_table}
            )
            return list(compare_metadata(context, SimulatorBase.metadata))

        async with database.engine.connect() as connection:
            assert await connection.run_sync(diff) == []
        await SimulatorStore(database).migrate()  # idempotent
    finally:
        await database.dispose()


@pytest.mark.both_backends
async def test_a_server_with_another_provider_has_no_simulator_tables_nor_api_state(
    databases: Databases, make_app: AppFactory
) -> None:
    await databases.url("production.db", migrated=False)
    app = await make_app(database="production.db", provider_factory=NothingProvider)
    assert app.simulator is None
    names = await table_names(app.database)
    assert not {n for n in names if n.startswith("sim")}, names
    assert await current_revision(app.database, MIGRATIONS) is None
    assert await current_revision(app.database) == head_revision()


@pytest.mark.both_backends
async def test_a_simulated_server_migrates_its_tables_first_and_a_subclass_counts_too(
    databases: Databases, make_app: AppFactory
) -> None:
    await databases.url("fresh.db", migrated=False)

    class Subclass(SimulatedProvider):
        pass

    app = await make_app(database="fresh.db", provider_factory=Subclass)
    assert isinstance(app.simulator, Subclass)
    names = await table_names(app.database)
    assert names >= SIMULATOR_TABLES
    assert not {"sim_faults", "sim_addons"} & names


@pytest.mark.both_backends
async def test_an_existing_database_keeps_its_faults_and_addons_in_the_simulators_tables(
    databases: Databases, make_app: AppFactory
) -> None:
    """A database from before: the service at 0007 with sim_faults and sim_addons rows."""
    url = await databases.url("old.db", migrated=False)
    database = Database(url)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    naive = at.replace(tzinfo=None)

    def migrate(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")

    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(migrate)
            await connection.execute(
                text(
                    "INSERT INTO sim_faults (id, target, action, remaining, message, created_at) "
                    "VALUES (7, '*', 'provision_node', -1, 'old fault', :at), "
                    "(8, 'cls-gone', 'create_cluster', 0, 'used up', :at)"
                ),
                {"at": naive},
            )
            await connection.execute(
                text(
                    "INSERT INTO sim_addons (cluster_id, name, version, configurations, managed, "
                    "resources, unhealthy, updated_at) VALUES (:cluster, 'CertManager', '1.14.5', "
                    '\'{"a": "1"}\', false, '
                    '\'{"deployment/cert-manager": {"state": "deleted"}}\', '
                    '\'{"message": "pods crash", "until": null}\', :at)'
                ),
                {"cluster": "cls-old", "at": naive},
            )
    finally:
        await database.dispose()

    app = await make_app(database="old.db")
    sim = simulator(app)
    names = await table_names(app.database)
    assert not {"sim_faults", "sim_addons"} & names
    assert names >= SIMULATOR_TABLES
    faults = await sim.faults()
    assert [(f.id, f.action, f.target, f.remaining, f.message) for f in faults] == [
        (7, "provision_node", "*", -1, "old fault"),
        (8, "create_cluster", "cls-gone", 0, "used up"),
    ]
    assert faults[0].created_at == at
    status = await sim.addon_on_cluster("cls-old", "CertManager")
    assert status == AddonStatus(
        "1.14.5",
        {"a": "1"},
        managed=False,
        drift=("deployment/cert-manager deleted",),
        not_ready=("pods crash",),
    )
    # A new fault gets an id of its own after the copied ones (PostgreSQL's sequence too).
    added = await sim.inject_fault("delete_node", times=2)
    assert added.id > 8
    # And the copied fault still fails what it named.
    cluster = await seed_cluster(app)
    with pytest.raises(ProviderError, match="old fault"):
        await sim.act("provision_node", ["node-1", "pool-1", cluster.id])


async def test_faults_are_listed_and_cleared_through_the_provider(app: App) -> None:
    sim = simulator(app)
    assert await sim.faults() == []
    first = await sim.inject_fault("provision_node", "cls-1", times=1)
    await sim.inject_fault("upgrade:PreCheck", times=-1, message="nope")
    with pytest.raises(ProviderError, match="simulated failure of provision_node"):
        await sim.act("provision_node", ["cls-1"])
    await sim.act("provision_node", ["cls-1"])  # used up
    listed = await sim.faults()
    assert [(f.action, f.remaining, f.message) for f in listed] == [
        ("provision_node", 0, "simulated failure of provision_node"),
        ("upgrade:PreCheck", -1, "nope"),
    ]
    assert listed[0].id == first.id
    assert await sim.clear_faults() == 2
    assert await sim.faults() == []
    await sim.act("upgrade:PreCheck", ["cls-1"])
