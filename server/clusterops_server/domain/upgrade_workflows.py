"""Cluster upgrade workflows, the way Huawei CCE shows them: a small DAG of tasks.

PreCheck -> Snapshot -> Cluster -> PostCheck is the critical path a successful upgrade
takes; Rollback runs when Cluster or PostCheck fails. Once the Cluster task has started
the workflow has passed its point of no return and can no longer be canceled.

A workflow created without a snapshot keeps a bare Snapshot point (CCE shows it with
only its task type) and runs PreCheck -> Cluster -> PostCheck; with nothing to restore
it has no Rollback, so a failed Cluster or PostCheck leaves it Pending as it failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from clusterops_server.domain.errors import FailedPrecondition, ResourceBusy
from clusterops_server.domain.inventory import etag_of
from clusterops_server.domain.listing import fingerprint
from clusterops_server.domain.versions import KubernetesVersion, VersionCatalogue


class UpgradePhase(StrEnum):
    INIT = "Init"
    RUNNING = "Running"
    # A task failed; the workflow stopped (after rolling back when needed) and waits for
    # a decision: cancel it to close it, or start a new upgrade of the cluster.
    PENDING = "Pending"
    SUCCESS = "Success"
    CANCEL = "Cancel"

    @property
    def is_final(self) -> bool:
        return self in {UpgradePhase.PENDING, UpgradePhase.SUCCESS, UpgradePhase.CANCEL}


class UpgradeTaskType(StrEnum):
    PRE_CHECK = "PreCheck"
    SNAPSHOT = "Snapshot"
    CLUSTER = "Cluster"
    POST_CHECK = "PostCheck"
    ROLLBACK = "Rollback"


class UpgradeTaskStatus(StrEnum):
    INIT = "Init"
    QUEUING = "Queuing"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    # Not part of this workflow (a snapshot the caller chose not to take): on the wire
    # the point is bare, its task type only.
    SKIPPED = "Skipped"


CRITICAL_PATH = (
    UpgradeTaskType.PRE_CHECK,
    UpgradeTaskType.SNAPSHOT,
    UpgradeTaskType.CLUSTER,
    UpgradeTaskType.POST_CHECK,
)
# The tasks whose failure leaves the cluster half-changed, so Rollback must run.
ROLLBACK_AFTER = frozenset({UpgradeTaskType.CLUSTER, UpgradeTaskType.POST_CHECK})
POINT_OF_NO_RETURN = UpgradeTaskType.CLUSTER


@dataclass(frozen=True)
class UpgradeSettings:
    # How long a PreCheck result stays valid; an expired one runs again before Cluster.
    pre_check_validity: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class TaskLine:
    """An edge of the DAG; `critical` when a successful upgrade walks it."""

    start: UpgradeTaskType
    end: UpgradeTaskType
    critical: bool


LINES = (
    *(TaskLine(a, b, True) for a, b in pairwise(CRITICAL_PATH)),
    TaskLine(UpgradeTaskType.CLUSTER, UpgradeTaskType.ROLLBACK, False),
    TaskLine(UpgradeTaskType.POST_CHECK, UpgradeTaskType.ROLLBACK, False),
)


@dataclass
class TaskPoint:
    """The status of one task (a point of the DAG)."""

    task_type: UpgradeTaskType
    status: UpgradeTaskStatus = UpgradeTaskStatus.INIT
    task_id: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    # Only PreCheck results expire.
    expire_time: datetime | None = None
    message: str = ""


def fresh_points(*, skip_snapshot: bool = False) -> list[TaskPoint]:
    if skip_snapshot:
        return [
            TaskPoint(t, UpgradeTaskStatus.SKIPPED)
            if t is UpgradeTaskType.SNAPSHOT
            else TaskPoint(t)
            for t in CRITICAL_PATH
        ]
    return [TaskPoint(t) for t in (*CRITICAL_PATH, UpgradeTaskType.ROLLBACK)]


@dataclass
class UpgradeWorkflow:
    id: str
    name: str
    compartment_id: str
    cluster_id: str
    cluster_version: str
    target_version: str
    work_request_id: str
    phase: UpgradePhase
    points: list[TaskPoint]
    create_time: datetime
    update_time: datetime
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    version: int = 1

    @property
    def etag(self) -> str:
        return etag_of(self.id, self.version)

    @property
    def critical_path(self) -> tuple[UpgradeTaskType, ...]:
        """The tasks a successful upgrade runs, in order (skipped ones left out)."""
        skipped = {p.task_type for p in self.points if p.status is UpgradeTaskStatus.SKIPPED}
        return tuple(t for t in CRITICAL_PATH if t not in skipped)

    @property
    def rolls_back(self) -> bool:
        """Whether a failed Cluster or PostCheck is rolled back (only with a snapshot)."""
        return any(p.task_type is UpgradeTaskType.ROLLBACK for p in self.points)

    @property
    def lines(self) -> tuple[TaskLine, ...]:
        if self.critical_path == CRITICAL_PATH and self.rolls_back:
            return LINES
        path = tuple(TaskLine(a, b, True) for a, b in pairwise(self.critical_path))
        if not self.rolls_back:
            return path
        return (*path, *(line for line in LINES if line.end is UpgradeTaskType.ROLLBACK))

    def touch(self, now: datetime) -> None:
        self.update_time = now
        self.version += 1

    def point(self, task_type: UpgradeTaskType) -> TaskPoint:
        return next(p for p in self.points if p.task_type is task_type)

    # transitions; the caller stamps `touch` once per committed change

    def queue(self, task_type: UpgradeTaskType, task_id: str) -> TaskPoint:
        """Schedule a task afresh: a new task id, nothing run yet."""
        point = self.point(task_type)
        point.status = UpgradeTaskStatus.QUEUING
        point.task_id = task_id
        point.start_time = point.end_time = point.expire_time = None
        point.message = ""
        return point

    def start(self, task_type: UpgradeTaskType, now: datetime) -> TaskPoint:
        point = self.point(task_type)
        # A task re-run after a crash keeps the time it first started.
        if point.status is not UpgradeTaskStatus.RUNNING or point.start_time is None:
            point.start_time = now
        point.status = UpgradeTaskStatus.RUNNING
        if self.phase is UpgradePhase.INIT:
            self.phase = UpgradePhase.RUNNING
        return point

    def succeed(
        self, task_type: UpgradeTaskType, now: datetime, *, valid_for: timedelta | None = None
    ) -> TaskPoint:
        point = self.point(task_type)
        point.status = UpgradeTaskStatus.SUCCESS
        point.end_time = now
        point.expire_time = now + valid_for if valid_for is not None else None
        return point

    def fail(self, task_type: UpgradeTaskType, now: datetime, message: str) -> TaskPoint:
        point = self.point(task_type)
        point.status = UpgradeTaskStatus.FAILED
        point.end_time = now
        point.message = message
        return point

    def next_on_critical_path(self, task_type: UpgradeTaskType) -> UpgradeTaskType | None:
        path = self.critical_path
        if task_type not in path:
            return None
        index = path.index(task_type) + 1
        return path[index] if index < len(path) else None

    def pre_check_expired(self, now: datetime) -> bool:
        """True when Cluster has not started and the PreCheck result is no longer valid."""
        pre_check = self.point(UpgradeTaskType.PRE_CHECK)
        return (
            not self.passed_point_of_no_return
            and pre_check.status is UpgradeTaskStatus.SUCCESS
            and pre_check.expire_time is not None
            and pre_check.expire_time <= now
        )

    @property
    def passed_point_of_no_return(self) -> bool:
        return self.point(POINT_OF_NO_RETURN).status not in {
            UpgradeTaskStatus.INIT,
            UpgradeTaskStatus.QUEUING,
        }

    def require_cancelable(self) -> None:
        """Init and Running workflows stop before their point of no return; a Pending one
        has stopped already, and canceling it closes it (whatever task failed)."""
        if self.phase in (UpgradePhase.CANCEL, UpgradePhase.PENDING):
            return
        if self.phase.is_final:
            raise FailedPrecondition(
                f"upgrade workflow {self.id} is {self.phase.value}; only a workflow that is "
                "Init, Running or Pending can be canceled",
                violation_type="UPGRADE_WORKFLOW_PHASE",
                subject=self.id,
                metadata={"phase": self.phase.value},
            )
        if self.passed_point_of_no_return:
            cluster = self.point(POINT_OF_NO_RETURN)
            raise FailedPrecondition(
                f"upgrade workflow {self.id} can no longer be canceled: its Cluster task "
                f"{cluster.task_id} has started changing the control plane (the point of no "
                "return); wait for it to finish, and a failure rolls back on its own",
                violation_type="POINT_OF_NO_RETURN",
                subject=self.id,
                metadata={"phase": self.phase.value, "cluster_task_id": cluster.task_id},
            )

    def abandon(self, now: datetime, message: str) -> None:
        """The engine gave up on the workflow: a task that was running or queued failed,
        and the workflow waits for a decision (Pending), unless it was being canceled."""
        for point in self.points:
            if point.status in (UpgradeTaskStatus.RUNNING, UpgradeTaskStatus.QUEUING):
                self.fail(point.task_type, now, message)
        if self.phase is not UpgradePhase.CANCEL:
            self.phase = UpgradePhase.PENDING

    def cancel(self) -> None:
        """Stop here: tasks that were only queued go back to Init."""
        self.phase = UpgradePhase.CANCEL
        for point in self.points:
            if point.status is UpgradeTaskStatus.QUEUING:
                point.status = UpgradeTaskStatus.INIT
                point.task_id = ""


class UpgradeInProgress(ResourceBusy):
    """The cluster already has a running upgrade workflow (ABORTED, naming it)."""

    def __init__(self, cluster_id: str, workflow_id: str, blocking_work_request_id: str) -> None:
        super().__init__(cluster_id, blocking_work_request_id)
        self.message = (
            f"cluster {cluster_id} is already being upgraded by workflow {workflow_id} "
            f"(work request {blocking_work_request_id}); wait for it to finish or cancel it, "
            "then retry"
        )
        self.args = (self.message,)
        self.metadata["upgrade_workflow_id"] = workflow_id


def check_upgrade_path(
    catalogue: VersionCatalogue, cluster_id: str, current: str, target: str
) -> KubernetesVersion:
    """The catalogue's rules, plus one: a cluster on a version the catalogue has dropped,
    too old to reach any supported version in one step, cannot be upgraded here."""
    catalogue.require_supported("target_version", target)
    parsed = KubernetesVersion.parse(current)
    oldest = catalogue.versions[0]
    if parsed is not None and parsed < oldest and not catalogue.upgrade_targets(parsed):
        raise FailedPrecondition(
            f"cluster {cluster_id} runs {parsed}, which is no longer supported and is more "
            f"than {catalogue.max_minor_step} minor versions behind the oldest supported "
            f"version ({oldest}); it cannot be upgraded in place: migrate its workloads to "
            f"a new cluster on {oldest} or later",
            violation_type="UNSUPPORTED_CURRENT_VERSION",
            subject=cluster_id,
            metadata={"current_version": str(parsed), "oldest_supported": str(oldest)},
        )
    return catalogue.check_upgrade(cluster_id, current, target)


@dataclass(frozen=True)
class UpgradeWorkflowQuery:
    compartment_id: str = ""
    cluster_id: str = ""
    phases: frozenset[UpgradePhase] = frozenset()
    # Compartments the caller may see; None means all.
    visible_compartments: frozenset[str] | None = None

    def fingerprint(self) -> str:
        return fingerprint(
            "upgrade_workflows", self.compartment_id, self.cluster_id, sorted(self.phases)
        )
