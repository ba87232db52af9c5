"""SDK against a real in-process server: every verb of client.clusters, operation handles and
the typed exceptions with their details."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from clusterops import (
    AlreadyExists,
    AsyncClient,
    AsyncOperation,
    Cluster,
    ClusteropsError,
    Conflict,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationCanceled,
    OperationFailed,
)
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, seed_cluster, simulator
from tests.sdk_support import CallCounter, sdk_client


@pytest.fixture
async def client(app: App) -> AsyncIterator[AsyncClient]:
    async with sdk_client(app) as connected:
        yield connected


@pytest.fixture
async def slow(make_app: AppFactory) -> App:
    """Nodes take a minute of fake time, so operations stay in progress until advanced."""
    return await make_app(simulation=SimulationSettings(seconds={"provision_node": 60}))


async def test_create_returns_a_handle_whose_result_is_the_active_cluster(
    client: AsyncClient,
) -> None:
    operation = await client.clusters.create(
        compartment_id="dev",
        name="edge-1",
        kubernetes_version="v1.30.4",
        region="eu-frankfurt-1",
        plan="aws",
        maintenance_window=("22:00", "02:00"),
        labels={"team": "edge"},
    )
    assert operation.resource.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_CREATING
    assert operation.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_CLUSTER_CREATE
    assert operation.id == operation.work_request.id

    cluster = await operation.result(timeout=20)
    assert cluster.id == operation.resource.id
    assert cluster.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
    assert cluster.maintenance_window.start_time == "22:00"
    assert dict(cluster.labels) == {"team": "edge"}
    assert operation.work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert (await client.clusters.get(cluster.id)) == cluster


async def test_a_retried_create_with_the_same_request_id_returns_the_first_operation(
    client: AsyncClient,
) -> None:
    async def create(request_id: str | None) -> AsyncOperation[Cluster]:
        return await client.clusters.create(
            compartment_id="dev",
            name="once",
            kubernetes_version="v1.30.4",
            region="eu-frankfurt-1",
            plan="aws",
            request_id=request_id,
        )

    first = await create("create-once-1")
    second = await create("create-once-1")
    assert second.id == first.id
    assert second.resource.id == first.resource.id
    # Without a request_id each call gets a fresh one: this is a second cluster of that name.
    with pytest.raises(AlreadyExists):
        await create(None)


async def test_list_filters_and_pages_through_clusters_by_name(
    app: App, client: AsyncClient
) -> None:
    for name in ["c-e", "c-a", "c-d", "c-b", "c-c"]:
        await seed_cluster(app, name=name, region="eu-frankfurt-1")
    await seed_cluster(app, name="c-us", region="us-ashburn-1")
    await seed_cluster(app, name="c-prod", compartment="prod")
    counter = CallCounter()
    async with sdk_client(app, interceptors=[counter]) as counted:
        listed = counted.clusters.list(
            compartment_id="dev", filter='region = "eu-frankfurt-1"', page_size=2
        )
        assert [c.name async for c in listed] == ["c-a", "c-b", "c-c", "c-d", "c-e"]
        assert counter.calls["ListClusters"] == 3
        newest = counted.clusters.list(order_by="name desc", page_size=4)
        assert [c.name async for c in newest][:2] == ["c-us", "c-prod"]


async def test_node_pool_verbs_create_get_list_nodes_and_delete(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    operation = await client.clusters.create_node_pool(cluster.id, name="workers", node_count=3)
    assert operation.resource.lifecycle_state == cl_pb.NODE_POOL_LIFECYCLE_STATE_CREATING
    pool = await operation.result(timeout=20)
    assert pool.lifecycle_state == cl_pb.NODE_POOL_LIFECYCLE_STATE_ACTIVE
    assert pool.kubernetes_version == cluster.kubernetes_version
    assert await client.clusters.get_node_pool(pool.id) == pool
    second = await (
        await client.clusters.create_node_pool(
            cluster.id, name="gpu", node_count=1, node_shape="BM.GPU.A10"
        )
    ).result(timeout=20)

    pools = [p async for p in client.clusters.list_node_pools(cluster.id, page_size=1)]
    assert [p.name for p in pools] == ["gpu", "workers"]
    assert pools[0].node_shape == "BM.GPU.A10"
    nodes = [n async for n in client.clusters.list_nodes(pool.id, page_size=2)]
    assert len(nodes) == 3
    assert all(n.lifecycle_state == cl_pb.NODE_LIFECYCLE_STATE_ACTIVE for n in nodes)

    for node_pool in (pool, second):
        deleting = await client.clusters.delete_node_pool(node_pool.id, etag=node_pool.etag)
        assert deleting.resource is None
        await deleting.result(timeout=20)
        assert deleting.work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    with pytest.raises(NotFound):
        await client.clusters.get_node_pool(pool.id)
    assert [p async for p in client.clusters.list_node_pools(cluster.id)] == []


async def test_delete_cluster_runs_to_completion_and_the_cluster_is_gone(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    operation = await client.clusters.delete(cluster.id)
    assert operation.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_CLUSTER_DELETE
    final = await operation.wait(timeout=20)
    assert final.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    with pytest.raises(NotFound) as gone:
        await client.clusters.get(cluster.id)
    assert gone.value.resource_name == cluster.id


async def test_a_busy_cluster_raises_conflict_naming_the_blocking_work_request(
    slow: App, clock: FakeClock
) -> None:
    cluster = await seed_cluster(slow)
    async with sdk_client(slow) as client:
        first = await client.clusters.create_node_pool(cluster.id, name="a", node_count=1)
        with pytest.raises(Conflict) as busy:
            await client.clusters.create_node_pool(cluster.id, name="b", node_count=1)
        error = busy.value
        assert error.code == grpc.StatusCode.ABORTED
        assert error.reason == "RESOURCE_BUSY"
        assert error.blocking_work_request_id == first.id
        assert error.resource_id == cluster.id

        # The handle cancels its operation; result() then says so.
        await clock.wait_for_sleepers(1)
        await first.cancel()
        clock.advance(60)
        with pytest.raises(OperationCanceled) as canceled:
            await first.result(timeout=20)
        assert canceled.value.work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED


async def test_a_stale_etag_raises_etag_mismatch_with_the_current_one(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    current = await client.clusters.get(cluster.id)
    with pytest.raises(EtagMismatch) as stale:
        await client.clusters.delete(cluster.id, etag="0000000000000000")
    assert stale.value.reason == "ETAG_MISMATCH"
    assert stale.value.current_etag == current.etag


async def test_deleting_a_cluster_with_node_pools_raises_failed_precondition_with_violations(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    pool = await (
        await client.clusters.create_node_pool(cluster.id, name="w", node_count=1)
    ).result(timeout=20)
    with pytest.raises(FailedPrecondition) as refused:
        await client.clusters.delete(cluster.id)
    violation = refused.value.precondition_violations[0]
    assert violation.type == "CLUSTER_HAS_NODE_POOLS"
    assert violation.subject == cluster.id
    assert refused.value.metadata["node_pool_ids"] == pool.id


async def test_invalid_arguments_name_every_bad_field(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await client.clusters.create(
            compartment_id="Dev!",
            name="-bad-",
            kubernetes_version="v0.0.1",
            region="eu-frankfurt-1",
            plan="aws",
            maintenance_window=("25:00", "02:00"),
        )
    fields = {v.field for v in bad.value.field_violations}
    assert {"compartment_id", "name"} <= fields
    assert any(f.startswith("maintenance_window") for f in fields)
    assert isinstance(bad.value, ClusteropsError)
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_failed_operation_raises_operation_failed_with_its_errors(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("provision_node", cluster.id, times=1, message="no capacity")
    operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=2)
    with pytest.raises(OperationFailed) as failed:
        await operation.result(timeout=20)
    assert failed.value.work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    codes = [e.code for e in failed.value.errors]
    assert "NodeRegistrationFailed" in codes
    assert "no capacity" in str(failed.value)
    # wait() reports the same outcome without raising.
    assert (await operation.wait()).status == wr_pb.WORK_REQUEST_STATUS_FAILED
    assert (await operation.refresh()).status == wr_pb.WORK_REQUEST_STATUS_FAILED
