"""Helpers for the rollout tests (issue 16): stages, budgets, pause, wait reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clusterops.v1 import orchestrations_pb2 as orc_pb
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from tests.conftest import Stubs
from tests.orchestration_helpers import operations, parameters

WAIT = orc_pb.OperationWaitReason
STAGE = orc_pb.StageState


def stage(
    name: str,
    *,
    count: int = 0,
    percent: int = 0,
    workers: int = 0,
    soak: timedelta | None = None,
    approval: bool = False,
    max_failures: int | None = None,
) -> orc_pb.Stage:
    message = orc_pb.Stage(
        name=name, count=count, percent=percent, workers=workers, requires_approval=approval
    )
    if soak is not None:
        duration = Duration()
        duration.FromTimedelta(soak)
        message.soak.CopyFrom(duration)
    if max_failures is not None:
        message.failure_budget.CopyFrom(orc_pb.FailureBudget(max_failures=max_failures))
    return message


def stamp(moment: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(moment)
    return message


def when(message: Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


async def create_rollout(
    stubs: Stubs,
    *,
    stages: list[orc_pb.Stage] | None = None,
    max_failures: int | None = None,
    pause_at: datetime | None = None,
    reason: str = "",
    **options: object,
) -> orc_pb.CreateOrchestrationResponse:
    params = parameters(**options)  # type: ignore[arg-type]
    params.strategy.stages.extend(stages or [])
    if max_failures is not None:
        params.strategy.failure_budget.CopyFrom(orc_pb.FailureBudget(max_failures=max_failures))
    if pause_at is not None:
        params.strategy.pause_at.CopyFrom(stamp(pause_at))
    return await stubs.orchestrations.CreateOrchestration(
        orc_pb.CreateOrchestrationRequest(compartment_id="dev", parameters=params, reason=reason)
    )


async def waits(stubs: Stubs, orchestration_id: str) -> dict[str, tuple[int, datetime | None]]:
    """Each waiting operation's (wait reason, until) by runtime id."""
    found: dict[str, tuple[int, datetime | None]] = {}
    for op in await operations(stubs, orchestration_id):
        if op.state in (
            orc_pb.ORCHESTRATION_STATE_PENDING,
            orc_pb.ORCHESTRATION_STATE_RETRYING,
        ):
            until = when(op.wait_until) if op.HasField("wait_until") else None
            found[op.runtime_id] = (op.wait_reason, until)
        else:
            assert op.wait_reason == WAIT.OPERATION_WAIT_REASON_UNSPECIFIED, op
    return found


def stage_states(orchestration: orc_pb.Orchestration) -> dict[str, int]:
    return {s.name: s.state for s in orchestration.stages}


async def pause(stubs: Stubs, orchestration_id: str, reason: str = "") -> orc_pb.Orchestration:
    reply = await stubs.orchestrations.PauseOrchestration(
        orc_pb.PauseOrchestrationRequest(orchestration_id=orchestration_id, reason=reason)
    )
    return reply.orchestration


async def resume(stubs: Stubs, orchestration_id: str, reason: str = "") -> orc_pb.Orchestration:
    reply = await stubs.orchestrations.ResumeOrchestration(
        orc_pb.ResumeOrchestrationRequest(orchestration_id=orchestration_id, reason=reason)
    )
    return reply.orchestration
