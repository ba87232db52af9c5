"""Starting a cluster upgrade: its workflow and its CLUSTER_UPGRADE work request.

Both a caller's CreateUpgradeWorkflow and an orchestration's run start upgrades this way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clusterops_server.domain.errors import ResourceBusy
from clusterops_server.domain.inventory import Cluster, ClusterState, cluster_uri
from clusterops_server.domain.upgrade_workflows import (
    UpgradeInProgress,
    UpgradePhase,
    UpgradeTaskType,
    UpgradeWorkflow,
    check_upgrade_path,
    fresh_points,
)
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestResource,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import UpgradeParams
from clusterops_server.operations.start import (
    OperationStart,
    require_active_cluster,
    start_operation,
)
from clusterops_server.store.uow import UnitOfWork


def upgrade_workflow_uri(cluster_id: str, workflow_id: str) -> str:
    return f"{cluster_uri(cluster_id)}/upgradeWorkflows/{workflow_id}"


async def start_upgrade(
    uow: UnitOfWork,
    versions: VersionCatalogue,
    cluster: Cluster,
    target_version: str,
    *,
    name: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    parent_work_request_id: str = "",
    related: Sequence[WorkRequestResource] = (),
    skip_snapshot: bool = False,
    created_by: str | None = None,
    reason: str = "",
) -> tuple[UpgradeWorkflow, WorkRequest]:
    """Validate the path and create the workflow and its CLUSTER_UPGRADE work request
    inside the caller's unit of work (the cluster goes UPDATING). A parent work request
    (an orchestration's) is made due whenever this one finishes; `related` resources
    (the orchestration) are listed on the work request too.

    Load `cluster` with `for_update=True` in the same unit of work. The caller commits
    (which wakes the engine). Raises InvalidArgument / FailedPrecondition for a bad path,
    ResourceBusy (UpgradeInProgress when it is an upgrade) when the cluster is busy.
    """
    check_upgrade_path(versions, cluster.id, cluster.kubernetes_version, target_version)
    holder = await uow.work_requests.lock_holder(cluster.id)
    if holder is not None:
        running = await uow.upgrade_workflows.by_work_request(holder)
        if running is not None:
            raise UpgradeInProgress(cluster.id, running.id, holder)
        raise ResourceBusy(cluster.id, holder)
    require_active_cluster(cluster, "upgrading it")
    now = uow.clock.now()
    workflow_id = new_id(IdKind.UPGRADE_WORKFLOW)
    # The lock on the cluster id is the single-flight rule: one upgrade (or any other
    # operation) on a cluster at a time, decided by the database.
    wr = await start_operation(
        uow,
        OperationStart(
            cluster.compartment_id,
            OperationType.CLUSTER_UPGRADE,
            UpgradeParams(workflow_id, cluster.id, target_version, parent_work_request_id),
            [
                WorkRequestResource(
                    EntityType.UPGRADE_WORKFLOW,
                    ActionType.RELATED,
                    workflow_id,
                    upgrade_workflow_uri(cluster.id, workflow_id),
                ),
                WorkRequestResource(
                    EntityType.CLUSTER, ActionType.IN_PROGRESS, cluster.id, cluster_uri(cluster.id)
                ),
                *related,
            ],
            lock=[cluster.id],
            log=f"Upgrading cluster {cluster.name} from {cluster.kubernetes_version} to "
            f"{target_version} (workflow {workflow_id})",
            created_by=created_by,
            reason=reason,
        ),
    )
    workflow = UpgradeWorkflow(
        id=workflow_id,
        name=name or f"upgrade-{cluster.name}-{target_version}",
        compartment_id=cluster.compartment_id,
        cluster_id=cluster.id,
        cluster_version=cluster.kubernetes_version,
        target_version=target_version,
        work_request_id=wr.id,
        phase=UpgradePhase.INIT,
        points=fresh_points(skip_snapshot=skip_snapshot),
        create_time=now,
        update_time=now,
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
    )
    workflow.queue(UpgradeTaskType.PRE_CHECK, new_id(IdKind.UPGRADE_TASK))
    await uow.upgrade_workflows.add(workflow)
    cluster.lifecycle_state = ClusterState.UPDATING
    cluster.touch(now)
    await uow.inventory.save_cluster(cluster)
    return workflow, wr
