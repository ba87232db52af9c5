"""Alembic environment of the simulator's tables: its own metadata and version table."""

from __future__ import annotations

from alembic import context
from clusterops_server.providers.simulated_store import MIGRATIONS, SimulatorBase
from sqlalchemy import Connection, create_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SimulatorBase.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table=MIGRATIONS.version_table,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Invoked from the alembic command line: a synchronous driver on the same database.
    url = config.get_main_option("sqlalchemy.url") or ""
    url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    with create_engine(url).connect() as connection:
        _run(connection)


run_migrations_online()
