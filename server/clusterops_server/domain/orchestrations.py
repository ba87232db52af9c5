"""Orchestrations, the way Kyma Environment Broker runs them: targets select clusters,
a strategy paces one operation (an upgrade workflow) per cluster.

States and their spelling are KEB's ("in progress"). An orchestration keeps the
counts of its operations by state, changed in the same transaction as the
operations, so reading them (and scheduling by them) never scans the operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from clusterops_server.domain.errors import DomainError, FailedPrecondition
from clusterops_server.domain.inventory import Cluster, ClusterState, MaintenanceWindow, etag_of
from clusterops_server.domain.listing import fingerprint
from clusterops_server.domain.targets import TargetSpec
from clusterops_server.domain.upgrade_workflows import check_upgrade_path
from clusterops_server.domain.versions import KubernetesVersion, VersionCatalogue
from clusterops_server.domain.work_requests import ActionType, EntityType, WorkRequestResource

if TYPE_CHECKING:
    from clusterops_server.domain.rollouts import Wait

MAX_WORKERS = 1000
# Labels and annotations an orchestration puts on the upgrade workflows it starts.
ORCHESTRATION_LABEL = "clusterops.dev/orchestration-id"
OPERATION_LABEL = "clusterops.dev/operation-id"


class OrchestrationState(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in progress"
    CANCELING = "canceling"
    CANCELED = "canceled"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Not one of KEB's states: KEB clients see it as "in progress" (the run goes on).
    PAUSED = "paused"

    @property
    def is_terminal(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset(
    {OrchestrationState.SUCCEEDED, OrchestrationState.FAILED, OrchestrationState.CANCELED}
)
WAITING_STATES = frozenset({OrchestrationState.PENDING, OrchestrationState.RETRYING})


class StrategyType(StrEnum):
    PARALLEL = "parallel"


class ScheduleType(StrEnum):
    IMMEDIATE = "immediate"
    NOW = "now"
    TIME = "time"


def orchestration_uri(orchestration_id: str) -> str:
    return f"/orchestrations/{orchestration_id}"


def orchestration_resource(orchestration_id: str, action: ActionType) -> WorkRequestResource:
    """The orchestration as a resource of a work request (its run, or an upgrade it started)."""
    return WorkRequestResource(
        EntityType.ORCHESTRATION, action, orchestration_id, orchestration_uri(orchestration_id)
    )


# --- strategy and parameters -------------------------------------------------------------


@dataclass(frozen=True)
class FailureBudget:
    """The most failed operations allowed: a count, or a percentage of the operations the
    budget covers (rounded down) when `percent` is set."""

    max_failures: int = 0
    percent: int = 0

    def allowed(self, total: int) -> int:
        return total * self.percent // 100 if self.percent else self.max_failures

    def describe(self, total: int) -> str:
        allowed = self.allowed(total)
        plural = "" if allowed == 1 else "s"
        if self.percent:
            return f"{self.percent} % of {total}, at most {allowed} failed operation{plural}"
        return f"at most {allowed} failed operation{plural}"


@dataclass(frozen=True)
class StageSpec:
    """One stage (wave): which of the targets left it takes (a target list, a count or a
    percentage; none: all of them), its workers, soak and approval gate."""

    name: str
    targets: TargetSpec | None = None
    count: int = 0
    percent: int = 0
    # 0: the strategy's workers.
    workers: int = 0
    soak: timedelta = timedelta(0)
    requires_approval: bool = False
    failure_budget: FailureBudget | None = None


@dataclass(frozen=True)
class Strategy:
    type: StrategyType = StrategyType.PARALLEL
    schedule: ScheduleType = ScheduleType.IMMEDIATE
    schedule_time: datetime | None = None
    maintenance_window: bool = False
    workers: int = 1
    stages: tuple[StageSpec, ...] = ()
    failure_budget: FailureBudget | None = None
    pause_at: datetime | None = None

    @property
    def controlled(self) -> bool:
        """Uses a rollout control beyond KEB's (stages, a failure budget, pause_at): such an
        orchestration waits for a busy cluster instead of failing its operation."""
        return bool(self.stages) or self.failure_budget is not None or self.pause_at is not None

    def workers_of(self, stage: int) -> int:
        if self.stages and self.stages[stage].workers:
            return self.stages[stage].workers
        return self.workers

    def start_time(self, now: datetime) -> datetime:
        """When operations may begin: the schedule time, or now if that has passed."""
        if self.schedule is ScheduleType.TIME and self.schedule_time is not None:
            return max(now, self.schedule_time)
        return now

    def due(self, cluster_window: MaintenanceWindow | None, earliest: datetime) -> datetime:
        """When a cluster's operation may start, no earlier than `earliest`."""
        if self.maintenance_window and cluster_window is not None:
            return cluster_window.next_opening(earliest)
        return earliest

    def may_start(self, cluster_window: MaintenanceWindow | None, now: datetime) -> bool:
        return (
            not self.maintenance_window
            or cluster_window is None
            or cluster_window.contains(now.time())
        )


