"""ListWorkRequests reads a bounded number of rows per call: a filter an index serves in
list order drives the page, the rest is checked on at most SCAN_LIMIT rows, and a page
that found fewer items ends with a token to go on from (AIP-158). Walking every page
gives exactly the set, in the order, that an unbounded query gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clusterops_server.app import App
from clusterops_server.auth.caller import Caller, acting_as
from clusterops_server.domain.errors import InvalidArgument
from clusterops_server.domain.filtering import parse_filter
from clusterops_server.domain.listing import OrderBy, PageRequest
from clusterops_server.domain.work_requests import (
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestQuery,
    WorkRequestStatus,
    WorkRequestVisibility,
)
from clusterops_server.store import work_request_reads
from clusterops_server.store.tables import WorkRequestResourceRow, WorkRequestRow
from clusterops_server.wire.work_requests import FILTER_FIELDS
from sqlalchemy import insert, text

SEEDED = 240
START = datetime(2026, 3, 1, tzinfo=UTC)
COMPARTMENTS = ("dev", "prod", "qa")
STATUSES = (
    [WorkRequestStatus.SUCCEEDED] * 12
    + [WorkRequestStatus.FAILED] * 3
    + [WorkRequestStatus.CANCELED]
)
OPERATIONS = [OperationType.CLUSTER_UPGRADE] * 6 + [
    OperationType.NODEPOOL_CREATE,
    OperationType.ORCHESTRATION_RUN,
]


async def _seed(app: App) -> None:
    draw = random.Random(12)
    work_requests: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    for i in range(SEEDED):
        wr_id = f"wr-{i:020d}"
        # Every third pair shares its time: the id breaks the tie in list order.
        accepted = START + timedelta(seconds=30 * (i - i % 3 // 2))
        operation = draw.choice(OPERATIONS)
        work_requests.append(
            {
                "id": wr_id,
                "compartment_id": draw.choice(COMPARTMENTS),
                "operation_type": operation.value,
                "status": draw.choice(STATUSES).value,
                "percent_complete": float(draw.choice((0, 40, 100))),
                "accepted_at": accepted,
                "started_at": accepted,
                "finished_at": accepted + timedelta(seconds=5),
                "revision": i + 1,
                "params": {},
                "lease_owner": None,
                "lease_expires_at": None,
                "run_after": accepted,
                "attempts": 0,
                "created_by": draw.choice(("alice", "bob", "bob", "")),
                "reason": "",
            }
        )
        entity = (
            EntityType.NODE_POOL
            if operation is OperationType.NODEPOOL_CREATE
            else EntityType.CLUSTER
        )
        resources.append(
            {
                "work_request_id": wr_id,
                "entity_type": entity.value,
                "identifier": f"res-{i % 7}",
                "action_type": "UPDATED",
                "entity_uri": f"/x/res-{i % 7}",
                "position": 0,
            }
        )
    async with app.database.engine.begin() as connection:
        await connection.execute(insert(WorkRequestRow), work_requests)
        await connection.execute(insert(WorkRequestResourceRow), resources)


def _filter(text_: str) -> Any:
    return parse_filter(text_, FILTER_FIELDS)


QUERIES: dict[str, WorkRequestQuery] = {
    "everything": WorkRequestQuery(),
    "one status": WorkRequestQuery(statuses=frozenset({WorkRequestStatus.FAILED})),
    "two statuses": WorkRequestQuery(
        statuses=frozenset({WorkRequestStatus.FAILED, WorkRequestStatus.CANCELED})
    ),
    "compartment": WorkRequestQuery(compartment_id="prod"),
    "compartment and status filter": WorkRequestQuery(
        compartment_id="prod", filter=_filter("status = FAILED")
    ),
    "status filter": WorkRequestQuery(filter=_filter("status = CANCELED")),
    "rare operation": WorkRequestQuery(filter=_filter("operation_type = ORCHESTRATION_RUN")),
    "operation and percent": WorkRequestQuery(
        filter=_filter("operation_type = CLUSTER_UPGRADE AND percent_complete < 50")
    ),
    "or": WorkRequestQuery(filter=_filter("status = FAILED OR compartment_id = qa")),
    "not": WorkRequestQuery(filter=_filter("NOT status = SUCCEEDED")),
    "time range": WorkRequestQuery(
        filter=_filter(
            'time_accepted >= "2026-03-01T00:20:00Z" AND time_accepted < "2026-03-01T01:30:00Z"'
        )
    ),
    "created by": WorkRequestQuery(created_by="alice"),
    "created by and status": WorkRequestQuery(
        created_by="bob", statuses=frozenset({WorkRequestStatus.CANCELED})
    ),
    "resource type": WorkRequestQuery(resource_type=EntityType.NODE_POOL),
    "resource id": WorkRequestQuery(resource_id="res-3"),
    "resource id and type": WorkRequestQuery(
        resource_id="res-3", resource_type=EntityType.NODE_POOL
    ),
    "a caller that sees part": WorkRequestQuery(
        visibility=WorkRequestVisibility(
            frozenset({"dev"}),
            ((frozenset({OperationType.NODEPOOL_CREATE}), frozenset({"qa"})),),
        ),
        filter=_filter("status != SUCCEEDED"),
    ),
}


async def _walk(
    app: App, query: WorkRequestQuery, size: int
) -> tuple[list[WorkRequest], list[int]]:
    items: list[WorkRequest] = []
    sizes: list[int] = []
    token = ""
    while True:
        page = await app.store.work_request_lists.list(query, PageRequest(size, token))
        items.extend(page.items)
        sizes.append(len(page.items))
        assert len(sizes) < 500, "the walk does not end"
        if not page.next_page_token:
            return items, sizes
        token = page.next_page_token


async def _unbounded(app: App, query: WorkRequestQuery) -> list[WorkRequest]:
    async with app.store.read() as uow:
        page = await uow.work_requests.list_work_requests(query, PageRequest(size=1000))
    assert not page.next_page_token
    return page.items


@pytest.mark.both_backends
@pytest.mark.parametrize("descending", [True, False])
async def test_walking_short_pages_gives_exactly_the_unbounded_result(
    app: App, monkeypatch: pytest.MonkeyPatch, descending: bool
) -> None:
    await _seed(app)
    monkeypatch.setattr(work_request_reads, "SCAN_LIMIT", 20)
    short_pages = 0
    for name, base in QUERIES.items():
        query = WorkRequestQuery(**{**base.__dict__, "order": OrderBy("time_accepted", descending)})
        expected = await _unbounded(app, query)
        walked, sizes = await _walk(app, query, size=7)
        assert [w.id for w in walked] == [w.id for w in expected], name
        assert walked == expected, name
        short_pages += sum(1 for s in sizes[:-1] if s < 7)
    # The sparse filters did end pages early: the bound was in play, not just passed.
    assert short_pages > 0


@pytest.mark.both_backends
async def test_a_filter_an_index_serves_fills_every_page(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(app)
    monkeypatch.setattr(work_request_reads, "SCAN_LIMIT", 20)
    for name in (
        "one status",
        "compartment",
        "status filter",
        "compartment and status filter",
        "created by",
    ):
        _walked, sizes = await _walk(app, QUERIES[name], size=7)
        assert all(s == 7 for s in sizes[:-1]), (name, sizes)


@pytest.mark.both_backends
async def test_a_page_reads_at_most_scan_limit_rows_past_its_cursor(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter that matches nothing: each call stops after SCAN_LIMIT rows."""
    await _seed(app)
    monkeypatch.setattr(work_request_reads, "SCAN_LIMIT", 10)
    query = WorkRequestQuery(filter=_filter("percent_complete > 1000"))  # matches nothing
    walked, sizes = await _walk(app, query, size=5)
    assert walked == []
    assert len(sizes) == SEEDED // 10 + 1  # one call per window of 10 rows, and the end


