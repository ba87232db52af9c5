"""Who runs which work request: leases the engine claims, renews and releases.

Claims use FOR UPDATE SKIP LOCKED on PostgreSQL, so replicas never claim the same
work request; on SQLite the write lock serializes claims. A lease that is not renewed
expires, and another server picks the work up where its journal says it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.work_requests import ACTIVE_STATUSES
from clusterops_server.store.tables import WorkRequestRow

_ACTIVE = sorted(s.value for s in ACTIVE_STATUSES)


class LeaseRepository:
    def __init__(
        self, session: AsyncSession, dialect: str, *, on_due: Callable[[], None] = lambda: None
    ) -> None:
        self.session = session
        self.dialect = dialect
        # Told when a work request is made due sooner (the unit of work wakes the engine).
        self.on_due = on_due

    async def claim(
        self, owner: str, now: datetime, until: datetime, *, limit: int, exclude: set[str]
    ) -> list[str]:
        """Claim up to `limit` runnable work requests that are due and not leased."""
        stmt = (
            select(WorkRequestRow.id)
            .where(
                WorkRequestRow.status.in_(_ACTIVE),
                WorkRequestRow.run_after <= now,
                or_(
                    WorkRequestRow.lease_expires_at.is_(None), WorkRequestRow.lease_expires_at < now
                ),
            )
            .order_by(WorkRequestRow.run_after, WorkRequestRow.id)
            .limit(limit + len(exclude))
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        ids = [i for i in (await self.session.scalars(stmt)).all() if i not in exclude][:limit]
        if ids:
            await self.session.execute(
                update(WorkRequestRow)
                .where(WorkRequestRow.id.in_(ids))
                .values(lease_owner=owner, lease_expires_at=until)
            )
        return ids

    async def renew(self, work_request_id: str, owner: str, until: datetime) -> bool:
        """Extend a lease this owner holds; False when it was lost."""
        result = await self.session.execute(
            update(WorkRequestRow)
            .where(WorkRequestRow.id == work_request_id, WorkRequestRow.lease_owner == owner)
            .values(lease_expires_at=until)
        )
        return bool(getattr(result, "rowcount", 0))

    async def renew_all(self, owner: str, ids: list[str], until: datetime) -> set[str]:
        """Extend every listed lease this owner still holds; returns the ids it holds."""
        if not ids:
            return set()
        await self.session.execute(
            update(WorkRequestRow)
            .where(WorkRequestRow.id.in_(ids), WorkRequestRow.lease_owner == owner)
            .values(lease_expires_at=until)
        )
        held = await self.session.scalars(
            select(WorkRequestRow.id).where(
                WorkRequestRow.id.in_(ids), WorkRequestRow.lease_owner == owner
            )
        )
        return set(held.all())

    async def release(
        self, work_request_id: str, owner: str, *, run_after: datetime | None = None
    ) -> None:
        values: dict[str, object] = {"lease_owner": None, "lease_expires_at": None}
        if run_after is not None:
            values["run_after"] = run_after
        await self.session.execute(
            update(WorkRequestRow)
            .where(WorkRequestRow.id == work_request_id, WorkRequestRow.lease_owner == owner)
            .values(**values)
        )

    async def count_failure(self, work_request_id: str) -> int:
        await self.session.execute(
            update(WorkRequestRow)
            .where(WorkRequestRow.id == work_request_id)
            .values(attempts=WorkRequestRow.attempts + 1)
        )
        return int(
            await self.session.scalar(
                select(WorkRequestRow.attempts).where(WorkRequestRow.id == work_request_id)
            )
            or 0
        )

    async def release_all(self) -> int:
        """Forget every lease (single-server stores, at start: nobody else can hold one)."""
        result = await self.session.execute(
            update(WorkRequestRow)
            .where(WorkRequestRow.lease_owner.is_not(None))
            .values(lease_owner=None, lease_expires_at=None)
        )
        return int(getattr(result, "rowcount", 0))

    async def next_due(self) -> datetime | None:
        """When the earliest runnable, unleased work request becomes due."""
        return await self.session.scalar(
            select(func.min(WorkRequestRow.run_after)).where(
                WorkRequestRow.status.in_(_ACTIVE), WorkRequestRow.lease_owner.is_(None)
            )
        )

    async def wake(self, work_request_id: str, now: datetime) -> None:
        """Make a scheduled work request due now (a cancel should not wait for its timer).

        The row is written (so locked until commit) even when it is already due: a handler
        about to park it locks it first, so it parks either before this waker, which then
        moves its run_after, or after this waker has committed, when its recheck sees the
        change. Skipping a row that is due now would let the park slip in between."""
        self.on_due()
        await self.session.execute(
            update(WorkRequestRow)
            .where(WorkRequestRow.id == work_request_id)
            .values(
                run_after=case(
                    (WorkRequestRow.run_after > now, now), else_=WorkRequestRow.run_after
                )
            )
        )

    async def is_leased(self, work_request_id: str, now: datetime) -> bool:
        """Whether a server is running this work request right now."""
        expires = await self.session.scalar(
            select(WorkRequestRow.lease_expires_at).where(
                WorkRequestRow.id == work_request_id, WorkRequestRow.lease_owner.is_not(None)
            )
        )
        return expires is not None and expires >= now
