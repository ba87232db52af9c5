"""ListWorkRequests and ListClusters: filters, ordering and page tokens."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock

from tests.conftest import Stubs, seed_cluster, simulator
from tests.helpers import details_of, watch_to_end

# Also on PostgreSQL: the same behaviour whatever the store.
pytestmark = pytest.mark.both_backends


async def make_history(app: App, stubs: Stubs, clock: FakeClock) -> dict[str, list[str]]:
    """Node pools in two compartments, one of them failed; returns work request ids by kind."""
    made: dict[str, list[str]] = {"dev": [], "prod": [], "failed": []}
    for compartment in ("dev", "prod"):
        for i in range(7):
            cluster = await seed_cluster(app, compartment=compartment)
            clock.advance(60)
            if compartment == "prod" and i == 3:
                await simulator(app).inject_fault("provision_node", cluster.id, times=1)
            created = await stubs.clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
            )
            made[compartment].append(created.work_request.id)
            if compartment == "prod" and i == 3:
                made["failed"].append(created.work_request.id)
    # Accepted one after the other (a minute apart); run side by side (one per cluster).
    await asyncio.gather(*(watch_to_end(stubs, wr_id) for wr_id in made["dev"] + made["prod"]))
    return made


async def list_all(stubs: Stubs, request: wr_pb.ListWorkRequestsRequest) -> list[str]:
    ids: list[str] = []
    while True:
        page = await stubs.work_requests.ListWorkRequests(request)
        assert len(page.work_requests) <= (request.page_size or 50)
        ids += [w.id for w in page.work_requests]
        if not page.next_page_token:
            return ids
        request.page_token = page.next_page_token


async def test_pages_cover_every_item_once_in_either_order(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    made = await make_history(app, stubs, clock)
    everything = made["dev"] + made["prod"]
    oldest_first = await list_all(
        stubs, wr_pb.ListWorkRequestsRequest(page_size=3, order_by="time_accepted")
    )
    assert oldest_first == everything
    newest_first = await list_all(stubs, wr_pb.ListWorkRequestsRequest(page_size=4))
    assert newest_first == list(reversed(everything))


async def test_typed_filters_and_aip160_filter_narrow_the_list(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    made = await make_history(app, stubs, clock)
    dev = await list_all(stubs, wr_pb.ListWorkRequestsRequest(compartment_id="dev", page_size=2))
    assert sorted(dev) == sorted(made["dev"])
    failed = await list_all(
        stubs, wr_pb.ListWorkRequestsRequest(statuses=[wr_pb.WORK_REQUEST_STATUS_FAILED])
    )
    assert failed == made["failed"]
    by_filter = await list_all(
        stubs,
        wr_pb.ListWorkRequestsRequest(
            filter='compartment_id = "prod" AND status != FAILED '
            "AND operation_type = NODEPOOL_CREATE"
        ),
    )
    assert sorted(by_filter) == sorted(set(made["prod"]) - set(made["failed"]))
    either = await list_all(
        stubs, wr_pb.ListWorkRequestsRequest(filter="status = FAILED OR status = CANCELED")
    )
    assert either == made["failed"]
    nodes = await list_all(stubs, wr_pb.ListWorkRequestsRequest(resource_type="node"))
    assert len(nodes) == 14


async def test_resource_filter_finds_work_requests_affecting_a_resource(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=2)
    )
    await watch_to_end(stubs, created.work_request.id)
    for resource in (cluster.id, created.node_pool.id):
        found = await list_all(stubs, wr_pb.ListWorkRequestsRequest(resource_id=resource))
        assert found == [created.work_request.id]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (wr_pb.ListWorkRequestsRequest(page_token="not-a-token"), "page_token"),
        (wr_pb.ListWorkRequestsRequest(page_size=-1), "page_size"),
        (
            wr_pb.ListWorkRequestsRequest(statuses=[wr_pb.WorkRequestStatus.ValueType(42)]),
            "statuses[0]",
        ),
        (
            wr_pb.ListWorkRequestsRequest(statuses=[wr_pb.WorkRequestStatus.ValueType(0)]),
            "statuses[0]",
        ),
        (wr_pb.ListWorkRequestsRequest(filter="colour = red"), "filter"),
        (wr_pb.ListWorkRequestsRequest(filter="status = SOMETIMES"), "filter"),
        (wr_pb.ListWorkRequestsRequest(filter="status ="), "filter"),
        (wr_pb.ListWorkRequestsRequest(filter='time_accepted > "yesterday"'), "filter"),
        (wr_pb.ListWorkRequestsRequest(order_by="percent_complete"), "order_by"),
        (wr_pb.ListWorkRequestsRequest(resource_type="spaceship"), "resource_type"),
        (wr_pb.ListWorkRequestsRequest(compartment_id="Not A Compartment"), "compartment_id"),
    ],
)
async def test_bad_list_requests_are_invalid_argument_naming_the_field(
    stubs: Stubs, request_: wr_pb.ListWorkRequestsRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stubs.work_requests.ListWorkRequests(request_)
    details = details_of(bad.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.fields == [field]


async def test_a_page_token_cannot_be_reused_with_another_filter(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    await make_history(app, stubs, clock)
    first = await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest(page_size=2))
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stubs.work_requests.ListWorkRequests(
            wr_pb.ListWorkRequestsRequest(
                page_size=2, compartment_id="prod", page_token=first.next_page_token
            )
        )
    assert details_of(bad.value).fields == ["page_token"]


async def test_page_size_above_the_cap_is_capped(app: App, stubs: Stubs) -> None:
    for _ in range(3):
        await seed_cluster(app)
    page = await stubs.clusters.ListClusters(cl_pb.ListClustersRequest(page_size=1_000_000))
    assert len(page.clusters) == 3


async def test_clusters_list_filters_by_region_and_pages_by_name(app: App, stubs: Stubs) -> None:
    for i in range(5):
        await seed_cluster(app, name=f"fra-{i}", region="eu-frankfurt-1")
        await seed_cluster(app, name=f"iad-{i}", region="us-ashburn-1")
    names: list[str] = []
    request = cl_pb.ListClustersRequest(page_size=2, filter='region = "us-ashburn-1"')
    while True:
        page = await stubs.clusters.ListClusters(request)
        names += [c.name for c in page.clusters]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert names == [f"iad-{i}" for i in range(5)]
