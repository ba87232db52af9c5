"""WatchWorkRequest: ordered events, exact resume, terminal end, OUT_OF_RANGE once compacted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings
from sqlalchemy import event

from tests.conftest import AppFactory, Stubs, connect, seed_cluster
from tests.helpers import TERMINAL, details_of, watch_to_end

# Also on PostgreSQL: the same behaviour whatever the store.
pytestmark = pytest.mark.both_backends

STEP = 10


@pytest.fixture
async def paced(make_app: AppFactory) -> App:
    """Nodes take STEP seconds of fake time each, one at a time per advance."""
    return await make_app(simulation=SimulationSettings(seconds={"provision_node": STEP}))


@pytest.fixture
async def paced_stubs(paced: App) -> AsyncIterator[Stubs]:
    async with connect(paced) as stubs:
        yield stubs


async def start_pool(app: App, stubs: Stubs, nodes: int) -> str:
    cluster = await seed_cluster(app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=nodes)
    )
    return created.work_request.id


async def test_watch_sends_snapshot_then_changes_in_revision_order_and_ends_at_terminal(
    app: App, stubs: Stubs
) -> None:
    wr_id = await start_pool(app, stubs, nodes=3)
    events = await watch_to_end(stubs, wr_id)
    assert events[0].event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT
    assert all(e.event_type == wr_pb.WATCH_EVENT_TYPE_CHANGE for e in events[1:])
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions))
    assert events[-1].work_request.status in TERMINAL
    assert all(e.work_request.status not in TERMINAL for e in events[:-1])


async def test_watch_of_a_finished_work_request_sends_its_state_and_ends(
    app: App, stubs: Stubs
) -> None:
    wr_id = await start_pool(app, stubs, nodes=1)
    await watch_to_end(stubs, wr_id)
    events = await watch_to_end(stubs, wr_id)
    assert len(events) == 1
    assert events[0].event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT
    assert events[0].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    # The snapshot carries every resource and log so far.
    assert len(events[0].work_request.resources) == 3
    assert any("ACTIVE" in log.message for log in events[0].log_entries)


async def test_resume_after_a_revision_gives_exactly_the_missed_events(
    paced: App, paced_stubs: Stubs, clock: FakeClock
) -> None:
    stubs = paced_stubs
    wr_id = await start_pool(paced, stubs, nodes=12)
    complete_call = stubs.work_requests.WatchWorkRequest(
        wr_pb.WatchWorkRequestRequest(work_request_id=wr_id)
    )
    complete = asyncio.create_task(_collect(complete_call))

    # Watch for a while, then drop the connection.
    interrupted = stubs.work_requests.WatchWorkRequest(
        wr_pb.WatchWorkRequestRequest(work_request_id=wr_id)
    )
    seen: list[wr_pb.WatchWorkRequestResponse] = []
    await clock.wait_for_sleepers(8)
    clock.advance(STEP)
    async for item in interrupted:
        seen.append(item)
        if item.work_request.percent_complete >= 50:
            break
    interrupted.cancel()

    # Changes happen while nobody listens on the second connection.
    await clock.wait_for_sleepers(4)  # the last four nodes are provisioning
    clock.advance(STEP)
    rest = await watch_to_end(stubs, wr_id, after_revision=seen[-1].revision)
    everything = await asyncio.wait_for(complete, 20)

    resumed = [e.revision for e in seen] + [e.revision for e in rest]
    # Each watch starts with a snapshot; the engine may start the work request between
    # the two, so the interrupted one's may be newer. From there on they agree exactly.
    assert resumed == [e.revision for e in everything if e.revision >= seen[0].revision]
    assert len(set(resumed)) == len(resumed)
    assert rest[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_resuming_a_compacted_revision_is_out_of_range(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    wr_id = await start_pool(app, stubs, nodes=2)
    events = await watch_to_end(stubs, wr_id)
    clock.advance(timedelta(hours=25).total_seconds())
    await start_pool(app, stubs, nodes=1)  # something newer than the retention window
    clock.advance(1)
    watermark = await app.compact()
    assert watermark >= events[-1].revision

    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await watch_to_end(stubs, wr_id, after_revision=events[0].revision)
    details = details_of(gone.value)
    assert details.code == grpc.StatusCode.OUT_OF_RANGE
    assert details.error_info is not None
    assert details.error_info.reason == "REVISION_COMPACTED"
    assert "read the work request again" in details.message
    # A fresh watch still works: it starts from the current state.
    again = await watch_to_end(stubs, wr_id)
    assert again[0].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_resuming_a_revision_from_the_future_is_out_of_range(app: App, stubs: Stubs) -> None:
    wr_id = await start_pool(app, stubs, nodes=1)
    with pytest.raises(grpc.aio.AioRpcError) as ahead:
        await watch_to_end(stubs, wr_id, after_revision=10_000_000)
    assert details_of(ahead.value).error_info.reason == "REVISION_AHEAD"  # type: ignore[union-attr]


async def test_idle_watchers_cost_no_queries_and_all_receive_each_change(
    paced: App, paced_stubs: Stubs, clock: FakeClock
) -> None:
    stubs = paced_stubs
    wr_id = await start_pool(paced, stubs, nodes=1)
    calls = [
        stubs.work_requests.WatchWorkRequest(wr_pb.WatchWorkRequestRequest(work_request_id=wr_id))
        for _ in range(50)
    ]
    firsts: list[Any] = await asyncio.gather(*(call.read() for call in calls))
    assert all(f.event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT for f in firsts)
    await clock.wait_for_sleepers(1)

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(paced.database.engine.sync_engine, "before_cursor_execute", count)
    try:
        await asyncio.sleep(0.6)  # several hub poll intervals with 50 idle watchers
        # Reads of the event log: the hub's polls; one per watcher per poll would be 50+.
        idle = len([s for s in statements if "work_request_events" in s])
        clock.advance(STEP)
        rests = await asyncio.wait_for(asyncio.gather(*(_read_all(c) for c in calls)), 20)
    finally:
        event.remove(paced.database.engine.sync_engine, "before_cursor_execute", count)
    assert idle <= 10
    streams = [
        [first.revision] + [e.revision for e in rest]
        for first, rest in zip(firsts, rests, strict=True)
    ]
    every = sorted({r for stream in streams for r in stream})
    for stream in streams:
        # Each watcher sees every change after its snapshot, once, in order.
        assert stream == [r for r in every if r >= stream[0]]
    assert all(
        rest[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED for rest in rests
    )


async def test_watch_of_unknown_work_request_is_not_found(stubs: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await watch_to_end(stubs, "wr-00000000000000000000")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def _collect(call: Any) -> list[wr_pb.WatchWorkRequestResponse]:
    return [item async for item in call]


async def _read_all(call: Any) -> list[Any]:
    items = []
    while (item := await call.read()) is not grpc.aio.EOF:
        items.append(item)
    return items