@dataclass(frozen=True)
class OrchestrationParameters:
    targets: TargetSpec
    strategy: Strategy
    kubernetes_version: str
    dry_run: bool = False


# --- operations ------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationAttempt:
    """An earlier attempt of an operation, kept when it is retried."""

    attempt: int
    state: OrchestrationState
    description: str
    upgrade_workflow_id: str
    work_request_id: str
    start_time: datetime | None
    end_time: datetime | None


@dataclass
class OrchestrationOperation:
    """One cluster's share of an orchestration; retries run it again as a new attempt."""

    id: str
    orchestration_id: str
    compartment_id: str
    runtime_id: str
    global_account_id: str
    sub_account_id: str
    region: str
    plan_name: str
    shoot_name: str
    dry_run: bool
    state: OrchestrationState
    description: str
    maintenance_window: MaintenanceWindow | None
    # The cluster's version when the operation was recorded (then when it last started).
    cluster_version: str
    target_version: str
    create_time: datetime
    update_time: datetime
    # When a waiting operation may start; None once it has started or ended.
    due_time: datetime | None
    upgrade_workflow_id: str = ""
    work_request_id: str = ""
    attempt: int = 1
    start_time: datetime | None = None
    end_time: datetime | None = None
    previous_attempts: list[OperationAttempt] = field(default_factory=list)
    # The id of `plan_name` in the plan catalogue (KEB's servicePlanID).
    plan_id: str = ""
    # Its stage's index in strategy.stages (0 without stages).
    stage: int = 0
    # The work request that held the cluster when it last tried to start.
    blocked_by: str = ""
    # What it waits for and its stage's name, set when read (never stored).
    wait: Wait | None = field(default=None, compare=False)
    stage_name: str = field(default="", compare=False)

    @classmethod
    def for_cluster(
        cls,
        operation_id: str,
        orchestration_id: str,
        cluster: Cluster,
        parameters: OrchestrationParameters,
        now: datetime,
        earliest: datetime,
        stage: int = 0,
    ) -> OrchestrationOperation:
        """Due at `earliest` (or its window's next opening); an operation of a stage after
        the first is due only when its stage opens."""
        due = parameters.strategy.due(cluster.maintenance_window, earliest) if stage == 0 else None
        return cls(
            id=operation_id,
            orchestration_id=orchestration_id,
            compartment_id=cluster.compartment_id,
            runtime_id=cluster.id,
            global_account_id=cluster.global_account_id,
            sub_account_id=cluster.sub_account_id,
            region=cluster.region,
            plan_name=cluster.plan,
            plan_id=cluster.plan_id,
            shoot_name=cluster.shoot_name,
            dry_run=parameters.dry_run,
            state=OrchestrationState.PENDING,
            description="Pending",
            maintenance_window=cluster.maintenance_window,
            cluster_version=cluster.kubernetes_version,
            target_version=parameters.kubernetes_version,
            create_time=now,
            update_time=now,
            due_time=due,
            stage=stage,
        )

    def start(
        self, now: datetime, cluster_version: str, workflow_id: str, work_request_id: str
    ) -> None:
        self.state = OrchestrationState.IN_PROGRESS
        self.cluster_version = cluster_version
        self.upgrade_workflow_id = workflow_id
        self.work_request_id = work_request_id
        self.description = (
            f"Upgrading from {cluster_version} to {self.target_version} "
            f"(workflow {workflow_id}, work request {work_request_id})"
        )
        self.start_time = now
        self.due_time = None
        self.blocked_by = ""
        self.update_time = now

    def end(self, state: OrchestrationState, description: str, now: datetime) -> None:
        assert state.is_terminal, state
        self.state = state
        self.description = description
        if self.start_time is None:
            self.start_time = now
        self.end_time = now
        self.due_time = None
        self.blocked_by = ""
        self.update_time = now

    def retry(self, now: datetime, due: datetime | None) -> None:
        """Keep this attempt in the history and wait to run again."""
        self.previous_attempts.append(
            OperationAttempt(
                attempt=self.attempt,
                state=self.state,
                description=self.description,
                upgrade_workflow_id=self.upgrade_workflow_id,
                work_request_id=self.work_request_id,
                start_time=self.start_time,
                end_time=self.end_time,
            )
        )
        self.attempt += 1
        self.state = OrchestrationState.RETRYING
        self.description = f"Waiting to run again (attempt {self.attempt})"
        self.upgrade_workflow_id = ""
        self.work_request_id = ""
        self.start_time = None
        self.end_time = None
        self.due_time = due
        self.update_time = now


