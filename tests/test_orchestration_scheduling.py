"""The orchestration scheduler: the worker limit, schedules, maintenance windows on the
injectable clock, and resuming after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import grpc
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App, ServerConfig
from clusterops_server.clock import FakeClock
from clusterops_server.domain.inventory import MaintenanceWindow
from clusterops_server.store.database import default_sqlite_url

from tests.conftest import AppFactory, Stubs, connect, seed_cluster
from tests.helpers import watch_to_end
from tests.orchestration_helpers import (
    GatedProvider,
    assert_counts_match_the_operations,
    by_runtime,
    counts,
    create,
    gated,
    get,
    running_in_store,
)

DAY = datetime(2026, 1, 5, tzinfo=UTC)  # the FakeClock starts at 09:00 that day


def at(hour: int, minute: int = 0, *, day: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hour, minutes=minute)


def started(op: orc_pb.OrchestrationOperation) -> datetime:
    return op.start_time.ToDatetime(tzinfo=UTC)


async def test_the_worker_limit_is_never_exceeded_as_the_store_sees_it(
    make_app: AppFactory,
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    provider = gated(app)
    async with connect(app) as stubs:
        clusters = {(await seed_cluster(app)).id for _ in range(6)}
        created = await create(stubs, workers=2)
        running = {await provider.next_entered(), await provider.next_entered()}
        assert await running_in_store(app.store) == (2, 2)
        orchestration = await get(stubs, created.orchestration.id)
        assert orchestration.state == orc_pb.ORCHESTRATION_STATE_IN_PROGRESS
        assert counts(orchestration) == {"in_progress": 2, "pending": 4, "total": 6}
        entered = set(running)
        while running:
            finished = min(running)
            provider.release(finished)
            running.remove(finished)
            if entered != clusters:
                # The freed worker goes to the next operation, and only one does.
                newcomer = await provider.next_entered()
                entered.add(newcomer)
                running.add(newcomer)
                assert await running_in_store(app.store) == (2, 2)
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert entered == clusters
    assert len(provider.seen_running) == 6
    assert max(ops for ops, _ in provider.seen_running) == 2
    assert max(upgrades for _, upgrades in provider.seen_running) == 2
    assert provider.entered.empty()
    percents = [e.work_request.percent_complete for e in events]
    assert percents == sorted(percents)
    assert percents[-1] == 100


async def test_operations_start_only_inside_each_clusters_maintenance_window(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    assert clock.now() == at(9)
    fleet = {
        "inside": await seed_cluster(app, window=("08:30", "09:30")),
        "none": await seed_cluster(app, window=None),
        # Crossing midnight, and open now in its morning part.
        "overnight": await seed_cluster(app, window=("20:00", "09:30")),
        "later": await seed_cluster(app, window=("10:00", "12:00")),
        # Crossing midnight: opens tonight at 23:00.
        "tonight": await seed_cluster(app, window=("23:00", "01:00")),
        # Today's window has passed: tomorrow's.
        "passed": await seed_cluster(app, window=("08:00", "09:00")),
    }
    created = await create(stubs, workers=10, maintenance_window=True)
    orchestration_id = created.orchestration.id

    async def starts() -> dict[str, datetime | None]:
        ops = await by_runtime(stubs, orchestration_id)
        return {
            name: started(ops[c.id]) if ops[c.id].HasField("start_time") else None
            for name, c in fleet.items()
        }

    await app.engine.wait_idle()
    assert await starts() == {
        "inside": at(9),
        "none": at(9),
        "overnight": at(9),
        "later": None,
        "tonight": None,
        "passed": None,
    }
    waiting = await get(stubs, orchestration_id)
    assert waiting.description == (
        "3 of 6 operations finished (3 succeeded), 0 in progress, 3 pending; "
        "the next starts at 2026-01-05T10:00:00Z"
    )
    for moment in (at(10), at(23), at(8, day=1)):
        clock.advance_to(moment - timedelta(minutes=1))
        await app.engine.wait_idle()
        assert list((await starts()).values()).count(None) == sum(
            m >= moment for m in (at(10), at(23), at(8, day=1))
        )
        clock.advance_to(moment)
        await app.engine.wait_idle()
    assert await starts() == {
        "inside": at(9),
        "none": at(9),
        "overnight": at(9),
        "later": at(10),
        "tonight": at(23),
        "passed": at(8, day=1),
    }
    orchestration = await get(stubs, orchestration_id)
    assert orchestration.state == orc_pb.ORCHESTRATION_STATE_SUCCEEDED
    assert orchestration.description == "6 of 6 operations succeeded"
    ops = await by_runtime(stubs, orchestration_id)
    assert (
        ops[fleet["tonight"].id].maintenance_window_begin,
        ops[fleet["tonight"].id].maintenance_window_end,
    ) == ("23:00", "01:00")


async def test_an_operation_whose_window_closes_while_it_waits_for_a_worker_moves_to_the_next_day(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    provider = gated(app)
    async with connect(app) as stubs:
        first = await seed_cluster(app, name="first", window=("10:00", "11:00"))
        second = await seed_cluster(app, name="second", window=("10:00", "11:00"))
        created = await create(stubs, workers=1, maintenance_window=True)
        clock.advance_to(at(10))
        holder = await provider.next_entered()
        waiting = second.id if holder == first.id else first.id
        clock.advance_to(at(11, 30))  # the window closes while the only worker is busy
        provider.release(holder)
        await app.engine.wait_idle()
        ops = await by_runtime(stubs, created.orchestration.id)
        assert ops[holder].state == orc_pb.ORCHESTRATION_STATE_SUCCEEDED
        assert ops[waiting].state == orc_pb.ORCHESTRATION_STATE_PENDING
        assert await running_in_store(app.store) == (0, 0)

        clock.advance_to(at(10, day=1))
        assert await provider.next_entered() == waiting
        provider.release(waiting)
        await watch_to_end(stubs, created.work_request.id)
        ops = await by_runtime(stubs, created.orchestration.id)
        assert started(ops[waiting]) == at(10, day=1)


def test_a_window_opens_today_tomorrow_or_now() -> None:
    overnight = MaintenanceWindow(time(22), time(2))
    assert overnight.next_opening(at(9)) == at(22)
    assert overnight.next_opening(at(23)) == at(23)
    assert overnight.next_opening(at(1, 59, day=1)) == at(1, 59, day=1)
    assert overnight.next_opening(at(2, day=1)) == at(22, day=1)
    morning = MaintenanceWindow(time(4), time(8))
    assert morning.next_opening(at(9)) == at(4, day=1)
    assert morning.next_opening(at(3, 59)) == at(4)
    assert morning.next_opening(at(8)) == at(4, day=1)


async def test_a_scheduled_orchestration_stays_pending_until_its_time(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    created = await create(stubs, schedule=orc_pb.SCHEDULE_TYPE_TIME, schedule_time=at(12))
    assert (
        created.orchestration.description
        == "Scheduled 1 operation to start at 2026-01-05T12:00:00Z"
    )
    clock.advance_to(at(11, 59))
    await app.engine.wait_idle()
    waiting = await get(stubs, created.orchestration.id)
    assert waiting.state == orc_pb.ORCHESTRATION_STATE_PENDING
    assert counts(waiting) == {"pending": 1, "total": 1}
    clock.advance_to(at(12))
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert events[-1].work_request.time_started.ToDatetime(tzinfo=UTC) == at(12)
    op = (await by_runtime(stubs, created.orchestration.id))[cluster.id]
    assert started(op) == at(12)


def build(tmp_path: Path, clock: FakeClock) -> App:
    return App(
        ServerConfig(
            database_url=default_sqlite_url(tmp_path / "orchestration.db"),
            port=0,
            engine_poll_seconds=0.2,
            watch_poll_seconds=0.2,
        ),
        clock=clock,
        provider_factory=GatedProvider,
    )


async def test_a_restart_mid_orchestration_resumes_with_the_same_worker_limit(
    tmp_path: Path, clock: FakeClock
) -> None:
    first = build(tmp_path, clock)
    await first.start()
    try:
        clusters = {(await seed_cluster(first)).id for _ in range(5)}
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            created = await create(Stubs(channel), workers=2)
        provider = gated(first)
        interrupted = {await provider.next_entered(), await provider.next_entered()}
        provider.release(min(interrupted))
        interrupted.remove(min(interrupted))
        interrupted.add(await provider.next_entered())
    finally:
        await first.stop(grace=0)

    second = build(tmp_path, clock)
    await second.start()
    try:
        provider = gated(second)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            stubs = Stubs(channel)
            # The two Cluster tasks that were running when the server stopped run again...
            resumed = {await provider.next_entered(), await provider.next_entered()}
            assert resumed == interrupted
            # ...and no third operation starts beside them.
            assert await running_in_store(second.store) == (2, 2)
            done = 1
            for cluster_id in sorted(resumed):
                provider.release(cluster_id)
            while done + len(resumed) < len(clusters):
                newcomer = await provider.next_entered()
                provider.release(newcomer)
                done += 1
            events = await watch_to_end(stubs, created.work_request.id)
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            orchestration = await get(stubs, created.orchestration.id)
            assert counts(orchestration) == {"succeeded": 5, "total": 5}
            assert max(ops for ops, _ in provider.seen_running) <= 2
            for cluster_id in clusters:
                cluster = await stubs.clusters.GetCluster(
                    cl_pb.GetClusterRequest(cluster_id=cluster_id)
                )
                assert cluster.cluster.kubernetes_version == "v1.30.4"
        await assert_counts_match_the_operations(second, created.orchestration.id)
    finally:
        await second.stop(grace=0)
