"""`client.orchestrations`: KEB-style fleet-wide rollouts, one operation per target cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2

from clusterops._enums import EnumArg, enum_value, enum_values
from clusterops._operation import AsyncOperation, blocking_operation
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._pager import AsyncPager, paged
from clusterops._sync import Facade, blocking, blocking_pager
from clusterops._transport import Transport
from clusterops._work_requests import AsyncWorkRequests, idempotency_key
from clusterops.v1 import orchestrations_pb2 as pb
from clusterops.v1 import orchestrations_pb2_grpc as pb_grpc

Target = Mapping[str, str] | pb.RuntimeTarget
"""A target selector, e.g. {"target": "all"}, {"region": "eu-frankfurt-1"} or
{"runtime_id": "cls-..."}; keys are RuntimeTarget's fields."""


def _target(value: Target) -> pb.RuntimeTarget:
    if isinstance(value, pb.RuntimeTarget):
        return value
    unknown = set(value) - set(pb.RuntimeTarget.DESCRIPTOR.fields_by_name)
    if unknown:
        raise ValueError(f"unknown target key(s): {', '.join(sorted(unknown))}")
    return pb.RuntimeTarget(**value)


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment)
    return message


def _budget(value: int | str) -> pb.FailureBudget:
    """2 -> at most 2 failed operations; "10%" -> at most 10 % of them."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            return pb.FailureBudget(max_failure_percent=int(text[:-1]))
        return pb.FailureBudget(max_failures=int(text))
    return pb.FailureBudget(max_failures=value)


@dataclass(frozen=True)
class Stage:
    """One stage (wave) of a rollout. Set at most one selector: `include`/`exclude`
    target lists, `count` (the first N of the targets left, in runtime id order) or
    `percent` (of the targets left, rounded up); none takes every target left.

    `workers` overrides the strategy's for this stage; `soak` is how long to wait after
    the stage's last operation ends before the next stage starts; `requires_approval`
    holds the stage until `approve_stage`; `failure_budget` (a count, or "N%") halts the
    rollout when more of this stage's operations fail.
    """

    name: str
    include: Sequence[Target] = ()
    exclude: Sequence[Target] = ()
    count: int = 0
    percent: int = 0
    workers: int = 0
    soak: timedelta | None = None
    requires_approval: bool = False
    failure_budget: int | str | None = None

    def to_proto(self) -> pb.Stage:
        message = pb.Stage(
            name=self.name,
            count=self.count,
            percent=self.percent,
            workers=self.workers,
            requires_approval=self.requires_approval,
        )
        if self.include or self.exclude:
            message.targets.CopyFrom(
                pb.TargetSpec(
                    include=[_target(t) for t in self.include],
                    exclude=[_target(t) for t in self.exclude],
                )
            )
        if self.soak is not None:
            soak = duration_pb2.Duration()
            soak.FromTimedelta(self.soak)
            message.soak.CopyFrom(soak)
        if self.failure_budget is not None:
            message.failure_budget.CopyFrom(_budget(self.failure_budget))
        return message


class AsyncOrchestrations:
    """Orchestrations: one operation per selected cluster, run under a strategy."""

    def __init__(self, transport: Transport, work_requests: AsyncWorkRequests) -> None:
        self._transport = transport
        self._work_requests = work_requests
        self._stub = pb_grpc.OrchestrationServiceStub(transport.channel)

    async def create(
        self,
        compartment_id: str,
        *,
        include: Sequence[Target],
        exclude: Sequence[Target] = (),
        kubernetes_version: str = "",
        workers: int = 1,
        schedule: EnumArg = "IMMEDIATE",
        schedule_time: datetime | None = None,
        maintenance_window: bool = False,
        dry_run: bool = False,
        stages: Sequence[Stage | pb.Stage] = (),
        failure_budget: int | str | None = None,
        pause_at: datetime | None = None,
        reason: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncOperation[pb.Orchestration]:
        """Start an orchestration over the clusters `include` selects minus `exclude`.

        Runs up to `workers` operations at once, now ("IMMEDIATE"), at `schedule_time`
        ("TIME") and/or only inside each cluster's maintenance window; `dry_run`
        records the operations without changing any cluster.

        Rollout controls: `stages` run one after the other (see `Stage`);
        `failure_budget` (a count such as 2, or "10%") halts the whole rollout when more
        operations fail; `pause_at` pauses it at that time. `reason` is recorded with
        the caller on the work request.
        """
        strategy = pb.StrategySpec(
            type=pb.STRATEGY_TYPE_PARALLEL,
            schedule=enum_value(pb.ScheduleType, schedule, argument="schedule"),
            maintenance_window=maintenance_window,
            parallel=pb.ParallelStrategy(workers=workers),
        )
        if schedule_time is not None:
            strategy.schedule_time.CopyFrom(_timestamp(schedule_time))
        strategy.stages.extend(s.to_proto() if isinstance(s, Stage) else s for s in stages)
        if failure_budget is not None:
            strategy.failure_budget.CopyFrom(_budget(failure_budget))
        if pause_at is not None:
            strategy.pause_at.CopyFrom(_timestamp(pause_at))
        parameters = pb.OrchestrationParameters(
            targets=pb.TargetSpec(
                include=[_target(t) for t in include], exclude=[_target(t) for t in exclude]
            ),
            strategy=strategy,
            dry_run=dry_run,
            kubernetes_version=kubernetes_version,
        )
        response = await self._transport.unary(
            self._stub.CreateOrchestration,
            pb.CreateOrchestrationRequest(
                compartment_id=compartment_id,
                parameters=parameters,
                request_id=idempotency_key(request_id),
                reason=reason,
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        orchestration_id = response.orchestration.id
        return AsyncOperation(
            self._work_requests,
            response.work_request,
            response.orchestration,
            lambda: self.get(orchestration_id, metadata=metadata),
        )

    async def get(
        self,
        orchestration_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Orchestration:
        """Get one orchestration, with its operation counts, its stages' progress and the
        estimated end of the rollout."""
        response = await self._transport.unary(
            self._stub.GetOrchestration,
            pb.GetOrchestrationRequest(orchestration_id=orchestration_id),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.orchestration

    def list(
        self,
        *,
        compartment_id: str = "",
        states: Iterable[EnumArg] = (),
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.Orchestration]:
        """Orchestrations, fetched lazily; `states` are names such as "IN_PROGRESS"."""
        return paged(
            self._transport,
            self._stub.ListOrchestrations,
            pb.ListOrchestrationsRequest(
                compartment_id=compartment_id,
                states=enum_values(pb.OrchestrationState, states, argument="states"),
                page_size=page_size,
                page_token=page_token,
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.orchestrations,
        )

    def list_operations(
        self,
        orchestration_id: str,
        *,
        states: Iterable[EnumArg] = (),
        stage: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.OrchestrationOperation]:
        """The per-cluster operations of an orchestration, fetched lazily (at most 100 a
        page), only those of `stage` if given; each of `.pages()` has the `total_count`
        of operations matching. A pending operation says what it waits for
        (`wait_reason`, `wait_until`, `wait_detail`)."""
        return paged(
            self._transport,
            self._stub.ListOrchestrationOperations,
            pb.ListOrchestrationOperationsRequest(
                orchestration_id=orchestration_id,
                states=enum_values(pb.OrchestrationState, states, argument="states"),
                page_size=page_size,
                page_token=page_token,
                stage=stage,
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.data,
            total=lambda response: response.total_count,
        )

    async def get_operation(
        self,
        orchestration_id: str,
        operation_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.OrchestrationOperation:
        """One operation, with its cluster's and components' configuration."""
        response = await self._transport.unary(
            self._stub.GetOrchestrationOperation,
            pb.GetOrchestrationOperationRequest(
                orchestration_id=orchestration_id, operation_id=operation_id
            ),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.operation

    async def cancel(
        self,
        orchestration_id: str,
        *,
        etag: str = "",
        reason: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Orchestration:
        """Cancel an orchestration: pending operations are canceled, running ones finish."""
        response = await self._transport.unary(
            self._stub.CancelOrchestration,
            pb.CancelOrchestrationRequest(
                orchestration_id=orchestration_id,
                etag=etag,
                request_id=idempotency_key(request_id),
                reason=reason,
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.orchestration

    async def retry_operations(
        self,
        orchestration_id: str,
        operation_ids: Iterable[str] = (),
        *,
        etag: str = "",
        reason: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.RetryOrchestrationResponse:
        """Retry failed operations (all of them if `operation_ids` is empty); the response
        names the operations retried. After a failure budget halted the rollout, this
        continues it from there."""
        return await self._transport.unary(
            self._stub.RetryOrchestration,
            pb.RetryOrchestrationRequest(
                orchestration_id=orchestration_id,
                operation_ids=list(operation_ids),
                etag=etag,
                request_id=idempotency_key(request_id),
                reason=reason,
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )

    async def pause(
        self,
        orchestration_id: str,
        *,
        reason: str = "",
        etag: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Orchestration:
        """Pause an orchestration: no operation starts until `resume`; running ones finish.
        The pause is stored: it survives server restarts. Needs the use permission."""
        response = await self._transport.unary(
            self._stub.PauseOrchestration,
            pb.PauseOrchestrationRequest(
                orchestration_id=orchestration_id,
                reason=reason,
                etag=etag,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.orchestration

    async def resume(
        self,
        orchestration_id: str,
        *,
        reason: str = "",
        etag: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Orchestration:
        """Resume a paused orchestration. Needs the use permission."""
        response = await self._transport.unary(
            self._stub.ResumeOrchestration,
            pb.ResumeOrchestrationRequest(
                orchestration_id=orchestration_id,
                reason=reason,
                etag=etag,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.orchestration

    async def approve_stage(
        self,
        orchestration_id: str,
        stage: str,
        *,
        reason: str = "",
        etag: str = "",
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.Orchestration:
        """Open the approval gate of `stage` (one with `requires_approval`); it may be
        approved before it is reached. Needs the manage permission."""
        response = await self._transport.unary(
            self._stub.ApproveOrchestrationStage,
            pb.ApproveOrchestrationStageRequest(
                orchestration_id=orchestration_id,
                stage=stage,
                reason=reason,
                etag=etag,
                request_id=idempotency_key(request_id),
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.orchestration


class Orchestrations(Facade[AsyncOrchestrations]):
    """Orchestrations: one operation per selected cluster, run under a strategy."""

    create = blocking_operation(AsyncOrchestrations.create)
    get = blocking(AsyncOrchestrations.get)
    list = blocking_pager(AsyncOrchestrations.list)
    list_operations = blocking_pager(AsyncOrchestrations.list_operations)
    get_operation = blocking(AsyncOrchestrations.get_operation)
    cancel = blocking(AsyncOrchestrations.cancel)
    retry_operations = blocking(AsyncOrchestrations.retry_operations)
    pause = blocking(AsyncOrchestrations.pause)
    resume = blocking(AsyncOrchestrations.resume)
    approve_stage = blocking(AsyncOrchestrations.approve_stage)