def runs_version(cluster: Cluster, version: str) -> bool:
    current = KubernetesVersion.parse(cluster.kubernetes_version)
    return current is not None and current == KubernetesVersion.parse(version)


def dry_run_outcome(
    cluster: Cluster | None, runtime_id: str, versions: VersionCatalogue, target: str
) -> tuple[OrchestrationState, str]:
    """What a real run would do to the cluster, judged without touching it."""
    if cluster is None or cluster.lifecycle_state is ClusterState.DELETED:
        return OrchestrationState.FAILED, f"Dry run: cluster {runtime_id} no longer exists"
    if runs_version(cluster, target):
        return OrchestrationState.SUCCEEDED, f"Dry run: the cluster already runs {target}"
    try:
        check_upgrade_path(versions, cluster.id, cluster.kubernetes_version, target)
    except DomainError as refused:
        return (
            OrchestrationState.FAILED,
            f"Dry run: the upgrade would be refused: {refused.explanation}",
        )
    if cluster.lifecycle_state is not ClusterState.ACTIVE:
        return (
            OrchestrationState.FAILED,
            f"Dry run: the upgrade would be refused: cluster {cluster.id} is "
            f"{cluster.lifecycle_state.value} and upgrading needs it ACTIVE",
        )
    return (
        OrchestrationState.SUCCEEDED,
        f"Dry run: would upgrade from {cluster.kubernetes_version} to {target}; nothing changed",
    )


# --- the orchestration -----------------------------------------------------------------


@dataclass
class OperationCounts:
    by_state: dict[OrchestrationState, int] = field(default_factory=dict)

    def of(self, state: OrchestrationState) -> int:
        return self.by_state.get(state, 0)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def waiting(self) -> int:
        return sum(self.of(s) for s in WAITING_STATES)

    @property
    def running(self) -> int:
        return self.of(OrchestrationState.IN_PROGRESS)

    @property
    def finished(self) -> int:
        return sum(self.of(s) for s in FINISHED_STATES)

    def move(
        self, before: OrchestrationState | None, after: OrchestrationState, n: int = 1
    ) -> None:
        if before is not None:
            self.by_state[before] = self.of(before) - n
        self.by_state[after] = self.of(after) + n


@dataclass
class Orchestration:
    id: str
    compartment_id: str
    state: OrchestrationState
    description: str
    parameters: OrchestrationParameters
    work_request_id: str
    create_time: datetime
    update_time: datetime
    counts: OperationCounts = field(default_factory=OperationCounts)
    version: int = 1
    # The principal that created it.
    created_by: str = ""
    # What the rollout controls decided so far (stages, pause, halt); stored.
    rollout: Rollout = field(default_factory=lambda: Rollout())
    # Computed when read (GetOrchestration); never stored.
    estimated_end: datetime | None = None

    def move(
        self, stage: int, before: OrchestrationState | None, after: OrchestrationState, n: int = 1
    ) -> None:
        """Count operations of `stage` moving from `before` to `after`, in the whole and in
        their stage."""
        self.counts.move(before, after, n)
        if self.rollout.stages:
            self.rollout.stages[stage].counts.move(before, after, n)

    @property
    def etag(self) -> str:
        return etag_of(self.id, self.version)

    @property
    def workers(self) -> int:
        return self.parameters.strategy.workers

    def touch(self, now: datetime) -> None:
        self.update_time = now
        self.version += 1

    def progress(self, next_start: datetime | None = None) -> str:
        """A description a person can read, from the counts (and, while operations wait for
        a time or a window, when the next one starts)."""
        c = self.counts
        total = c.total
        succeeded = c.of(OrchestrationState.SUCCEEDED)
        failed = c.of(OrchestrationState.FAILED)
        canceled = c.of(OrchestrationState.CANCELED)
        done = [f"{succeeded} succeeded"] + ([f"{failed} failed"] if failed else [])
        if self.state is OrchestrationState.SUCCEEDED:
            return f"{succeeded} of {_operations(total)} succeeded"
        halt = self.rollout.halt
        if self.state is OrchestrationState.FAILED:
            text = f"{failed} of {_operations(total)} failed; {succeeded} succeeded"
            if halt is not None:
                text = f"Failure budget exceeded ({halt.budget}): {text}"
                if c.waiting:
                    text += f"; {c.waiting} not started (RetryOrchestration continues)"
            return text
        if self.state is OrchestrationState.CANCELED:
            return (
                f"Canceled: {c.finished - canceled} of {_operations(total)} finished "
                f"({', '.join(done)}); {canceled} canceled before starting"
            )
        parts = [f"{c.finished} of {_operations(total)} finished ({', '.join(done)})"]
        parts.append(f"{c.running} in progress")
        if c.waiting:
            parts.append(f"{c.waiting} pending")
        text = ", ".join(parts)
        if self.state is OrchestrationState.CANCELING:
            return f"Canceling: {text}; running operations finish"
        pause = self.rollout.pause
        if self.state is OrchestrationState.PAUSED and pause is not None:
            why = f": {pause.reason}" if pause.reason else ""
            return f"Paused by {pause.paused_by}{why}; {text}; running operations finish"
        if halt is not None:
            return f"Failure budget exceeded ({halt.budget}); {text}; running operations finish"
        if c.waiting and next_start is not None:
            text += f"; the next starts at {_stamp(next_start)}"
        return text

    def percent_complete(self) -> float:
        total = self.counts.total
        return round(100.0 * self.counts.finished / total, 1) if total else 100.0

    def require_state(
        self, allowed: Sequence[OrchestrationState], action: str, violation: str
    ) -> None:
        if self.state not in allowed:
            names = [f'"{s.value}"' for s in allowed]
            states = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            raise FailedPrecondition(
                f'orchestration {self.id} is "{self.state.value}"; {action} needs it to be '
                f"{states}",
                violation_type=violation,
                subject=self.id,
                metadata={"state": self.state.value},
            )


