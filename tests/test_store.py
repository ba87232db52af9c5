"""The store: migrations build exactly the declared schema; revisions are store-wide and ordered."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.services.inventory import CreateNodePoolCommand
from clusterops_server.store.database import Database
from clusterops_server.store.migrate import current_revision, head_revision, upgrade_to_head
from clusterops_server.store.tables import Base
from sqlalchemy import Connection

from tests.conftest import Databases, seed_cluster


@pytest.mark.both_backends
async def test_migrations_build_the_declared_schema(databases: Databases) -> None:
    database = Database(await databases.url("m.db", migrated=False))
    try:
        await upgrade_to_head(database)
        assert await current_revision(database) == head_revision()

        def diff(connection: Connection) -> list[object]:
            return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

        async with database.engine.connect() as connection:
            assert await connection.run_sync(diff) == []
        await upgrade_to_head(database)  # idempotent on a migrated database
    finally:
        await database.dispose()


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_sqlite_file_is_created_in_wal_mode(app: App) -> None:
    async with app.store.read() as uow:
        mode = await uow.session.connection()
        result = await mode.exec_driver_sql("PRAGMA journal_mode")
        assert result.scalar() == "wal"


@pytest.mark.both_backends
async def test_concurrent_changes_get_distinct_increasing_revisions(
    app: App, clock: FakeClock
) -> None:
    clusters = [await seed_cluster(app) for _ in range(6)]
    results = await asyncio.gather(
        *(
            app.inventory.create_node_pool(
                CreateNodePoolCommand(cluster_id=c.id, name="w", node_count=2)
            )
            for c in clusters
        )
    )
    revisions = [wr.revision for _, wr in results]
    assert len(set(revisions)) == len(revisions)
    async with app.store.read() as uow:
        head = (await uow.events.revision_range()).head
        events = await uow.events.after(0, limit=10_000)
    assert [e.revision for e in events] == list(range(1, head + 1))
