"""wait() and watch() across a server restart, compacted history and a server that is gone."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from clusterops import RetryPolicy, Unavailable, WatchEvent
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, seed_cluster
from tests.sdk_support import FAST_RECONNECT, sdk_client

STEP = 10
PACED = SimulationSettings(seconds={"provision_node": STEP})
QUICK_RECONNECT = RetryPolicy(max_attempts=None, initial_backoff=0.05, max_backoff=0.2)


async def test_wait_survives_a_server_restart_without_missing_or_repeating_an_event(
    make_app: AppFactory, clock: FakeClock
) -> None:
    first = await make_app(simulation=PACED, database="restart.db")
    cluster = await seed_cluster(first)
    seen: list[WatchEvent] = []
    most_nodes_done = asyncio.Event()

    def on_event(event: WatchEvent) -> None:
        seen.append(event)
        if event.work_request.percent_complete >= 80:
            most_nodes_done.set()

    async with sdk_client(first, channel_options=FAST_RECONNECT) as client:
        operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=10)
        waiting = asyncio.create_task(
            operation.wait(timeout=60, on_event=on_event, retry=QUICK_RECONNECT)
        )
        # Eight nodes provision at once and finish; the last two are mid-way at the restart.
        await clock.wait_for_sleepers(8)
        clock.advance(STEP)
        await asyncio.wait_for(most_nodes_done.wait(), 20)
        await clock.wait_for_sleepers(2)
        await first.stop(grace=0)  # the watch ends UNAVAILABLE; wait() backs off and retries
        seen_before_restart = len(seen)

        second = await make_app(simulation=PACED, database="restart.db", port=first.port)
        await clock.wait_for_sleepers(2)  # the two interrupted nodes run again
        clock.advance(STEP)
        final = await asyncio.wait_for(waiting, 30)

        assert final.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
        assert len(final.resources) == 12  # the whole record, not the last change's part
        assert 0 < seen_before_restart < len(seen)
        # Exactly what the store recorded after the first event, each once, in order.
        recorded = [
            e.revision
            async for e in client.work_requests.watch(operation.id, after_revision=seen[0].revision)
        ]
    assert second.port == first.port
    assert [e.revision for e in seen] == [seen[0].revision, *recorded]
    assert seen[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_watch_from_a_compacted_revision_starts_again_from_a_snapshot(
    app: App, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    async with sdk_client(app) as client:
        operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=2)
        await operation.wait(timeout=20)
        clock.advance(timedelta(hours=25).total_seconds())
        newer = await seed_cluster(app)
        await (await client.clusters.create_node_pool(newer.id, name="w", node_count=1)).wait()
        clock.advance(1)
        await app.compact()

        events = [e async for e in client.work_requests.watch(operation.id, after_revision=1)]
    assert len(events) == 1
    assert events[0].event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT
    assert events[0].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert len(events[0].log_entries) > 0


async def test_wait_on_a_server_that_never_comes_back_raises_unavailable_by_its_deadline(
    make_app: AppFactory,
) -> None:
    app = await make_app(simulation=PACED)
    cluster = await seed_cluster(app)
    async with sdk_client(app, channel_options=FAST_RECONNECT) as client:
        operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=1)
        await app.stop(grace=0)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await operation.wait(timeout=1.0, retry=QUICK_RECONNECT)
    # Bounded by its 1 s deadline, not by the retries (which would go on until pytest's
    # timeout); loose, so that a loaded machine does not fail it.
    assert time.monotonic() - started < 10
