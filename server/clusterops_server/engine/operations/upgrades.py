"""Upgrading a cluster: the CCE-style task DAG, one durable step per task.

PreCheck -> Snapshot -> Cluster -> PostCheck; Rollback when Cluster or PostCheck fails.
The workflow's point statuses are the source of truth for where the DAG stands; each
task's step key carries its task id, so a finished task never runs again after a
restart, while a PreCheck whose result expired is queued afresh (a new task id, hence a
new step) and runs again before the Cluster task starts.
"""

from __future__ import annotations

from datetime import datetime

from clusterops_server.domain.inventory import Cluster, ClusterState
from clusterops_server.domain.upgrade_workflows import (
    ROLLBACK_AFTER,
    UpgradePhase,
    UpgradeSettings,
    UpgradeTaskStatus,
    UpgradeTaskType,
    UpgradeWorkflow,
)
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.engine.context import (
    UNEXPECTED_FAILURE,
    Apply,
    OperationContext,
    StepFailed,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import UpgradeParams
from clusterops_server.providers.base import Provider, ProviderError
from clusterops_server.store.uow import UnitOfWork


class TaskFailed(Exception):
    def __init__(self, task_type: UpgradeTaskType, task_id: str, message: str) -> None:
        super().__init__(f"{task_type.value} task {task_id} failed: {message}")
        self.task_type = task_type
        self.task_id = task_id
        self.message = message


def _stamp(dt: datetime | None) -> str:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else "?"


def _percent(workflow: UpgradeWorkflow) -> float:
    path = workflow.critical_path
    done = sum(workflow.point(t).status is UpgradeTaskStatus.SUCCESS for t in path)
    return round(100.0 * done / len(path), 1)


async def _workflow(
    uow: UnitOfWork, workflow_id: str, *, for_update: bool = False
) -> UpgradeWorkflow:
    workflow = await uow.upgrade_workflows.get(workflow_id, for_update=for_update)
    assert workflow is not None, workflow_id
    return workflow


async def _cluster(uow: UnitOfWork, cluster_id: str, *, for_update: bool = False) -> Cluster:
    cluster = await uow.inventory.get_cluster(cluster_id, for_update=for_update)
    assert cluster is not None, cluster_id
    return cluster


def _workflow_id(ctx: OperationContext) -> str:
    return ctx.params_as(UpgradeParams).upgrade_workflow_id


class UpgradeCluster:
    """Runs one upgrade workflow; its work request's params name the workflow."""

    operation_type = OperationType.CLUSTER_UPGRADE

    def __init__(self, provider: Provider, settings: UpgradeSettings | None = None) -> None:
        self.provider = provider
        self.settings = settings or UpgradeSettings()

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        workflow = await uow.upgrade_workflows.by_work_request(wr.id)
        if workflow is not None:
            workflow.require_cancelable()

    async def run(self, ctx: OperationContext) -> None:
        async with ctx.store.read() as uow:
            # The workflow's plan: its critical path leaves out a snapshot it skips.
            plan = (await _workflow(uow, _workflow_id(ctx))).critical_path
        try:
            for task_type in plan:
                if task_type is UpgradeTaskType.CLUSTER:
                    await self._refresh_pre_check(ctx)
                await self._task(ctx, task_type)
        except TaskFailed as failure:
            await self._conclude_failure(ctx, failure)
            return
        async with ctx.store.read() as uow:
            workflow = await _workflow(uow, _workflow_id(ctx))
        await ctx.finish(
            WorkRequestStatus.SUCCEEDED,
            apply=self._succeed(ctx),
            log=f"Cluster {workflow.cluster_id} upgraded from {workflow.cluster_version} to "
            f"{workflow.target_version}",
        )

    async def undo(self, ctx: OperationContext) -> None:
        """Canceled before the Cluster task: nothing on the cluster changed."""

        async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
            workflow = await _workflow(uow, _workflow_id(ctx), for_update=True)
            now = ctx.clock.now()
            workflow.cancel()
            workflow.touch(now)
            await uow.upgrade_workflows.save(workflow)
            await self._settle_cluster(uow, ctx, workflow, ClusterState.ACTIVE, version=None)
            wr.resource_action(EntityType.CLUSTER, workflow.cluster_id, ActionType.RELATED)

        async with ctx.store.read() as uow:
            workflow = await _workflow(uow, _workflow_id(ctx))
        await ctx.finish(
            WorkRequestStatus.CANCELED,
            apply=apply,
            log=f"Upgrade workflow {workflow.id} canceled before its Cluster task; the "
            f"cluster stays on {workflow.cluster_version}",
        )

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when a task fails: the workflow Pending (or Cancel, if it was being canceled),
        its task failed; the cluster stays ACTIVE on its version unless the Cluster task
        had started, when it may be half-changed and, as after a failed rollback, is FAILED."""
        workflow = await _workflow(uow, _workflow_id(ctx), for_update=True)
        half_changed = workflow.passed_point_of_no_return
        workflow.abandon(ctx.clock.now(), UNEXPECTED_FAILURE)
        workflow.touch(ctx.clock.now())
        await uow.upgrade_workflows.save(workflow)
        state = ClusterState.FAILED if half_changed else ClusterState.ACTIVE
        await self._settle_cluster(uow, ctx, workflow, state, version=None)
        wr.resource_action(EntityType.CLUSTER, workflow.cluster_id, ActionType.FAILED)

    # the tasks

    async def _task(self, ctx: OperationContext, task_type: UpgradeTaskType) -> None:
        """Run one task unless the workflow says it already ran; TaskFailed if it failed."""
        workflow_id: str = _workflow_id(ctx)
        async with ctx.store.read() as uow:
            workflow = await _workflow(uow, workflow_id)
        point = workflow.point(task_type)
        if point.status is UpgradeTaskStatus.SUCCESS:
            return
        if point.status is UpgradeTaskStatus.FAILED:
            raise TaskFailed(task_type, point.task_id, point.message)
        task_id = point.task_id or await self._queue(ctx, task_type)

        async def action() -> None:
            async with ctx.store.read() as uow:
                cluster = await _cluster(uow, workflow.cluster_id)
            await self.provider.run_upgrade_task(cluster, task_type, workflow.target_version)

        async def started(uow: UnitOfWork, wr: WorkRequest) -> None:
            current = await _workflow(uow, workflow_id, for_update=True)
            now = ctx.clock.now()
            current.start(task_type, now)
            current.touch(now)
            await uow.upgrade_workflows.save(current)
            await uow.work_requests.save(
                wr, logs=[ctx.log_entry(f"{task_type.value} task {task_id} started")]
            )

        async def done(uow: UnitOfWork, wr: WorkRequest, _: dict[str, object]) -> None:
            current = await _workflow(uow, workflow_id, for_update=True)
            now = ctx.clock.now()
            valid_for = (
                self.settings.pre_check_validity if task_type is UpgradeTaskType.PRE_CHECK else None
            )
            finished = current.succeed(task_type, now, valid_for=valid_for)
            message = f"{task_type.value} task {task_id} succeeded"
            if finished.expire_time is not None:
                message += f"; its result is valid until {_stamp(finished.expire_time)}"
            following = current.next_on_critical_path(task_type)
            if (
                following is not None
                and wr.status is not WorkRequestStatus.CANCELING
                and current.point(following).status is UpgradeTaskStatus.INIT
            ):
                current.queue(following, new_id(IdKind.UPGRADE_TASK))
            current.touch(now)
            await uow.upgrade_workflows.save(current)
            wr.percent_complete = max(wr.percent_complete, _percent(current))
            await uow.work_requests.save(wr, logs=[ctx.log_entry(message)])

        async def failed(uow: UnitOfWork, wr: WorkRequest, error: ProviderError) -> None:
            current = await _workflow(uow, workflow_id, for_update=True)
            now = ctx.clock.now()
            current.fail(task_type, now, error.message)
            if task_type in ROLLBACK_AFTER and current.rolls_back:
                current.queue(UpgradeTaskType.ROLLBACK, new_id(IdKind.UPGRADE_TASK))
            current.touch(now)
            await uow.upgrade_workflows.save(current)
            await uow.work_requests.save(
                wr,
                logs=[ctx.log_entry(f"{task_type.value} task {task_id} failed: {error.message}")],
            )

        try:
            await ctx.step(
                f"upgrade:{task_type.value}:{task_id}",
                action,
                started=started,
                done=done,
                failed=failed,
            )
        except StepFailed as failure:
            raise TaskFailed(task_type, task_id, failure.error.message) from failure

    async def _queue(self, ctx: OperationContext, task_type: UpgradeTaskType) -> str:
        """Give a task that was never scheduled a task id, durably, before its step runs."""
        task_id = new_id(IdKind.UPGRADE_TASK)

        async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
            workflow = await _workflow(uow, _workflow_id(ctx), for_update=True)
            workflow.queue(task_type, task_id)
            workflow.touch(ctx.clock.now())
            await uow.upgrade_workflows.save(workflow)

        await ctx.update(apply, cancel_check=True)
        return task_id

    async def _refresh_pre_check(self, ctx: OperationContext) -> None:
        """Run PreCheck again if its result expired while Snapshot ran (or the server was down)."""
        workflow_id: str = _workflow_id(ctx)
        async with ctx.store.read() as uow:
            workflow = await _workflow(uow, workflow_id)
        if not workflow.pre_check_expired(ctx.clock.now()):
            return
        task_id = new_id(IdKind.UPGRADE_TASK)

        async def requeue(uow: UnitOfWork, wr: WorkRequest) -> None:
            current = await _workflow(uow, workflow_id, for_update=True)
            now = ctx.clock.now()
            expired_at = current.point(UpgradeTaskType.PRE_CHECK).expire_time
            current.queue(UpgradeTaskType.PRE_CHECK, task_id)
            current.touch(now)
            await uow.upgrade_workflows.save(current)
            await uow.work_requests.save(
                wr,
                logs=[
                    ctx.log_entry(
                        f"PreCheck result expired at {_stamp(expired_at)}; running PreCheck "
                        f"again (task {task_id}) before the Cluster task"
                    )
                ],
            )

        await ctx.update(requeue, cancel_check=True)
        await self._task(ctx, UpgradeTaskType.PRE_CHECK)

    # endings

    async def _conclude_failure(self, ctx: OperationContext, failure: TaskFailed) -> None:
        """Roll back when the cluster may be half-changed, then fail, naming the task."""
        code = f"{failure.task_type.value}Failed"
        message = f"{failure.task_type.value} task {failure.task_id} failed: {failure.message}"
        errors = [(code, message)]
        cluster_state = ClusterState.ACTIVE
        async with ctx.store.read() as uow:
            workflow = await _workflow(uow, _workflow_id(ctx))
        if failure.task_type in ROLLBACK_AFTER and workflow.rolls_back:
            try:
                await self._task(ctx, UpgradeTaskType.ROLLBACK)
                log = (
                    f"Upgrade failed at the {failure.task_type.value} task and was rolled back; "
                    f"the cluster stays on {workflow.cluster_version}"
                )
            except TaskFailed as rollback:
                cluster_state = ClusterState.FAILED
                errors.append(
                    (
                        "RollbackFailed",
                        f"Rollback task {rollback.task_id} failed: {rollback.message}; the "
                        "cluster needs an operator",
                    )
                )
                log = (
                    f"Upgrade failed at the {failure.task_type.value} task and its rollback "
                    "failed too; the cluster is FAILED"
                )
        elif failure.task_type in ROLLBACK_AFTER:
            # No snapshot was taken, so there is nothing to roll back to.
            log = (
                f"Upgrade failed at the {failure.task_type.value} task; no snapshot was taken, "
                "so nothing was rolled back"
            )
        else:
            log = (
                f"Upgrade stopped at the {failure.task_type.value} task before changing the "
                f"cluster; it stays on {workflow.cluster_version}"
            )

        async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
            current = await _workflow(uow, workflow.id, for_update=True)
            current.phase = UpgradePhase.PENDING
            current.touch(ctx.clock.now())
            await uow.upgrade_workflows.save(current)
            await self._settle_cluster(uow, ctx, current, cluster_state, version=None)
            wr.resource_action(EntityType.CLUSTER, current.cluster_id, ActionType.FAILED)

        await ctx.finish(WorkRequestStatus.FAILED, apply=apply, log=log, errors=errors)

    def _succeed(self, ctx: OperationContext) -> Apply:
        async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
            workflow = await _workflow(uow, _workflow_id(ctx), for_update=True)
            workflow.phase = UpgradePhase.SUCCESS
            workflow.touch(ctx.clock.now())
            await uow.upgrade_workflows.save(workflow)
            await self._settle_cluster(
                uow, ctx, workflow, ClusterState.ACTIVE, version=workflow.target_version
            )
            wr.resource_action(EntityType.CLUSTER, workflow.cluster_id, ActionType.UPDATED)

        return apply

    async def _settle_cluster(
        self,
        uow: UnitOfWork,
        ctx: OperationContext,
        workflow: UpgradeWorkflow,
        state: ClusterState,
        *,
        version: str | None,
    ) -> None:
        cluster = await _cluster(uow, workflow.cluster_id, for_update=True)
        if cluster.lifecycle_state is ClusterState.UPDATING:
            cluster.lifecycle_state = state
        if version is not None:
            cluster.kubernetes_version = version
        cluster.touch(ctx.clock.now())
        await uow.inventory.save_cluster(cluster)
