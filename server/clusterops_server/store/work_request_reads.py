"""Work request reads for the Get and List RPCs: Core statements on ReadConnections.

One statement per read: the work request's row with its resources aggregated as JSON
in a correlated subquery, so the row and its resources are one snapshot and one round
trip on both backends.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, exists, func, select, tuple_
from sqlalchemy.sql.util import ClauseAdapter

from clusterops_server.domain.filtering import AllOf, Comparison, Expression
from clusterops_server.domain.listing import Cursor, Page, PageRequest, parse_key_time
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    ErrorEntry,
    LogEntry,
    OperationType,
    WorkRequest,
    WorkRequestQuery,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.store.database import (
    Prepared,
    ReadConnections,
    ReadStatement,
    Row,
    stored_json,
    stored_time,
    stored_time_or_none,
)
from clusterops_server.store.filters import compile_filter
from clusterops_server.store.paging import Keyset, PageTokenKeys
from clusterops_server.store.tables import (
    WorkRequestErrorRow,
    WorkRequestLogRow,
    WorkRequestResourceRow,
    WorkRequestRow,
)
from clusterops_server.store.work_requests import FILTER_COLUMNS, visible

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


def _entries_json(dialect: str, table: Any, *fields: Any) -> ColumnElement[Any]:
    """A work request's log or error entries as one JSON array of [id, *fields]."""
    if dialect == "postgresql":
        aggregate = func.json_agg(func.json_build_array(table.c.id, *fields))
    else:
        aggregate = func.json_group_array(func.json_array(table.c.id, *fields))
    return select(aggregate).where(table.c.work_request_id == _WR.c.id).scalar_subquery()


def _snapshot_statement(dialect: str) -> Select[Any]:
    logs = WorkRequestLogRow.__table__
    errors = WorkRequestErrorRow.__table__
    return select(
        *_COLUMNS,
        resources_json(dialect),
        _entries_json(dialect, logs, logs.c.message, logs.c.logged_at),
        _entries_json(dialect, errors, errors.c.code, errors.c.message, errors.c.logged_at),
    ).where(_WR.c.id == bindparam("id"))


_SNAPSHOT = ReadStatement(_snapshot_statement)


def _entries(value: Any) -> list[list[Any]]:
    items: list[list[Any]] = stored_json(value) if value is not None else []
    items.sort(key=lambda item: item[0])
    return items


async def get_snapshot(
    reads: ReadConnections, work_request_id: str
) -> tuple[WorkRequest, list[LogEntry], list[ErrorEntry]] | None:
    """The work request with all its logs and errors, in one statement (one snapshot):
    what a new watch starts from."""
    row = await reads.fetch_one(_SNAPSHOT, {"id": work_request_id})
    if row is None:
        return None
    *work_request, logs, errors = row
    return (
        work_request_from_row(tuple(work_request)),
        [LogEntry(message, stored_time(at)) for _id, message, at in _entries(logs)],
        [ErrorEntry(code, message, stored_time(at)) for _id, code, message, at in _entries(errors)],
    )


# ---- ListWorkRequests ----

# The most rows one List call reads past its cursor when part of its query has no index
# in list order: the rest of the query is checked on at most these, and a page that
# found fewer than it asked for ends there with a token to go on from (AIP-158 allows
# short pages), so no filter ever scans the table.
SCAN_LIMIT = 1000
_KEY = (WorkRequestRow.accepted_at, WorkRequestRow.id)
_KEY_SPECS = Keyset(_KEY).specs


@dataclass
class ListPlan:
    """A List query split by what an index can serve.

    `driving` conditions select rows straight from an index in list order (an
    equality on the index's leading columns, a range on time_accepted, or a resource
    id, whose work requests are few); `residual` ones are checked on a bounded window
    of the driving rows."""

    driving: list[ColumnElement[bool]] = field(default_factory=list)
    residual: list[ColumnElement[bool]] = field(default_factory=list)


def _conjuncts(expression: Expression | None) -> list[Expression]:
    if expression is None:
        return []
    if isinstance(expression, AllOf):
        return [c for part in expression.parts for c in _conjuncts(part)]
    return [expression]


def plan_list(query: WorkRequestQuery) -> ListPlan:
    plan = ListPlan()
    equal: dict[str, list[ColumnElement[bool]]] = {
        "compartment_id": [],
        "status": [],
        "operation_type": [],
        "created_by": [],
    }
    if query.created_by:
        equal["created_by"].append(WorkRequestRow.created_by == query.created_by)
    if query.compartment_id:
        equal["compartment_id"].append(WorkRequestRow.compartment_id == query.compartment_id)
    if len(query.statuses) == 1:
        (status,) = query.statuses
        equal["status"].append(WorkRequestRow.status == status.value)
    elif query.statuses:
        plan.residual.append(WorkRequestRow.status.in_(sorted(s.value for s in query.statuses)))
    if query.ids:
        plan.driving.append(WorkRequestRow.id.in_(sorted(query.ids)))
    if query.visibility is not None:
        plan.residual.append(visible(query.visibility))
    if query.resource_id:
        # A resource's work requests are few: their ids drive the page.
        affected = select(WorkRequestResourceRow.work_request_id).where(
            WorkRequestResourceRow.identifier == query.resource_id
        )
        if query.resource_type:
            affected = affected.where(
                WorkRequestResourceRow.entity_type == query.resource_type.value
            )
        plan.driving.append(WorkRequestRow.id.in_(affected))
    elif query.resource_type:
        # Checked per row through the resources' primary key (work request, type).
        plan.residual.append(
            exists().where(
                WorkRequestResourceRow.work_request_id == WorkRequestRow.id,
                WorkRequestResourceRow.entity_type == query.resource_type.value,
            )
        )
    for part in _conjuncts(query.filter):
        condition = compile_filter(part, FILTER_COLUMNS)
        if isinstance(part, Comparison) and part.field == "time_accepted":
            plan.driving.append(condition)  # a range on every listing index's key
        elif isinstance(part, Comparison) and part.op == "=" and part.field in equal:
            equal[part.field].append(condition)
        else:
            plan.residual.append(condition)
    # The equalities an index leads with: (compartment, status), (compartment),
    # (status), (created by) or (operation type), each followed by the list's key.
    if equal["compartment_id"]:
        lead = ["compartment_id", "status"] if equal["status"] else ["compartment_id"]
    elif equal["status"]:
        lead = ["status"]
    elif equal["created_by"]:
        lead = ["created_by"]
    else:
        lead = ["operation_type"]
    for name, conditions in equal.items():
        (plan.driving if name in lead else plan.residual).extend(conditions)
    return plan


