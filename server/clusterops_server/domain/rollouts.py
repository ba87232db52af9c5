"""The rules of a rollout under control, kept pure (no store, no clock of their own).

Stages (waves) split an orchestration's targets and open one after the other, each after
the previous one ended and soaked and, if it has a gate, after approval. Failure budgets
halt a rollout that breaks too much. Every pending operation can say what it waits for.
The scheduler (engine/operations/orchestrations.py) applies these rules; reads apply the
same ones, so what a caller sees is what the scheduler will do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.inventory import Cluster
from clusterops_server.domain.orchestrations import (
    OPENED_STAGE_STATES,
    WAITING_STATES,
    Orchestration,
    OrchestrationOperation,
    OrchestrationState,
    PauseInfo,
    ScheduleType,
    StageProgress,
    StageSpec,
    StageState,
    Strategy,
)
from clusterops_server.domain.targets import resolve_targets


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- stage selection ---------------------------------------------------------------------


def assign_stages(stages: Sequence[StageSpec], clusters: Sequence[Cluster]) -> list[int]:
    """The stage index of each cluster (in the order given).

    Each stage takes from the clusters no earlier stage took, in runtime id order: those
    its target lists select, its first `count`, its `percent` (rounded up), or all of them.
    Raises FailedPrecondition when clusters are left over: a rollout that silently skipped
    targets would report success for clusters it never touched.
    """
    if not stages:
        return [0] * len(clusters)
    remaining = sorted(clusters, key=lambda c: c.id)
    stage_of: dict[str, int] = {}
    for index, stage in enumerate(stages):
        if stage.targets is not None:
            chosen = resolve_targets(stage.targets, remaining)
        elif stage.count:
            chosen = remaining[: stage.count]
        elif stage.percent:
            chosen = remaining[: math.ceil(len(remaining) * stage.percent / 100)]
        else:
            chosen = list(remaining)
        taken = {c.id for c in chosen}
        for cluster_id in taken:
            stage_of[cluster_id] = index
        remaining = [c for c in remaining if c.id not in taken]
    if remaining:
        shown = ", ".join(c.id for c in remaining[:3]) + (", ..." if len(remaining) > 3 else "")
        raise FailedPrecondition(
            f"{len(remaining)} target(s) fall into no stage ({shown}); end the stages with one "
            "that takes the rest (no targets, count or percent)",
            violation_type="UNSTAGED_TARGETS",
            subject="parameters.strategy.stages",
            metadata={"unstaged": str(len(remaining))},
        )
    return [stage_of[c.id] for c in clusters]


def initial_stages(stages: Sequence[StageSpec]) -> list[StageProgress]:
    return [StageProgress() for _ in stages]


# --- stages opening and ending -----------------------------------------------------------


@dataclass
class StageMoves:
    """What advancing the stages did: the stages it opened and what to log."""

    opened: list[int] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


def advance_stages(strategy: Strategy, orchestration: Orchestration, now: datetime) -> StageMoves:
    """Move the stages along as far as `now` and the counts allow: a running stage whose
    operations have all ended soaks (or completes); a soak that is over completes; the
    next stage opens unless its gate waits for approval."""
    moves = StageMoves()
    progress = orchestration.rollout.stages
    last = len(strategy.stages) - 1
    for index, spec in enumerate(strategy.stages):
        stage = progress[index]
        if stage.state in (StageState.HALTED, StageState.CANCELED):
            break
        if stage.state in (StageState.PENDING, StageState.WAITING_FOR_APPROVAL):
            if spec.requires_approval and not stage.approved_by:
                if stage.state is StageState.PENDING:
                    stage.state = StageState.WAITING_FOR_APPROVAL
                    moves.logs.append(
                        f'Stage "{spec.name}" waits for approval (ApproveOrchestrationStage)'
                    )
                break
            stage.state = StageState.RUNNING
            stage.start_time = now
            moves.opened.append(index)
            moves.logs.append(
                f'Stage "{spec.name}" started: {stage.counts.total} operation(s), '
                f"{strategy.workers_of(index)} worker(s)"
            )
        if stage.state is StageState.RUNNING:
            if stage.counts.waiting or stage.counts.running:
                break
            stage.end_time = now
            if spec.soak and index < last:
                stage.state = StageState.SOAKING
                stage.soak_until = now + spec.soak
                moves.logs.append(
                    f'Stage "{spec.name}" ended; soaking until {stamp(stage.soak_until)}'
                )
            else:
                stage.state = StageState.COMPLETED
                moves.logs.append(f'Stage "{spec.name}" completed')
        if stage.state is StageState.SOAKING:
            assert stage.soak_until is not None
            if now < stage.soak_until:
                break
            stage.state = StageState.COMPLETED
            moves.logs.append(f'Stage "{spec.name}" completed its soak')
    return moves


def soak_ends(orchestration: Orchestration) -> datetime | None:
    """When the soak under way ends, if one is."""
    ends = [s.soak_until for s in orchestration.rollout.stages if s.state is StageState.SOAKING]
    return min((e for e in ends if e is not None), default=None)


def current_stage(orchestration: Orchestration) -> int:
    """The stage whose workers pace the operations: the last one opened (0 if none)."""
    opened = [
        i for i, s in enumerate(orchestration.rollout.stages) if s.state in OPENED_STAGE_STATES
    ]
    return opened[-1] if opened else 0


def halt_stages(orchestration: Orchestration) -> None:
    for stage in orchestration.rollout.stages:
        if stage.state is StageState.RUNNING:
            stage.state = StageState.HALTED


def reopen_halted(orchestration: Orchestration) -> None:
    for stage in orchestration.rollout.stages:
        if stage.state is StageState.HALTED:
            stage.state = StageState.RUNNING


def cancel_stages(orchestration: Orchestration) -> None:
    for stage in orchestration.rollout.stages:
        if stage.state is not StageState.COMPLETED:
            stage.state = StageState.CANCELED


def finish_stages(orchestration: Orchestration, now: datetime) -> None:
    """At the end of the run: a soak nothing waits for is over."""
    for stage in orchestration.rollout.stages:
        if stage.state is StageState.SOAKING:
            stage.state = StageState.COMPLETED
        elif stage.state is StageState.RUNNING and not (
            stage.counts.waiting or stage.counts.running
        ):
            stage.state = StageState.COMPLETED
            stage.end_time = stage.end_time or now


# --- pause and resume --------------------------------------------------------------------

PAUSABLE_STATES = (
    OrchestrationState.PENDING,
    OrchestrationState.IN_PROGRESS,
    OrchestrationState.RETRYING,
)


def pause(orchestration: Orchestration, by: str, reason: str, now: datetime) -> None:
    """PAUSED, remembering the state a resume returns to."""
    assert orchestration.state in PAUSABLE_STATES, orchestration.state
    orchestration.rollout.pause = PauseInfo(by, reason, now, orchestration.state)
    orchestration.state = OrchestrationState.PAUSED


def resume(orchestration: Orchestration) -> None:
    pause_info = orchestration.rollout.pause
    assert orchestration.state is OrchestrationState.PAUSED
    assert pause_info is not None
    orchestration.state = pause_info.resume_state
    orchestration.rollout.pause = None


def pause_at_due(orchestration: Orchestration, now: datetime) -> bool:
    """Whether `strategy.pause_at` pauses the orchestration now: once, and only a run that
    is going (a paused one has its pause already; a user's resume after it is final)."""
    pause_at = orchestration.parameters.strategy.pause_at
    rollout = orchestration.rollout
    if pause_at is None or rollout.pause_at_done or now < pause_at:
        return False
    rollout.pause_at_done = True
    return orchestration.state in PAUSABLE_STATES


def pause_at_ahead(orchestration: Orchestration) -> datetime | None:
    pause_at = orchestration.parameters.strategy.pause_at
    return None if orchestration.rollout.pause_at_done else pause_at


# --- failure budgets ---------------------------------------------------------------------


def exceeded_budget(strategy: Strategy, orchestration: Orchestration) -> str | None:
    """The budget the failed operations exceed, described for a person; None if none."""
    counts = orchestration.counts
    budget = strategy.failure_budget
    if budget is not None:
        failed = counts.of(OrchestrationState.FAILED)
        if failed > budget.allowed(counts.total):
            return f"the orchestration's budget, {budget.describe(counts.total)}: {failed} failed"
    for spec, stage in zip(strategy.stages, orchestration.rollout.stages, strict=True):
        if spec.failure_budget is None:
            continue
        failed = stage.counts.of(OrchestrationState.FAILED)
        total = stage.counts.total
        if failed > spec.failure_budget.allowed(total):
            return (
                f'stage "{spec.name}"\'s budget, {spec.failure_budget.describe(total)}: '
                f"{failed} failed"
            )
    return None


# --- why an operation waits --------------------------------------------------------------


class WaitReason(StrEnum):
    WORKER = "worker"
    MAINTENANCE_WINDOW = "maintenance window"
    SCHEDULE = "schedule"
    STAGE = "stage"
    SOAK = "soak"
    APPROVAL = "approval"
    PAUSE = "pause"
    CLUSTER_BUSY = "cluster busy"
    FAILURE_BUDGET = "failure budget"


@dataclass(frozen=True)
class Wait:
    reason: WaitReason
    until: datetime | None
    detail: str


def wait_of(
    orchestration: Orchestration, operation: OrchestrationOperation, now: datetime
) -> Wait | None:
    """What a pending (or retrying) operation waits for, and until when if that is known;
    None for an operation that does not wait (started, ended, or about to be canceled)."""
    if operation.state not in WAITING_STATES:
        return None
    state = orchestration.state
    rollout = orchestration.rollout
    if state is OrchestrationState.CANCELING:
        return None
    if state is OrchestrationState.PAUSED and rollout.pause is not None:
        why = f": {rollout.pause.reason}" if rollout.pause.reason else ""
        return Wait(
            WaitReason.PAUSE,
            None,
            f"the orchestration was paused by {rollout.pause.paused_by}{why}; "
            "ResumeOrchestration continues",
        )
    if rollout.halt is not None:
        return Wait(
            WaitReason.FAILURE_BUDGET,
            None,
            f"failure budget exceeded ({rollout.halt.budget}); RetryOrchestration continues",
        )
    if state.is_terminal:
        return None
    strategy = orchestration.parameters.strategy
    if (
        strategy.schedule is ScheduleType.TIME
        and strategy.schedule_time is not None
        and now < strategy.schedule_time
    ):
        return Wait(
            WaitReason.SCHEDULE,
            strategy.schedule_time,
            f"the orchestration is scheduled to start at {stamp(strategy.schedule_time)}",
        )
    if strategy.stages:
        gate = _stage_wait(strategy, orchestration, operation.stage)
        if gate is not None:
            return gate
    if operation.blocked_by:
        return Wait(
            WaitReason.CLUSTER_BUSY,
            operation.due_time,
            f"work request {operation.blocked_by} holds cluster {operation.runtime_id}",
        )
    window = operation.maintenance_window
    if strategy.maintenance_window and window is not None and not operation.dry_run:
        opening = window.next_opening(now)
        if operation.due_time is not None and operation.due_time > opening:
            opening = operation.due_time
        if opening > now:
            return Wait(
                WaitReason.MAINTENANCE_WINDOW,
                opening,
                f"the cluster's maintenance window opens at {stamp(opening)}",
            )
    if operation.due_time is not None and operation.due_time > now:
        return Wait(WaitReason.SCHEDULE, operation.due_time, f"due at {stamp(operation.due_time)}")
    workers = strategy.workers_of(current_stage(orchestration))
    return Wait(
        WaitReason.WORKER,
        None,
        f"a free worker ({orchestration.counts.running} of {workers} busy)",
    )


def _stage_wait(strategy: Strategy, orchestration: Orchestration, index: int) -> Wait | None:
    stages = orchestration.rollout.stages
    if stages[index].state in OPENED_STAGE_STATES:
        return None
    spec = strategy.stages[index]
    blocker = next((j for j in range(index) if stages[j].state is not StageState.COMPLETED), None)
    if blocker is None:
        if spec.requires_approval and not stages[index].approved_by:
            return Wait(
                WaitReason.APPROVAL,
                None,
                f'stage "{spec.name}" waits for approval (ApproveOrchestrationStage)',
            )
        return Wait(WaitReason.STAGE, None, f'stage "{spec.name}" opens at the next pass')
    previous = stages[blocker]
    name = strategy.stages[blocker].name
    if previous.state is StageState.SOAKING and blocker == index - 1:
        assert previous.soak_until is not None
        return Wait(
            WaitReason.SOAK,
            previous.soak_until,
            f'stage "{name}" is soaking until {stamp(previous.soak_until)}',
        )
    return Wait(
        WaitReason.STAGE,
        None,
        f'stage "{name}" ({previous.state.value}) must end before stage "{spec.name}" starts',
    )


# --- when it all ends ----------------------------------------------------------------------


def estimate_end(
    orchestration: Orchestration, now: datetime, latest_due: datetime | None
) -> datetime | None:
    """When the rollout should end: the mean duration of its finished operations times the
    rounds of workers left, stage by stage with their soaks (an approval counted as given
    now), and no earlier than the last maintenance window ahead plus one duration. None
    when nothing has finished yet, when it has ended, or while it is paused or halted."""
    rollout = orchestration.rollout
    if (
        orchestration.state.is_terminal
        or orchestration.state is OrchestrationState.PAUSED
        or rollout.halt is not None
        or rollout.finished_runs == 0
    ):
        return None
    mean = timedelta(seconds=rollout.finished_seconds / rollout.finished_runs)
    strategy = orchestration.parameters.strategy
    counts = orchestration.counts
    if not strategy.stages:
        end = now + math.ceil((counts.waiting + counts.running) / strategy.workers) * mean
    else:
        end = now
        last = len(strategy.stages) - 1
        for index, (spec, stage) in enumerate(zip(strategy.stages, rollout.stages, strict=True)):
            if stage.state is StageState.SOAKING and stage.soak_until is not None:
                end = max(end, stage.soak_until)
                continue
            left = stage.counts.waiting + stage.counts.running
            if stage.state in (StageState.COMPLETED, StageState.CANCELED) and not left:
                continue
            end += math.ceil(left / strategy.workers_of(index)) * mean
            if spec.soak and index < last and stage.state is not StageState.COMPLETED:
                end += spec.soak
    if latest_due is not None and latest_due + mean > end:
        end = latest_due + mean
    return end
