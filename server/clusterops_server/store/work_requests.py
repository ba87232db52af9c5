"""Work requests, their resources, logs and errors, and the one-per-resource locks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.errors import ResourceBusy
from clusterops_server.domain.listing import Page, PageRequest, fingerprint
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    ErrorEntry,
    LogEntry,
    OperationType,
    StoredState,
    WorkRequest,
    WorkRequestQuery,
    WorkRequestResource,
    WorkRequestStatus,
    WorkRequestVisibility,
)
from clusterops_server.store.filters import compile_filter
from clusterops_server.store.paging import Keyset, paginate
from clusterops_server.store.tables import (
    ResourceLockRow,
    WorkRequestErrorRow,
    WorkRequestLogRow,
    WorkRequestResourceRow,
    WorkRequestRow,
)

if TYPE_CHECKING:
    from clusterops_server.store.uow import UnitOfWork

FILTER_COLUMNS = {
    "operation_type": WorkRequestRow.operation_type,
    "status": WorkRequestRow.status,
    "compartment_id": WorkRequestRow.compartment_id,
    "time_accepted": WorkRequestRow.accepted_at,
    "percent_complete": WorkRequestRow.percent_complete,
    "created_by": WorkRequestRow.created_by,
}


def visible(visibility: WorkRequestVisibility) -> ColumnElement[bool]:
    allowed: list[ColumnElement[bool]] = [
        WorkRequestRow.compartment_id.in_(sorted(visibility.compartments))
    ]
    for operations, compartments in visibility.by_operation:
        of_type = WorkRequestRow.operation_type.in_(sorted(o.value for o in operations))
        if compartments is None:
            allowed.append(of_type)
        elif compartments:
            allowed.append(and_(of_type, WorkRequestRow.compartment_id.in_(sorted(compartments))))
    return or_(*allowed)


def _resource(row: WorkRequestResourceRow) -> WorkRequestResource:
    return WorkRequestResource(
        EntityType(row.entity_type), ActionType(row.action_type), row.identifier, row.entity_uri
    )


def _to_domain(row: WorkRequestRow, resources: Sequence[WorkRequestResourceRow]) -> WorkRequest:
    wr = WorkRequest(
        id=row.id,
        compartment_id=row.compartment_id,
        operation_type=OperationType(row.operation_type),
        status=WorkRequestStatus(row.status),
        percent_complete=row.percent_complete,
        time_accepted=row.accepted_at,
        time_started=row.started_at,
        time_finished=row.finished_at,
        resources=[_resource(r) for r in sorted(resources, key=lambda r: r.position)],
        revision=row.revision,
        created_by=row.created_by,
        reason=row.reason,
        last_error=(
            ErrorEntry(row.last_error_code, row.last_error_message or "", row.last_error_at)
            if row.last_error_code is not None and row.last_error_at is not None
            else None
        ),
    )
    wr.stored = wr.current_state()
    return wr


class WorkRequestRepository:
    def __init__(self, session: AsyncSession, uow: UnitOfWork) -> None:
        self.session = session
        self.uow = uow

    async def add(
        self,
        wr: WorkRequest,
        *,
        params: Mapping[str, Any],
        lock: Iterable[str] = (),
        run_after: datetime | None = None,
        logs: Sequence[LogEntry] = (),
    ) -> None:
        """Insert a new work request, taking the lock on every resource in `lock`.

        A resource that already has a non-terminal work request raises ResourceBusy
        naming it; the database's primary key decides, so concurrent callers cannot
        both win.
        """
        self.session.add(
            WorkRequestRow(
                id=wr.id,
                compartment_id=wr.compartment_id,
                operation_type=wr.operation_type.value,
                status=wr.status.value,
                percent_complete=wr.percent_complete,
                accepted_at=wr.time_accepted,
                started_at=wr.time_started,
                finished_at=wr.time_finished,
                revision=0,
                params=dict(params),
                lease_owner=None,
                lease_expires_at=None,
                run_after=run_after or wr.time_accepted,
                attempts=0,
                created_by=wr.created_by,
                reason=wr.reason,
            )
        )
        await self.session.flush()
        for resource_id in lock:
            await self._lock(resource_id, wr.id)
        self._write_resources(wr.id, wr.resources, start=0)
        self._write_logs(wr.id, logs, ())
        self.uow.stage_event(wr, resources=list(wr.resources), logs=logs, errors=(), previous=None)
        wr.stored = wr.current_state()
        self.uow.work_added()

    async def _lock(self, resource_id: str, work_request_id: str) -> None:
        insert = (postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert)(
            ResourceLockRow
        )
        stmt = insert.values(resource_id=resource_id, work_request_id=work_request_id)
        result = await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["resource_id"])
        )
        if getattr(result, "rowcount", 1) == 0:
            holder = await self.session.scalar(
                select(ResourceLockRow.work_request_id).where(
                    ResourceLockRow.resource_id == resource_id
                )
            )
            raise ResourceBusy(resource_id, holder or "unknown")

    async def lock_holder(self, resource_id: str) -> str | None:
        return await self.session.scalar(
            select(ResourceLockRow.work_request_id).where(
                ResourceLockRow.resource_id == resource_id
            )
        )

    async def get(self, work_request_id: str, *, for_update: bool = False) -> WorkRequest | None:
        stmt = select(WorkRequestRow).where(WorkRequestRow.id == work_request_id)
        if for_update and self.uow.dialect == "postgresql":
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        row = await self.session.scalar(stmt)
        if row is None:
            return None
        return _to_domain(row, (await self._resources([row.id]))[row.id])

    async def params(self, work_request_id: str) -> dict[str, Any]:
        row = await self.session.scalar(
            select(WorkRequestRow.params).where(WorkRequestRow.id == work_request_id)
        )
        return dict(row or {})

    async def set_params(self, work_request_id: str, params: Mapping[str, Any]) -> None:
        await self.session.execute(
            update(WorkRequestRow)
            .where(WorkRequestRow.id == work_request_id)
            .values(params=dict(params))
        )

    async def save(
        self,
        wr: WorkRequest,
        *,
        changed: Sequence[WorkRequestResource] = (),
        logs: Sequence[LogEntry] = (),
        errors: Sequence[ErrorEntry] = (),
    ) -> None:
        """Persist a change of `wr` as one event: its fields, and the resources, logs and
        errors the change added. A terminal status releases the work request's locks."""
        previous = wr.stored or await self._stored_state(wr.id)
        values: dict[str, Any] = {
            "status": wr.status.value,
            "percent_complete": wr.percent_complete,
            "started_at": wr.time_started,
            "finished_at": wr.time_finished,
        }
        if errors:
            wr.last_error = errors[-1]
            values.update(
                last_error_code=wr.last_error.code,
                last_error_message=wr.last_error.message,
                last_error_at=wr.last_error.timestamp,
            )
        await self.session.execute(
            update(WorkRequestRow).where(WorkRequestRow.id == wr.id).values(**values)
        )
        if changed:
            existing = {
                (r.entity_type, r.identifier): r
                for r in (
                    await self.session.scalars(
                        select(WorkRequestResourceRow).where(
                            WorkRequestResourceRow.work_request_id == wr.id
                        )
                    )
                ).all()
            }
            fresh: list[WorkRequestResource] = []
            for resource in changed:
                row = existing.get((resource.entity_type.value, resource.identifier))
                if row is None:
                    fresh.append(resource)
                else:
                    row.action_type = resource.action_type.value
                    row.entity_uri = resource.entity_uri
            self._write_resources(wr.id, fresh, start=len(existing))
        self._write_logs(wr.id, logs, errors)
        if wr.status.is_terminal:
            await self.session.execute(
                delete(ResourceLockRow).where(ResourceLockRow.work_request_id == wr.id)
            )
        self.uow.stage_event(wr, resources=changed, logs=logs, errors=errors, previous=previous)
        wr.stored = wr.current_state()

    async def _stored_state(self, work_request_id: str) -> StoredState:
        """The state as stored, for a work request object the store did not hand out."""
        row = (
            await self.session.execute(
                select(WorkRequestRow.status, WorkRequestRow.percent_complete).where(
                    WorkRequestRow.id == work_request_id
                )
            )
        ).one()
        count = await self.session.scalar(
            select(func.count()).where(WorkRequestResourceRow.work_request_id == work_request_id)
        )
        return StoredState(WorkRequestStatus(row.status), row.percent_complete, int(count or 0))

    def _write_resources(
        self, work_request_id: str, resources: Sequence[WorkRequestResource], *, start: int
    ) -> None:
        self.session.add_all(
            WorkRequestResourceRow(
                work_request_id=work_request_id,
                entity_type=r.entity_type.value,
                identifier=r.identifier,
                action_type=r.action_type.value,
                entity_uri=r.entity_uri,
                position=start + i,
            )
            for i, r in enumerate(resources)
        )

    def _write_logs(
        self, work_request_id: str, logs: Sequence[LogEntry], errors: Sequence[ErrorEntry]
    ) -> None:
        self.session.add_all(
            WorkRequestLogRow(
                work_request_id=work_request_id, message=e.message, logged_at=e.timestamp
            )
            for e in logs
        )
        self.session.add_all(
            WorkRequestErrorRow(
                work_request_id=work_request_id,
                code=e.code,
                message=e.message,
                logged_at=e.timestamp,
            )
            for e in errors
        )

    async def _resources(self, ids: Sequence[str]) -> dict[str, list[WorkRequestResourceRow]]:
        found: dict[str, list[WorkRequestResourceRow]] = {i: [] for i in ids}
        if ids:
            rows = await self.session.scalars(
                select(WorkRequestResourceRow).where(
                    WorkRequestResourceRow.work_request_id.in_(ids)
                )
            )
            for row in rows:
                found[row.work_request_id].append(row)
        return found

    def _query(self, query: WorkRequestQuery) -> Select[WorkRequestRow]:
        conditions: list[ColumnElement[bool]] = []
        if query.visibility is not None:
            conditions.append(visible(query.visibility))
        if query.compartment_id:
            conditions.append(WorkRequestRow.compartment_id == query.compartment_id)
        if query.ids:
            conditions.append(WorkRequestRow.id.in_(sorted(query.ids)))
        if query.created_by:
            conditions.append(WorkRequestRow.created_by == query.created_by)
        if query.statuses:
            conditions.append(WorkRequestRow.status.in_(sorted(s.value for s in query.statuses)))
        if query.resource_id or query.resource_type:
            affected = select(WorkRequestResourceRow.work_request_id)
            if query.resource_id:
                affected = affected.where(WorkRequestResourceRow.identifier == query.resource_id)
            if query.resource_type:
                affected = affected.where(
                    WorkRequestResourceRow.entity_type == query.resource_type.value
                )
            conditions.append(WorkRequestRow.id.in_(affected))
        if query.filter is not None:
            conditions.append(compile_filter(query.filter, FILTER_COLUMNS))
        return select(WorkRequestRow).where(*conditions)

    async def list_work_requests(
        self, query: WorkRequestQuery, page: PageRequest
    ) -> Page[WorkRequest]:
        keyset = Keyset((WorkRequestRow.accepted_at, WorkRequestRow.id), query.order.descending)
        rows: Page[WorkRequestRow] = await paginate(
            self.session,
            self._query(query),
            keyset,
            page,
            query.fingerprint(),
            lambda row: row,
            key_of=lambda row: (row.accepted_at, row.id),
        )
        resources = await self._resources([r.id for r in rows.items])
        return Page([_to_domain(r, resources[r.id]) for r in rows.items], rows.next_page_token)

    async def matching(
        self, query: WorkRequestQuery, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[WorkRequest]:
        """The next `limit` work requests of the query's set, oldest first, after the
        (time_accepted, id) key `after`: a whole set read in batches (WatchWorkRequests)."""
        stmt = self._query(query)
        if after is not None:
            accepted, wr_id = after
            stmt = stmt.where(
                or_(
                    WorkRequestRow.accepted_at > accepted,
                    and_(WorkRequestRow.accepted_at == accepted, WorkRequestRow.id > wr_id),
                )
            )
        stmt = stmt.order_by(WorkRequestRow.accepted_at, WorkRequestRow.id).limit(limit)
        rows = (await self.session.scalars(stmt)).all()
        resources = await self._resources([r.id for r in rows])
        return [_to_domain(r, resources[r.id]) for r in rows]

    async def newest_logs(self, ids: Sequence[str]) -> dict[str, LogEntry]:
        """Each work request's newest log entry, in one query for all of them."""
        if not ids:
            return {}
        newest = (
            select(func.max(WorkRequestLogRow.id))
            .where(WorkRequestLogRow.work_request_id.in_(ids))
            .group_by(WorkRequestLogRow.work_request_id)
        )
        rows = await self.session.scalars(
            select(WorkRequestLogRow).where(WorkRequestLogRow.id.in_(newest))
        )
        return {r.work_request_id: LogEntry(r.message, r.logged_at) for r in rows}

    async def list_logs(self, work_request_id: str, page: PageRequest) -> Page[LogEntry]:
        return await paginate(
            self.session,
            select(WorkRequestLogRow).where(WorkRequestLogRow.work_request_id == work_request_id),
            Keyset((WorkRequestLogRow.id,)),
            page,
            fingerprint("logs", work_request_id),
            lambda row: LogEntry(row.message, row.logged_at),
            key_of=lambda row: (row.id,),
        )

    async def list_errors(self, work_request_id: str, page: PageRequest) -> Page[ErrorEntry]:
        return await paginate(
            self.session,
            select(WorkRequestErrorRow).where(
                WorkRequestErrorRow.work_request_id == work_request_id
            ),
            Keyset((WorkRequestErrorRow.id,)),
            page,
            fingerprint("errors", work_request_id),
            lambda row: ErrorEntry(row.code, row.message, row.logged_at),
            key_of=lambda row: (row.id,),
        )

    async def all_logs(self, work_request_id: str) -> list[LogEntry]:
        rows = await self.session.scalars(
            select(WorkRequestLogRow)
            .where(WorkRequestLogRow.work_request_id == work_request_id)
            .order_by(WorkRequestLogRow.id)
        )
        return [LogEntry(r.message, r.logged_at) for r in rows]

    async def all_errors(self, work_request_id: str) -> list[ErrorEntry]:
        rows = await self.session.scalars(
            select(WorkRequestErrorRow)
            .where(WorkRequestErrorRow.work_request_id == work_request_id)
            .order_by(WorkRequestErrorRow.id)
        )
        return [ErrorEntry(r.code, r.message, r.logged_at) for r in rows]
