"""`client.clusters`: the fleet inventory (clusters, their node pools and nodes)."""

from __future__ import annotations

from collections.abc import Mapping

from clusterops._operation import AsyncOperation, blocking_operation
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._pager import AsyncPager, paged
from clusterops._sync import Facade, blocking, blocking_pager
from clusterops._transport import Transport
from clusterops._work_requests import AsyncWorkRequests, idempotency_key
from clusterops.v1 import clusters_pb2 as pb
from clusterops.v1 import clusters_pb2_grpc as pb_grpc


class AsyncClusters:
    """Clusters, node pools and nodes. Creating and deleting return operation handles."""

    def __init__(self, transport: Transport, work_requests: AsyncWorkRequests) -> None:
        self._transport = transport
        self._work_requests = work_requests
        self._stub = pb_grpc.ClusterServiceStub(transport.channel)

    async def create(
        self,
        *,
        compartment_id: str,
        name: str,
        kubernetes_version: str,
        region: str,
        plan: str,
        global_account_id: str = "",
        sub_account_id: str = "",
        shoot_name: str = "",
        maintenance_window: tuple[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[pb.Cluster]:
        """Start creating a cluster. The handle's `resource` is the cluster (CREATING);
        `result()` returns it ACTIVE.

        `maintenance_window` is ("HH:MM", "HH:MM") in UTC; an end before the start
        crosses midnight. `request_id` makes retries safe (one is generated if omitted).
        """
        request = pb.CreateClusterRequest(
            compartment_id=compartment_id,
            name=name,
            kubernetes_version=kubernetes_version,
            region=region,
            plan=plan,
            global_account_id=global_account_id,
            sub_account_id=sub_account_id,
            shoot_name=shoot_name,
            labels=dict(labels or {}),
            request_id=idempotency_key(request_id),
        )
        if maintenance_window is not None:
            start, end = maintenance_window
            request.maintenance_window.CopyFrom(
                pb.MaintenanceWindow(start_time=start, end_time=end)
            )
        options = CallOptions(timeout, metadata, retry)
        response = await self._transport.unary(
            self._stub.CreateCluster, request, options, read=False
        )
        cluster_id = response.cluster.id
        return AsyncOperation(
            self._work_requests,
            response.work_request,
            response.cluster,
            lambda: self.get(cluster_id, metadata=metadata),
        )

    async def get(
        self,
        cluster_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Cluster:
        """Get one cluster. Raises NotFound if there is none (or it was deleted)."""
        response = await self._transport.unary(
            self._stub.GetCluster,
            pb.GetClusterRequest(cluster_id=cluster_id),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.cluster

    def list(
        self,
        *,
        compartment_id: str = "",
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.Cluster]:
        """Clusters ordered by name (or `order_by`), fetched lazily.

        `filter` is an AIP-160 expression over name, region, plan, kubernetes_version,
        lifecycle_state, global_account_id, sub_account_id and shoot_name.
        """
        return paged(
            self._transport,
            self._stub.ListClusters,
            pb.ListClustersRequest(
                compartment_id=compartment_id,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=page_token,
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.clusters,
        )

    async def delete(
        self,
        cluster_id: str,
        *,
        etag: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[None]:
        """Start deleting a cluster that has no node pools left.

        With `etag`, a cluster changed since you read it raises EtagMismatch.
        """
        response = await self._transport.unary(
            self._stub.DeleteCluster,
            pb.DeleteClusterRequest(
                cluster_id=cluster_id, etag=etag, request_id=idempotency_key(request_id)
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return AsyncOperation(self._work_requests, response.work_request, None)

    async def create_node_pool(
        self,
        cluster_id: str,
        *,
        name: str,
        node_count: int,
        node_shape: str = "",
        kubernetes_version: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[pb.NodePool]:
        """Start creating a node pool of `node_count` nodes on an ACTIVE cluster.

        Its work request succeeds once every node is ACTIVE; `result()` returns the
        node pool then. The shape and version default to the service's and the cluster's.
        """
        response = await self._transport.unary(
            self._stub.CreateNodePool,
            pb.CreateNodePoolRequest(
                cluster_id=cluster_id,
                name=name,
                node_count=node_count,
                node_shape=node_shape,
                kubernetes_version=kubernetes_version,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        node_pool_id = response.node_pool.id
        return AsyncOperation(
            self._work_requests,
            response.work_request,
            response.node_pool,
            lambda: self.get_node_pool(node_pool_id, metadata=metadata),
        )

    async def get_node_pool(
        self,
        node_pool_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.NodePool:
        """Get one node pool."""
        response = await self._transport.unary(
            self._stub.GetNodePool,
            pb.GetNodePoolRequest(node_pool_id=node_pool_id),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.node_pool

    def list_node_pools(
        self,
        cluster_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.NodePool]:
        """The node pools of a cluster, ordered by name, fetched lazily."""
        return paged(
            self._transport,
            self._stub.ListNodePools,
            pb.ListNodePoolsRequest(
                cluster_id=cluster_id, page_size=page_size, page_token=page_token
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.node_pools,
        )

    async def delete_node_pool(
        self,
        node_pool_id: str,
        *,
        etag: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[None]:
        """Start deleting a node pool and its nodes."""
        response = await self._transport.unary(
            self._stub.DeleteNodePool,
            pb.DeleteNodePoolRequest(
                node_pool_id=node_pool_id, etag=etag, request_id=idempotency_key(request_id)
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return AsyncOperation(self._work_requests, response.work_request, None)

    def list_nodes(
        self,
        node_pool_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.Node]:
        """The nodes of a node pool, ordered by name, fetched lazily."""
        return paged(
            self._transport,
            self._stub.ListNodes,
            pb.ListNodesRequest(
                node_pool_id=node_pool_id, page_size=page_size, page_token=page_token
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.nodes,
        )


class Clusters(Facade[AsyncClusters]):
    """Clusters, node pools and nodes. Creating and deleting return operation handles."""

    create = blocking_operation(AsyncClusters.create)
    get = blocking(AsyncClusters.get)
    list = blocking_pager(AsyncClusters.list)
    delete = blocking_operation(AsyncClusters.delete)
    create_node_pool = blocking_operation(AsyncClusters.create_node_pool)
    get_node_pool = blocking(AsyncClusters.get_node_pool)
    list_node_pools = blocking_pager(AsyncClusters.list_node_pools)
    delete_node_pool = blocking_operation(AsyncClusters.delete_node_pool)
    list_nodes = blocking_pager(AsyncClusters.list_nodes)
