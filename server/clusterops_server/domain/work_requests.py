"""Work requests: the record of every asynchronous operation, and its state machine."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.filtering import Expression, FilterValue, evaluate
from clusterops_server.domain.listing import OrderBy, fingerprint


class WorkRequestStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    IN_PROGRESS = "IN_PROGRESS"
    FAILED = "FAILED"
    SUCCEEDED = "SUCCEEDED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {WorkRequestStatus.FAILED, WorkRequestStatus.SUCCEEDED, WorkRequestStatus.CANCELED}
)
ACTIVE_STATUSES = frozenset(set(WorkRequestStatus) - TERMINAL_STATUSES)

_ALLOWED: dict[WorkRequestStatus, frozenset[WorkRequestStatus]] = {
    WorkRequestStatus.ACCEPTED: frozenset(
        {WorkRequestStatus.IN_PROGRESS, WorkRequestStatus.CANCELING, WorkRequestStatus.FAILED}
    ),
    WorkRequestStatus.IN_PROGRESS: frozenset(
        {WorkRequestStatus.SUCCEEDED, WorkRequestStatus.FAILED, WorkRequestStatus.CANCELING}
    ),
    # Undoing can itself fail; it never turns into success.
    WorkRequestStatus.CANCELING: frozenset({WorkRequestStatus.CANCELED, WorkRequestStatus.FAILED}),
}


class OperationType(StrEnum):
    CLUSTER_CREATE = "CLUSTER_CREATE"
    CLUSTER_DELETE = "CLUSTER_DELETE"
    NODEPOOL_CREATE = "NODEPOOL_CREATE"
    NODEPOOL_DELETE = "NODEPOOL_DELETE"
    CLUSTER_UPGRADE = "CLUSTER_UPGRADE"
    ORCHESTRATION_RUN = "ORCHESTRATION_RUN"
    ENABLE_ADDON = "ENABLE_ADDON"
    UPDATE_ADDON = "UPDATE_ADDON"
    DISABLE_ADDON = "DISABLE_ADDON"
    RECONCILE_ADDON = "RECONCILE_ADDON"


class ActionType(StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    IN_PROGRESS = "IN_PROGRESS"
    RELATED = "RELATED"
    FAILED = "FAILED"


class EntityType(StrEnum):
    CLUSTER = "cluster"
    NODE_POOL = "nodepool"
    NODE = "node"
    UPGRADE_WORKFLOW = "upgradeworkflow"
    ORCHESTRATION = "orchestration"
    ADDON = "addon"


@dataclass(frozen=True)
class WorkRequestResource:
    entity_type: EntityType
    action_type: ActionType
    identifier: str
    entity_uri: str


@dataclass(frozen=True)
class LogEntry:
    message: str
    timestamp: datetime


@dataclass(frozen=True)
class ErrorEntry:
    code: str
    message: str
    timestamp: datetime


class IllegalTransition(FailedPrecondition):
    def __init__(self, work_request_id: str, current: WorkRequestStatus, to: WorkRequestStatus):
        super().__init__(
            f"work request {work_request_id} is {current.value} and cannot become {to.value}",
            violation_type="WORK_REQUEST_STATE",
            subject=work_request_id,
            metadata={"status": current.value},
        )


@dataclass(frozen=True)
class StoredState:
    """What the store holds of a work request's changing fields, as last read or written:
    a change's event records it, so a filter can tell whether the work request matched
    before the change (and a watcher learns that it left the filter)."""

    status: WorkRequestStatus
    percent_complete: float
    resource_count: int


@dataclass
class WorkRequest:
    id: str
    compartment_id: str
    operation_type: OperationType
    status: WorkRequestStatus
    time_accepted: datetime
    percent_complete: float = 0.0
    time_started: datetime | None = None
    time_finished: datetime | None = None
    resources: list[WorkRequestResource] = field(default_factory=list)
    revision: int = 0
    # The newest entry of its error list.
    last_error: ErrorEntry | None = None
    # The principal whose request created it ("system" for the service's own work), and
    # the reason given with the request.
    created_by: str = ""
    reason: str = ""
    # Set by the store; None for a work request not yet stored.
    stored: StoredState | None = field(default=None, compare=False, repr=False)

    def current_state(self) -> StoredState:
        return StoredState(self.status, self.percent_complete, len(self.resources))

    def can_become(self, to: WorkRequestStatus) -> bool:
        return to in _ALLOWED.get(self.status, frozenset())

    def transition(self, to: WorkRequestStatus, now: datetime) -> None:
        """Move to `to`, stamping start and finish times; refuse illegal moves."""
        if not self.can_become(to):
            raise IllegalTransition(self.id, self.status, to)
        if to is WorkRequestStatus.IN_PROGRESS and self.time_started is None:
            self.time_started = now
        if to.is_terminal:
            self.time_finished = now
            if self.time_started is None:
                self.time_started = now
            if to is WorkRequestStatus.SUCCEEDED:
                self.percent_complete = 100.0
        self.status = to

    def set_resource(self, resource: WorkRequestResource) -> WorkRequestResource:
        """Add a resource or replace the one with the same entity type and identifier."""
        for i, existing in enumerate(self.resources):
            if (existing.entity_type, existing.identifier) == (
                resource.entity_type,
                resource.identifier,
            ):
                self.resources[i] = resource
                return resource
        self.resources.append(resource)
        return resource

    def resource_action(
        self, entity_type: EntityType, identifier: str, action: ActionType
    ) -> WorkRequestResource:
        """Change the action type of a listed resource and return it."""
        for existing in self.resources:
            if (existing.entity_type, existing.identifier) == (entity_type, identifier):
                return self.set_resource(replace(existing, action_type=action))
        raise KeyError(f"{entity_type} {identifier} is not a resource of {self.id}")


@dataclass(frozen=True)
class WorkRequestVisibility:
    """Which work requests a caller may see: whole compartments, plus work requests of
    certain operation types in further compartments (None: in every compartment)."""

    compartments: frozenset[str]
    by_operation: tuple[tuple[frozenset[OperationType], frozenset[str] | None], ...]

    def allows(self, operation: OperationType, compartment: str) -> bool:
        return compartment in self.compartments or any(
            operation in operations and (compartments is None or compartment in compartments)
            for operations, compartments in self.by_operation
        )


@dataclass(frozen=True)
class WorkRequestEvent:
    """One committed change of a work request, as watchers see it."""

    revision: int
    work_request: WorkRequest
    # Resources this change added or altered (every resource in a snapshot).
    resources: tuple[WorkRequestResource, ...]
    logs: tuple[LogEntry, ...]
    errors: tuple[ErrorEntry, ...]
    snapshot: bool = False
    # The work request's state before this change (None: the change created it).
    previous: StoredState | None = None

    @property
    def is_terminal(self) -> bool:
        return self.work_request.status.is_terminal


@dataclass(frozen=True)
class WorkRequestSetEvent:
    """One event of a filtered watch (WatchWorkRequests): a work request's snapshot or
    change, or, with no `event`, the marker that the snapshot is complete at `revision`."""

    revision: int
    event: WorkRequestEvent | None
    # The change took the work request out of the filter.
    left_filter: bool = False
    # False when the caller may list the work request but not read it: no logs or errors.
    readable: bool = True


@dataclass(frozen=True)
class WorkRequestQuery:
    compartment_id: str = ""
    resource_id: str = ""
    resource_type: EntityType | None = None
    statuses: frozenset[WorkRequestStatus] = frozenset()
    filter: Expression | None = None
    # Only these work requests (none: any).
    ids: frozenset[str] = frozenset()
    # Only work requests this principal created.
    created_by: str = ""
    order: OrderBy = field(default_factory=lambda: OrderBy("time_accepted", True))
    # What the caller may see; None means everything.
    visibility: WorkRequestVisibility | None = None

    def matches(self, wr: WorkRequest, state: StoredState | None = None) -> bool:
        """Whether `wr` (or `wr` as it was in `state`) is in the query's set; agrees with
        the store's SQL for the same query. `wr.resources` must be all of its resources."""
        if state is None:
            state = wr.current_state()
        if self.visibility is not None and not self.visibility.allows(
            wr.operation_type, wr.compartment_id
        ):
            return False
        if self.compartment_id and wr.compartment_id != self.compartment_id:
            return False
        if self.ids and wr.id not in self.ids:
            return False
        if self.created_by and wr.created_by != self.created_by:
            return False
        if self.statuses and state.status not in self.statuses:
            return False
        if (self.resource_id or self.resource_type) and not any(
            (not self.resource_id or r.identifier == self.resource_id)
            and (self.resource_type is None or r.entity_type is self.resource_type)
            for r in wr.resources[: state.resource_count]
        ):
            return False
        if self.filter is None:
            return True

        def value_of(name: str) -> FilterValue:
            match name:
                case "operation_type":
                    return wr.operation_type.value
                case "status":
                    return state.status.value
                case "compartment_id":
                    return wr.compartment_id
                case "time_accepted":
                    return wr.time_accepted
                case "percent_complete":
                    return state.percent_complete
                case "created_by":
                    return wr.created_by
            raise KeyError(name)

        return evaluate(self.filter, value_of)

    def fingerprint(self) -> str:
        """Identifies the query across processes (set order varies with hash seeds)."""
        return fingerprint(
            "work_requests",
            self.compartment_id,
            self.resource_id,
            self.resource_type,
            sorted(self.statuses),
            self.filter,
            sorted(self.ids),
            self.order,
            self.created_by,
        )
