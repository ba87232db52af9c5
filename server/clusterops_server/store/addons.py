"""Add-ons on clusters, and the queries the reconciler schedules by."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.addons import Addon, AddonError, AddonState
from clusterops_server.domain.errors import AlreadyExists
from clusterops_server.domain.listing import Page, PageRequest, fingerprint
from clusterops_server.domain.work_requests import TERMINAL_STATUSES
from clusterops_server.store.paging import Keyset, paginate
from clusterops_server.store.tables import AddonRow, WorkRequestRow

S = TypeVar("S", bound=Select[Any])
_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


def _to_domain(row: AddonRow) -> Addon:
    return Addon(
        cluster_id=row.cluster_id,
        compartment_id=row.compartment_id,
        name=row.name,
        version=row.version,
        configurations=dict(row.configurations),
        lifecycle_state=AddonState(row.lifecycle_state),
        create_time=row.created_at,
        update_time=row.updated_at,
        current_installed_version=row.current_installed_version,
        error=AddonError.from_json(row.error),
        work_request_id=row.work_request_id,
        row_version=row.row_version,
        next_check_at=row.next_check_at,
        reconciliation_id=row.reconciliation_id,
        attention_since=row.attention_since,
        attention_checks=row.attention_checks,
    )


def _values(addon: Addon) -> dict[str, Any]:
    return {
        "compartment_id": addon.compartment_id,
        "version": addon.version,
        "current_installed_version": addon.current_installed_version,
        "configurations": dict(addon.configurations),
        "lifecycle_state": addon.lifecycle_state.value,
        "error": addon.error.to_json() if addon.error else None,
        "work_request_id": addon.work_request_id,
        "created_at": addon.create_time,
        "updated_at": addon.update_time,
        "row_version": addon.row_version,
        "next_check_at": addon.next_check_at,
        "reconciliation_id": addon.reconciliation_id,
        "attention_since": addon.attention_since,
        "attention_checks": addon.attention_checks,
    }


class AddonRepository:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    async def get(self, cluster_id: str, name: str, *, for_update: bool = False) -> Addon | None:
        stmt = select(AddonRow).where(AddonRow.cluster_id == cluster_id, AddonRow.name == name)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        row = await self.session.scalar(stmt)
        return _to_domain(row) if row else None

    async def add(self, addon: Addon) -> None:
        self.session.add(AddonRow(cluster_id=addon.cluster_id, name=addon.name, **_values(addon)))
        try:
            async with self.session.begin_nested():
                await self.session.flush()
        except IntegrityError:
            raise AlreadyExists(
                "addon",
                addon.resource_id,
                f"cluster {addon.cluster_id} already has add-on {addon.name}",
            ) from None

    async def save(self, addon: Addon) -> None:
        result = await self.session.execute(
            update(AddonRow)
            .where(AddonRow.cluster_id == addon.cluster_id, AddonRow.name == addon.name)
            .values(**_values(addon))
            .execution_options(synchronize_session=False)
        )
        assert getattr(result, "rowcount", 1) == 1, addon.resource_id

    async def live_on_cluster(self, cluster_id: str, *, for_update: bool = False) -> list[Addon]:
        """The cluster's add-ons that are not DELETED, by name."""
        stmt = (
            select(AddonRow)
            .where(
                AddonRow.cluster_id == cluster_id,
                AddonRow.lifecycle_state != AddonState.DELETED.value,
            )
            .order_by(AddonRow.name)
        )
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return [_to_domain(r) for r in (await self.session.scalars(stmt)).all()]

    async def list_addons(
        self, cluster_id: str, states: Collection[AddonState], page: PageRequest
    ) -> Page[Addon]:
        """The cluster's add-ons by name: in `states`, or every one not DELETED."""
        conditions: list[ColumnElement[bool]] = [AddonRow.cluster_id == cluster_id]
        if states:
            conditions.append(AddonRow.lifecycle_state.in_(sorted(s.value for s in states)))
        else:
            conditions.append(AddonRow.lifecycle_state != AddonState.DELETED.value)
        return await paginate(
            self.session,
            select(AddonRow).where(*conditions),
            Keyset((AddonRow.name,)),
            page,
            fingerprint("addons", cluster_id, sorted(states)),
            _to_domain,
            key_of=lambda row: (row.name,),
        )

    def _waiting(self, stmt: S) -> S:
        """Add-ons with a check scheduled and no reconciliation open (a work request that
        ended without closing it, e.g. after repeated crashes, counts as closed)."""
        open_reconciliation = (
            select(WorkRequestRow.id)
            .where(
                WorkRequestRow.id == AddonRow.reconciliation_id,
                WorkRequestRow.status.not_in(_TERMINAL),
            )
            .exists()
        )
        return stmt.where(
            AddonRow.next_check_at.is_not(None),
            or_(AddonRow.reconciliation_id == "", ~open_reconciliation),
        )

    async def due(self, now: datetime, *, limit: int) -> list[Addon]:
        """Add-ons whose next check has come, earliest first."""
        stmt = (
            self._waiting(select(AddonRow))
            .where(AddonRow.next_check_at <= now)
            .order_by(AddonRow.next_check_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=AddonRow)
        return [_to_domain(r) for r in (await self.session.scalars(stmt)).all()]

    async def next_check(self) -> datetime | None:
        """When the earliest scheduled check without an open reconciliation is due."""
        return await self.session.scalar(self._waiting(select(func.min(AddonRow.next_check_at))))
