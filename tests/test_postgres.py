"""Several server replicas on one PostgreSQL database (DESIGN.md, Storage).

Every test here runs on a fresh PostgreSQL database of its own and fails, never skips,
when PostgreSQL cannot be reached. Replicas are Apps in this process on different ports
(sharing one FakeClock), except where a real `clusterops serve` process is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App, ServerConfig
from clusterops_server.clock import Clock, FakeClock
from clusterops_server.engine.context import EngineSettings
from clusterops_server.providers.simulated import SimulatedProvider, SimulationSettings
from clusterops_server.store.uow import Store
from sqlalchemy import text

from tests import postgres
from tests.conftest import AppFactory, Databases, Stubs, connect, seed_cluster
from tests.helpers import TERMINAL, details_of, watch_to_end
from tests.test_server_process import running_server

STEP = 10
PACED = SimulationSettings(seconds={"provision_node": STEP})
# Long enough that only a notification, never the fallback poll, can deliver in time.
NO_POLLING = 60.0
PROMPTLY = 5.0


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


class RecordingProvider(SimulatedProvider):
    """The simulated provider, noting which replica completed which action on what."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        replica: str,
        done: list[tuple[str, str, str]],
        settings: SimulationSettings = PACED,
    ) -> None:
        super().__init__(store, clock, settings)
        self.replica = replica
        self.done = done

    async def act(self, action: str, targets: Sequence[str]) -> None:
        await super().act(action, targets)
        self.done.append((self.replica, action, targets[0]))


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def stubs_for(stack: AsyncExitStack, *apps: App) -> list[Stubs]:
    return [await stack.enter_async_context(connect(app)) for app in apps]


async def test_replicas_run_each_work_request_exactly_once(
    make_app: AppFactory, clock: FakeClock
) -> None:
    done: list[tuple[str, str, str]] = []
    # One operation at a time each, so both replicas must take part.
    one_at_a_time = EngineSettings(concurrency=1)
    a = await make_app(
        engine=one_at_a_time,
        provider_factory=lambda store, clk: RecordingProvider(store, clk, "a", done),
    )
    b = await make_app(
        engine=one_at_a_time,
        provider_factory=lambda store, clk: RecordingProvider(store, clk, "b", done),
    )
    async with connect(a) as stubs:
        created = []
        for _ in range(4):
            cluster = await seed_cluster(a)
            created.append(
                await stubs.clusters.CreateNodePool(
                    cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
                )
            )
        for _ in range(2):
            await clock.wait_for_sleepers(2)  # one node on each replica
            assert len(a.engine.running) == len(b.engine.running) == 1
            clock.advance(STEP)
        for c in created:
            await watch_to_end(stubs, c.work_request.id)
        finals = [
            (
                await stubs.work_requests.GetWorkRequest(
                    wr_pb.GetWorkRequestRequest(work_request_id=c.work_request.id)
                )
            ).work_request
            for c in created
        ]
    assert {w.status for w in finals} == {wr_pb.WORK_REQUEST_STATUS_SUCCEEDED}
    nodes = {r.identifier for w in finals for r in w.resources if r.entity_type == "node"}
    provisioned = [(replica, node) for replica, action, node in done if action == "provision_node"]
    assert sorted(node for _, node in provisioned) == sorted(nodes)  # each node exactly once
    assert {replica for replica, _ in provisioned} == {"a", "b"}


async def test_concurrent_creates_through_two_replicas_make_exactly_one_work_request(
    make_app: AppFactory, stack: AsyncExitStack
) -> None:
    a = await make_app(simulation=PACED)
    b = await make_app(simulation=PACED)
    via = await stubs_for(stack, a, b)
    cluster = await seed_cluster(a)
    results = await asyncio.gather(
        *(
            via[i % 2].clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name=f"p{i}", node_count=1)
            )
            for i in range(20)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, cl_pb.CreateNodePoolResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert {e.code() for e in losers} == {grpc.StatusCode.ABORTED}
    blocking = {details_of(e).error_info.metadata["blocking_work_request_id"] for e in losers}  # type: ignore[union-attr]
    assert blocking == {winners[0].work_request.id}
    for stubs in via:
        listed = await stubs.work_requests.ListWorkRequests(
            wr_pb.ListWorkRequestsRequest(resource_id=cluster.id)
        )
        assert [w.id for w in listed.work_requests] == [winners[0].work_request.id]


