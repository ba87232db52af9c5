"""WatchWorkRequests: a filtered list-then-watch of many work requests, resumable by revision.

The expected events are worked out here from the store's event log with the test's own
reading of the filter (never the server's matcher), so a wrong match, a gap, a duplicate
or a missed departure from the filter all fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.domain.work_requests import WorkRequest
from clusterops_server.engine.context import EngineSettings

from tests.conftest import AppFactory, Stubs, connect, seed_cluster, simulator
from tests.helpers import details_of, next_set_event, watch_to_end

SYNCED = wr_pb.WATCH_EVENT_TYPE_SYNCED
SNAPSHOT = wr_pb.WATCH_EVENT_TYPE_SNAPSHOT
CHANGE = wr_pb.WATCH_EVENT_TYPE_CHANGE

# The set every test here watches: dev's work requests, except cluster creations,
# while they have not succeeded (success takes a work request out of the set).
FILTER = wr_pb.WatchWorkRequestsRequest(
    compartment_id="dev", filter="operation_type != CLUSTER_CREATE AND status != SUCCEEDED"
)


def in_set(wr: WorkRequest) -> bool:
    """The test's own reading of FILTER."""
    return (
        wr.compartment_id == "dev"
        and wr.operation_type.value != "CLUSTER_CREATE"
        and wr.status.value != "SUCCEEDED"
    )


@dataclass(frozen=True)
class Seen:
    revision: int
    work_request_id: str
    status: int
    left_filter: bool


async def expected_changes(app: App, after: int, upto: int) -> list[Seen]:
    """From the event log: each change in (after, upto] of a work request that is in the
    set after it, or was in the set just before it (then marked as leaving)."""
    before: dict[str, bool] = {}
    found: list[Seen] = []
    async with app.store.read() as uow:
        events = await uow.events.after(0, limit=100_000)
    for event in events:
        wr = event.work_request
        now, was = in_set(wr), before.get(wr.id, False)
        before[wr.id] = now
        if after < event.revision <= upto and (now or was):
            status = wr_pb.WorkRequestStatus.Value(f"WORK_REQUEST_STATUS_{wr.status.value}")
            found.append(Seen(event.revision, wr.id, status, not now))
    return found


async def expected_snapshot(app: App, at: int) -> set[str]:
    latest: dict[str, bool] = {}
    async with app.store.read() as uow:
        events = await uow.events.after(0, limit=100_000)
    for event in events:
        if event.revision <= at:
            latest[event.work_request.id] = in_set(event.work_request)
    return {wr_id for wr_id, member in latest.items() if member}


@dataclass
class Watcher:
    """A client of WatchWorkRequests that resumes with its last revision whenever the
    stream breaks, the way the SDK does, and records what it saw."""

    stubs: Stubs
    snapshot: set[str] = field(default_factory=set)
    synced_at: int = 0
    changes: list[Seen] = field(default_factory=list)
    cursor: int = 0
    reconnects: int = 0
    call: Any = None
    walked_away: bool = False
    # No disruption yet on the current connection.
    intact: bool = True
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    def walk_away(self) -> None:
        """Cancel the call from the client side, mid-stream."""
        self.walked_away = True
        self.call.cancel()

    async def run(self, on_change: Callable[[Watcher], None]) -> None:
        while True:
            request = wr_pb.WatchWorkRequestsRequest()
            request.CopyFrom(FILTER)
            request.after_revision = self.cursor
            self.call = self.stubs.work_requests.WatchWorkRequests(request)
            self.intact = True
            try:
                async for event in self.call:
                    if event.event_type == SNAPSHOT:
                        self.snapshot.add(event.work_request.id)
                        continue
                    if event.event_type == SYNCED:
                        self.synced_at = self.cursor = event.revision
                        self.synced.set()
                        continue
                    self.changes.append(
                        Seen(
                            event.revision,
                            event.work_request.id,
                            event.work_request.status,
                            event.left_filter,
                        )
                    )
                    self.cursor = event.revision
                    on_change(self)
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
            except asyncio.CancelledError:
                if not self.walked_away:
                    raise
                self.walked_away = False
            self.reconnects += 1