# Bound per call (the compiled page statement is kept for the next page).
_CURSOR = tuple_(
    bindparam("cursor_accepted_at", None, type_=WorkRequestRow.accepted_at.type, required=False),
    bindparam("cursor_id", None, type_=WorkRequestRow.id.type, required=False),
)


def _after_cursor(descending: bool) -> ColumnElement[bool]:
    key = tuple_(*_KEY)
    return key < _CURSOR if descending else key > _CURSOR


@dataclass(frozen=True)
class _ListStatements:
    page: Prepared
    # The key of the last row a window may read (None: no window, the page is the plan).
    boundary: Prepared | None


class WorkRequestLists:
    """ListWorkRequests on ReadConnections, one per store.

    It keeps each query shape's compiled statements (a client paging through a list
    asks the same query again with another cursor) and the work requests it built,
    by (id, revision): a revision names one state, so a row read again is not
    converted again. Those objects are shared by every caller: read, never change."""

    CACHE_SIZE = 4096
    STATEMENTS = 256

    def __init__(self, reads: ReadConnections, tokens: PageTokenKeys) -> None:
        self.reads = reads
        self.tokens = tokens
        self._statements: OrderedDict[tuple[Any, ...], _ListStatements] = OrderedDict()
        self._work_requests: OrderedDict[tuple[str, int], WorkRequest] = OrderedDict()

    async def list(self, query: WorkRequestQuery, page: PageRequest) -> Page[WorkRequest]:
        """One page in list order; a short page (with a token) when the query's
        residual conditions matched fewer than a page within SCAN_LIMIT rows."""
        query_fingerprint = query.fingerprint()
        cursor = await self.tokens.open(page.token, query_fingerprint, _KEY_SPECS)
        statements = self._statements_for(query, page.size, with_cursor=cursor is not None)
        values: dict[str, Any] = {}
        if cursor is not None:
            accepted, wr_id = cursor.key
            assert isinstance(accepted, str)
            values = {"cursor_accepted_at": parse_key_time(accepted), "cursor_id": wr_id}
        rows = await self.reads.fetch_prepared(statements.page, values)
        boundary: tuple[Any, ...] | None = None
        if len(rows) <= page.size and statements.boundary is not None:
            # Fewer than a page: is there a row past the window to go on from?
            last = await self.reads.fetch_prepared(statements.boundary, values)
            boundary = (stored_time(last[0][0]), last[0][1]) if last else None
        items = [self._work_request(r) for r in rows[: page.size]]
        if len(rows) > page.size:
            boundary = (items[-1].time_accepted, items[-1].id)
        token = ""
        if boundary is not None:
            key = Cursor((boundary[0].isoformat(), boundary[1]))
            token = await self.tokens.issue(key, query_fingerprint)
        return Page(items, token)

    def _work_request(self, row: Row) -> WorkRequest:
        key = (row[0], row[8])
        found = self._work_requests.get(key)
        if found is None:
            found = self._work_requests[key] = work_request_from_row(row)
            if len(self._work_requests) > self.CACHE_SIZE:
                self._work_requests.popitem(last=False)
        return found

    def _statements_for(
        self, query: WorkRequestQuery, size: int, *, with_cursor: bool
    ) -> _ListStatements:
        key = (query, size, with_cursor, SCAN_LIMIT)
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = self._build(query, size, with_cursor=with_cursor)
            if len(self._statements) > self.STATEMENTS:
                self._statements.popitem(last=False)
        return found

    def _build(self, query: WorkRequestQuery, size: int, *, with_cursor: bool) -> _ListStatements:
        descending = query.order.descending
        order = Keyset(_KEY, descending).order()
        plan = plan_list(query)
        driving = list(plan.driving)
        if with_cursor:
            driving.append(_after_cursor(descending))
        dialect = self.reads.dialect.name
        if not plan.residual:
            stmt = select_work_requests(dialect).where(*driving).order_by(*order).limit(size + 1)
            return _ListStatements(self.reads.prepare(stmt), None)
        window = (
            select(*_COLUMNS).where(*driving).order_by(*order).limit(SCAN_LIMIT).subquery("window")
        )
        page = ClauseAdapter(window).traverse(
            select_work_requests(dialect).where(*plan.residual).order_by(*order).limit(size + 1)
        )
        boundary = select(*_KEY).where(*driving).order_by(*order).limit(1).offset(SCAN_LIMIT - 1)
        return _ListStatements(self.reads.prepare(page), self.reads.prepare(boundary))
