"""OrchestrationService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from clusterops.v1 import orchestrations_pb2 as pb
from clusterops.v1 import orchestrations_pb2_grpc as pb_grpc
from google.protobuf.duration_pb2 import Duration

from clusterops_server.domain.orchestrations import (
    MAX_WORKERS,
    FailureBudget,
    OperationAttempt,
    OperationCounts,
    Orchestration,
    OrchestrationOperation,
    OrchestrationParameters,
    OrchestrationQuery,
    OrchestrationState,
    ScheduleType,
    StageProgress,
    StageSpec,
    StageState,
    Strategy,
    StrategyType,
)
from clusterops_server.domain.patterns import MAX_PATTERN_LENGTH
from clusterops_server.domain.rollouts import WaitReason
from clusterops_server.domain.targets import RuntimeTarget, TargetSpec
from clusterops_server.ids import IdKind
from clusterops_server.services.orchestrations import (
    ApproveStageCommand,
    CancelOrchestrationCommand,
    CreateOrchestrationCommand,
    OperationDetail,
    OrchestrationService,
    PauseOrchestrationCommand,
    ResumeOrchestrationCommand,
    RetryOrchestrationCommand,
)
from clusterops_server.wire.convert import EnumMap, timestamp
from clusterops_server.wire.errors import servicer
from clusterops_server.wire.validate import Validator
from clusterops_server.wire.work_requests import work_request_to_proto

STATE = EnumMap(pb.OrchestrationState, OrchestrationState, "ORCHESTRATION_STATE_")
STRATEGY = EnumMap(pb.StrategyType, StrategyType, "STRATEGY_TYPE_")
SCHEDULE = EnumMap(pb.ScheduleType, ScheduleType, "SCHEDULE_TYPE_")
STAGE_STATE = EnumMap(pb.StageState, StageState, "STAGE_STATE_")
WAIT_REASON = EnumMap(pb.OperationWaitReason, WaitReason, "OPERATION_WAIT_REASON_")

MAX_TARGETS = 100
MAX_RETRY_IDS = 1000
MAX_STAGES = 20
MAX_STAGE_COUNT = 100_000
MAX_SOAK = timedelta(days=7)
MAX_REASON = 500
# KEB caps a page of operations at 100.
OPERATIONS_PAGE_SIZE = 100


# --- domain -> protobuf ------------------------------------------------------------------


def _target_to_proto(t: RuntimeTarget) -> pb.RuntimeTarget:
    return pb.RuntimeTarget(
        target=t.target,
        global_account=t.global_account,
        sub_account=t.sub_account,
        region=t.region,
        runtime_id=t.runtime_id,
        plan_name=t.plan_name,
        shoot_name=t.shoot_name,
    )


def _duration(value: timedelta) -> Duration:
    message = Duration()
    message.FromTimedelta(value)
    return message


def _budget_to_proto(b: FailureBudget | None) -> pb.FailureBudget | None:
    if b is None:
        return None
    return pb.FailureBudget(max_failures=b.max_failures, max_failure_percent=b.percent)


def _stage_to_proto(st: StageSpec) -> pb.Stage:
    message = pb.Stage(
        name=st.name,
        count=st.count,
        percent=st.percent,
        workers=st.workers,
        requires_approval=st.requires_approval,
        failure_budget=_budget_to_proto(st.failure_budget),
    )
    if st.targets is not None:
        message.targets.CopyFrom(
            pb.TargetSpec(
                include=[_target_to_proto(t) for t in st.targets.include],
                exclude=[_target_to_proto(t) for t in st.targets.exclude],
            )
        )
    if st.soak:
        message.soak.CopyFrom(_duration(st.soak))
    return message


def parameters_to_proto(p: OrchestrationParameters) -> pb.OrchestrationParameters:
    s = p.strategy
    return pb.OrchestrationParameters(
        targets=pb.TargetSpec(
            include=[_target_to_proto(t) for t in p.targets.include],
            exclude=[_target_to_proto(t) for t in p.targets.exclude],
        ),
        strategy=pb.StrategySpec(
            type=STRATEGY.to_proto(s.type),  # type: ignore[arg-type]
            schedule=SCHEDULE.to_proto(s.schedule),  # type: ignore[arg-type]
            schedule_time=timestamp(s.schedule_time),
            maintenance_window=s.maintenance_window,
            parallel=pb.ParallelStrategy(workers=s.workers),
            stages=[_stage_to_proto(st) for st in s.stages],
            failure_budget=_budget_to_proto(s.failure_budget),
            pause_at=timestamp(s.pause_at),
        ),
        dry_run=p.dry_run,
        kubernetes_version=p.kubernetes_version,
    )


def counts_to_proto(c: OperationCounts) -> pb.OperationCounts:
    return pb.OperationCounts(
        pending=c.of(OrchestrationState.PENDING),
        in_progress=c.of(OrchestrationState.IN_PROGRESS),
        succeeded=c.of(OrchestrationState.SUCCEEDED),
        failed=c.of(OrchestrationState.FAILED),
        canceled=c.of(OrchestrationState.CANCELED),
        retrying=c.of(OrchestrationState.RETRYING),
        total=c.total,
    )


def _stage_status_to_proto(spec: StageSpec, st: StageProgress) -> pb.StageStatus:
    return pb.StageStatus(
        name=spec.name,
        state=STAGE_STATE.to_proto(st.state),  # type: ignore[arg-type]
        operation_counts=counts_to_proto(st.counts),
        start_time=timestamp(st.start_time),
        end_time=timestamp(st.end_time),
        soak_end_time=timestamp(st.soak_until),
        approved_by=st.approved_by,
        approve_time=timestamp(st.approve_time),
    )


def orchestration_to_proto(o: Orchestration) -> pb.Orchestration:
    pause = o.rollout.pause
    return pb.Orchestration(
        id=o.id,
        compartment_id=o.compartment_id,
        state=STATE.to_proto(o.state),  # type: ignore[arg-type]
        description=o.description,
        parameters=parameters_to_proto(o.parameters),
        operation_counts=counts_to_proto(o.counts),
        work_request_id=o.work_request_id,
        create_time=timestamp(o.create_time),
        update_time=timestamp(o.update_time),
        etag=o.etag,
        stages=[
            _stage_status_to_proto(spec, st)
            for spec, st in zip(o.parameters.strategy.stages, o.rollout.stages, strict=True)
        ],
        estimated_end_time=timestamp(o.estimated_end),
        pause=(
            pb.PauseInfo(
                paused_by=pause.paused_by,
                reason=pause.reason,
                pause_time=timestamp(pause.pause_time),
            )
            if pause is not None
            else None
        ),
        failure_reason=o.rollout.failure_reason,
        created_by=o.created_by,
    )


def _attempt_to_proto(a: OperationAttempt) -> pb.OperationAttempt:
    return pb.OperationAttempt(
        attempt=a.attempt,
        state=STATE.to_proto(a.state),  # type: ignore[arg-type]
        description=a.description,
        upgrade_workflow_id=a.upgrade_workflow_id,
        work_request_id=a.work_request_id,
        start_time=timestamp(a.start_time),
        end_time=timestamp(a.end_time),
    )


def operation_to_proto(
    op: OrchestrationOperation, detail: OperationDetail | None = None
) -> pb.OrchestrationOperation:
    window = op.maintenance_window
    message = pb.OrchestrationOperation(
        id=op.id,
        orchestration_id=op.orchestration_id,
        runtime_id=op.runtime_id,
        global_account_id=op.global_account_id,
        sub_account_id=op.sub_account_id,
        region=op.region,
        plan_name=op.plan_name,
        plan_id=op.plan_id,
        shoot_name=op.shoot_name,
        dry_run=op.dry_run,
        state=STATE.to_proto(op.state),  # type: ignore[arg-type]
        description=op.description,
        maintenance_window_begin=window.start.strftime("%H:%M") if window else "",
        maintenance_window_end=window.end.strftime("%H:%M") if window else "",
        upgrade_workflow_id=op.upgrade_workflow_id,
        work_request_id=op.work_request_id,
        attempt=op.attempt,
        create_time=timestamp(op.create_time),
        update_time=timestamp(op.update_time),
        start_time=timestamp(op.start_time),
        end_time=timestamp(op.end_time),
        previous_attempts=[_attempt_to_proto(a) for a in op.previous_attempts],
        stage=op.stage_name,
    )
    if op.wait is not None:
        message.wait_reason = WAIT_REASON.to_proto(op.wait.reason)  # type: ignore[assignment]
        message.wait_detail = op.wait.detail
        if op.wait.until is not None:
            message.wait_until.FromDatetime(op.wait.until)
    if detail is not None:
        c = detail.cluster
        message.cluster_config.CopyFrom(
            pb.ClusterConfig(
                kubernetes_version=c.kubernetes_version,
                target_version=c.target_version,
                region=c.region,
                plan_name=c.plan_name,
                shoot_name=c.shoot_name,
                plan_id=c.plan_id,
            )
        )
        message.component_configs.extend(
            pb.ComponentConfig(
                component=cc.component, version=cc.version, configuration=cc.configuration
            )
            for cc in detail.components
        )
    return message


# --- protobuf -> domain, validated -------------------------------------------------------


def _targets(
    check: Validator, field: str, targets: Sequence[pb.RuntimeTarget], *, required: bool
) -> tuple[RuntimeTarget, ...]:
    if required and not targets:
        check.fail(field, 'at least one target is required, e.g. {"target": "all"}')
    if len(targets) > MAX_TARGETS:
        check.fail(field, f"at most {MAX_TARGETS} targets")
        return ()
    found: list[RuntimeTarget] = []
    for i, t in enumerate(targets):
        at = f"{field}[{i}]"
        target = RuntimeTarget(
            target=check.text(f"{at}.target", t.target, limit=16),
            global_account=check.text(
                f"{at}.global_account", t.global_account, limit=MAX_PATTERN_LENGTH
            ),
            sub_account=check.text(f"{at}.sub_account", t.sub_account, limit=MAX_PATTERN_LENGTH),
            region=check.text(f"{at}.region", t.region, limit=MAX_PATTERN_LENGTH),
            runtime_id=check.resource_id(
                f"{at}.runtime_id", t.runtime_id, IdKind.CLUSTER, required=False
            ),
            plan_name=check.text(f"{at}.plan_name", t.plan_name, limit=64),
            shoot_name=check.text(f"{at}.shoot_name", t.shoot_name, limit=63),
        )
        for name, description in target.problems():
            check.fail(f"{at}.{name}" if name else at, description)
        found.append(target)
    return tuple(found)


def _strategy(check: Validator, s: pb.StrategySpec) -> Strategy:
    field = "parameters.strategy"
    kind = check.enum(f"{field}.type", s.type, STRATEGY, required=False)
    schedule = check.enum(f"{field}.schedule", s.schedule, SCHEDULE, required=False)
    schedule = schedule or ScheduleType.IMMEDIATE
    schedule_time = None
    if s.HasField("schedule_time"):
        if schedule is ScheduleType.TIME:
            schedule_time = check.timestamp(f"{field}.schedule_time", s.schedule_time)
        else:
            check.fail(f"{field}.schedule_time", "is only for schedule SCHEDULE_TYPE_TIME")
    elif schedule is ScheduleType.TIME:
        check.fail(
            f"{field}.schedule_time", "is required with SCHEDULE_TYPE_TIME (an RFC 3339 time)"
        )
    # KEB's default: one worker.
    workers = s.parallel.workers or 1
    check.int_range(f"{field}.parallel.workers", workers, 1, MAX_WORKERS)
    return Strategy(
        type=kind or StrategyType.PARALLEL,
        schedule=schedule,
        schedule_time=schedule_time,
        maintenance_window=s.maintenance_window,
        workers=workers,
        stages=_stages(check, f"{field}.stages", s.stages),
        failure_budget=(
            _budget(check, f"{field}.failure_budget", s.failure_budget)
            if s.HasField("failure_budget")
            else None
        ),
        pause_at=(
            check.timestamp(f"{field}.pause_at", s.pause_at) if s.HasField("pause_at") else None
        ),
    )


def _budget(check: Validator, field: str, b: pb.FailureBudget) -> FailureBudget:
    check.int_range(f"{field}.max_failures", b.max_failures, 0, MAX_STAGE_COUNT)
    check.int_range(f"{field}.max_failure_percent", b.max_failure_percent, 0, 100)
    if b.max_failures and b.max_failure_percent:
        check.fail(field, "set max_failures or max_failure_percent, not both")
    return FailureBudget(max_failures=b.max_failures, percent=b.max_failure_percent)


def _soak(check: Validator, field: str, stage: pb.Stage) -> timedelta:
    if not stage.HasField("soak"):
        return timedelta(0)
    d = stage.soak
    if d.seconds < 0 or d.nanos < 0 or not 0 <= d.nanos <= 999_999_999:
        check.fail(field, "must not be negative")
        return timedelta(0)
    if d.seconds > MAX_SOAK.total_seconds():
        check.fail(field, f"must be at most {MAX_SOAK.days} days")
        return timedelta(0)
    return d.ToTimedelta()


def _stages(check: Validator, field: str, stages: Sequence[pb.Stage]) -> tuple[StageSpec, ...]:
    if len(stages) > MAX_STAGES:
        check.fail(field, f"at most {MAX_STAGES} stages")
        return ()
    found: list[StageSpec] = []
    seen: set[str] = set()
    for i, st in enumerate(stages):
        at = f"{field}[{i}]"
        name = check.name(f"{at}.name", st.name)
        if name and name in seen:
            check.fail(f"{at}.name", f'"{name}" names an earlier stage too; names are unique')
        seen.add(name)
        has_targets = st.HasField("targets")
        selectors = [
            n
            for n, used in (("targets", has_targets), ("count", st.count), ("percent", st.percent))
            if used
        ]
        if len(selectors) > 1:
            check.fail(
                at, f"set one selector of targets, count and percent, not {' and '.join(selectors)}"
            )
        check.int_range(f"{at}.count", st.count, 0, MAX_STAGE_COUNT)
        check.int_range(f"{at}.percent", st.percent, 0, 100)
        check.int_range(f"{at}.workers", st.workers, 0, MAX_WORKERS)
        targets = None
        if has_targets:
            targets = TargetSpec(
                include=_targets(check, f"{at}.targets.include", st.targets.include, required=True),
                exclude=_targets(
                    check, f"{at}.targets.exclude", st.targets.exclude, required=False
                ),
            )
        found.append(
            StageSpec(
                name=name,
                targets=targets,
                count=st.count,
                percent=st.percent,
                workers=st.workers,
                soak=_soak(check, f"{at}.soak", st),
                requires_approval=st.requires_approval,
                failure_budget=(
                    _budget(check, f"{at}.failure_budget", st.failure_budget)
                    if st.HasField("failure_budget")
                    else None
                ),
            )
        )
    return tuple(found)


def _reason(check: Validator, value: str) -> str:
    return check.text("reason", value, limit=MAX_REASON)


def _parameters(check: Validator, p: pb.OrchestrationParameters) -> OrchestrationParameters:
    return OrchestrationParameters(
        targets=TargetSpec(
            include=_targets(check, "parameters.targets.include", p.targets.include, required=True),
            exclude=_targets(
                check, "parameters.targets.exclude", p.targets.exclude, required=False
            ),
        ),
        strategy=_strategy(check, p.strategy),
        kubernetes_version=check.text(
            "parameters.kubernetes_version", p.kubernetes_version, required=True, limit=32
        ),
        dry_run=p.dry_run,
    )


def _orchestration_id(check: Validator, value: str) -> str:
    return check.resource_id("orchestration_id", value, IdKind.ORCHESTRATION)


@servicer
class OrchestrationServicer(pb_grpc.OrchestrationServiceServicer):
    def __init__(self, service: OrchestrationService) -> None:
        self.service = service

    async def CreateOrchestration(  # noqa: N802 (gRPC method names)
        self, request: pb.CreateOrchestrationRequest, context: Any
    ) -> pb.CreateOrchestrationResponse:
        check = Validator()
        command = CreateOrchestrationCommand(
            compartment_id=check.compartment(
                "compartment_id", request.compartment_id, required=True
            ),
            parameters=_parameters(check, request.parameters),
            request_id=check.request_id("request_id", request.request_id),
            reason=_reason(check, request.reason),
        )
        check.check()
        orchestration, wr = await self.service.create(command)
        return pb.CreateOrchestrationResponse(
            orchestration=orchestration_to_proto(orchestration),
            work_request=work_request_to_proto(wr),
        )

    async def GetOrchestration(  # noqa: N802
        self, request: pb.GetOrchestrationRequest, context: Any
    ) -> pb.GetOrchestrationResponse:
        check = Validator()
        _orchestration_id(check, request.orchestration_id)
        check.check()
        orchestration = await self.service.get(request.orchestration_id)
        return pb.GetOrchestrationResponse(orchestration=orchestration_to_proto(orchestration))

    async def ListOrchestrations(  # noqa: N802
        self, request: pb.ListOrchestrationsRequest, context: Any
    ) -> pb.ListOrchestrationsResponse:
        check = Validator()
        query = OrchestrationQuery(
            compartment_id=check.compartment(
                "compartment_id", request.compartment_id, required=False
            ),
            states=check.enums("states", request.states, STATE),
        )
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_orchestrations(query, page)
        return pb.ListOrchestrationsResponse(
            orchestrations=[orchestration_to_proto(o) for o in result.items],
            next_page_token=result.next_page_token,
        )

    async def ListOrchestrationOperations(  # noqa: N802
        self, request: pb.ListOrchestrationOperationsRequest, context: Any
    ) -> pb.ListOrchestrationOperationsResponse:
        check = Validator()
        orchestration_id = _orchestration_id(check, request.orchestration_id)
        states = check.enums("states", request.states, STATE)
        page = check.page(
            request.page_size,
            request.page_token,
            default=OPERATIONS_PAGE_SIZE,
            maximum=OPERATIONS_PAGE_SIZE,
        )
        stage = check.text("stage", request.stage, limit=63)
        check.check()
        result = await self.service.list_operations(orchestration_id, states, page, stage)
        return pb.ListOrchestrationOperationsResponse(
            data=[operation_to_proto(op) for op in result.items],
            count=len(result.items),
            total_count=result.total_count or 0,
            next_page_token=result.next_page_token,
        )

    async def GetOrchestrationOperation(  # noqa: N802
        self, request: pb.GetOrchestrationOperationRequest, context: Any
    ) -> pb.GetOrchestrationOperationResponse:
        check = Validator()
        orchestration_id = _orchestration_id(check, request.orchestration_id)
        operation_id = check.resource_id("operation_id", request.operation_id, IdKind.OPERATION)
        check.check()
        detail = await self.service.get_operation(orchestration_id, operation_id)
        return pb.GetOrchestrationOperationResponse(
            operation=operation_to_proto(detail.operation, detail)
        )

    async def CancelOrchestration(  # noqa: N802
        self, request: pb.CancelOrchestrationRequest, context: Any
    ) -> pb.CancelOrchestrationResponse:
        check = Validator()
        command = CancelOrchestrationCommand(
            orchestration_id=_orchestration_id(check, request.orchestration_id),
            etag=check.text("etag", request.etag, limit=64),
            request_id=check.request_id("request_id", request.request_id),
            reason=_reason(check, request.reason),
        )
        check.check()
        orchestration = await self.service.cancel(command)
        return pb.CancelOrchestrationResponse(orchestration=orchestration_to_proto(orchestration))

    async def RetryOrchestration(  # noqa: N802
        self, request: pb.RetryOrchestrationRequest, context: Any
    ) -> pb.RetryOrchestrationResponse:
        check = Validator()
        if len(request.operation_ids) > MAX_RETRY_IDS:
            check.fail("operation_ids", f"at most {MAX_RETRY_IDS} operation ids")
        command = RetryOrchestrationCommand(
            orchestration_id=_orchestration_id(check, request.orchestration_id),
            operation_ids=tuple(
                check.resource_id(f"operation_ids[{i}]", value, IdKind.OPERATION)
                for i, value in enumerate(request.operation_ids[:MAX_RETRY_IDS])
            ),
            etag=check.text("etag", request.etag, limit=64),
            request_id=check.request_id("request_id", request.request_id),
            reason=_reason(check, request.reason),
        )
        check.check()
        orchestration, retried = await self.service.retry(command)
        return pb.RetryOrchestrationResponse(
            orchestration=orchestration_to_proto(orchestration), retried_operation_ids=retried
        )

    async def PauseOrchestration(  # noqa: N802
        self, request: pb.PauseOrchestrationRequest, context: Any
    ) -> pb.PauseOrchestrationResponse:
        check = Validator()
        command = PauseOrchestrationCommand(
            orchestration_id=_orchestration_id(check, request.orchestration_id),
            reason=_reason(check, request.reason),
            etag=check.text("etag", request.etag, limit=64),
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        orchestration = await self.service.pause(command)
        return pb.PauseOrchestrationResponse(orchestration=orchestration_to_proto(orchestration))

    async def ResumeOrchestration(  # noqa: N802
        self, request: pb.ResumeOrchestrationRequest, context: Any
    ) -> pb.ResumeOrchestrationResponse:
        check = Validator()
        command = ResumeOrchestrationCommand(
            orchestration_id=_orchestration_id(check, request.orchestration_id),
            reason=_reason(check, request.reason),
            etag=check.text("etag", request.etag, limit=64),
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        orchestration = await self.service.resume(command)
        return pb.ResumeOrchestrationResponse(orchestration=orchestration_to_proto(orchestration))

    async def ApproveOrchestrationStage(  # noqa: N802
        self, request: pb.ApproveOrchestrationStageRequest, context: Any
    ) -> pb.ApproveOrchestrationStageResponse:
        check = Validator()
        command = ApproveStageCommand(
            orchestration_id=_orchestration_id(check, request.orchestration_id),
            stage=check.text("stage", request.stage, required=True, limit=63),
            reason=_reason(check, request.reason),
            etag=check.text("etag", request.etag, limit=64),
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        orchestration = await self.service.approve(command)
        return pb.ApproveOrchestrationStageResponse(
            orchestration=orchestration_to_proto(orchestration)
        )