async def start_mix(app: App, via: Stubs) -> list[str]:
    """Node pools in dev (two of them fail) and prod, cluster creations in dev, and
    upgrades in dev: all at once. Returns their work request ids."""
    pools_dev = [await seed_cluster(app, compartment="dev") for _ in range(4)]
    pools_prod = [await seed_cluster(app, compartment="prod") for _ in range(1)]
    upgrades = [await seed_cluster(app, compartment="dev") for _ in range(1)]
    for cluster in pools_dev[:2]:
        await simulator(app).inject_fault("provision_node", cluster.id, message="no capacity")
    calls: list[Any] = [
        via.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=c.id, name="w", node_count=3)
        )
        for c in pools_dev + pools_prod
    ]
    calls += [
        via.upgrade_workflows.CreateUpgradeWorkflow(
            uw_pb.CreateUpgradeWorkflowRequest(cluster_id=c.id, target_version="v1.30.4")
        )
        for c in upgrades
    ]
    calls += [
        via.clusters.CreateCluster(
            cl_pb.CreateClusterRequest(
                compartment_id="dev",
                name=f"new-{i}",
                kubernetes_version="v1.30.4",
                region="eu-frankfurt-1",
                plan="aws",
            )
        )
        for i in range(1)
    ]
    return [reply.work_request.id for reply in await asyncio.gather(*calls)]


async def finished(stubs: Stubs, wr_id: str) -> None:
    """Wait for the work request to end, through the watch drops the test makes."""
    while True:
        try:
            await watch_to_end(stubs, wr_id)
            return
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                raise


async def watch_the_mix(watch_app: App, work_app: App, disconnects: int) -> None:
    """Watch through `watch_app` while the mix runs through `work_app`, breaking the
    stream `disconnects` times (the server drops it, or the client gives up on it)."""
    async with connect(watch_app) as via_watch, connect(work_app) as via_work:
        watcher = Watcher(via_watch)
        dropped = 0

        def disrupt(w: Watcher) -> None:
            nonlocal dropped
            if dropped < disconnects and w.intact:
                w.intact = False
                dropped += 1
                if dropped % 4 == 0:
                    w.walk_away()
                else:
                    watch_app.hub.drop_watchers()  # the server closes every watch

        # Something in the set before the watch starts, for the snapshot.
        early = await seed_cluster(work_app, compartment="dev")
        await simulator(work_app).inject_fault("provision_node", early.id, message="broken")
        failed = await via_work.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=early.id, name="early", node_count=1)
        )
        await watch_to_end(via_work, failed.work_request.id)

        task = asyncio.create_task(watcher.run(disrupt))
        try:
            await asyncio.wait_for(watcher.synced.wait(), 10)
            ids = await start_mix(work_app, via_work)
            for wr_id in ids:
                await finished(via_work, wr_id)
            # A disruption that lands while events are queued for the stream lets them
            # drain first, so the mix may run out before every disconnect happened:
            # more changes until it has (a bounded few).
            for _ in range(disconnects):
                if dropped >= disconnects:
                    break
                extra = await seed_cluster(work_app, compartment="dev")
                more = await via_work.clusters.CreateNodePool(
                    cl_pb.CreateNodePoolRequest(cluster_id=extra.id, name="more", node_count=1)
                )
                await finished(via_work, more.work_request.id)
            async with work_app.store.read() as uow:
                head = (await uow.events.revision_range()).head
            expected = await expected_changes(work_app, watcher.synced_at, head)
            async with asyncio.timeout(20):
                while watcher.cursor < expected[-1].revision:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert watcher.snapshot == await expected_snapshot(work_app, watcher.synced_at)
    assert failed.work_request.id in watcher.snapshot
    assert watcher.changes == expected  # in order, once each, departures marked
    assert dropped == watcher.reconnects == disconnects
    # The mix really crossed the filter's edges.
    assert any(s.left_filter for s in expected)
    assert any(s.status == wr_pb.WORK_REQUEST_STATUS_FAILED for s in expected)


