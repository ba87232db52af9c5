"""The SDK's watch_many() and wait_all(): many work requests through one resumable stream."""

from __future__ import annotations

import asyncio

import pytest
from clusterops import Client, DeadlineExceeded, NotFound, RetryPolicy, WatchManyEvent
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, seed_cluster, simulator
from tests.sdk_support import FAST_RECONNECT, QUICK_RETRY, sdk_client, target

STEP = 10
PACED = SimulationSettings(seconds={"provision_node": STEP})
QUICK_RECONNECT = RetryPolicy(max_attempts=None, initial_backoff=0.05, max_backoff=0.2)
SYNCED = wr_pb.WATCH_EVENT_TYPE_SYNCED
CHANGE = wr_pb.WATCH_EVENT_TYPE_CHANGE


async def test_watch_many_resumes_across_a_server_restart_without_gap_or_duplicate(
    make_app: AppFactory, clock: FakeClock
) -> None:
    first = await make_app(simulation=PACED, database="restart.db")
    clusters = [await seed_cluster(first) for _ in range(3)]
    seen: list[WatchManyEvent] = []
    async with sdk_client(first, channel_options=FAST_RECONNECT) as client:
        events = client.work_requests.watch_many(
            compartment_id="dev", timeout=60, retry=QUICK_RECONNECT
        )
        assert (await anext(events)).event_type == SYNCED
        operations = [
            await client.clusters.create_node_pool(c.id, name="w", node_count=2) for c in clusters
        ]
        await clock.wait_for_sleepers(6)
        await first.stop(grace=0)  # the stream ends UNAVAILABLE; watch_many resumes
        second = await make_app(simulation=PACED, database="restart.db", port=first.port)
        await clock.wait_for_sleepers(6)  # the interrupted nodes run again
        clock.advance(STEP)
        finished: set[str] = set()
        async with asyncio.timeout(30):
            async for event in events:
                seen.append(event)
                if event.work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED:
                    finished.add(event.work_request.id)
                if finished == {o.id for o in operations}:
                    break
        await events.aclose()
    assert second.port == first.port
    assert all(e.event_type == CHANGE for e in seen)
    async with second.store.read() as uow:
        stored = [e.revision for e in await uow.events.after(0, limit=10_000)]
    # Every change is in the set (all are in dev): exactly the log, once each, in order.
    assert [e.revision for e in seen] == stored[: len(seen)]
    assert len(seen) > len(operations) * 4


async def test_wait_all_returns_each_work_request_as_it_ended(app: App, clock: FakeClock) -> None:
    ok, bad = await seed_cluster(app), await seed_cluster(app)
    await simulator(app).inject_fault("provision_node", bad.id, message="no capacity")
    async with sdk_client(app) as client:
        operations = [
            await client.clusters.create_node_pool(c.id, name="w", node_count=2) for c in (ok, bad)
        ]
        ended = await client.work_requests.wait_all([o.id for o in operations], timeout=20)
    assert list(ended) == [o.id for o in operations]
    assert [w.status for w in ended.values()] == [
        wr_pb.WORK_REQUEST_STATUS_SUCCEEDED,
        wr_pb.WORK_REQUEST_STATUS_FAILED,
    ]
    failed = ended[operations[1].id]
    assert failed.last_error.code == "NodePoolCreationFailed"
    # The record is whole: resources from the snapshot and every change merged.
    assert {r.entity_type for r in failed.resources} == {"cluster", "nodepool", "node"}


async def test_wait_all_names_unknown_ids_and_what_did_not_finish_in_time(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=PACED)
    cluster = await seed_cluster(app)
    async with sdk_client(app) as client:
        operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=1)
        missing = "wr-" + "0" * 20
        with pytest.raises(NotFound) as unknown:
            await client.work_requests.wait_all([operation.id, missing], timeout=10)
        assert missing in unknown.value.message
        with pytest.raises(DeadlineExceeded) as late:
            await client.work_requests.wait_all([operation.id], timeout=0.5)
        assert late.value.reason == "WAIT_TIMEOUT"
        assert operation.id in late.value.message


async def test_the_blocking_client_watches_many_and_waits_for_all(app: App) -> None:
    clusters = [await seed_cluster(app) for _ in range(2)]

    def scenario() -> None:
        with Client(target(app), retry=QUICK_RETRY) as client:
            with client.work_requests.watch_many(statuses=["SUCCEEDED"]) as events:
                assert next(events).event_type == SYNCED
                ids = [
                    client.clusters.create_node_pool(c.id, name="w", node_count=1).id
                    for c in clusters
                ]
                ended = client.work_requests.wait_all(ids, timeout=20)
                assert {w.status for w in ended.values()} == {wr_pb.WORK_REQUEST_STATUS_SUCCEEDED}
                succeeded = {next(events).work_request.id for _ in ids}
            assert succeeded == set(ids)

    await asyncio.to_thread(scenario)
