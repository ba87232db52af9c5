"""The simulated provider's own state: injected faults and what is really on each cluster.

It lives in the simulator's tables (`simulator_faults`, `simulator_addons`), created by the
simulator's own Alembic branch (providers/simulated_migrations, version table
`simulator_alembic_version`) and migrated only where the simulated provider runs: a
production database served with another provider has none of them, and the service's
schema and migrations know nothing of them. They share the service's database so that
another process (a test, an operator's script) can inject a fault into a running server.

Only this module touches those tables; the provider speaks `Fault` and `SimulatedAddon`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, MetaData, String, Text, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from clusterops_server.store.database import Database
from clusterops_server.store.migrate import MigrationBranch, upgrade_to_head
from clusterops_server.store.tables import NAMING, AutoId, UTCDateTime

ANY_TARGET = "*"

# The simulator's migrations: their own directory and version table, so they never mix
# with the service's (one head each).
MIGRATIONS = MigrationBranch(
    Path(__file__).resolve().parent / "simulated_migrations", "simulator_alembic_version"
)


class SimulatorBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class FaultRow(SimulatorBase):
    """`action` on `target` fails `remaining` times (-1: every time)."""

    __tablename__ = "simulator_faults"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    remaining: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_simulator_faults_action", "action", "target"),)


class AddonRow(SimulatorBase):
    """What is really on a cluster of an add-on."""

    __tablename__ = "simulator_addons"
    cluster_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    configurations: Mapped[dict[str, str]] = mapped_column(JSON)
    managed: Mapped[bool] = mapped_column(Boolean)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON)
    unhealthy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Fault:
    id: int
    action: str
    target: str
    # How many more times it fails; -1: every time.
    remaining: int
    message: str
    created_at: datetime


@dataclass
class SimulatedAddon:
    """An add-on as it really is on a cluster."""

    cluster_id: str
    name: str
    version: str
    configurations: dict[str, str]
    managed: bool
    updated_at: datetime
    # resource name -> {"state": "ok" | "deleted" | "changed", "stuck": bool, "stuck_until": iso}
    resources: dict[str, Any] = field(default_factory=dict)
    # {"message": ..., "until": iso or None (never recovers)} while its pods are unhealthy.
    unhealthy: dict[str, Any] | None = None


class SimulatorRepository:
    """The simulator's rows in one transaction; it never commits (its store does)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_fault(
        self, action: str, target: str, remaining: int, message: str, now: datetime
    ) -> Fault:
        row = FaultRow(
            target=target, action=action, remaining=remaining, message=message, created_at=now
        )
        self.session.add(row)
        await self.session.flush()
        return _fault(row)

    async def faults(self) -> list[Fault]:
        """Every fault, used up or not, oldest first."""
        rows = await self.session.scalars(select(FaultRow).order_by(FaultRow.id))
        return [_fault(row) for row in rows]

    async def clear_faults(self) -> int:
        """Delete every fault; how many there were."""
        found = await self.session.execute(delete(FaultRow))
        return int(getattr(found, "rowcount", 0) or 0)

    async def take_fault(self, action: str, targets: Sequence[str]) -> str | None:
        """Use up one fault that matches `action` on one of `targets` (or on any target);
        its message, or None when none matches."""
        row = await self.session.scalar(
            select(FaultRow)
            .where(
                FaultRow.action == action,
                FaultRow.target.in_([*targets, ANY_TARGET]),
                or_(FaultRow.remaining > 0, FaultRow.remaining == -1),
            )
            .order_by(FaultRow.id)
            .limit(1)
            # Concurrent actions must not both spend the last remaining failure.
            .with_for_update()
        )
        if row is None:
            return None
        if row.remaining > 0:
            row.remaining -= 1
        return row.message

    async def addon(self, cluster_id: str, name: str) -> SimulatedAddon | None:
        row = await self.session.get(AddonRow, (cluster_id, name))
        if row is None:
            return None
        return SimulatedAddon(
            cluster_id=row.cluster_id,
            name=row.name,
            version=row.version,
            configurations=dict(row.configurations),
            managed=row.managed,
            updated_at=row.updated_at,
            resources={k: dict(v) for k, v in row.resources.items()},
            unhealthy=dict(row.unhealthy) if row.unhealthy else None,
        )

    async def save_addon(self, addon: SimulatedAddon) -> None:
        await self.session.merge(
            AddonRow(
                cluster_id=addon.cluster_id,
                name=addon.name,
                version=addon.version,
                configurations=dict(addon.configurations),
                managed=addon.managed,
                resources={k: dict(v) for k, v in addon.resources.items()},
                unhealthy=dict(addon.unhealthy) if addon.unhealthy else None,
                updated_at=addon.updated_at,
            )
        )

    async def delete_addon(self, cluster_id: str, name: str) -> None:
        await self.session.execute(
            delete(AddonRow).where(AddonRow.cluster_id == cluster_id, AddonRow.name == name)
        )


class SimulatorStore:
    """Transactions over the simulator's tables, on the service's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def migrate(self) -> None:
        """Create or upgrade the simulator's tables (before the service's migrations, which
        drop the tables the simulator kept in the service's schema before it had its own)."""
        await upgrade_to_head(self.database, MIGRATIONS)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SimulatorTransaction]:
        """`async with store.write() as tx:` rolls back unless `await tx.commit()` ran."""
        async with self.database.session(write=True) as session:
            try:
                yield SimulatorTransaction(session)
            finally:
                if session.in_transaction():
                    await session.rollback()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[SimulatorRepository]:
        async with self.database.session(write=False) as session:
            try:
                yield SimulatorRepository(session)
            finally:
                await session.rollback()


class SimulatorTransaction(SimulatorRepository):
    async def commit(self) -> None:
        await self.session.commit()


def _fault(row: FaultRow) -> Fault:
    return Fault(row.id, row.action, row.target, row.remaining, row.message, row.created_at)