async def test_concurrent_retries_of_one_request_id_through_two_replicas_run_it_once(
    make_app: AppFactory, stack: AsyncExitStack
) -> None:
    a = await make_app(simulation=PACED)
    b = await make_app(simulation=PACED)
    via = await stubs_for(stack, a, b)
    cluster = await seed_cluster(a)
    request = cl_pb.CreateNodePoolRequest(
        cluster_id=cluster.id, name="w", node_count=2, request_id="retry-7f3a"
    )
    results = await asyncio.gather(
        *(via[i % 2].clusters.CreateNodePool(request) for i in range(12))
    )
    assert len({r.work_request.id for r in results}) == 1
    assert len({r.node_pool.id for r in results}) == 1
    listed = await via[1].work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(resource_id=cluster.id)
    )
    assert [w.id for w in listed.work_requests] == [results[0].work_request.id]
    other = cl_pb.CreateNodePoolRequest(
        cluster_id=cluster.id, name="other", node_count=2, request_id="retry-7f3a"
    )
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await via[1].clusters.CreateNodePool(other)
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_commits_through_two_replicas_are_read_in_revision_order_without_gaps(
    make_app: AppFactory, stack: AsyncExitStack
) -> None:
    a = await make_app()
    b = await make_app()
    via = await stubs_for(stack, a, b)
    clusters = [await seed_cluster(a) for _ in range(8)]
    finished = asyncio.Event()
    batches: list[list[int]] = []

    async def follow() -> None:
        # A reader following the log, as a watch hub does: never a later revision first.
        cursor = 0
        while True:
            done = finished.is_set()
            async with b.store.read() as uow:
                events = await uow.events.after(cursor, limit=10_000)
            if events:
                batches.append([e.revision for e in events])
                cursor = events[-1].revision
            if done:
                return
            await asyncio.sleep(0)

    follower = asyncio.create_task(follow())
    created = await asyncio.gather(
        *(
            via[i % 2].clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=c.id, name="w", node_count=3)
            )
            for i, c in enumerate(clusters)
        )
    )
    for i, c in enumerate(created):
        await watch_to_end(via[i % 2], c.work_request.id)
    finished.set()
    await follower
    async with a.store.read() as uow:
        head = (await uow.events.revision_range()).head
    seen = [revision for batch in batches for revision in batch]
    assert seen == list(range(1, head + 1))
    assert len(batches) > 1


