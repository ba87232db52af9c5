"""Get RPCs read through ReadConnections (Core statements, no unit of work): they answer
exactly what the unit of work's repositories answer, see every commit at once, and keep
working when SQLite answers busy."""

from __future__ import annotations

import asyncio
import sqlite3

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.auth.tokens import TokenStore
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings
from clusterops_server.store import inventory_reads, work_request_reads
from clusterops_server.store.database import APPLICATION_NAME, READ_POOL_SIZE, Database

from tests.conftest import AppFactory, Databases, Stubs, connect, seed_cluster, simulator
from tests.helpers import watch_to_end


@pytest.mark.both_backends
async def test_reads_agree_with_the_unit_of_work_field_for_field(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app, window=("22:00", "02:00"))
    await simulator(app).inject_fault("provision_node", cluster.id, times=1, message="no capacity")
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=3)
    )
    accepted_id = created.work_request.id
    await watch_to_end(stubs, accepted_id)  # FAILED: resources, an error, every time set

    reads = app.store.reads
    async with app.store.read() as uow:
        expected = await uow.work_requests.get(accepted_id)
        got = await work_request_reads.get_work_request(reads, accepted_id)
        assert expected is not None
        assert got == expected
        assert got.stored == expected.stored
        assert got.last_error is not None
        assert len(got.resources) == 5  # the cluster, the pool and three nodes, in order
        # A new watch's snapshot: the same work request, every log and error, in order.
        snapshot = await work_request_reads.get_snapshot(reads, accepted_id)
        assert snapshot is not None
        assert snapshot[0] == expected
        assert snapshot[1] == await uow.work_requests.all_logs(accepted_id)
        assert snapshot[2] == await uow.work_requests.all_errors(accepted_id)
        assert len(snapshot[1]) > 1
        assert len(snapshot[2]) == 2
        assert await inventory_reads.get_cluster(reads, cluster.id) == (
            await uow.inventory.get_cluster(cluster.id)
        )
        assert await inventory_reads.get_node_pool(reads, created.node_pool.id) == (
            await uow.inventory.get_node_pool(created.node_pool.id)
        )
    assert await work_request_reads.get_work_request(reads, "wr-00000000000000000000") is None
    assert await inventory_reads.get_cluster(reads, "cls-00000000000000000000") is None


@pytest.mark.both_backends
async def test_get_shows_each_committed_change_at_once(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"provision_node": 60}))
    cluster = await seed_cluster(app)
    async with connect(app) as stubs:
        await _get_cancel_get(stubs, clock, cluster.id)


async def _get_cancel_get(stubs: Stubs, clock: FakeClock, cluster_id: str) -> None:
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster_id, name="w", node_count=1)
    )
    await clock.wait_for_sleepers(1)  # the node is provisioning
    wr_id = created.work_request.id
    request = wr_pb.GetWorkRequestRequest(work_request_id=wr_id)
    before = (await stubs.work_requests.GetWorkRequest(request)).work_request
    canceled = await stubs.work_requests.CancelWorkRequest(
        wr_pb.CancelWorkRequestRequest(work_request_id=wr_id)
    )
    after = (await stubs.work_requests.GetWorkRequest(request)).work_request
    # The response cache is keyed by revision: the change is a new message, not the old one.
    assert after.revision == canceled.work_request.revision > before.revision
    assert after.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
    assert after == canceled.work_request


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_read_that_finds_sqlite_busy_retries_on_a_worker_thread(
    databases: Databases,
) -> None:
    database = Database(await databases.url("busy.db"))
    path = database.url.database
    assert path
    # A connection in exclusive locking mode keeps its lock after writing: every other
    # connection, readers included, gets SQLITE_BUSY until it closes.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE store_state SET revision = revision")
        holder.execute("COMMIT")
        read = asyncio.create_task(
            inventory_reads.get_cluster(database.reads, "cls-00000000000000000000")
        )
        while database.reads._busy_executor is None:  # the retry started
            assert not read.done(), read.exception()
            await asyncio.sleep(0)
        assert not read.done()  # waiting off the event loop, which this test still runs
    finally:
        holder.close()
    assert await asyncio.wait_for(read, timeout=30) is None
    await database.dispose()


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_remembered_handler_still_authenticates_every_call(
    make_app: AppFactory,
) -> None:
    tokens = TokenStore.from_json(
        {
            "principals": [{"name": "alice", "groups": ["Admins"], "token": "alice-token"}],
            "policies": ["allow group Admins to manage all-resources in tenancy"],
        }
    )
    app = await make_app(tokens=tokens)
    cluster = await seed_cluster(app)
    request = cl_pb.GetClusterRequest(cluster_id=cluster.id)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stubs = Stubs(channel)
        for _ in range(2):
            got = await stubs.clusters.GetCluster(
                request, metadata=(("authorization", "Bearer alice-token"),)
            )
            assert got.cluster.id == cluster.id
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stubs.clusters.GetCluster(request)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stubs.clusters.GetCluster(
                    request, metadata=(("authorization", "Bearer mallory-token"),)
                )
            assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_postgresql_reads_share_a_few_connections_and_survive_losing_them(
    app: App,
) -> None:
    cluster = await seed_cluster(app)
    reads = app.store.reads
    found = await asyncio.gather(
        *(inventory_reads.get_cluster(reads, cluster.id) for _ in range(50))
    )
    assert {c.id for c in found if c is not None} == {cluster.id}
    pool = reads._pool
    assert pool is not None
    assert 1 <= pool._opened <= READ_POOL_SIZE
    # The server drops every connection the reads hold: the next read opens a new one.
    async with app.database.engine.connect() as connection:
        terminated = await connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            f"AND application_name = '{APPLICATION_NAME}'"
        )
        assert len(terminated.all()) == pool._opened
    again = await inventory_reads.get_cluster(reads, cluster.id)
    assert again is not None
    assert again.id == cluster.id
