"""ClusterService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import re
from datetime import time
from typing import Any

from clusterops.v1 import clusters_pb2 as pb
from clusterops.v1 import clusters_pb2_grpc as pb_grpc

from clusterops_server.domain.filtering import FieldKind, FilterField
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
from clusterops_server.domain.listing import OrderBy
from clusterops_server.ids import IdKind
from clusterops_server.services.inventory import (
    CreateClusterCommand,
    CreateNodePoolCommand,
    DeleteCommand,
    InventoryService,
)
from clusterops_server.wire.convert import EnumMap, timestamp
from clusterops_server.wire.errors import servicer
from clusterops_server.wire.validate import Validator
from clusterops_server.wire.work_requests import work_request_to_proto

CLUSTER_STATE = EnumMap(pb.ClusterLifecycleState, ClusterState, "CLUSTER_LIFECYCLE_STATE_")
POOL_STATE = EnumMap(pb.NodePoolLifecycleState, NodePoolState, "NODE_POOL_LIFECYCLE_STATE_")
NODE_STATE = EnumMap(pb.NodeLifecycleState, NodeState, "NODE_LIFECYCLE_STATE_")

_TEXT = FilterField(FieldKind.STRING)
FILTER_FIELDS = {
    "name": _TEXT,
    "region": _TEXT,
    "plan": _TEXT,
    "plan_id": _TEXT,
    "kubernetes_version": _TEXT,
    "global_account_id": _TEXT,
    "sub_account_id": _TEXT,
    "shoot_name": _TEXT,
    "compartment_id": _TEXT,
    "lifecycle_state": FilterField(
        FieldKind.ENUM, frozenset(s.value for s in ClusterState), "CLUSTER_LIFECYCLE_STATE_"
    ),
}
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
MAX_NODES_PER_POOL = 100


def window_to_proto(window: MaintenanceWindow | None) -> pb.MaintenanceWindow | None:
    if window is None:
        return None
    return pb.MaintenanceWindow(
        start_time=window.start.strftime("%H:%M"), end_time=window.end.strftime("%H:%M")
    )


def cluster_to_proto(c: Cluster) -> pb.Cluster:
    return pb.Cluster(
        id=c.id,
        compartment_id=c.compartment_id,
        name=c.name,
        kubernetes_version=c.kubernetes_version,
        region=c.region,
        plan=c.plan,
        plan_id=c.plan_id,
        global_account_id=c.global_account_id,
        sub_account_id=c.sub_account_id,
        shoot_name=c.shoot_name,
        maintenance_window=window_to_proto(c.maintenance_window),
        labels=c.labels,
        lifecycle_state=CLUSTER_STATE.to_proto(c.lifecycle_state),  # type: ignore[arg-type]
        create_time=timestamp(c.create_time),
        update_time=timestamp(c.update_time),
        etag=c.etag,
    )


def node_pool_to_proto(p: NodePool) -> pb.NodePool:
    return pb.NodePool(
        id=p.id,
        cluster_id=p.cluster_id,
        compartment_id=p.compartment_id,
        name=p.name,
        kubernetes_version=p.kubernetes_version,
        node_shape=p.node_shape,
        node_count=p.node_count,
        lifecycle_state=POOL_STATE.to_proto(p.lifecycle_state),  # type: ignore[arg-type]
        create_time=timestamp(p.create_time),
        update_time=timestamp(p.update_time),
        etag=p.etag,
    )


def node_to_proto(n: Node) -> pb.Node:
    return pb.Node(
        id=n.id,
        node_pool_id=n.node_pool_id,
        cluster_id=n.cluster_id,
        name=n.name,
        lifecycle_state=NODE_STATE.to_proto(n.lifecycle_state),  # type: ignore[arg-type]
        lifecycle_details=n.lifecycle_details,
        create_time=timestamp(n.create_time),
        update_time=timestamp(n.update_time),
    )


def _window(check: Validator, request: pb.CreateClusterRequest) -> MaintenanceWindow | None:
    if not request.HasField("maintenance_window"):
        return None
    window = request.maintenance_window
    parts = []
    for name, value in (("start_time", window.start_time), ("end_time", window.end_time)):
        if _HHMM.fullmatch(value) is None:
            check.fail(f"maintenance_window.{name}", 'must be "HH:MM" (24-hour, UTC)')
        else:
            parts.append(time.fromisoformat(value))
    if len(parts) != 2:
        return None
    if parts[0] == parts[1]:
        check.fail("maintenance_window.end_time", "must differ from start_time")
        return None
    return MaintenanceWindow(parts[0], parts[1])


@servicer
class ClusterServicer(pb_grpc.ClusterServiceServicer):
    def __init__(self, service: InventoryService) -> None:
        self.service = service

    async def CreateCluster(  # noqa: N802 (gRPC method names)
        self, request: pb.CreateClusterRequest, context: Any
    ) -> pb.CreateClusterResponse:
        check = Validator()
        command = CreateClusterCommand(
            compartment_id=check.compartment(
                "compartment_id", request.compartment_id, required=True
            ),
            name=check.name("name", request.name),
            kubernetes_version=check.text(
                "kubernetes_version", request.kubernetes_version, required=True, limit=32
            ),
            region=check.text("region", request.region, required=True, limit=64),
            plan=check.text("plan", request.plan, required=True, limit=64),
            global_account_id=check.text("global_account_id", request.global_account_id, limit=64),
            sub_account_id=check.text("sub_account_id", request.sub_account_id, limit=64),
            shoot_name=check.text("shoot_name", request.shoot_name, limit=63),
            maintenance_window=_window(check, request),
            labels=check.labels("labels", request.labels),
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        cluster, wr = await self.service.create_cluster(command)
        return pb.CreateClusterResponse(
            cluster=cluster_to_proto(cluster), work_request=work_request_to_proto(wr)
        )

    async def GetCluster(  # noqa: N802
        self, request: pb.GetClusterRequest, context: Any
    ) -> pb.GetClusterResponse:
        check = Validator()
        check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER)
        check.check()
        return pb.GetClusterResponse(
            cluster=cluster_to_proto(await self.service.get_cluster(request.cluster_id))
        )

    async def ListClusters(  # noqa: N802
        self, request: pb.ListClustersRequest, context: Any
    ) -> pb.ListClustersResponse:
        check = Validator()
        query = ClusterQuery(
            compartment_id=check.compartment(
                "compartment_id", request.compartment_id, required=False
            ),
            filter=check.filter(request.filter, FILTER_FIELDS),
            order=check.order_by(request.order_by, ["name", "create_time"], OrderBy("name", False)),
        )
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_clusters(query, page)
        return pb.ListClustersResponse(
            clusters=[cluster_to_proto(c) for c in result.items],
            next_page_token=result.next_page_token,
        )

    async def DeleteCluster(  # noqa: N802
        self, request: pb.DeleteClusterRequest, context: Any
    ) -> pb.DeleteClusterResponse:
        check = Validator()
        command = DeleteCommand(
            check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER),
            check.text("etag", request.etag, limit=64),
            check.request_id("request_id", request.request_id),
        )
        check.check()
        wr = await self.service.delete_cluster(command)
        return pb.DeleteClusterResponse(work_request=work_request_to_proto(wr))

    async def CreateNodePool(  # noqa: N802
        self, request: pb.CreateNodePoolRequest, context: Any
    ) -> pb.CreateNodePoolResponse:
        check = Validator()
        command = CreateNodePoolCommand(
            cluster_id=check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER),
            name=check.name("name", request.name),
            node_count=check.int_range("node_count", request.node_count, 1, MAX_NODES_PER_POOL),
            node_shape=check.text("node_shape", request.node_shape, limit=64),
            kubernetes_version=check.text(
                "kubernetes_version", request.kubernetes_version, limit=32
            ),
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        pool, wr = await self.service.create_node_pool(command)
        return pb.CreateNodePoolResponse(
            node_pool=node_pool_to_proto(pool), work_request=work_request_to_proto(wr)
        )

    async def GetNodePool(  # noqa: N802
        self, request: pb.GetNodePoolRequest, context: Any
    ) -> pb.GetNodePoolResponse:
        check = Validator()
        check.resource_id("node_pool_id", request.node_pool_id, IdKind.NODE_POOL)
        check.check()
        pool = await self.service.get_node_pool(request.node_pool_id)
        return pb.GetNodePoolResponse(node_pool=node_pool_to_proto(pool))

    async def ListNodePools(  # noqa: N802
        self, request: pb.ListNodePoolsRequest, context: Any
    ) -> pb.ListNodePoolsResponse:
        check = Validator()
        check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER)
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_node_pools(request.cluster_id, page)
        return pb.ListNodePoolsResponse(
            node_pools=[node_pool_to_proto(p) for p in result.items],
            next_page_token=result.next_page_token,
        )

    async def DeleteNodePool(  # noqa: N802
        self, request: pb.DeleteNodePoolRequest, context: Any
    ) -> pb.DeleteNodePoolResponse:
        check = Validator()
        command = DeleteCommand(
            check.resource_id("node_pool_id", request.node_pool_id, IdKind.NODE_POOL),
            check.text("etag", request.etag, limit=64),
            check.request_id("request_id", request.request_id),
        )
        check.check()
        wr = await self.service.delete_node_pool(command)
        return pb.DeleteNodePoolResponse(work_request=work_request_to_proto(wr))

    async def ListNodes(  # noqa: N802
        self, request: pb.ListNodesRequest, context: Any
    ) -> pb.ListNodesResponse:
        check = Validator()
        check.resource_id("node_pool_id", request.node_pool_id, IdKind.NODE_POOL)
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_nodes(request.node_pool_id, page)
        return pb.ListNodesResponse(
            nodes=[node_to_proto(n) for n in result.items],
            next_page_token=result.next_page_token,
        )
