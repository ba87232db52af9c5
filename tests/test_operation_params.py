"""Typed operation params: one codec with a version, old rows still read, and the kernel
that starts every operation wakes the engine by committing."""

from __future__ import annotations

import asyncio

import pytest
from clusterops_server.app import App
from clusterops_server.domain.addons import AddonState
from clusterops_server.domain.inventory import (
    Node,
    NodePool,
    NodePoolState,
    NodeState,
    node_pool_uri,
    node_uri,
)
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import (
    PARAMS_OF,
    PARAMS_VERSION,
    AddonParams,
    ClusterParams,
    DisableAddonParams,
    EnableAddonParams,
    NodePoolParams,
    OperationParams,
    OrchestrationRunParams,
    PreviousAddon,
    UnreadableParams,
    UpdateAddonParams,
    UpgradeParams,
    decode_params,
    encode_params,
)
from clusterops_server.services.inventory import CreateClusterCommand

from tests.conftest import AppFactory, seed_cluster

EXAMPLES: list[tuple[OperationType, OperationParams]] = [
    (OperationType.CLUSTER_CREATE, ClusterParams("cls-1")),
    (OperationType.CLUSTER_DELETE, ClusterParams("cls-1")),
    (OperationType.NODEPOOL_CREATE, NodePoolParams("np-1", "cls-1")),
    (OperationType.NODEPOOL_DELETE, NodePoolParams("np-1", "cls-1")),
    (OperationType.CLUSTER_UPGRADE, UpgradeParams("uw-1", "cls-1", "v1.30.4", "wr-9")),
    (OperationType.ENABLE_ADDON, EnableAddonParams("cls-1", "CoreDNS", True)),
    (
        OperationType.UPDATE_ADDON,
        UpdateAddonParams(
            "cls-1", "CoreDNS", PreviousAddon("v1.11.1", {"replicas": "2"}, AddonState.ACTIVE)
        ),
    ),
    (
        OperationType.DISABLE_ADDON,
        DisableAddonParams("cls-1", "CoreDNS", True, AddonState.NEEDS_ATTENTION),
    ),
    (OperationType.RECONCILE_ADDON, AddonParams("cls-1", "CoreDNS")),
    (OperationType.ORCHESTRATION_RUN, OrchestrationRunParams("orc-1")),
]

# What the code before params were typed wrote, operation type by operation type.
OLD_SHAPES: list[tuple[OperationType, dict[str, object], OperationParams]] = [
    (OperationType.CLUSTER_CREATE, {"cluster_id": "cls-1"}, ClusterParams("cls-1")),
    (
        OperationType.NODEPOOL_DELETE,
        {"node_pool_id": "np-1", "cluster_id": "cls-1"},
        NodePoolParams("np-1", "cls-1"),
    ),
    (
        OperationType.CLUSTER_UPGRADE,
        {"upgrade_workflow_id": "uw-1", "cluster_id": "cls-1", "target_version": "v1.30.4"},
        UpgradeParams("uw-1", "cls-1", "v1.30.4"),
    ),
    (
        OperationType.CLUSTER_UPGRADE,
        {
            "upgrade_workflow_id": "uw-1",
            "cluster_id": "cls-1",
            "target_version": "v1.30.4",
            "parent_work_request_id": "wr-9",
        },
        UpgradeParams("uw-1", "cls-1", "v1.30.4", "wr-9"),
    ),
    (
        OperationType.ENABLE_ADDON,
        {"cluster_id": "cls-1", "name": "CoreDNS", "override_existing": False},
        EnableAddonParams("cls-1", "CoreDNS", False),
    ),
    (
        OperationType.UPDATE_ADDON,
        {
            "cluster_id": "cls-1",
            "name": "CoreDNS",
            "previous": {"version": "", "configurations": {"a": "b"}, "state": "FAILED"},
        },
        UpdateAddonParams("cls-1", "CoreDNS", PreviousAddon("", {"a": "b"}, AddonState.FAILED)),
    ),
    (
        OperationType.DISABLE_ADDON,
        {
            "cluster_id": "cls-1",
            "name": "CoreDNS",
            "remove_existing": True,
            "previous_state": "ACTIVE",
        },
        DisableAddonParams("cls-1", "CoreDNS", True, AddonState.ACTIVE),
    ),
    (
        OperationType.RECONCILE_ADDON,
        {"cluster_id": "cls-1", "name": "CoreDNS"},
        AddonParams("cls-1", "CoreDNS"),
    ),
    (
        OperationType.ORCHESTRATION_RUN,
        {"orchestration_id": "orc-1"},
        OrchestrationRunParams("orc-1"),
    ),
]


def test_every_operation_type_has_params() -> None:
    assert set(PARAMS_OF) == set(OperationType)
    assert {t for t, _ in EXAMPLES} == set(OperationType)


