"""One non-terminal work request per resource, decided by the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, Stubs, connect, seed_cluster
from tests.helpers import details_of, watch_to_end

# Also on PostgreSQL: the same behaviour whatever the store.
pytestmark = pytest.mark.both_backends


@pytest.fixture
async def slow_app(make_app: AppFactory) -> App:
    return await make_app(simulation=SimulationSettings(seconds={"provision_node": 60}))


@pytest.fixture
async def slow_stubs(slow_app: App) -> AsyncIterator[Stubs]:
    async with connect(slow_app) as stubs:
        yield stubs


async def test_second_operation_on_a_busy_cluster_is_aborted_naming_the_first(
    slow_app: App, slow_stubs: Stubs
) -> None:
    cluster = await seed_cluster(slow_app)
    first = await slow_stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="a", node_count=2)
    )
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await slow_stubs.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="b", node_count=2)
        )
    details = details_of(conflict.value)
    assert details.code == grpc.StatusCode.ABORTED
    assert details.error_info is not None
    assert details.error_info.reason == "RESOURCE_BUSY"
    assert details.error_info.metadata["blocking_work_request_id"] == first.work_request.id
    assert details.error_info.metadata["resource_id"] == cluster.id
    assert first.work_request.id in details.message


async def test_many_concurrent_attempts_produce_exactly_one_work_request(
    slow_app: App, slow_stubs: Stubs
) -> None:
    cluster = await seed_cluster(slow_app)
    attempts = [
        slow_stubs.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name=f"p{i}", node_count=1)
        )
        for i in range(20)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    winners = [r for r in results if isinstance(r, cl_pb.CreateNodePoolResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert {e.code() for e in losers} == {grpc.StatusCode.ABORTED}
    blocking = {details_of(e).error_info.metadata["blocking_work_request_id"] for e in losers}  # type: ignore[union-attr]
    assert blocking == {winners[0].work_request.id}
    listed = await slow_stubs.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(resource_id=cluster.id)
    )
    assert [w.id for w in listed.work_requests] == [winners[0].work_request.id]


async def test_the_lock_is_released_when_the_work_request_ends(
    slow_app: App, slow_stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(slow_app)
    first = await slow_stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="a", node_count=1)
    )
    await clock.wait_for_sleepers(1)
    clock.advance(60)
    await watch_to_end(slow_stubs, first.work_request.id)
    second = await slow_stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="b", node_count=1)
    )
    assert second.work_request.status == wr_pb.WORK_REQUEST_STATUS_ACCEPTED


async def test_same_request_id_returns_the_same_operation(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    request = cl_pb.CreateNodePoolRequest(
        cluster_id=cluster.id, name="a", node_count=1, request_id="retry-me-1"
    )
    first = await stubs.clusters.CreateNodePool(request)
    again = await stubs.clusters.CreateNodePool(request)
    assert again.work_request.id == first.work_request.id
    assert again.node_pool.id == first.node_pool.id

    changed = cl_pb.CreateNodePoolRequest(
        cluster_id=cluster.id, name="other", node_count=1, request_id="retry-me-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stubs.clusters.CreateNodePool(changed)
    assert details_of(reused.value).fields == ["request_id"]


async def test_concurrent_retries_with_one_request_id_make_exactly_one_operation(
    app: App, stubs: Stubs
) -> None:
    request = cl_pb.CreateClusterRequest(
        compartment_id="dev",
        name="once",
        kubernetes_version="v1.30.4",
        region="eu-frankfurt-1",
        plan="aws",
        request_id="client-retry-7",
    )
    replies = await asyncio.gather(*(stubs.clusters.CreateCluster(request) for _ in range(20)))
    assert len({r.cluster.id for r in replies}) == 1
    assert len({r.work_request.id for r in replies}) == 1
    listed = await stubs.clusters.ListClusters(cl_pb.ListClustersRequest(compartment_id="dev"))
    assert [c.name for c in listed.clusters] == ["once"]


async def test_a_node_pool_on_a_cluster_being_upgraded_is_aborted_naming_the_upgrade(
    make_app: AppFactory,
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"upgrade:PreCheck": 60}))
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        upgrade = await stubs.upgrade_workflows.CreateUpgradeWorkflow(
            uw_pb.CreateUpgradeWorkflowRequest(cluster_id=cluster.id, target_version="v1.30.4")
        )
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await stubs.clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="late", node_count=1)
            )
    details = details_of(conflict.value)
    assert details.code == grpc.StatusCode.ABORTED
    assert details.error_info is not None
    assert details.error_info.metadata["blocking_work_request_id"] == upgrade.work_request.id


async def test_a_retried_cancel_answers_like_the_first_even_after_the_work_ended(
    slow_app: App, slow_stubs: Stubs, clock: FakeClock
) -> None:
    stubs = slow_stubs
    cluster = await seed_cluster(slow_app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    await clock.wait_for_sleepers(1)  # the node is provisioning
    cancel = wr_pb.CancelWorkRequestRequest(
        work_request_id=created.work_request.id, request_id="cancel-once"
    )
    first = await stubs.work_requests.CancelWorkRequest(cancel)
    assert first.work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
    clock.advance(60)
    await watch_to_end(stubs, created.work_request.id)
    again = await stubs.work_requests.CancelWorkRequest(cancel)
    assert again.work_request.id == created.work_request.id
    assert again.work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    other = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="v", node_count=1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stubs.work_requests.CancelWorkRequest(
            wr_pb.CancelWorkRequestRequest(
                work_request_id=other.work_request.id, request_id="cancel-once"
            )
        )
    assert details_of(reused.value).fields == ["request_id"]


async def test_concurrent_installs_of_one_addon_are_aborted_naming_the_winner(
    make_app: AppFactory,
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"apply_addon": 60}))
    cluster = await seed_cluster(app)
    async with connect(app) as stubs:
        attempts = [
            stubs.addons.InstallAddon(
                ad_pb.InstallAddonRequest(
                    cluster_id=cluster.id, name="CertManager", request_id=f"install-{i}"
                )
            )
            for i in range(50)
        ]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        winners = [r for r in results if isinstance(r, ad_pb.InstallAddonResponse)]
        losers = [details_of(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(winners) == 1
        assert len(losers) == 49
        assert {d.code for d in losers} == {grpc.StatusCode.ABORTED}
        assert {d.error_info.reason for d in losers if d.error_info} == {"RESOURCE_BUSY"}
        blocking = {
            d.error_info.metadata["blocking_work_request_id"] for d in losers if d.error_info
        }
        assert blocking == {winners[0].work_request.id}
