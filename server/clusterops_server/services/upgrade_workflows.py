"""Upgrade workflows: starting, reading and canceling cluster upgrades."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from clusterops_server.auth.caller import require_visible, visible_compartments
from clusterops_server.auth.policy import Family, Verb
from clusterops_server.clock import Clock
from clusterops_server.domain.errors import EtagMismatch, NotFound
from clusterops_server.domain.listing import Page, PageRequest
from clusterops_server.domain.upgrade_workflows import (
    UpgradePhase,
    UpgradeWorkflow,
    UpgradeWorkflowQuery,
)
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.domain.work_requests import LogEntry, WorkRequest, WorkRequestStatus
from clusterops_server.operations.upgrades import start_upgrade
from clusterops_server.services.idempotency import Remembered, run_once
from clusterops_server.services.inventory import require_cluster
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
    def __init__(self, store: Store, clock: Clock, versions: VersionCatalogue) -> None:
        self.store = store
        self.clock = clock
        self.versions = versions

    async def create(
        self, cmd: CreateUpgradeWorkflowCommand
    ) -> tuple[UpgradeWorkflow, WorkRequest]:
        async def act(uow: UnitOfWork) -> tuple[tuple[UpgradeWorkflow, WorkRequest], Remembered]:
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
            return (workflow, wr), {"upgrade_workflow_id": workflow.id, "work_request_id": wr.id}

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[UpgradeWorkflow, WorkRequest]:
            return (
                await require_workflow(uow, prior["upgrade_workflow_id"]),
                await get_work_request(uow, prior["work_request_id"]),
            )

        return await run_once(self.store, "CreateUpgradeWorkflow", cmd, act, replay)

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

        async def act(uow: UnitOfWork) -> tuple[UpgradeWorkflow, Remembered]:
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
            return workflow, {"upgrade_workflow_id": workflow.id}

        async def replay(uow: UnitOfWork, prior: Remembered) -> UpgradeWorkflow:
            return await require_workflow(uow, prior["upgrade_workflow_id"])

        return await run_once(self.store, "CancelUpgradeWorkflow", cmd, act, replay)

    def list_versions(self) -> list[SupportedVersion]:
        return [
            SupportedVersion(str(v), [str(t) for t in self.versions.upgrade_targets(v)])
            for v in self.versions.versions
        ]