@pytest.mark.parametrize(("operation_type", "params"), EXAMPLES, ids=lambda v: str(v)[:30])
def test_params_survive_the_round_trip_with_their_version(
    operation_type: OperationType, params: OperationParams
) -> None:
    stored = encode_params(operation_type, params)
    assert stored["params_version"] == PARAMS_VERSION
    assert decode_params(operation_type, stored) == params


@pytest.mark.parametrize(("operation_type", "old", "expected"), OLD_SHAPES)
def test_params_journaled_by_the_previous_code_still_read(
    operation_type: OperationType, old: dict[str, object], expected: OperationParams
) -> None:
    assert decode_params(operation_type, old) == expected


def test_params_of_a_newer_version_or_the_wrong_type_are_refused() -> None:
    with pytest.raises(UnreadableParams, match="version 2"):
        decode_params(OperationType.CLUSTER_CREATE, {"params_version": 2, "cluster_id": "c"})
    with pytest.raises(UnreadableParams):
        decode_params(OperationType.NODEPOOL_CREATE, {"cluster_id": "c"})
    with pytest.raises(UnreadableParams):
        encode_params(OperationType.NODEPOOL_CREATE, ClusterParams("c"))


async def test_a_work_request_journaled_in_the_old_shape_runs_to_the_end(app: App) -> None:
    cluster = await seed_cluster(app)
    now = app.clock.now()
    pool = NodePool(
        id=new_id(IdKind.NODE_POOL),
        cluster_id=cluster.id,
        compartment_id=cluster.compartment_id,
        name="old",
        kubernetes_version=cluster.kubernetes_version,
        node_shape="VM.Standard.E4.Flex",
        node_count=2,
        lifecycle_state=NodePoolState.CREATING,
        create_time=now,
        update_time=now,
    )
    nodes = [
        Node(
            id=new_id(IdKind.NODE),
            node_pool_id=pool.id,
            cluster_id=cluster.id,
            name=f"old-{i}",
            lifecycle_state=NodeState.CREATING,
            create_time=now,
            update_time=now,
        )
        for i in (1, 2)
    ]
    wr = WorkRequest(
        id=new_id(IdKind.WORK_REQUEST),
        compartment_id=cluster.compartment_id,
        operation_type=OperationType.NODEPOOL_CREATE,
        status=WorkRequestStatus.ACCEPTED,
        time_accepted=now,
        resources=[
            WorkRequestResource(
                EntityType.NODE_POOL,
                ActionType.IN_PROGRESS,
                pool.id,
                node_pool_uri(cluster.id, pool.id),
            ),
            *(
                WorkRequestResource(
                    EntityType.NODE,
                    ActionType.IN_PROGRESS,
                    n.id,
                    node_uri(cluster.id, pool.id, n.id),
                )
                for n in nodes
            ),
        ],
    )
    async with app.store.write() as uow:
        # Exactly the row the previous code wrote: params without a version.
        await uow.work_requests.add(
            wr, params={"node_pool_id": pool.id, "cluster_id": cluster.id}, lock=[cluster.id]
        )
        await uow.inventory.add_node_pool(pool, nodes)
        await uow.commit()
    await app.engine.wait_idle()
    async with app.store.read() as uow:
        ended = await uow.work_requests.get(wr.id)
        pool_now = await uow.inventory.get_node_pool(pool.id)
    assert ended is not None
    assert ended.status is WorkRequestStatus.SUCCEEDED
    assert pool_now is not None
    assert pool_now.lifecycle_state is NodePoolState.ACTIVE


async def test_committing_a_new_operation_wakes_the_engine_by_itself(
    make_app: AppFactory,
) -> None:
    # The engine would otherwise look again only after 1000 seconds.
    app = await make_app(engine_poll_seconds=1000)
    await app.engine.wait_idle()
    woken = asyncio.Event()
    app.store.on_work_added(woken.set)
    _, wr = await app.inventory.create_cluster(
        CreateClusterCommand("dev", "woken", "v1.29.8", "eu-frankfurt-1", "aws")
    )
    assert woken.is_set()
    committed = asyncio.Event()
    app.store.on_commit(lambda _: committed.set())

    async def ended() -> None:
        while True:
            committed.clear()
            async with app.store.read() as uow:
                current = await uow.work_requests.get(wr.id)
            assert current is not None
            if current.status.is_terminal:
                return
            await committed.wait()

    await asyncio.wait_for(ended(), 10)


async def test_a_rolled_back_transaction_wakes_nobody(app: App) -> None:
    woken = asyncio.Event()
    app.store.on_work_added(woken.set)
    cluster = await seed_cluster(app)
    async with app.store.write() as uow:
        await uow.leases.wake(new_id(IdKind.WORK_REQUEST), app.clock.now())
        await uow.rollback()
    assert not woken.is_set()
    async with app.store.write() as uow:
        await uow.leases.wake(cluster.id, app.clock.now())
        await uow.commit()
    assert woken.is_set()
