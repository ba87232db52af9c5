"""Clusters and node pools: reads, and the mutations that start operations."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from clusterops_server.auth.caller import (
    current_caller,
    require,
    require_visible,
    visible_compartments,
)
from clusterops_server.auth.policy import Family, Verb
from clusterops_server.clock import Clock
from clusterops_server.domain.errors import (
    EtagMismatch,
    FailedPrecondition,
    NotFound,
    ResourceBusy,
)
from clusterops_server.domain.inventory import (
    Cluster,
    ClusterQuery,
    ClusterState,
    MaintenanceWindow,
    Node,
    NodePool,
    NodePoolState,
    NodeState,
    cluster_uri,
    node_pool_uri,
    node_uri,
)
from clusterops_server.domain.listing import Page, PageRequest
from clusterops_server.domain.plans import PlanCatalogue
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestResource,
)
from clusterops_server.engine.reconciler import supersede_reconciliation
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import ClusterParams, NodePoolParams
from clusterops_server.operations.start import (
    OperationStart,
    require_active_cluster,
    start_operation,
)
from clusterops_server.services.idempotency import Remembered, run_once
from clusterops_server.services.work_requests import get_work_request
from clusterops_server.store import inventory_reads
from clusterops_server.store.uow import Store, UnitOfWork

DEFAULT_NODE_SHAPE = "VM.Standard.E4.Flex"


@dataclass(frozen=True)
class CreateClusterCommand:
    compartment_id: str
    name: str
    kubernetes_version: str
    region: str
    plan: str
    global_account_id: str = ""
    sub_account_id: str = ""
    shoot_name: str = ""
    maintenance_window: MaintenanceWindow | None = None
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True)
class CreateNodePoolCommand:
    cluster_id: str
    name: str
    node_count: int
    node_shape: str = ""
    kubernetes_version: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class DeleteCommand:
    resource_id: str
    etag: str = ""
    request_id: str = ""


async def require_cluster(
    uow: UnitOfWork,
    cluster_id: str,
    *,
    for_update: bool = False,
    verb: Verb = Verb.READ,
    family: Family = Family.CLUSTERS,
) -> Cluster:
    """A live cluster the caller may at least list; NOT_FOUND otherwise (no existence
    leak), and PERMISSION_DENIED when they may list it but not do `verb` to `family`."""
    cluster = await uow.inventory.get_cluster(cluster_id, for_update=for_update)
    return visible_cluster(cluster, cluster_id, verb=verb, family=family)


def visible_cluster(
    cluster: Cluster | None,
    cluster_id: str,
    *,
    verb: Verb = Verb.READ,
    family: Family = Family.CLUSTERS,
) -> Cluster:
    """`cluster` if it is live and the caller may `verb` it; NOT_FOUND or
    PERMISSION_DENIED as `require_cluster` says."""
    if cluster is None or cluster.lifecycle_state is ClusterState.DELETED:
        raise NotFound("cluster", cluster_id)
    caller = current_caller()
    if not (
        caller.can(Verb.INSPECT, Family.CLUSTERS, cluster.compartment_id)
        or caller.can(Verb.INSPECT, family, cluster.compartment_id)
    ):
        raise NotFound("cluster", cluster_id)
    require(verb, family, cluster.compartment_id)
    return cluster


async def require_node_pool(
    uow: UnitOfWork, node_pool_id: str, *, verb: Verb = Verb.READ
) -> NodePool:
    return visible_node_pool(await uow.inventory.get_node_pool(node_pool_id), node_pool_id, verb)


def visible_node_pool(pool: NodePool | None, node_pool_id: str, verb: Verb) -> NodePool:
    if pool is None or pool.lifecycle_state is NodePoolState.DELETED:
        raise NotFound("node pool", node_pool_id)
    require_visible(verb, Family.CLUSTERS, pool.compartment_id, "node pool", node_pool_id)
    return pool


async def require_no_operation(uow: UnitOfWork, resource_id: str) -> None:
    """ABORTED naming the blocking work request when the resource is busy.

    Checked before state rules, so a caller racing an operation learns which one to
    wait for rather than that the cluster is UPDATING. The lock insert in
    `work_requests.add` stays the real guard against races.
    """
    holder = await uow.work_requests.lock_holder(resource_id)
    if holder is not None:
        raise ResourceBusy(resource_id, holder)


async def require_not_deleting(uow: UnitOfWork, cluster: Cluster, action: str) -> None:
    """A cluster being deleted takes no new work: ABORTED naming the deletion's work
    request (FAILED_PRECONDITION if, oddly, none holds the cluster)."""
    if cluster.lifecycle_state is ClusterState.DELETING:
        await require_no_operation(uow, cluster.id)
        require_active_cluster(cluster, action)


class InventoryService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        versions: VersionCatalogue,
        plans: PlanCatalogue | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.versions = versions
        self.plans = plans or PlanCatalogue.load()

    async def create_cluster(self, cmd: CreateClusterCommand) -> tuple[Cluster, WorkRequest]:
        require(Verb.MANAGE, Family.CLUSTERS, cmd.compartment_id)
        self.versions.require_supported("kubernetes_version", cmd.kubernetes_version)
        plan = self.plans.resolve(plan=cmd.plan, region=cmd.region)

        async def act(uow: UnitOfWork) -> tuple[tuple[Cluster, WorkRequest], Remembered]:
            now = self.clock.now()
            cluster = Cluster(
                id=new_id(IdKind.CLUSTER),
                compartment_id=cmd.compartment_id,
                name=cmd.name,
                kubernetes_version=cmd.kubernetes_version,
                region=cmd.region,
                plan=plan.name,
                plan_id=plan.id,
                global_account_id=cmd.global_account_id,
                sub_account_id=cmd.sub_account_id,
                shoot_name=cmd.shoot_name or cmd.name,
                lifecycle_state=ClusterState.CREATING,
                create_time=now,
                update_time=now,
                maintenance_window=cmd.maintenance_window,
                labels=dict(cmd.labels),
            )
            await uow.inventory.add_cluster(cluster)
            wr = await start_operation(
                uow,
                OperationStart(
                    cmd.compartment_id,
                    OperationType.CLUSTER_CREATE,
                    ClusterParams(cluster.id),
                    [_cluster_resource(cluster.id, ActionType.IN_PROGRESS)],
                    lock=[cluster.id],
                    log=f"Creating cluster {cluster.name} on {cluster.kubernetes_version}",
                ),
            )
            return (cluster, wr), {"cluster_id": cluster.id, "work_request_id": wr.id}

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[Cluster, WorkRequest]:
            return (
                await require_cluster(uow, prior["cluster_id"]),
                await get_work_request(uow, prior["work_request_id"]),
            )

        return await run_once(self.store, "CreateCluster", cmd, act, replay)

    async def get_cluster(self, cluster_id: str) -> Cluster:
        cluster = await inventory_reads.get_cluster(self.store.reads, cluster_id)
        return visible_cluster(cluster, cluster_id)

    async def list_clusters(self, query: ClusterQuery, page: PageRequest) -> Page[Cluster]:
        scoped = replace(
            query, visible_compartments=visible_compartments(Verb.INSPECT, Family.CLUSTERS)
        )
        async with self.store.read() as uow:
            return await uow.inventory.list_clusters(scoped, page)

    async def delete_cluster(self, cmd: DeleteCommand) -> WorkRequest:
        async def act(uow: UnitOfWork) -> tuple[WorkRequest, Remembered]:
            cluster = await require_cluster(uow, cmd.resource_id, for_update=True, verb=Verb.MANAGE)
            _check_etag("cluster", cluster.id, cluster.etag, cmd.etag)
            await require_no_operation(uow, cluster.id)
            addons = await uow.addons.live_on_cluster(cluster.id, for_update=True)
            for addon in addons:
                # An add-on operation in flight blocks the deletion; a reconciliation waiting
                # for its next check gives way to it (superseded below).
                holder = await uow.work_requests.lock_holder(addon.resource_id)
                if holder is not None and holder != addon.reconciliation_id:
                    raise ResourceBusy(addon.resource_id, holder)
            if cluster.lifecycle_state not in {ClusterState.ACTIVE, ClusterState.FAILED}:
                require_active_cluster(cluster, "deleting it")
            pools = await uow.inventory.live_node_pools(cluster.id)
            if pools:
                raise FailedPrecondition(
                    f"cluster {cluster.id} still has {len(pools)} node pool(s); delete them first",
                    violation_type="CLUSTER_HAS_NODE_POOLS",
                    subject=cluster.id,
                    metadata={"node_pool_ids": ",".join(p.id for p in pools)},
                )
            now = self.clock.now()
            start = OperationStart(
                cluster.compartment_id,
                OperationType.CLUSTER_DELETE,
                ClusterParams(cluster.id),
                [_cluster_resource(cluster.id, ActionType.IN_PROGRESS)]
                + [
                    WorkRequestResource(
                        EntityType.ADDON, ActionType.IN_PROGRESS, a.resource_id, a.uri
                    )
                    for a in addons
                ],
                # The cluster and each of its add-ons: no add-on operation starts meanwhile.
                lock=[cluster.id, *(a.resource_id for a in addons)],
            )
            for addon in addons:
                await supersede_reconciliation(
                    uow, addon, now, f"{start.operation_type.value} {start.id}"
                )
                await uow.addons.save(addon)
            wr = await start_operation(uow, start)
            cluster.lifecycle_state = ClusterState.DELETING
            cluster.touch(now)
            await uow.inventory.save_cluster(cluster)
            return wr, {"work_request_id": wr.id}

        async def replay(uow: UnitOfWork, prior: Remembered) -> WorkRequest:
            return await get_work_request(uow, prior["work_request_id"])

        return await run_once(self.store, "DeleteCluster", cmd, act, replay)

    async def create_node_pool(self, cmd: CreateNodePoolCommand) -> tuple[NodePool, WorkRequest]:
        async def act(uow: UnitOfWork) -> tuple[tuple[NodePool, WorkRequest], Remembered]:
            cluster = await require_cluster(uow, cmd.cluster_id, for_update=True, verb=Verb.MANAGE)
            await require_no_operation(uow, cluster.id)
            require_active_cluster(cluster, "adding a node pool")
            version = cmd.kubernetes_version or cluster.kubernetes_version
            if cmd.kubernetes_version:
                self.versions.require_supported("kubernetes_version", cmd.kubernetes_version)
            now = self.clock.now()
            pool = NodePool(
                id=new_id(IdKind.NODE_POOL),
                cluster_id=cluster.id,
                compartment_id=cluster.compartment_id,
                name=cmd.name,
                kubernetes_version=version,
                node_shape=cmd.node_shape or DEFAULT_NODE_SHAPE,
                node_count=cmd.node_count,
                lifecycle_state=NodePoolState.CREATING,
                create_time=now,
                update_time=now,
            )
            nodes = [
                Node(
                    id=new_id(IdKind.NODE),
                    node_pool_id=pool.id,
                    cluster_id=cluster.id,
                    name=f"{pool.name}-{i + 1}",
                    lifecycle_state=NodeState.CREATING,
                    create_time=now,
                    update_time=now,
                )
                for i in range(cmd.node_count)
            ]
            resources = [_cluster_resource(cluster.id, ActionType.RELATED)]
            resources += _pool_resources(pool, nodes)
            wr = await start_operation(
                uow,
                OperationStart(
                    cluster.compartment_id,
                    OperationType.NODEPOOL_CREATE,
                    NodePoolParams(pool.id, cluster.id),
                    resources,
                    # The cluster is the contended resource: one operation on it at a time.
                    lock=[cluster.id, pool.id],
                    log=f"Creating node pool {pool.name} with {len(nodes)} nodes",
                ),
            )
            await uow.inventory.add_node_pool(pool, nodes)
            return (pool, wr), {"node_pool_id": pool.id, "work_request_id": wr.id}

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[NodePool, WorkRequest]:
            pool = await uow.inventory.get_node_pool(prior["node_pool_id"])
            assert pool is not None
            return pool, await get_work_request(uow, prior["work_request_id"])

        return await run_once(self.store, "CreateNodePool", cmd, act, replay)

    async def get_node_pool(self, node_pool_id: str) -> NodePool:
        pool = await inventory_reads.get_node_pool(self.store.reads, node_pool_id)
        return visible_node_pool(pool, node_pool_id, Verb.READ)

    async def list_node_pools(self, cluster_id: str, page: PageRequest) -> Page[NodePool]:
        async with self.store.read() as uow:
            await require_cluster(uow, cluster_id)
            return await uow.inventory.list_node_pools(cluster_id, page)

    async def list_nodes(self, node_pool_id: str, page: PageRequest) -> Page[Node]:
        async with self.store.read() as uow:
            await require_node_pool(uow, node_pool_id)
            return await uow.inventory.list_nodes(node_pool_id, page)

    async def delete_node_pool(self, cmd: DeleteCommand) -> WorkRequest:
        async def act(uow: UnitOfWork) -> tuple[WorkRequest, Remembered]:
            pool = await require_node_pool(uow, cmd.resource_id, verb=Verb.MANAGE)
            _check_etag("node pool", pool.id, pool.etag, cmd.etag)
            cluster = await require_cluster(uow, pool.cluster_id, for_update=True)
            await require_no_operation(uow, cluster.id)
            nodes = [
                n
                for n in await uow.inventory.nodes_of(pool.id)
                if n.lifecycle_state is not NodeState.DELETED
            ]
            now = self.clock.now()
            wr = await start_operation(
                uow,
                OperationStart(
                    pool.compartment_id,
                    OperationType.NODEPOOL_DELETE,
                    NodePoolParams(pool.id, cluster.id),
                    _pool_resources(pool, nodes),
                    lock=[cluster.id, pool.id],
                ),
            )
            pool.lifecycle_state = NodePoolState.DELETING
            pool.touch(now)
            await uow.inventory.save_node_pool(pool)
            return wr, {"work_request_id": wr.id}

        async def replay(uow: UnitOfWork, prior: Remembered) -> WorkRequest:
            return await get_work_request(uow, prior["work_request_id"])

        return await run_once(self.store, "DeleteNodePool", cmd, act, replay)


def _pool_resources(pool: NodePool, nodes: list[Node]) -> list[WorkRequestResource]:
    """The pool and each of its nodes, as resources an operation is working on."""
    return [
        WorkRequestResource(
            EntityType.NODE_POOL,
            ActionType.IN_PROGRESS,
            pool.id,
            node_pool_uri(pool.cluster_id, pool.id),
        )
    ] + [
        WorkRequestResource(
            EntityType.NODE, ActionType.IN_PROGRESS, n.id, node_uri(pool.cluster_id, pool.id, n.id)
        )
        for n in nodes
    ]


def _cluster_resource(cluster_id: str, action: ActionType) -> WorkRequestResource:
    return WorkRequestResource(EntityType.CLUSTER, action, cluster_id, cluster_uri(cluster_id))


def _check_etag(resource_type: str, resource_id: str, current: str, given: str) -> None:
    if given and given != current:
        raise EtagMismatch(resource_type, resource_id, current)
