"""Work request reads for the Get and List RPCs: Core statements on ReadConnections.

One statement per read: the work request's row with its resources aggregated as JSON
in a correlated subquery, so the row and its resources are one snapshot and one round
trip on both backends.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, select

from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    ErrorEntry,
    OperationType,
    WorkRequest,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.store.database import (
    ReadConnections,
    ReadStatement,
    Row,
    stored_json,
    stored_time,
    stored_time_or_none,
)
from clusterops_server.store.tables import WorkRequestResourceRow, WorkRequestRow

_WR = WorkRequestRow.__table__
_RES = WorkRequestResourceRow.__table__

# The columns a read returns, in the order `work_request_from_row` expects them.
_COLUMNS = (
    _WR.c.id,
    _WR.c.compartment_id,
    _WR.c.operation_type,
    _WR.c.status,
    _WR.c.percent_complete,
    _WR.c.accepted_at,
    _WR.c.started_at,
    _WR.c.finished_at,
    _WR.c.revision,
    _WR.c.last_error_code,
    _WR.c.last_error_message,
    _WR.c.last_error_at,
    _WR.c.created_by,
    _WR.c.reason,
)


def resources_json(dialect: str) -> ColumnElement[Any]:
    """The work request's resources as one JSON array of [position, entity type, action,
    identifier, uri] (NULL when it has none on PostgreSQL)."""
    fields = (
        _RES.c.position,
        _RES.c.entity_type,
        _RES.c.action_type,
        _RES.c.identifier,
        _RES.c.entity_uri,
    )
    if dialect == "postgresql":
        aggregate = func.json_agg(func.json_build_array(*fields))
    else:
        aggregate = func.json_group_array(func.json_array(*fields))
    return (
        select(aggregate)
        .where(_RES.c.work_request_id == _WR.c.id)
        .scalar_subquery()
        .label("resources")
    )


def select_work_requests(dialect: str) -> Select[Any]:
    """Rows `work_request_from_row` reads, with no condition yet."""
    return select(*_COLUMNS, resources_json(dialect))


def _resources(value: Any) -> list[WorkRequestResource]:
    items = stored_json(value) if value is not None else []
    items.sort(key=lambda item: item[0])
    return [
        WorkRequestResource(EntityType(entity), ActionType(action), identifier, uri)
        for _position, entity, action, identifier, uri in items
    ]


def work_request_from_row(row: Row) -> WorkRequest:
    (
        wr_id,
        compartment_id,
        operation_type,
        status,
        percent_complete,
        accepted_at,
        started_at,
        finished_at,
        revision,
        error_code,
        error_message,
        error_at,
        created_by,
        reason,
        resources,
    ) = row
    wr = WorkRequest(
        id=wr_id,
        compartment_id=compartment_id,
        operation_type=OperationType(operation_type),
        status=WorkRequestStatus(status),
        percent_complete=percent_complete,
        time_accepted=stored_time(accepted_at),
        time_started=stored_time_or_none(started_at),
        time_finished=stored_time_or_none(finished_at),
        resources=_resources(resources),
        revision=revision,
        created_by=created_by,
        reason=reason,
        last_error=(
            ErrorEntry(error_code, error_message or "", stored_time(error_at))
            if error_code is not None and error_at is not None
            else None
        ),
    )
    wr.stored = wr.current_state()
    return wr


_GET = ReadStatement(lambda d: select_work_requests(d).where(_WR.c.id == bindparam("id")))


async def get_work_request(reads: ReadConnections, work_request_id: str) -> WorkRequest | None:
    row = await reads.fetch_one(_GET, {"id": work_request_id})
    return None if row is None else work_request_from_row(row)