@pytest.mark.both_backends
async def test_edited_forged_and_foreign_tokens_are_refused(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(app)
    monkeypatch.setattr(work_request_reads, "SCAN_LIMIT", 10)
    query = QUERIES["rare operation"]
    first = await app.store.work_request_lists.list(query, PageRequest(5))
    token = first.next_page_token
    assert token
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    other_query = QUERIES["status filter"]
    for bad, asked in (
        (flipped, query),
        ("not-a-token", query),
        (token, other_query),  # a token of another query
    ):
        with pytest.raises(InvalidArgument):
            await app.store.work_request_lists.list(asked, PageRequest(5, bad))
    with acting_as(Caller("mallory", unrestricted=True)), pytest.raises(InvalidArgument):
        await app.store.work_request_lists.list(query, PageRequest(5, token))


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_sqlite_reads_each_indexed_filter_in_list_order_without_sorting(app: App) -> None:
    """No temporary sort: the page comes off an index in list order, so it stops after
    a page however many rows match."""
    for name in (
        "one status",
        "compartment",
        "compartment and status filter",
        "rare operation",
        "created by",
    ):
        plan = work_request_reads.plan_list(QUERIES[name])
        assert not plan.residual, name
        stmt = (
            work_request_reads.select_work_requests("sqlite")
            .where(*plan.driving)
            .order_by(WorkRequestRow.accepted_at.desc(), WorkRequestRow.id.desc())
            .limit(101)
        )
        compiled = stmt.compile(
            dialect=app.store.reads.dialect, compile_kwargs={"literal_binds": True}
        )
        async with app.database.engine.connect() as connection:
            steps = [
                str(row[-1])
                for row in await connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
            ]
        assert not any("TEMP B-TREE" in s for s in steps), (name, steps)
        assert any("INDEX ix_work_requests_" in s for s in steps), (name, steps)
