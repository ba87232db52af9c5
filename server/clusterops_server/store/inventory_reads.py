"""Inventory reads for the Get and List RPCs: Core statements on ReadConnections."""

from __future__ import annotations

from datetime import time

from sqlalchemy import bindparam, select

from clusterops_server.domain.inventory import (
    Cluster,
    ClusterState,
    MaintenanceWindow,
    NodePool,
    NodePoolState,
)
from clusterops_server.store.database import (
    ReadConnections,
    ReadStatement,
    Row,
    stored_json,
    stored_time,
)
from clusterops_server.store.tables import ClusterRow, NodePoolRow

_CLUSTER = ClusterRow.__table__
_POOL = NodePoolRow.__table__

# The columns, in the order `cluster_from_row` expects them.
CLUSTER_COLUMNS = (
    _CLUSTER.c.id,
    _CLUSTER.c.compartment_id,
    _CLUSTER.c.name,
    _CLUSTER.c.kubernetes_version,
    _CLUSTER.c.region,
    _CLUSTER.c.plan,
    _CLUSTER.c.plan_id,
    _CLUSTER.c.global_account_id,
    _CLUSTER.c.sub_account_id,
    _CLUSTER.c.shoot_name,
    _CLUSTER.c.maintenance_start,
    _CLUSTER.c.maintenance_end,
    _CLUSTER.c.labels,
    _CLUSTER.c.lifecycle_state,
    _CLUSTER.c.created_at,
    _CLUSTER.c.updated_at,
    _CLUSTER.c.version,
)
_POOL_COLUMNS = (
    _POOL.c.id,
    _POOL.c.cluster_id,
    _POOL.c.compartment_id,
    _POOL.c.name,
    _POOL.c.kubernetes_version,
    _POOL.c.node_shape,
    _POOL.c.node_count,
    _POOL.c.lifecycle_state,
    _POOL.c.created_at,
    _POOL.c.updated_at,
    _POOL.c.version,
)


def cluster_from_row(row: Row) -> Cluster:
    (
        cluster_id,
        compartment_id,
        name,
        kubernetes_version,
        region,
        plan,
        plan_id,
        global_account_id,
        sub_account_id,
        shoot_name,
        maintenance_start,
        maintenance_end,
        labels,
        lifecycle_state,
        created_at,
        updated_at,
        version,
    ) = row
    window = (
        MaintenanceWindow(
            time.fromisoformat(maintenance_start), time.fromisoformat(maintenance_end)
        )
        if maintenance_start is not None and maintenance_end is not None
        else None
    )
    return Cluster(
        id=cluster_id,
        compartment_id=compartment_id,
        name=name,
        kubernetes_version=kubernetes_version,
        region=region,
        plan=plan,
        plan_id=plan_id,
        global_account_id=global_account_id,
        sub_account_id=sub_account_id,
        shoot_name=shoot_name,
        lifecycle_state=ClusterState(lifecycle_state),
        create_time=stored_time(created_at),
        update_time=stored_time(updated_at),
        maintenance_window=window,
        labels=dict(stored_json(labels) or {}),
        version=version,
    )


def node_pool_from_row(row: Row) -> NodePool:
    (
        pool_id,
        cluster_id,
        compartment_id,
        name,
        kubernetes_version,
        node_shape,
        node_count,
        lifecycle_state,
        created_at,
        updated_at,
        version,
    ) = row
    return NodePool(
        id=pool_id,
        cluster_id=cluster_id,
        compartment_id=compartment_id,
        name=name,
        kubernetes_version=kubernetes_version,
        node_shape=node_shape,
        node_count=node_count,
        lifecycle_state=NodePoolState(lifecycle_state),
        create_time=stored_time(created_at),
        update_time=stored_time(updated_at),
        version=version,
    )


_GET_CLUSTER = ReadStatement(
    lambda _d: select(*CLUSTER_COLUMNS).where(_CLUSTER.c.id == bindparam("id"))
)
_GET_NODE_POOL = ReadStatement(
    lambda _d: select(*_POOL_COLUMNS).where(_POOL.c.id == bindparam("id"))
)


async def get_cluster(reads: ReadConnections, cluster_id: str) -> Cluster | None:
    row = await reads.fetch_one(_GET_CLUSTER, {"id": cluster_id})
    return None if row is None else cluster_from_row(row)


async def get_node_pool(reads: ReadConnections, node_pool_id: str) -> NodePool | None:
    row = await reads.fetch_one(_GET_NODE_POOL, {"id": node_pool_id})
    return None if row is None else node_pool_from_row(row)
