"""Bring a database's schema to the newest migration, at server start or from the CLI.

A database may hold more than one line of migrations: the service's (store/migrations,
version table `alembic_version`) and a provider's own (the simulator's tables, for one).
Each is a MigrationBranch: its directory and its version table, so each has one head and
neither sees the other's revisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from clusterops_server.store.database import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; replicas starting together take turns on it (every branch, one lock).
_PG_MIGRATION_LOCK = 7_384_221


@dataclass(frozen=True)
class MigrationBranch:
    location: Path
    version_table: str = "alembic_version"


SERVICE = MigrationBranch(MIGRATIONS)


def alembic_config(url: str = "", branch: MigrationBranch = SERVICE) -> Config:
    config = Config()
    config.set_main_option("script_location", str(branch.location))
    # The branch's env.py configures Alembic with it.
    config.set_main_option("version_table", branch.version_table)
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def _upgrade(connection: Connection, config: Config) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(database: Database, branch: MigrationBranch = SERVICE) -> None:
    config = alembic_config(branch=branch)
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade, config)


def head_revision(branch: MigrationBranch = SERVICE) -> str | None:
    return ScriptDirectory.from_config(alembic_config(branch=branch)).get_current_head()


async def current_revision(database: Database, branch: MigrationBranch = SERVICE) -> str | None:
    def read(connection: Connection) -> str | None:
        context = MigrationContext.configure(
            connection, opts={"version_table": branch.version_table}
        )
        return context.get_current_revision()

    async with database.engine.connect() as connection:
        return await connection.run_sync(read)
