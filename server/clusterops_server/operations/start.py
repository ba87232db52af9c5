"""The one way an operation starts: its work request, with its typed params, the locks on
the resources it works on, and its first log line, added in the caller's unit of work.

Services (a caller's request) and the engine (an orchestration starting upgrades, the
reconciler opening a check) both start operations through `start_operation`. The caller
commits; the commit wakes the engine by itself (store/uow.py), so nobody has to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from clusterops_server.auth.caller import current_caller
from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.inventory import Cluster, ClusterState
from clusterops_server.domain.work_requests import (
    LogEntry,
    OperationType,
    WorkRequest,
    WorkRequestResource,
    WorkRequestStatus,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import OperationParams, encode_params
from clusterops_server.store.uow import UnitOfWork


def _new_work_request_id() -> str:
    return new_id(IdKind.WORK_REQUEST)


@dataclass(frozen=True)
class OperationStart:
    """Everything an operation's work request starts with. `id` is chosen up front for
    callers that must name the work request before adding it (what it supersedes)."""

    compartment_id: str
    operation_type: OperationType
    params: OperationParams
    resources: Sequence[WorkRequestResource]
    # Resource ids this operation holds until it ends: one operation per resource.
    lock: Sequence[str] = ()
    log: str = ""
    # When the engine may first run it (default: at once).
    run_after: datetime | None = None
    id: str = field(default_factory=_new_work_request_id)
    # Who asked (None: the caller of the current RPC, or "system" outside one), and why.
    created_by: str | None = None
    reason: str = ""


async def start_operation(uow: UnitOfWork, start: OperationStart) -> WorkRequest:
    """Add the ACCEPTED work request with its params, locks and first log line.

    Raises ResourceBusy, naming the holder, when a resource in `lock` has a work request
    that has not ended (the database decides); nothing is written then.
    """
    now = uow.clock.now()
    wr = WorkRequest(
        id=start.id,
        compartment_id=start.compartment_id,
        operation_type=start.operation_type,
        status=WorkRequestStatus.ACCEPTED,
        time_accepted=now,
        resources=list(start.resources),
        created_by=current_caller().name if start.created_by is None else start.created_by,
        reason=start.reason,
    )
    await uow.work_requests.add(
        wr,
        params=encode_params(start.operation_type, start.params),
        lock=start.lock,
        run_after=start.run_after,
        logs=[LogEntry(start.log, now)] if start.log else [],
    )
    return wr


def require_active_cluster(cluster: Cluster, action: str) -> None:
    """FAILED_PRECONDITION unless the cluster is ACTIVE: most operations start only then."""
    if cluster.lifecycle_state is not ClusterState.ACTIVE:
        raise FailedPrecondition(
            f"cluster {cluster.id} is {cluster.lifecycle_state.value}; {action} needs it ACTIVE",
            violation_type="CLUSTER_STATE",
            subject=cluster.id,
            metadata={"lifecycle_state": cluster.lifecycle_state.value},
        )