def scheduled_description(count: int, start: datetime | None) -> str:
    text = f"Scheduled {_operations(count)}"
    if start is not None:
        text += f" to start at {_stamp(start)}"
    return text


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _operations(n: int) -> str:
    return f"{n} operation{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class OrchestrationSettings:
    # A finishing upgrade wakes its orchestration; this is the safety net if none does.
    poll: timedelta = timedelta(minutes=5)
    # Operations started (or concluded) per transaction, so no transaction grows with the fleet.
    batch: int = 100
    # A rollout under control tries a busy cluster again after this long.
    busy_retry: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class OrchestrationQuery:
    compartment_id: str = ""
    states: frozenset[OrchestrationState] = frozenset()
    # Compartments the caller may see; None means all.
    visible_compartments: frozenset[str] | None = None

    def fingerprint(self) -> str:
        return fingerprint("orchestrations", self.compartment_id, sorted(self.states))


# --- the rollout's progress (stages, pause, halt) ----------------------------------------


class StageState(StrEnum):
    PENDING = "pending"
    WAITING_FOR_APPROVAL = "waiting for approval"
    RUNNING = "running"
    SOAKING = "soaking"
    COMPLETED = "completed"
    HALTED = "halted"
    CANCELED = "canceled"


# A stage in one of these has opened: its operations may start.
OPENED_STAGE_STATES = frozenset(
    {StageState.RUNNING, StageState.SOAKING, StageState.COMPLETED, StageState.HALTED}
)


@dataclass
class StageProgress:
    state: StageState = StageState.PENDING
    counts: OperationCounts = field(default_factory=OperationCounts)
    start_time: datetime | None = None
    end_time: datetime | None = None
    soak_until: datetime | None = None
    approved_by: str = ""
    approve_time: datetime | None = None


@dataclass(frozen=True)
class PauseInfo:
    paused_by: str
    reason: str
    pause_time: datetime
    # The state a resume returns to.
    resume_state: OrchestrationState


@dataclass(frozen=True)
class Halt:
    """A failure budget was exceeded: nothing more starts until a retry."""

    budget: str
    operation_ids: tuple[str, ...]


FAILURE_BUDGET_EXCEEDED = "FAILURE_BUDGET_EXCEEDED"


@dataclass
class Rollout:
    stages: list[StageProgress] = field(default_factory=list)
    pause: PauseInfo | None = None
    # strategy.pause_at has paused the orchestration once (it does not again).
    pause_at_done: bool = False
    halt: Halt | None = None
    # The orchestration ended FAILED for this reason (FAILURE_BUDGET_EXCEEDED).
    failure_reason: str = ""
    # Durations of the operations that ran to their end, for the estimate.
    finished_seconds: float = 0.0
    finished_runs: int = 0
