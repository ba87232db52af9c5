"""Running an orchestration: its ORCHESTRATION_RUN work request is the scheduler.

Each time the engine runs it, the handler makes one pass over the store: it concludes
the operations whose upgrade work request has finished, then starts as many due
operations as there are free workers (an operation outside its cluster's maintenance
window is moved to the window's next opening instead), and parks until the next
operation falls due. A finishing upgrade names this work request as its parent and
so makes it due at once. Nothing waits in memory: ten thousand targets are ten
thousand rows, the worker limit is the count of running operations in the store, and
a restarted server simply runs the next pass.

Rollout controls (issue 16) are rules of domain/rollouts.py applied here: stages open one
after another (an operation of a stage not yet open has no due time, so the due query
never sees it), a paused orchestration starts nothing, and an exceeded failure budget
halts it. All of it is in the store, so a restart or another replica carries on alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from clusterops_server.domain import rollouts
from clusterops_server.domain.errors import DomainError, ResourceBusy
from clusterops_server.domain.inventory import ClusterState
from clusterops_server.domain.orchestrations import (
    FAILURE_BUDGET_EXCEEDED,
    OPERATION_LABEL,
    ORCHESTRATION_LABEL,
    Halt,
    Orchestration,
    OrchestrationOperation,
    OrchestrationSettings,
    OrchestrationState,
    dry_run_outcome,
    orchestration_resource,
    runs_version,
)
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.domain.work_requests import (
    ActionType,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.engine.context import UNEXPECTED_FAILURE, OperationContext, Recheck
from clusterops_server.operations.params import OrchestrationRunParams
from clusterops_server.operations.upgrades import start_upgrade
from clusterops_server.store.orchestrations import FinishedRun
from clusterops_server.store.uow import UnitOfWork

# Failed operations named one by one in the work request's errors; the rest are counted.
MAX_ERROR_ENTRIES = 100


class NotDone(Exception):
    """Operations were added back (a retry) while the run was about to end."""


@dataclass
class Pass:
    """What one pass saw and decided."""

    version: int = 0
    wr_status: WorkRequestStatus | None = None
    # The batch limit was reached: run another pass at once.
    more: bool = False
    finish: WorkRequestStatus | None = None
    wake_at: datetime | None = None
    logs: list[str] = field(default_factory=list)


FINAL_STATE = {
    WorkRequestStatus.CANCELED: OrchestrationState.CANCELED,
    WorkRequestStatus.FAILED: OrchestrationState.FAILED,
    WorkRequestStatus.SUCCEEDED: OrchestrationState.SUCCEEDED,
}


class RunOrchestration:
    operation_type = OperationType.ORCHESTRATION_RUN

    def __init__(
        self, versions: VersionCatalogue, settings: OrchestrationSettings | None = None
    ) -> None:
        self.versions = versions
        self.settings = settings or OrchestrationSettings()

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        """Always cancelable while it runs: pending operations stop, running ones finish."""

    async def run(self, ctx: OperationContext) -> None:
        await self._advance(ctx)

    async def undo(self, ctx: OperationContext) -> None:
        await self._advance(ctx)

    async def _advance(self, ctx: OperationContext) -> None:
        orchestration_id: str = ctx.params_as(OrchestrationRunParams).orchestration_id
        while True:
            seen = Pass()

            async def one_pass(uow: UnitOfWork, wr: WorkRequest, seen: Pass = seen) -> None:
                await self._pass(ctx, uow, wr, orchestration_id, seen)

            await ctx.update(one_pass)
            if seen.more:
                continue
            if seen.finish is not None:
                try:
                    await self._finish(ctx, orchestration_id, seen.finish)
                except NotDone:
                    continue
                return
            assert seen.wake_at is not None
            await ctx.park(seen.wake_at, recheck=self._changed_since(orchestration_id, seen))
            return

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """As when operations fail: those that had not started FAILED, so that a retry runs
        them, and the orchestration FAILED. Upgrades already running go on; a retry's run
        records how they ended."""
        orchestration_id: str = ctx.params_as(OrchestrationRunParams).orchestration_id
        orchestration = await uow.orchestrations.get(orchestration_id, for_update=True)
        assert orchestration is not None, orchestration_id
        now = ctx.clock.now()
        ended = await uow.orchestrations.end_waiting(
            orchestration_id,
            now,
            f"Not started: the orchestration's run failed ({UNEXPECTED_FAILURE})",
            OrchestrationState.FAILED,
        )
        for (stage, former), count in ended.items():
            orchestration.move(stage, former, OrchestrationState.FAILED, count)
        orchestration.state = OrchestrationState.FAILED
        orchestration.rollout.pause = None
        orchestration.description = orchestration.progress()
        orchestration.touch(now)
        await uow.orchestrations.save(orchestration)
        wr.set_resource(orchestration_resource(orchestration_id, ActionType.RELATED))

    # one pass

    async def _pass(
        self,
        ctx: OperationContext,
        uow: UnitOfWork,
        wr: WorkRequest,
        orchestration_id: str,
        seen: Pass,
    ) -> None:
        orchestration = await uow.orchestrations.get(orchestration_id, for_update=True)
        assert orchestration is not None, orchestration_id
        now = ctx.clock.now()
        logs = seen.logs
        state_before = orchestration.state
        if wr.status is WorkRequestStatus.CANCELING:
            orchestration.state = OrchestrationState.CANCELING
            orchestration.rollout.pause = None
        elif orchestration.state in (OrchestrationState.PENDING, OrchestrationState.RETRYING):
            orchestration.state = OrchestrationState.IN_PROGRESS
        if orchestration.state is not state_before:
            logs.append(f'Orchestration {orchestration.id} is "{orchestration.state.value}"')
        pause_at = orchestration.parameters.strategy.pause_at
        had_paused_at = orchestration.rollout.pause_at_done
        if rollouts.pause_at_due(orchestration, now):
            assert pause_at is not None
            reason = f"pause_at {rollouts.stamp(pause_at)} reached"
            rollouts.pause(orchestration, "system", reason, now)
            logs.append(f"Paused by system: {reason}; no operation starts until it is resumed")
        elif orchestration.rollout.pause_at_done != had_paused_at:
            logs.append("pause_at reached while already paused")

        budget = self.settings.batch
        finished = await uow.orchestrations.finished_runs(orchestration_id, limit=budget)
        for run in finished:
            await self._conclude_run(uow, orchestration, run, now, logs)
        await uow.orchestrations.save_operations([run.operation for run in finished])
        budget -= len(finished)
        seen.more = budget == 0
        await self._check_budget(uow, orchestration, logs)

        if orchestration.state is OrchestrationState.CANCELING:
            canceled = await uow.orchestrations.end_waiting(
                orchestration_id, now, "Canceled before it started"
            )
            for (stage, former), count in canceled.items():
                orchestration.move(stage, former, OrchestrationState.CANCELED, count)
            if canceled:
                logs.append(f"Canceled {sum(canceled.values())} operation(s) that had not started")
            rollouts.cancel_stages(orchestration)
        elif (
            not seen.more
            and orchestration.state is not OrchestrationState.PAUSED
            and orchestration.rollout.halt is None
        ):
            budget = await self._start_due(uow, wr, orchestration, now, budget, logs)
            seen.more = budget == 0

        next_start = None if seen.more else await self._decide(uow, orchestration, now, seen)
        if logs:
            later = next_start if next_start is not None and next_start > now else None
            orchestration.description = orchestration.progress(later)
            orchestration.touch(now)
            await uow.orchestrations.save(orchestration)
            wr.percent_complete = orchestration.percent_complete()
            await uow.work_requests.save(wr, logs=[ctx.log_entry(m) for m in logs])
        seen.version = orchestration.version
        seen.wr_status = wr.status

    async def _start_due(
        self,
        uow: UnitOfWork,
        wr: WorkRequest,
        orchestration: Orchestration,
        now: datetime,
        budget: int,
        logs: list[str],
    ) -> int:
        """Open the stages that may open and start due operations while workers are free;
        the batch budget left. Stops at once when a failure exceeds a failure budget."""
        strategy = orchestration.parameters.strategy
        while True:
            moved = await self._advance_stages(uow, orchestration, now, logs)
            workers = strategy.workers_of(rollouts.current_stage(orchestration))
            while budget > 0 and orchestration.counts.running < workers:
                free = workers - orchestration.counts.running
                due = await uow.orchestrations.due(orchestration.id, now, limit=min(free, budget))
                if not due:
                    break
                for operation in due:
                    if orchestration.rollout.halt is not None:
                        break  # the rest stay due, untouched
                    budget -= 1
                    if not operation.dry_run and not strategy.may_start(
                        operation.maintenance_window, now
                    ):
                        # Its window closed while it waited for a worker: tomorrow's, then.
                        operation.due_time = strategy.due(operation.maintenance_window, now)
                        operation.update_time = now
                        continue
                    await self._launch(uow, wr, orchestration, operation, now, logs)
                    if operation.state is OrchestrationState.FAILED:
                        await self._check_budget(uow, orchestration, logs)
                # Saved before the next query, which must not find these due again.
                await uow.orchestrations.save_operations(due)
                if orchestration.rollout.halt is not None:
                    return budget
            # Stages move on as far as they can in one pass: a stage whose operations all
            # ended at once (nothing to do) lets the next one open now. Stage states only
            # move forward, so this ends.
            if not moved or budget == 0:
                return budget

    async def _advance_stages(
        self, uow: UnitOfWork, orchestration: Orchestration, now: datetime, logs: list[str]
    ) -> bool:
        """Apply the stage rules; whether any stage changed state."""
        strategy = orchestration.parameters.strategy
        if not strategy.stages:
            return False
        before = [s.state for s in orchestration.rollout.stages]
        moves = rollouts.advance_stages(strategy, orchestration, now)
        logs.extend(moves.logs)
        for index in moves.opened:
            await uow.orchestrations.open_stage(orchestration.id, index, now)
        return before != [s.state for s in orchestration.rollout.stages]

    async def _check_budget(
        self, uow: UnitOfWork, orchestration: Orchestration, logs: list[str]
    ) -> None:
        """Halt when the failed operations exceed a failure budget: nothing more starts."""
        rollout = orchestration.rollout
        if rollout.halt is not None or orchestration.state is OrchestrationState.CANCELING:
            return
        exceeded = rollouts.exceeded_budget(orchestration.parameters.strategy, orchestration)
        if exceeded is None:
            return
        failed = await uow.orchestrations.in_state(
            orchestration.id, OrchestrationState.FAILED, limit=MAX_ERROR_ENTRIES
        )
        rollout.halt = Halt(exceeded, tuple(op.id for op in failed))
        rollouts.halt_stages(orchestration)
        logs.append(
            f"Failure budget exceeded ({exceeded}); no further operation starts, running ones "
            f"finish. Failed: {', '.join(op.id for op in failed)}"
        )

    async def _launch(
        self,
        uow: UnitOfWork,
        wr: WorkRequest,
        orchestration: Orchestration,
        operation: OrchestrationOperation,
        now: datetime,
        logs: list[str],
    ) -> None:
        """Start the operation's upgrade workflow, or conclude it at once when it cannot
        (or need not) start."""
        before = operation.state
        target = operation.target_version
        cluster = await uow.inventory.get_cluster(operation.runtime_id, for_update=True)
        if cluster is not None and cluster.compartment_id != orchestration.compartment_id:
            cluster = None  # never reach outside the orchestration's compartment
        if operation.dry_run:
            state, description = dry_run_outcome(
                cluster, operation.runtime_id, self.versions, target
            )
            operation.end(state, description, now)
        elif cluster is None or cluster.lifecycle_state is ClusterState.DELETED:
            operation.end(
                OrchestrationState.FAILED, f"Cluster {operation.runtime_id} no longer exists", now
            )
        elif runs_version(cluster, target):
            operation.end(
                OrchestrationState.SUCCEEDED,
                f"The cluster already runs {target}; nothing to do",
                now,
            )
        else:
            try:
                # A savepoint: a refused start leaves nothing behind but the failed operation.
                async with uow.session.begin_nested():
                    workflow, upgrade = await start_upgrade(
                        uow,
                        self.versions,
                        cluster,
                        target,
                        labels={
                            ORCHESTRATION_LABEL: orchestration.id,
                            OPERATION_LABEL: operation.id,
                        },
                        annotations={
                            ORCHESTRATION_LABEL: orchestration.id,
                            OPERATION_LABEL: operation.id,
                        },
                        parent_work_request_id=wr.id,
                        related=[orchestration_resource(orchestration.id, ActionType.RELATED)],
                        # On behalf of whoever created the orchestration.
                        created_by=orchestration.created_by or None,
                        reason=f"orchestration {orchestration.id}",
                    )
            except ResourceBusy as busy:
                if not orchestration.parameters.strategy.controlled:
                    # KEB's behaviour: the operation fails; a retry runs it again.
                    operation.end(
                        OrchestrationState.FAILED, f"Not started: {busy.explanation}", now
                    )
                else:
                    # A rollout under control waits for the cluster instead.
                    operation.blocked_by = busy.blocking_work_request_id
                    operation.due_time = now + self.settings.busy_retry
                    operation.description = (
                        f"Waiting: work request {busy.blocking_work_request_id} holds the cluster"
                    )
                    operation.update_time = now
            except DomainError as refused:
                operation.end(OrchestrationState.FAILED, f"Not started: {refused.explanation}", now)
            else:
                operation.start(now, cluster.kubernetes_version, workflow.id, upgrade.id)
        orchestration.move(operation.stage, before, operation.state)
        logs.append(
            f"Operation {operation.id} on cluster {operation.runtime_id}: {operation.description}"
        )

    async def _conclude_run(
        self,
        uow: UnitOfWork,
        orchestration: Orchestration,
        run: FinishedRun,
        now: datetime,
        logs: list[str],
    ) -> None:
        operation = run.operation
        before = operation.state
        if run.status is WorkRequestStatus.SUCCEEDED:
            operation.end(
                OrchestrationState.SUCCEEDED,
                f"Upgraded from {operation.cluster_version} to {operation.target_version}",
                now,
            )
        elif run.status is WorkRequestStatus.CANCELED:
            operation.end(
                OrchestrationState.FAILED,
                f"Upgrade workflow {operation.upgrade_workflow_id} was canceled outside the "
                "orchestration",
                now,
            )
        else:
            errors = await uow.work_requests.all_errors(operation.work_request_id)
            reason = "; ".join(f"{e.code}: {e.message}" for e in errors) or "no error recorded"
            operation.end(OrchestrationState.FAILED, f"Upgrade failed: {reason}", now)
        if operation.start_time is not None:
            orchestration.rollout.finished_seconds += (now - operation.start_time).total_seconds()
            orchestration.rollout.finished_runs += 1
        orchestration.move(operation.stage, before, operation.state)
        logs.append(
            f"Operation {operation.id} on cluster {operation.runtime_id}: {operation.description}"
        )

    async def _decide(
        self, uow: UnitOfWork, orchestration: Orchestration, now: datetime, seen: Pass
    ) -> datetime | None:
        """Finish, or park until the next operation is due (or a running one wakes us);
        when the next waiting operation may start, if one waits."""
        counts = orchestration.counts
        halted = orchestration.rollout.halt is not None
        if not counts.running and (not counts.waiting or halted):
            if orchestration.state is OrchestrationState.CANCELING:
                seen.finish = WorkRequestStatus.CANCELED
            elif counts.of(OrchestrationState.FAILED):
                seen.finish = WorkRequestStatus.FAILED
            else:
                seen.finish = WorkRequestStatus.SUCCEEDED
            return None
        starting = not halted and orchestration.state is not OrchestrationState.PAUSED
        next_due = (
            await uow.orchestrations.next_due(orchestration.id)
            if counts.waiting and starting
            else None
        )
        strategy = orchestration.parameters.strategy
        wake: list[datetime] = []
        if counts.running:
            wake.append(now + self.settings.poll)
        workers = strategy.workers_of(rollouts.current_stage(orchestration))
        if counts.running < workers and next_due is not None:
            wake.append(next_due)
        soak = rollouts.soak_ends(orchestration) if starting else None
        if soak is not None:
            wake.append(soak)
        pause_at = rollouts.pause_at_ahead(orchestration)
        if pause_at is not None and orchestration.state is not OrchestrationState.PAUSED:
            wake.append(pause_at)
        seen.wake_at = min(wake) if wake else now + self.settings.poll
        return next_due

    def _changed_since(self, orchestration_id: str, seen: Pass) -> Recheck:
        async def changed(uow: UnitOfWork, wr: WorkRequest) -> bool:
            current = await uow.orchestrations.get(orchestration_id)
            return (
                current is None
                or current.version != seen.version
                or wr.status is not seen.wr_status
                or bool(await uow.orchestrations.finished_runs(orchestration_id, limit=1))
            )

        return changed

    # the end

    async def _finish(
        self, ctx: OperationContext, orchestration_id: str, status: WorkRequestStatus
    ) -> None:
        final = FINAL_STATE[status]
        async with ctx.store.read() as uow:
            orchestration = await uow.orchestrations.get(orchestration_id)
            assert orchestration is not None, orchestration_id
            failed = await uow.orchestrations.in_state(
                orchestration_id, OrchestrationState.FAILED, limit=MAX_ERROR_ENTRIES
            )
        orchestration.state = final
        errors = [
            ("OperationFailed", f"Operation {op.id} on cluster {op.runtime_id}: {op.description}")
            for op in failed
        ]
        halt = orchestration.rollout.halt
        if status is WorkRequestStatus.FAILED and halt is not None:
            errors.insert(
                0,
                (
                    FAILURE_BUDGET_EXCEEDED,
                    f"Failure budget exceeded: {halt.budget}. The operations that used it up: "
                    f"{', '.join(halt.operation_ids)}. Nothing more was started; "
                    "RetryOrchestration continues from here",
                ),
            )
        failures = orchestration.counts.of(OrchestrationState.FAILED)
        if status is WorkRequestStatus.FAILED and failures > len(errors):
            errors.append(
                (
                    "OperationsFailed",
                    f"{failures} operations failed in all; list them with "
                    "ListOrchestrationOperations",
                )
            )

        async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
            current = await uow.orchestrations.get(orchestration_id, for_update=True)
            assert current is not None, orchestration_id
            halted = current.rollout.halt is not None
            if current.counts.running or (current.counts.waiting and not halted):
                raise NotDone(orchestration_id)  # a retry came in; keep running
            current.state = final
            current.rollout.pause = None
            if halted and final is OrchestrationState.FAILED:
                current.rollout.failure_reason = FAILURE_BUDGET_EXCEEDED
            rollouts.finish_stages(current, ctx.clock.now())
            current.description = current.progress()
            current.touch(ctx.clock.now())
            await uow.orchestrations.save(current)
            action = (
                ActionType.UPDATED if final is OrchestrationState.SUCCEEDED else ActionType.RELATED
            )
            wr.set_resource(orchestration_resource(orchestration_id, action))

        await ctx.finish(status, apply=apply, log=orchestration.progress(), errors=errors)
