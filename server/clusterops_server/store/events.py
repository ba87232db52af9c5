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
    WorkRequest,
    WorkRequestEvent,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.store.tables import StoreStateRow, WorkRequestEventRow


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


def event_payload(
    wr: WorkRequest,
    resources: Sequence[WorkRequestResource],
    logs: Sequence[LogEntry],
    errors: Sequence[ErrorEntry],
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
        },
        "resources": [resource_to_json(r) for r in resources],
        "logs": [{"message": e.message, "timestamp": _time(e.timestamp)} for e in logs],
        "errors": [
            {"code": e.code, "message": e.message, "timestamp": _time(e.timestamp)} for e in errors
        ],
    }


def event_from_row(row: WorkRequestEventRow) -> WorkRequestEvent:
    data = row.payload
    w = data["work_request"]
    resources = tuple(resource_from_json(r) for r in data["resources"])
    accepted = _parse_time(w["time_accepted"])
    assert accepted is not None
    wr = WorkRequest(
        id=w["id"],
        compartment_id=w["compartment_id"],
        operation_type=OperationType(w["operation_type"]),
        status=WorkRequestStatus(w["status"]),
        percent_complete=w["percent_complete"],
        time_accepted=accepted,
        time_started=_parse_time(w["time_started"]),
        time_finished=_parse_time(w["time_finished"]),
        resources=list(resources),
        revision=row.revision,
    )
    logs = tuple(LogEntry(e["message"], _ts(e["timestamp"])) for e in data["logs"])
    errors = tuple(ErrorEntry(e["code"], e["message"], _ts(e["timestamp"])) for e in data["errors"])
    return WorkRequestEvent(row.revision, wr, resources, logs, errors)


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

    async def after(self, revision: int, *, limit: int) -> list[WorkRequestEvent]:
        """Events of every work request after `revision`, in order."""
        stmt = (
            select(WorkRequestEventRow)
            .where(WorkRequestEventRow.revision > revision)
            .order_by(WorkRequestEventRow.revision)
            .limit(limit)
        )
        return [event_from_row(r) for r in (await self.session.scalars(stmt)).all()]

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
