"""Upgrade workflows: starting, reading and canceling cluster upgrades."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from clusterops_server.auth.caller import require_visible, visible_compartments
from clusterops_server.auth.policy import Family, Verb
from clusterops_server.clock import Clock
from clusterops_server.domain.errors import EtagMismatch, NotFound, ResourceBusy
from clusterops_server.domain.inventory import Cluster, ClusterState, cluster_uri
from clusterops_server.domain.listing import Page, PageRequest
from clusterops_server.domain.upgrade_workflows import (
    UpgradeInProgress,
    UpgradePhase,
    UpgradeTaskType,
    UpgradeWorkflow,
    UpgradeWorkflowQuery,
    check_upgrade_path,
    fresh_points,
)
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    LogEntry,
    OperationType,
    WorkRequest,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.engine.context import PARENT_PARAM
from clusterops_server.engine.engine import Engine
from clusterops_server.ids import IdKind, new_id
from clusterops_server.services.idempotency import previous_result, remember
from clusterops_server.services.inventory import (
    new_work_request,
    require_active_cluster,
    require_cluster,
)
from clusterops_server.services.work_requests import get_work_request
from clusterops_server.store.uow import Store, UnitOfWork


@dataclass(frozen=True)
class CreateUpgradeWorkflowCommand:
    cluster_id: str
    target_version: str
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    skip_snapshot: bool = False


@dataclass(frozen=True)
class CancelUpgradeWorkflowCommand:
    upgrade_workflow_id: str
    etag: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class SupportedVersion:
    version: str
    upgrade_targets: list[str]


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
) -> tuple[UpgradeWorkflow, WorkRequest]:
    """Validate the path and create the workflow and its CLUSTER_UPGRADE work request
    inside the caller's unit of work (the cluster goes UPDATING). A parent work request
    (an orchestration's) is made due whenever this one finishes; `related` resources
    (the orchestration) are listed on the work request too.

    Load `cluster` with `for_update=True` in the same unit of work. The caller commits,
    then wakes the engine. Raises InvalidArgument / FailedPrecondition for a bad path,
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
    wr = new_work_request(
        cluster.compartment_id,
        OperationType.CLUSTER_UPGRADE,
        now,
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
    )
    # The lock on the cluster id is the single-flight rule: one upgrade (or any other
    # operation) on a cluster at a time, decided by the database.
    await uow.work_requests.add(
        wr,
        params={
            "upgrade_workflow_id": workflow_id,
            "cluster_id": cluster.id,
            "target_version": target_version,
            **({PARENT_PARAM: parent_work_request_id} if parent_work_request_id else {}),
        },
        lock=[cluster.id],
        logs=[
            LogEntry(
                f"Upgrading cluster {cluster.name} from {cluster.kubernetes_version} to "
                f"{target_version} (workflow {workflow_id})",
                now,
            )
        ],
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


async def require_workflow(
    uow: UnitOfWork, workflow_id: str, *, for_update: bool = False, verb: Verb = Verb.READ
) -> UpgradeWorkflow:
    """A workflow the caller may see (else NOT_FOUND) and may `verb` (else PERMISSION_DENIED)."""
    workflow = await uow.upgrade_workflows.get(workflow_id, for_update=for_update)
    if workflow is None:
        raise NotFound("upgrade workflow", workflow_id)
    require_visible(
        verb,
        Family.UPGRADE_WORKFLOWS,
        workflow.compartment_id,
        "upgrade workflow",
        workflow_id,
    )
    return workflow


class UpgradeWorkflowService:
    def __init__(
        self, store: Store, clock: Clock, engine: Engine, versions: VersionCatalogue
    ) -> None:
        self.store = store
        self.clock = clock
        self.engine = engine
        self.versions = versions

    async def create(
        self, cmd: CreateUpgradeWorkflowCommand
    ) -> tuple[UpgradeWorkflow, WorkRequest]:
        async with self.store.write() as uow:
            prior = await previous_result(uow, "CreateUpgradeWorkflow", cmd.request_id, cmd)
            if prior is not None:
                return (
                    await require_workflow(uow, prior["upgrade_workflow_id"]),
                    await get_work_request(uow, prior["work_request_id"]),
                )
            cluster = await require_cluster(
                uow,
                cmd.cluster_id,
                for_update=True,
                verb=Verb.MANAGE,
                family=Family.UPGRADE_WORKFLOWS,
            )
            workflow, wr = await start_upgrade(
                uow,
                self.versions,
                cluster,
                cmd.target_version,
                name=cmd.name,
                labels=cmd.labels,
                annotations=cmd.annotations,
                skip_snapshot=cmd.skip_snapshot,
            )
            await remember(
                uow,
                "CreateUpgradeWorkflow",
                cmd.request_id,
                {"upgrade_workflow_id": workflow.id, "work_request_id": wr.id},
            )
            await uow.commit()
        self.engine.wake()
        return workflow, wr

    async def get(self, workflow_id: str) -> UpgradeWorkflow:
        async with self.store.read() as uow:
            return await require_workflow(uow, workflow_id)

    async def list_workflows(
        self, query: UpgradeWorkflowQuery, page: PageRequest
    ) -> Page[UpgradeWorkflow]:
        scoped = replace(
            query,
            visible_compartments=visible_compartments(Verb.INSPECT, Family.UPGRADE_WORKFLOWS),
        )
        async with self.store.read() as uow:
            return await uow.upgrade_workflows.list_workflows(scoped, page)

    async def cancel(self, cmd: CancelUpgradeWorkflowCommand) -> UpgradeWorkflow:
        """Phase Cancel and the work request CANCELING at once; the engine then stops the
        workflow before its next task. Refused once the Cluster task has started, unless
        the workflow is Pending (a task failed, its work request has ended): then canceling
        is the decision that closes it, and the cluster stays as the failure left it."""
        async with self.store.write() as uow:
            prior = await previous_result(uow, "CancelUpgradeWorkflow", cmd.request_id, cmd)
            if prior is not None:
                return await require_workflow(uow, prior["upgrade_workflow_id"])
            # The store's lock order: the work request, then the workflow it drives, as the
            # engine's steps take them. A workflow never changes its work request.
            seen = await require_workflow(uow, cmd.upgrade_workflow_id, verb=Verb.USE)
            wr = await uow.work_requests.get(seen.work_request_id, for_update=True)
            assert wr is not None, seen.work_request_id
            workflow = await require_workflow(
                uow, cmd.upgrade_workflow_id, for_update=True, verb=Verb.USE
            )
            if cmd.etag and cmd.etag != workflow.etag:
                raise EtagMismatch("upgrade workflow", workflow.id, workflow.etag)
            if workflow.phase is not UpgradePhase.CANCEL:
                workflow.require_cancelable()
                now = self.clock.now()
                # A Pending workflow's work request has ended: only the workflow closes.
                pending = workflow.phase is UpgradePhase.PENDING
                if not pending and wr.status is not WorkRequestStatus.CANCELING:
                    wr.transition(WorkRequestStatus.CANCELING, now)
                    await uow.work_requests.save(
                        wr,
                        logs=[
                            LogEntry(
                                f"Cancellation of upgrade workflow {workflow.id} requested", now
                            )
                        ],
                    )
                    await uow.leases.wake(wr.id, now)
                workflow.cancel()
                workflow.touch(now)
                await uow.upgrade_workflows.save(workflow)
            await remember(
                uow, "CancelUpgradeWorkflow", cmd.request_id, {"upgrade_workflow_id": workflow.id}
            )
            await uow.commit()
        self.engine.wake()
        return workflow

    def list_versions(self) -> list[SupportedVersion]:
        return [
            SupportedVersion(str(v), [str(t) for t in self.versions.upgrade_targets(v)])
            for v in self.versions.versions
        ]
