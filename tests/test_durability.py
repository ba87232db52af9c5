"""Durable steps: a restarted server resumes from its journal and never redoes a finished step."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App, ServerConfig
from clusterops_server.clock import Clock, FakeClock
from clusterops_server.domain.inventory import Cluster, Node, NodePool
from clusterops_server.providers.simulated import SimulatedProvider, SimulationSettings
from clusterops_server.store.database import default_sqlite_url
from clusterops_server.store.uow import Store

from tests.conftest import Stubs, seed_cluster
from tests.helpers import watch_to_end


class CountingProvider(SimulatedProvider):
    """The simulator, counting how often each node is provisioned."""

    calls: Counter[str] = Counter()

    async def provision_node(self, cluster: Cluster, pool: NodePool, node: Node) -> None:
        CountingProvider.calls[node.id] += 1
        await super().provision_node(cluster, pool, node)


def build(tmp_path: Path, clock: FakeClock) -> App:
    def factory(store: Store, clk: Clock) -> CountingProvider:
        return CountingProvider(store, clk, SimulationSettings(seconds={"provision_node": 10}))

    return App(
        ServerConfig(
            database_url=default_sqlite_url(tmp_path / "durable.db"),
            port=0,
            engine_poll_seconds=0.2,
            watch_poll_seconds=0.2,
        ),
        clock=clock,
        provider_factory=factory,
    )


async def test_restart_mid_operation_finishes_without_redoing_finished_steps(
    tmp_path: Path, clock: FakeClock
) -> None:
    CountingProvider.calls.clear()
    first = build(tmp_path, clock)
    await first.start()
    cluster = await seed_cluster(first)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        stubs = Stubs(channel)
        created = await stubs.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=10)
        )
        # The first eight nodes finish; the last two are mid-provisioning when the server stops.
        await clock.wait_for_sleepers(8)
        clock.advance(10)
        watch = stubs.work_requests.WatchWorkRequest(
            wr_pb.WatchWorkRequestRequest(work_request_id=created.work_request.id)
        )
        async for event in watch:
            if event.work_request.percent_complete >= 80:
                break
        watch.cancel()
        await clock.wait_for_sleepers(2)
    await first.stop(grace=0)
    finished_before = {n for n, count in CountingProvider.calls.items() if count == 1}

    second = build(tmp_path, clock)
    await second.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            stubs = Stubs(channel)
            await clock.wait_for_sleepers(2)
            clock.advance(10)
            events = await watch_to_end(stubs, created.work_request.id)
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            nodes = (
                await stubs.clusters.ListNodes(
                    cl_pb.ListNodesRequest(node_pool_id=created.node_pool.id)
                )
            ).nodes
            assert len(nodes) == 10
            assert all(n.lifecycle_state == cl_pb.NODE_LIFECYCLE_STATE_ACTIVE for n in nodes)
    finally:
        await second.stop(grace=0)
    counts = CountingProvider.calls
    redone = {n for n, c in counts.items() if c > 1}
    # Only the two interrupted nodes ran twice; the eight finished ones ran once.
    assert len(redone) == 2
    assert len([n for n in finished_before if counts[n] == 1]) >= 8
