"""Clusters, node pools and nodes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.errors import AlreadyExists
from clusterops_server.domain.inventory import (
    Cluster,
    ClusterQuery,
    ClusterState,
    MaintenanceWindow,
    Node,
    NodePool,
    NodePoolState,
    NodeState,
)
from clusterops_server.domain.listing import Page, PageRequest, fingerprint
from clusterops_server.store.filters import compile_filter
from clusterops_server.store.paging import Keyset, paginate
from clusterops_server.store.tables import ClusterRow, NodePoolRow, NodeRow

CLUSTER_FILTER_COLUMNS = {
    "name": ClusterRow.name,
    "region": ClusterRow.region,
    "plan": ClusterRow.plan,
    "plan_id": ClusterRow.plan_id,
    "kubernetes_version": ClusterRow.kubernetes_version,
    "lifecycle_state": ClusterRow.lifecycle_state,
    "global_account_id": ClusterRow.global_account_id,
    "sub_account_id": ClusterRow.sub_account_id,
    "shoot_name": ClusterRow.shoot_name,
    "compartment_id": ClusterRow.compartment_id,
}
_CLUSTER_ORDER = {"name": ClusterRow.name, "create_time": ClusterRow.created_at}


def _window(row: ClusterRow) -> MaintenanceWindow | None:
    if row.maintenance_start is None or row.maintenance_end is None:
        return None
    return MaintenanceWindow(
        time.fromisoformat(row.maintenance_start), time.fromisoformat(row.maintenance_end)
    )


def cluster_from_row(row: ClusterRow) -> Cluster:
    return Cluster(
        id=row.id,
        compartment_id=row.compartment_id,
        name=row.name,
        kubernetes_version=row.kubernetes_version,
        region=row.region,
        plan=row.plan,
        plan_id=row.plan_id,
        global_account_id=row.global_account_id,
        sub_account_id=row.sub_account_id,
        shoot_name=row.shoot_name,
        lifecycle_state=ClusterState(row.lifecycle_state),
        create_time=row.created_at,
        update_time=row.updated_at,
        maintenance_window=_window(row),
        labels=dict(row.labels),
        version=row.version,
    )


def _cluster_values(c: Cluster) -> dict[str, object]:
    window = c.maintenance_window
    return {
        "compartment_id": c.compartment_id,
        "name": c.name,
        "kubernetes_version": c.kubernetes_version,
        "region": c.region,
        "plan": c.plan,
        "plan_id": c.plan_id,
        "global_account_id": c.global_account_id,
        "sub_account_id": c.sub_account_id,
        "shoot_name": c.shoot_name,
        "maintenance_start": window.start.strftime("%H:%M") if window else None,
        "maintenance_end": window.end.strftime("%H:%M") if window else None,
        "labels": dict(c.labels),
        "lifecycle_state": c.lifecycle_state.value,
        "created_at": c.create_time,
        "updated_at": c.update_time,
        "version": c.version,
    }


def _pool_from_row(row: NodePoolRow) -> NodePool:
    return NodePool(
        id=row.id,
        cluster_id=row.cluster_id,
        compartment_id=row.compartment_id,
        name=row.name,
        kubernetes_version=row.kubernetes_version,
        node_shape=row.node_shape,
        node_count=row.node_count,
        lifecycle_state=NodePoolState(row.lifecycle_state),
        create_time=row.created_at,
        update_time=row.updated_at,
        version=row.version,
    )


def _node_from_row(row: NodeRow) -> Node:
    return Node(
        id=row.id,
        node_pool_id=row.node_pool_id,
        cluster_id=row.cluster_id,
        name=row.name,
        lifecycle_state=NodeState(row.lifecycle_state),
        create_time=row.created_at,
        update_time=row.updated_at,
        lifecycle_details=row.lifecycle_details,
    )


class InventoryRepository:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    # clusters

    async def add_cluster(self, cluster: Cluster) -> None:
        self.session.add(ClusterRow(id=cluster.id, **_cluster_values(cluster)))
        try:
            async with self.session.begin_nested():
                await self.session.flush()
        except IntegrityError:
            raise AlreadyExists(
                "cluster",
                cluster.name,
                f"compartment {cluster.compartment_id} already has a cluster named "
                f"{cluster.name!r}",
            ) from None

    async def get_cluster(self, cluster_id: str, *, for_update: bool = False) -> Cluster | None:
        stmt = select(ClusterRow).where(ClusterRow.id == cluster_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        row = await self.session.scalar(stmt)
        return cluster_from_row(row) if row else None

    async def save_cluster(self, cluster: Cluster) -> None:
        row = await self.session.get(ClusterRow, cluster.id)
        assert row is not None, cluster.id
        for key, value in _cluster_values(cluster).items():
            setattr(row, key, value)

    def _cluster_conditions(self, query: ClusterQuery) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if query.visible_compartments is not None:
            conditions.append(ClusterRow.compartment_id.in_(sorted(query.visible_compartments)))
        if query.compartment_id:
            conditions.append(ClusterRow.compartment_id == query.compartment_id)
        if not query.include_deleted:
            conditions.append(ClusterRow.lifecycle_state != ClusterState.DELETED.value)
        if query.filter is not None:
            conditions.append(compile_filter(query.filter, CLUSTER_FILTER_COLUMNS))
        return conditions

    async def list_clusters(self, query: ClusterQuery, page: PageRequest) -> Page[Cluster]:
        column = _CLUSTER_ORDER[query.order.field]
        return await paginate(
            self.session,
            select(ClusterRow).where(*self._cluster_conditions(query)),
            Keyset((column, ClusterRow.id), query.order.descending),
            page,
            query.fingerprint(),
            cluster_from_row,
            key_of=lambda row: (getattr(row, column.key), row.id),
        )

    async def all_clusters(self, query: ClusterQuery) -> list[Cluster]:
        """Every matching cluster, ordered by id (target resolution walks the whole fleet)."""
        rows = await self.session.scalars(
            select(ClusterRow).where(*self._cluster_conditions(query)).order_by(ClusterRow.id)
        )
        return [cluster_from_row(r) for r in rows]

    # node pools

    async def add_node_pool(self, pool: NodePool, nodes: Sequence[Node]) -> None:
        self.session.add(
            NodePoolRow(
                id=pool.id,
                cluster_id=pool.cluster_id,
                compartment_id=pool.compartment_id,
                name=pool.name,
                kubernetes_version=pool.kubernetes_version,
                node_shape=pool.node_shape,
                node_count=pool.node_count,
                lifecycle_state=pool.lifecycle_state.value,
                created_at=pool.create_time,
                updated_at=pool.update_time,
                version=pool.version,
            )
        )
        try:
            async with self.session.begin_nested():
                await self.session.flush()
        except IntegrityError:
            raise AlreadyExists(
                "nodepool",
                pool.name,
                f"cluster {pool.cluster_id} already has a node pool named {pool.name!r}",
            ) from None
        self.session.add_all(
            NodeRow(
                id=n.id,
                node_pool_id=n.node_pool_id,
                cluster_id=n.cluster_id,
                name=n.name,
                lifecycle_state=n.lifecycle_state.value,
                lifecycle_details=n.lifecycle_details,
                created_at=n.create_time,
                updated_at=n.update_time,
            )
            for n in nodes
        )

    async def get_node_pool(self, node_pool_id: str) -> NodePool | None:
        row = await self.session.get(NodePoolRow, node_pool_id)
        return _pool_from_row(row) if row else None

    async def save_node_pool(self, pool: NodePool) -> None:
        row = await self.session.get(NodePoolRow, pool.id)
        assert row is not None, pool.id
        row.lifecycle_state = pool.lifecycle_state.value
        row.node_count = pool.node_count
        row.kubernetes_version = pool.kubernetes_version
        row.updated_at = pool.update_time
        row.version = pool.version

    async def live_node_pools(self, cluster_id: str) -> list[NodePool]:
        rows = await self.session.scalars(
            select(NodePoolRow).where(
                NodePoolRow.cluster_id == cluster_id,
                NodePoolRow.lifecycle_state != NodePoolState.DELETED.value,
            )
        )
        return [_pool_from_row(r) for r in rows]

    async def list_node_pools(self, cluster_id: str, page: PageRequest) -> Page[NodePool]:
        return await paginate(
            self.session,
            select(NodePoolRow).where(
                NodePoolRow.cluster_id == cluster_id,
                NodePoolRow.lifecycle_state != NodePoolState.DELETED.value,
            ),
            Keyset((NodePoolRow.name, NodePoolRow.id)),
            page,
            fingerprint("node_pools", cluster_id),
            _pool_from_row,
            key_of=lambda row: (row.name, row.id),
        )

    # nodes

    async def nodes_of(self, node_pool_id: str) -> list[Node]:
        rows = await self.session.scalars(
            select(NodeRow).where(NodeRow.node_pool_id == node_pool_id).order_by(NodeRow.name)
        )
        return [_node_from_row(r) for r in rows]

    async def get_node(self, node_id: str) -> Node | None:
        row = await self.session.get(NodeRow, node_id)
        return _node_from_row(row) if row else None

    async def save_node(self, node: Node) -> None:
        row = await self.session.get(NodeRow, node.id)
        assert row is not None, node.id
        row.lifecycle_state = node.lifecycle_state.value
        row.lifecycle_details = node.lifecycle_details
        row.updated_at = node.update_time

    async def list_nodes(self, node_pool_id: str, page: PageRequest) -> Page[Node]:
        return await paginate(
            self.session,
            select(NodeRow).where(NodeRow.node_pool_id == node_pool_id),
            Keyset((NodeRow.name, NodeRow.id)),
            page,
            fingerprint("nodes", node_pool_id),
            _node_from_row,
            key_of=lambda row: (row.name, row.id),
        )
