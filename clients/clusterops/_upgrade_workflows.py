"""`client.upgrade_workflows`: CCE-style cluster upgrades (PreCheck, Snapshot, Cluster,
PostCheck, and Rollback on failure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from clusterops._enums import EnumArg, enum_values
from clusterops._operation import AsyncOperation, blocking_operation
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._pager import AsyncPager, paged
from clusterops._sync import Facade, blocking, blocking_pager
from clusterops._transport import Transport
from clusterops._work_requests import AsyncWorkRequests, idempotency_key
from clusterops.v1 import upgrade_workflows_pb2 as pb
from clusterops.v1 import upgrade_workflows_pb2_grpc as pb_grpc


class AsyncUpgradeWorkflows:
    """Upgrade workflows: one cluster from its version to a target version."""

    def __init__(self, transport: Transport, work_requests: AsyncWorkRequests) -> None:
        self._transport = transport
        self._work_requests = work_requests
        self._stub = pb_grpc.UpgradeWorkflowServiceStub(transport.channel)

    async def create(
        self,
        cluster_id: str,
        *,
        target_version: str,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        request_id: str | None = None,
        skip_snapshot: bool = False,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[pb.UpgradeWorkflow]:
        """Start upgrading a cluster to `target_version` (see list_kubernetes_versions).

        The handle's `resource` is the workflow (phase INIT) and its work request the
        CLUSTER_UPGRADE one; `result()` returns the workflow in phase SUCCESS, or raises
        OperationFailed whose errors name the failed task ("ClusterFailed", ...), or
        OperationCanceled. A bad target version raises InvalidArgument on
        `target_version`; a cluster already on it, FailedPrecondition; a cluster with an
        operation in flight, Conflict (its `metadata` names the running
        `upgrade_workflow_id` when that operation is an upgrade).

        With `skip_snapshot` no snapshot is taken: the Snapshot point stays bare (its
        task type only), the lines run PreCheck -> Cluster -> PostCheck, and a failed
        Cluster or PostCheck task is not rolled back (there is nothing to restore).
        """
        response = await self._transport.unary(
            self._stub.CreateUpgradeWorkflow,
            pb.CreateUpgradeWorkflowRequest(
                cluster_id=cluster_id,
                target_version=target_version,
                name=name,
                labels=dict(labels or {}),
                annotations=dict(annotations or {}),
                request_id=idempotency_key(request_id),
                skip_snapshot=skip_snapshot,
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        workflow_id = response.upgrade_workflow.metadata.uid
        return AsyncOperation(
            self._work_requests,
            response.work_request,
            response.upgrade_workflow,
            lambda: self.get(workflow_id, metadata=metadata),
        )

    async def get(
        self,
        upgrade_workflow_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.UpgradeWorkflow:
        """Get one upgrade workflow, with the status of each task and edge of its graph."""
        response = await self._transport.unary(
            self._stub.GetUpgradeWorkflow,
            pb.GetUpgradeWorkflowRequest(upgrade_workflow_id=upgrade_workflow_id),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.upgrade_workflow

    def list(
        self,
        *,
        compartment_id: str = "",
        cluster_id: str = "",
        phases: Iterable[EnumArg] = (),
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.UpgradeWorkflow]:
        """Upgrade workflows, newest first, fetched lazily.

        `phases` are names such as "RUNNING" or "PENDING" (a task failed).
        """
        return paged(
            self._transport,
            self._stub.ListUpgradeWorkflows,
            pb.ListUpgradeWorkflowsRequest(
                compartment_id=compartment_id,
                cluster_id=cluster_id,
                phases=enum_values(pb.UpgradeWorkflowPhase, phases, argument="phases"),
                page_size=page_size,
                page_token=page_token,
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.upgrade_workflows,
        )

    async def cancel(
        self,
        upgrade_workflow_id: str,
        *,
        etag: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.UpgradeWorkflow:
        """Cancel an upgrade whose Cluster task has not started: the workflow is in phase
        CANCEL at once and its work request ends CANCELED after the running task. A
        PENDING workflow (a task failed) is closed the same way; its work request stays
        FAILED and the cluster as the failure left it.

        Past the point of no return it raises FailedPrecondition (violation type
        POINT_OF_NO_RETURN); with `etag`, a workflow changed since raises EtagMismatch.
        """
        response = await self._transport.unary(
            self._stub.CancelUpgradeWorkflow,
            pb.CancelUpgradeWorkflowRequest(
                upgrade_workflow_id=upgrade_workflow_id,
                etag=etag,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.upgrade_workflow

    async def list_kubernetes_versions(
        self, *, timeout: Timeout = DEFAULT, metadata: Metadata = (), retry: Retry = DEFAULT
    ) -> Sequence[pb.KubernetesVersion]:
        """The supported Kubernetes versions and the versions each may upgrade to."""
        response = await self._transport.unary(
            self._stub.ListKubernetesVersions,
            pb.ListKubernetesVersionsRequest(),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return tuple(response.versions)


class UpgradeWorkflows(Facade[AsyncUpgradeWorkflows]):
    """Upgrade workflows: one cluster from its version to a target version."""

    create = blocking_operation(AsyncUpgradeWorkflows.create)
    get = blocking(AsyncUpgradeWorkflows.get)
    list = blocking_pager(AsyncUpgradeWorkflows.list)
    cancel = blocking(AsyncUpgradeWorkflows.cancel)
    list_kubernetes_versions = blocking(AsyncUpgradeWorkflows.list_kubernetes_versions)
