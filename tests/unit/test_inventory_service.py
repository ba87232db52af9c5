"""Inventory rules at the service layer: no gRPC, no running engine (tests/unit/harness.py).

The same rules are proven over the wire in test_node_pools.py and test_conflicts.py;
here each takes milliseconds and shows what the service committed, and whether it
handed the engine work.
"""

from __future__ import annotations

import grpc
import pytest
from clusterops_server.domain.errors import FailedPrecondition, ResourceBusy
from clusterops_server.domain.inventory import ClusterState, NodePoolState
from clusterops_server.domain.work_requests import OperationType, WorkRequestStatus
from clusterops_server.services.inventory import CreateNodePoolCommand, DeleteCommand

from tests.conftest import seed_cluster
from tests.unit.harness import Services

pytestmark = pytest.mark.both_backends


async def test_a_new_node_pool_is_creating_with_an_accepted_work_request_and_wakes_the_engine(
    services: Services,
) -> None:
    cluster = await seed_cluster(services)
    pool, wr = await services.inventory.create_node_pool(
        CreateNodePoolCommand(cluster_id=cluster.id, name="w", node_count=3)
    )
    assert pool.lifecycle_state is NodePoolState.CREATING
    assert (wr.operation_type, wr.status) == (
        OperationType.NODEPOOL_CREATE,
        WorkRequestStatus.ACCEPTED,
    )
    assert services.engine.wakes == 1
    async with services.store.read() as uow:
        nodes = await uow.inventory.nodes_of(pool.id)
    assert len(nodes) == 3


async def test_a_second_operation_on_a_busy_cluster_is_aborted_naming_the_first(
    services: Services,
) -> None:
    cluster = await seed_cluster(services)
    _, first = await services.inventory.create_node_pool(
        CreateNodePoolCommand(cluster_id=cluster.id, name="a", node_count=1)
    )
    with pytest.raises(ResourceBusy) as busy:
        await services.inventory.create_node_pool(
            CreateNodePoolCommand(cluster_id=cluster.id, name="b", node_count=1)
        )
    assert busy.value.code == grpc.StatusCode.ABORTED
    assert busy.value.blocking_work_request_id == first.id
    assert services.engine.wakes == 1  # the refused call handed over nothing


async def test_the_same_request_id_returns_the_first_result_and_starts_nothing_new(
    services: Services,
) -> None:
    cluster = await seed_cluster(services)
    command = CreateNodePoolCommand(cluster_id=cluster.id, name="w", node_count=1, request_id="r1")
    first = await services.inventory.create_node_pool(command)
    again = await services.inventory.create_node_pool(command)
    assert again[0].id == first[0].id
    assert again[1].id == first[1].id
    assert services.engine.wakes == 1


async def test_a_cluster_with_node_pools_is_not_deleted(services: Services) -> None:
    cluster = await seed_cluster(services)
    pool, created = await services.inventory.create_node_pool(
        CreateNodePoolCommand(cluster_id=cluster.id, name="w", node_count=1)
    )
    async with services.store.write() as uow:  # as the engine would, once it had run it
        wr = await uow.work_requests.get(created.id, for_update=True)
        assert wr is not None
        wr.transition(WorkRequestStatus.IN_PROGRESS, services.clock.now())
        wr.transition(WorkRequestStatus.SUCCEEDED, services.clock.now())
        await uow.work_requests.save(wr)
        await uow.commit()
    with pytest.raises(FailedPrecondition) as refused:
        await services.inventory.delete_cluster(DeleteCommand(resource_id=cluster.id))
    assert refused.value.reason == "CLUSTER_HAS_NODE_POOLS"
    assert refused.value.metadata == {"node_pool_ids": pool.id}
    assert (await services.inventory.get_cluster(cluster.id)).lifecycle_state is (
        ClusterState.ACTIVE
    )
