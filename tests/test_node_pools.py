"""Creating node pools: the work request OKE users know, driven end to end over gRPC."""

from __future__ import annotations

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.domain.inventory import NodeState
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, Stubs, seed_cluster, simulator
from tests.helpers import details_of, watch_to_end

# Also on PostgreSQL: the same behaviour whatever the store.
pytestmark = pytest.mark.both_backends


async def create_pool(
    stubs: Stubs, cluster_id: str, nodes: int = 3, name: str = "workers"
) -> cl_pb.CreateNodePoolResponse:
    return await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster_id, name=name, node_count=nodes)
    )


async def test_node_pool_work_request_goes_accepted_in_progress_succeeded(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    created = await create_pool(stubs, cluster.id, nodes=4)
    wr = created.work_request
    assert wr.status == wr_pb.WORK_REQUEST_STATUS_ACCEPTED
    assert wr.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_NODEPOOL_CREATE

    events = await watch_to_end(stubs, wr.id)
    statuses = [e.work_request.status for e in events]
    # Each status appears in lifecycle order, ending SUCCEEDED.
    seen = list(dict.fromkeys(statuses))
    assert seen[-1] == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS in seen
    percents = [e.work_request.percent_complete for e in events]
    assert percents == sorted(percents)
    assert percents[-1] == 100

    final = (
        await stubs.work_requests.GetWorkRequest(wr_pb.GetWorkRequestRequest(work_request_id=wr.id))
    ).work_request
    nodes = (
        await stubs.clusters.ListNodes(cl_pb.ListNodesRequest(node_pool_id=created.node_pool.id))
    ).nodes
    assert len(nodes) == 4
    assert all(n.lifecycle_state == cl_pb.NODE_LIFECYCLE_STATE_ACTIVE for n in nodes)
    by_id = {r.identifier: r for r in final.resources}
    assert {n.id for n in nodes} <= set(by_id)
    assert all(
        by_id[n.id].action_type == wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_CREATED for n in nodes
    )
    assert (
        by_id[created.node_pool.id].action_type == wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_CREATED
    )
    assert by_id[cluster.id].action_type == wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_RELATED
    assert final.time_started.ToDatetime() <= final.time_finished.ToDatetime()

    logs = (
        await stubs.work_requests.ListWorkRequestLogs(
            wr_pb.ListWorkRequestLogsRequest(work_request_id=wr.id)
        )
    ).log_entries
    for node in nodes:
        assert any(node.id in entry.message and "ACTIVE" in entry.message for entry in logs)
    pool = (
        await stubs.clusters.GetNodePool(
            cl_pb.GetNodePoolRequest(node_pool_id=created.node_pool.id)
        )
    ).node_pool
    assert pool.lifecycle_state == cl_pb.NODE_POOL_LIFECYCLE_STATE_ACTIVE


async def test_injected_node_failure_fails_the_work_request_with_an_error_entry(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault(
        "provision_node", cluster.id, times=1, message="no capacity in AD-1"
    )
    created = await create_pool(stubs, cluster.id, nodes=3)

    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED

    errors = (
        await stubs.work_requests.ListWorkRequestErrors(
            wr_pb.ListWorkRequestErrorsRequest(work_request_id=created.work_request.id)
        )
    ).errors
    codes = [e.code for e in errors]
    assert "NodeRegistrationFailed" in codes
    assert "NodePoolCreationFailed" in codes
    assert any("no capacity in AD-1" in e.message for e in errors)
    nodes = (
        await stubs.clusters.ListNodes(cl_pb.ListNodesRequest(node_pool_id=created.node_pool.id))
    ).nodes
    states = sorted(n.lifecycle_state for n in nodes)
    assert states.count(cl_pb.NODE_LIFECYCLE_STATE_FAILED) == 1
    assert states.count(cl_pb.NODE_LIFECYCLE_STATE_ACTIVE) == 2
    pool = (
        await stubs.clusters.GetNodePool(
            cl_pb.GetNodePoolRequest(node_pool_id=created.node_pool.id)
        )
    ).node_pool
    assert pool.lifecycle_state == cl_pb.NODE_POOL_LIFECYCLE_STATE_NEEDS_ATTENTION


async def test_cancel_mid_way_removes_what_the_operation_created(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"provision_node": 10}))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stubs = Stubs(channel)
        cluster = await seed_cluster(app)
        created = await create_pool(stubs, cluster.id, nodes=10)
        wr_id = created.work_request.id
        # Eight nodes provision at once; let them finish, then cancel while the rest run.
        await clock.wait_for_sleepers(8)
        clock.advance(10)
        await clock.wait_for_sleepers(2)  # the last two nodes are provisioning
        progress = (
            await stubs.work_requests.GetWorkRequest(
                wr_pb.GetWorkRequestRequest(work_request_id=wr_id)
            )
        ).work_request
        assert 0 < progress.percent_complete < 100

        canceled = await stubs.work_requests.CancelWorkRequest(
            wr_pb.CancelWorkRequestRequest(work_request_id=wr_id)
        )
        assert canceled.work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
        clock.advance(10)

        events = await watch_to_end(stubs, wr_id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
        async with app.store.read() as uow:
            nodes = await uow.inventory.nodes_of(created.node_pool.id)
        assert len(nodes) == 10
        assert all(n.lifecycle_state is NodeState.DELETED for n in nodes)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stubs.clusters.GetNodePool(
                cl_pb.GetNodePoolRequest(node_pool_id=created.node_pool.id)
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        again = await stubs.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="workers", node_count=1)
        )
        assert again.work_request.id != wr_id


async def test_cancel_of_a_finished_work_request_is_failed_precondition(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    created = await create_pool(stubs, cluster.id, nodes=1)
    await watch_to_end(stubs, created.work_request.id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.work_requests.CancelWorkRequest(
            wr_pb.CancelWorkRequestRequest(work_request_id=created.work_request.id)
        )
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.precondition is not None
    assert details.precondition.violations[0].subject == created.work_request.id


async def test_node_pool_on_unknown_cluster_is_not_found(stubs: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await create_pool(stubs, "cls-00000000000000000000")
    details = details_of(missing.value)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.resource_info is not None
    assert details.resource_info.resource_name == "cls-00000000000000000000"


async def test_create_cluster_runs_as_an_operation_and_becomes_active(stubs: Stubs) -> None:
    created = await stubs.clusters.CreateCluster(
        cl_pb.CreateClusterRequest(
            compartment_id="dev",
            name="edge-1",
            kubernetes_version="v1.30.4",
            region="eu-frankfurt-1",
            plan="aws",
        )
    )
    assert created.cluster.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_CREATING
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    cluster = (
        await stubs.clusters.GetCluster(cl_pb.GetClusterRequest(cluster_id=created.cluster.id))
    ).cluster
    assert cluster.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
    assert cluster.shoot_name == "edge-1"