async def test_a_watch_through_one_replica_sees_changes_made_through_another(
    make_app: AppFactory, clock: FakeClock, stack: AsyncExitStack
) -> None:
    # Replica a only serves; every change below is committed by replica b.
    a = await make_app(engine=EngineSettings(concurrency=0), watch_poll_seconds=NO_POLLING)
    b = await make_app(simulation=PACED, watch_poll_seconds=NO_POLLING)
    via_a, via_b = await stubs_for(stack, a, b)
    cluster = await seed_cluster(b)
    created = await via_b.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    wr_id = created.work_request.id
    await clock.wait_for_sleepers(1)  # b is provisioning the node
    call = via_a.work_requests.WatchWorkRequest(
        wr_pb.WatchWorkRequestRequest(work_request_id=wr_id)
    )
    snapshot = await _next(call)
    assert snapshot.work_request.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS

    await via_b.work_requests.CancelWorkRequest(
        wr_pb.CancelWorkRequestRequest(work_request_id=wr_id)
    )
    canceling = await _next(call)
    assert canceling.work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
    assert canceling.revision > snapshot.revision

    clock.advance(STEP)  # b finishes the node, then undoes the pool
    rest = await _rest(call)
    assert rest[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    revisions = [snapshot.revision, canceling.revision, *(e.revision for e in rest)]
    assert revisions == sorted(set(revisions))
    assert a.engine.running == frozenset()


async def test_a_watch_keeps_hearing_other_replicas_after_its_listener_connection_drops(
    make_app: AppFactory, clock: FakeClock, stack: AsyncExitStack
) -> None:
    a = await make_app(engine=EngineSettings(concurrency=0), watch_poll_seconds=NO_POLLING)
    b = await make_app(simulation=PACED, watch_poll_seconds=NO_POLLING)
    via_a, via_b = await stubs_for(stack, a, b)
    cluster = await seed_cluster(b)
    created = await via_b.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    wr_id = created.work_request.id
    await clock.wait_for_sleepers(1)
    call = via_a.work_requests.WatchWorkRequest(
        wr_pb.WatchWorkRequestRequest(work_request_id=wr_id)
    )
    await _next(call)
    assert a.commit_listener is not None
    lost = a.commit_listener.backend_pid
    assert lost is not None
    await postgres.terminate_backend(lost)

    # Committed while a may not be listening: read when it listens again.
    await via_b.work_requests.CancelWorkRequest(
        wr_pb.CancelWorkRequestRequest(work_request_id=wr_id)
    )
    canceling = await _next(call)
    assert canceling.work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
    assert a.commit_listener.backend_pid not in {None, lost}

    clock.advance(STEP)  # committed by b after a listens again
    rest = await _rest(call)
    assert rest[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED


async def test_a_replica_that_stops_mid_operation_hands_its_work_to_another(
    make_app: AppFactory, clock: FakeClock, stack: AsyncExitStack
) -> None:
    done: list[tuple[str, str, str]] = []
    a = await make_app(provider_factory=lambda store, clk: RecordingProvider(store, clk, "a", done))
    (via_a,) = await stubs_for(stack, a)
    cluster = await seed_cluster(a)
    created = await via_a.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=2)
    )
    await clock.wait_for_sleepers(2)
    b = await make_app(provider_factory=lambda store, clk: RecordingProvider(store, clk, "b", done))
    (via_b,) = await stubs_for(stack, b)
    assert b.engine.running == frozenset()  # a holds the lease

    await a.stop(grace=0)  # releases its leases: b need not wait for them to expire
    await clock.wait_for_sleepers(2)  # b runs the two interrupted nodes again
    assert b.engine.running == {created.work_request.id}
    clock.advance(STEP)
    events = await watch_to_end(via_b, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert sorted(replica for replica, action, _ in done if action == "provision_node") == [
        "b",
        "b",
    ]


@pytest.mark.slow  # seconds of real time: started first
async def test_work_of_a_killed_replica_is_finished_by_another_once_its_lease_expires(
    databases: Databases,
) -> None:
    url = await databases.url()
    lease_seconds = 1.0
    survivor = App(
        ServerConfig(
            database_url=url,
            port=0,
            engine=EngineSettings(lease_seconds=lease_seconds),
            engine_poll_seconds=0.1,
            watch_poll_seconds=NO_POLLING,
        )
    )
    try:
        cluster = await seed_cluster(survivor)  # the schema exists; survivor is not running yet
        doomed = running_server(
            url, "--insecure-no-auth", "--sim-step-seconds", "600", "--lease-seconds", "1"
        )
        async with doomed as server:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                created = await Stubs(channel).clusters.CreateNodePool(
                    cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=2)
                )
            wr_id = created.work_request.id
            owner = await _wait_for_lease_owner(survivor, wr_id)
            await survivor.start()  # a second replica: the work is leased, so it waits
            assert survivor.engine.owner != owner
            assert survivor.engine.running == frozenset()
            server.process.kill()
            await server.process.wait()
            killed_at = time.monotonic()

        async with connect(survivor) as stubs:
            events = await watch_to_end(stubs, wr_id, within=20)
            took_over_after = time.monotonic() - killed_at
            pools = await stubs.clusters.ListNodePools(
                cl_pb.ListNodePoolsRequest(cluster_id=cluster.id)
            )
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
        assert [p.lifecycle_state for p in pools.node_pools] == [
            cl_pb.NODE_POOL_LIFECYCLE_STATE_ACTIVE
        ]
        assert took_over_after < 15
    finally:
        await survivor.stop(grace=0)


async def _wait_for_lease_owner(app: App, work_request_id: str) -> str:
    """The engine that holds the work request once it is IN_PROGRESS (polls the row)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with app.store.read() as uow:
            row = (
                await uow.session.execute(
                    text("SELECT status, lease_owner FROM work_requests WHERE id = :id"),
                    {"id": work_request_id},
                )
            ).one()
        if row.status == "IN_PROGRESS" and row.lease_owner:
            return str(row.lease_owner)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{work_request_id} never started")


async def _next(call: Any) -> wr_pb.WatchWorkRequestResponse:
    """The watch's next event, which must come PROMPTLY."""
    event = await asyncio.wait_for(call.read(), PROMPTLY)
    assert isinstance(event, wr_pb.WatchWorkRequestResponse), "the watch ended early"
    return event


async def _rest(call: Any) -> list[wr_pb.WatchWorkRequestResponse]:
    """The watch's events up to its terminal one, each coming PROMPTLY."""
    events = [await _next(call)]
    while events[-1].work_request.status not in TERMINAL:
        events.append(await _next(call))
    return events
