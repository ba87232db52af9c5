"""The event log behind WatchWorkRequest: one row per committed change, keyed by revision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    ErrorEntry,
    LogEntry,
    OperationType,
    StoredState,
    WorkRequest,
    WorkRequestEvent,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.store.tables import (
    StoreStateRow,
    WorkRequestEventRow,
    WorkRequestResourceRow,
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def resource_to_json(r: WorkRequestResource) -> dict[str, str]:
    return {
        "entity_type": r.entity_type.value,
        "action_type": r.action_type.value,
        "identifier": r.identifier,
        "entity_uri": r.entity_uri,
    }


def resource_from_json(data: dict[str, str]) -> WorkRequestResource:
    return WorkRequestResource(
        EntityType(data["entity_type"]),
        ActionType(data["action_type"]),
        data["identifier"],
        data["entity_uri"],
    )


def _error_json(e: ErrorEntry) -> dict[str, str | None]:
    return {"code": e.code, "message": e.message, "timestamp": _time(e.timestamp)}


def _state_json(state: StoredState) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "percent_complete": state.percent_complete,
        "resource_count": state.resource_count,
    }


def _state_from_json(data: dict[str, Any]) -> StoredState:
    return StoredState(
        WorkRequestStatus(data["status"]), data["percent_complete"], data["resource_count"]
    )


def event_payload(
    wr: WorkRequest,
    resources: Sequence[WorkRequestResource],
    logs: Sequence[LogEntry],
    errors: Sequence[ErrorEntry],
    previous: StoredState | None = None,
) -> dict[str, Any]:
    return {
        "work_request": {
            "id": wr.id,
            "compartment_id": wr.compartment_id,
            "operation_type": wr.operation_type.value,
            "status": wr.status.value,
            "percent_complete": wr.percent_complete,
            "time_accepted": _time(wr.time_accepted),
            "time_started": _time(wr.time_started),
            "time_finished": _time(wr.time_finished),
            "last_error": _error_json(wr.last_error) if wr.last_error else None,
            # How many resources it has: the first that many by position (they only grow).
            "resource_count": len(wr.resources),
            "created_by": wr.created_by,
            "reason": wr.reason,
        },
        "resources": [resource_to_json(r) for r in resources],
        "logs": [{"message": e.message, "timestamp": _time(e.timestamp)} for e in logs],
        "errors": [_error_json(e) for e in errors],
        "previous": _state_json(previous) if previous else None,
    }


def event_from_row(
    row: WorkRequestEventRow, all_resources: Sequence[WorkRequestResource] | None = None
) -> WorkRequestEvent:
    """The event; with `all_resources` (the work request's, by position) its work request
    lists every resource it had at this revision, not only those the change touched."""
    data = row.payload
    w = data["work_request"]
    resources = tuple(resource_from_json(r) for r in data["resources"])
    accepted = _parse_time(w["time_accepted"])
    assert accepted is not None
    if all_resources is not None and "resource_count" in w:
        listed = list(all_resources[: w["resource_count"]])
    else:
        listed = list(resources)
    last_error = w.get("last_error")
    previous = data.get("previous")
    wr = WorkRequest(
        id=w["id"],
        compartment_id=w["compartment_id"],
        operation_type=OperationType(w["operation_type"]),
        status=WorkRequestStatus(w["status"]),
        percent_complete=w["percent_complete"],
        time_accepted=accepted,
        time_started=_parse_time(w["time_started"]),
        time_finished=_parse_time(w["time_finished"]),
        resources=listed,
        revision=row.revision,
        created_by=w.get("created_by", ""),
        reason=w.get("reason", ""),
        last_error=(
            ErrorEntry(last_error["code"], last_error["message"], _ts(last_error["timestamp"]))
            if last_error
            else None
        ),
    )
    logs = tuple(LogEntry(e["message"], _ts(e["timestamp"])) for e in data["logs"])
    errors = tuple(ErrorEntry(e["code"], e["message"], _ts(e["timestamp"])) for e in data["errors"])
    if errors and wr.last_error is None:
        wr.last_error = errors[-1]  # an event recorded before last_error existed
    return WorkRequestEvent(
        row.revision,
        wr,
        resources,
        logs,
        errors,
        previous=_state_from_json(previous) if previous else None,
    )


def _ts(value: str) -> datetime:
    parsed = _parse_time(value)
    assert parsed is not None
    return parsed


@dataclass(frozen=True)
class RevisionRange:
    compacted: int
    head: int


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def revision_range(self) -> RevisionRange:
        row = (
            await self.session.execute(select(StoreStateRow).where(StoreStateRow.id == 1))
        ).scalar_one()
        return RevisionRange(row.compacted_revision, row.revision)

    async def allocate(self, count: int) -> int:
        """Reserve `count` revisions; returns the last. The row lock orders commits by revision."""
        stmt = (
            update(StoreStateRow)
            .where(StoreStateRow.id == 1)
            .values(revision=StoreStateRow.revision + count)
            .returning(StoreStateRow.revision)
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def add(
        self, revision: int, work_request_id: str, at: datetime, payload: dict[str, Any]
    ) -> None:
        self.session.add(
            WorkRequestEventRow(
                revision=revision, work_request_id=work_request_id, recorded_at=at, payload=payload
            )
        )

    async def after(
        self, revision: int, *, limit: int, all_resources: bool = False
    ) -> list[WorkRequestEvent]:
        """Events of every work request after `revision`, in order. With `all_resources`
        each event's work request lists all its resources at that revision (one more
        query for the whole batch), as a filter on resources needs."""
        stmt = (
            select(WorkRequestEventRow)
            .where(WorkRequestEventRow.revision > revision)
            .order_by(WorkRequestEventRow.revision)
            .limit(limit)
        )
        rows = (await self.session.scalars(stmt)).all()
        if not all_resources:
            return [event_from_row(r) for r in rows]
        listed = await self._resources_of({r.work_request_id for r in rows})
        return [event_from_row(r, listed.get(r.work_request_id, [])) for r in rows]

    async def _resources_of(self, ids: set[str]) -> dict[str, list[WorkRequestResource]]:
        found: dict[str, list[WorkRequestResourceRow]] = {}
        if ids:
            rows = await self.session.scalars(
                select(WorkRequestResourceRow).where(
                    WorkRequestResourceRow.work_request_id.in_(sorted(ids))
                )
            )
            for row in rows:
                found.setdefault(row.work_request_id, []).append(row)
        return {
            wr_id: [
                WorkRequestResource(
                    EntityType(r.entity_type), ActionType(r.action_type), r.identifier, r.entity_uri
                )
                for r in sorted(rows, key=lambda r: r.position)
            ]
            for wr_id, rows in found.items()
        }

    async def for_work_request(
        self, work_request_id: str, after: int, *, limit: int
    ) -> list[WorkRequestEvent]:
        stmt = (
            select(WorkRequestEventRow)
            .where(
                WorkRequestEventRow.work_request_id == work_request_id,
                WorkRequestEventRow.revision > after,
            )
            .order_by(WorkRequestEventRow.revision)
            .limit(limit)
        )
        return [event_from_row(r) for r in (await self.session.scalars(stmt)).all()]

    async def compact(self, older_than: datetime) -> int:
        """Drop events recorded before `older_than`; returns the new compaction watermark."""
        newest_old = await self.session.scalar(
            select(WorkRequestEventRow.revision)
            .where(WorkRequestEventRow.recorded_at < older_than)
            .order_by(WorkRequestEventRow.revision.desc())
            .limit(1)
        )
        current = await self.revision_range()
        if newest_old is None or newest_old <= current.compacted:
            return current.compacted
        await self.session.execute(
            delete(WorkRequestEventRow).where(WorkRequestEventRow.revision <= newest_old)
        )
        await self.session.execute(
            update(StoreStateRow).where(StoreStateRow.id == 1).values(compacted_revision=newest_old)
        )
        return int(newest_old)