async def test_watch_many_over_a_mix_with_20_disconnects_sees_the_stored_history_once(
    app: App,
) -> None:
    await watch_the_mix(app, app, disconnects=20)


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_watch_many_through_one_replica_sees_changes_made_through_another(
    make_app: AppFactory,
) -> None:
    # Replica a only serves the watch; b runs every operation and commits every change.
    a = await make_app(engine=EngineSettings(concurrency=0))
    b = await make_app()
    await watch_the_mix(a, b, disconnects=20)
    assert a.engine.running == frozenset()


async def test_a_snapshot_then_changes_and_a_departure_in_order(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    elsewhere = await seed_cluster(app, compartment="prod")
    unrelated = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=elsewhere.id, name="w", node_count=1)
    )
    await watch_to_end(stubs, unrelated.work_request.id)
    accepted_in_dev = wr_pb.WatchWorkRequestsRequest(
        compartment_id="dev", statuses=[wr_pb.WORK_REQUEST_STATUS_ACCEPTED]
    )
    call = stubs.work_requests.WatchWorkRequests(accepted_in_dev)
    synced = await next_set_event(call, 5)
    assert synced.event_type == SYNCED  # nothing matches yet: the marker alone
    async with app.store.read() as uow:
        assert synced.revision == (await uow.events.revision_range()).head

    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    accepted = await next_set_event(call, 5)
    assert (accepted.event_type, accepted.work_request.id) == (CHANGE, created.work_request.id)
    assert accepted.work_request.status == wr_pb.WORK_REQUEST_STATUS_ACCEPTED
    assert not accepted.left_filter
    # ACCEPTED -> IN_PROGRESS: it leaves the set, and says so once.
    started = await next_set_event(call)
    assert started.work_request.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    assert started.left_filter
    assert started.revision > accepted.revision > synced.revision
    await watch_to_end(stubs, created.work_request.id)

    # Resuming after the marker replays exactly those two changes, then waits.
    accepted_in_dev.after_revision = synced.revision
    resumed = stubs.work_requests.WatchWorkRequests(accepted_in_dev)
    first = await next_set_event(resumed, 5)
    assert [first, await next_set_event(resumed, 5)] == [accepted, started]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(resumed.read()), 0.3)
    call.cancel()
    resumed.cancel()


async def test_a_resource_filter_follows_work_requests_that_gain_the_resource(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    other = await seed_cluster(app)
    call = stubs.work_requests.WatchWorkRequests(
        wr_pb.WatchWorkRequestsRequest(resource_id=cluster.id, resource_type="cluster")
    )
    assert (await next_set_event(call)).event_type == SYNCED
    await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=other.id, name="w", node_count=1)
    )
    mine = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    events: list[wr_pb.WatchWorkRequestsResponse] = []
    while not events or events[-1].work_request.status != wr_pb.WORK_REQUEST_STATUS_SUCCEEDED:
        events.append(await next_set_event(call, 10))
    assert {e.work_request.id for e in events} == {mine.work_request.id}
    call.cancel()


async def test_a_compacted_revision_is_out_of_range(make_app: AppFactory, clock: FakeClock) -> None:
    app = await make_app()
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        created = await stubs.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
        )
        await watch_to_end(stubs, created.work_request.id)
        clock.advance(48 * 3600)
        await app.compact()
        call = stubs.work_requests.WatchWorkRequests(
            wr_pb.WatchWorkRequestsRequest(after_revision=1)
        )
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await next_set_event(call)
        assert gone.value.code() == grpc.StatusCode.OUT_OF_RANGE
        info = details_of(gone.value).error_info
        assert info is not None
        assert info.reason == "REVISION_COMPACTED"


async def test_a_bad_filter_is_invalid_argument(stubs: Stubs) -> None:
    call = stubs.work_requests.WatchWorkRequests(
        wr_pb.WatchWorkRequestsRequest(filter="colour = red", after_revision=-1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await next_set_event(call)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details_of(bad.value).fields) == {"filter", "after_revision"}
