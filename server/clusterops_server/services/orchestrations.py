"""Orchestrations: creating, reading, canceling and retrying fleet-wide upgrades."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from clusterops_server.auth.caller import (
    current_caller,
    require,
    require_visible,
    visible_compartments,
)
from clusterops_server.auth.policy import Family, Verb
from clusterops_server.clock import Clock
from clusterops_server.domain import rollouts
from clusterops_server.domain.errors import (
    ConcurrentChange,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from clusterops_server.domain.inventory import ClusterQuery
from clusterops_server.domain.listing import Page, PageRequest
from clusterops_server.domain.orchestrations import (
    OPENED_STAGE_STATES,
    OperationCounts,
    Orchestration,
    OrchestrationOperation,
    OrchestrationParameters,
    OrchestrationQuery,
    OrchestrationState,
    Rollout,
    StageState,
    dry_run_outcome,
    orchestration_resource,
    scheduled_description,
)
from clusterops_server.domain.targets import TargetSpec, no_targets, resolve_targets
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.domain.work_requests import (
    ActionType,
    LogEntry,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import OrchestrationRunParams
from clusterops_server.operations.start import OperationStart, start_operation
from clusterops_server.services.idempotency import Remembered, run_once
from clusterops_server.services.work_requests import get_work_request
from clusterops_server.store.uow import Store, UnitOfWork

# How far ahead an orchestration may be scheduled.
MAX_SCHEDULE_AHEAD = timedelta(days=366)


@dataclass(frozen=True)
class CreateOrchestrationCommand:
    compartment_id: str
    parameters: OrchestrationParameters
    request_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class CancelOrchestrationCommand:
    orchestration_id: str
    etag: str = ""
    request_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class RetryOrchestrationCommand:
    orchestration_id: str
    operation_ids: tuple[str, ...] = ()
    etag: str = ""
    request_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class PauseOrchestrationCommand:
    orchestration_id: str
    reason: str = ""
    etag: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class ResumeOrchestrationCommand:
    orchestration_id: str
    reason: str = ""
    etag: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class ApproveStageCommand:
    orchestration_id: str
    stage: str
    reason: str = ""
    etag: str = ""
    request_id: str = ""


def _by(reason: str) -> str:
    """ "by alice" or "by alice: the reason", for a log line."""
    name = current_caller().name
    return f"by {name}: {reason}" if reason else f"by {name}"


@dataclass(frozen=True)
class ClusterConfig:
    kubernetes_version: str
    target_version: str
    region: str
    plan_name: str
    shoot_name: str
    plan_id: str = ""


@dataclass(frozen=True)
class ComponentConfig:
    component: str
    version: str
    configuration: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OperationDetail:
    """An operation with the cluster and component configuration it works on."""

    operation: OrchestrationOperation
    cluster: ClusterConfig
    components: list[ComponentConfig]


async def require_orchestration(
    uow: UnitOfWork, orchestration_id: str, *, for_update: bool = False, verb: Verb = Verb.READ
) -> Orchestration:
    """An orchestration the caller may see (else NOT_FOUND) and may `verb` (else
    PERMISSION_DENIED)."""
    orchestration = await uow.orchestrations.get(orchestration_id, for_update=for_update)
    if orchestration is None:
        raise NotFound("orchestration", orchestration_id)
    require_visible(
        verb,
        Family.ORCHESTRATIONS,
        orchestration.compartment_id,
        "orchestration",
        orchestration_id,
    )
    return orchestration


async def _lock_with_run(
    uow: UnitOfWork, orchestration_id: str, *, verb: Verb
) -> tuple[Orchestration, WorkRequest]:
    """The orchestration and its run's work request, both locked in the store's lock order
    (the work request first, as the engine's passes take them).

    Raises ConcurrentChange when a retry gave the orchestration a new run between the
    look and the lock: locking that run now would take the locks out of order.
    """
    seen = await require_orchestration(uow, orchestration_id, verb=verb)
    wr = await uow.work_requests.get(seen.work_request_id, for_update=True)
    assert wr is not None, seen.work_request_id
    orchestration = await require_orchestration(uow, orchestration_id, for_update=True, verb=verb)
    if orchestration.work_request_id != wr.id:
        raise ConcurrentChange(
            "orchestration",
            orchestration_id,
            f"it started run {orchestration.work_request_id}",
        )
    return orchestration, wr


def _plan_log(orchestration: Orchestration, start_note: str) -> str:
    p = orchestration.parameters
    s = p.strategy
    text = (
        f"Orchestration {orchestration.id}: upgrade {orchestration.counts.total} cluster(s) to "
        f"{p.kubernetes_version}, {s.type.value} with {s.workers} worker(s), schedule "
        f"{s.schedule.value}{start_note}"
    )
    if s.maintenance_window:
        text += ", each cluster in its maintenance window"
    if p.dry_run:
        text += "; dry run: nothing is changed"
    return text


class OrchestrationService:
    def __init__(self, store: Store, clock: Clock, versions: VersionCatalogue) -> None:
        self.store = store
        self.clock = clock
        self.versions = versions

    async def create(self, cmd: CreateOrchestrationCommand) -> tuple[Orchestration, WorkRequest]:
        require(Verb.MANAGE, Family.ORCHESTRATIONS, cmd.compartment_id)
        parameters = cmd.parameters
        self.versions.require_supported(
            "parameters.kubernetes_version", parameters.kubernetes_version
        )
        now = self.clock.now()
        strategy = parameters.strategy
        if strategy.schedule_time is not None and strategy.schedule_time > now + MAX_SCHEDULE_AHEAD:
            raise InvalidArgument.one(
                "parameters.strategy.schedule_time",
                f"must be at most {MAX_SCHEDULE_AHEAD.days} days ahead",
            )
        if strategy.pause_at is not None and not (
            now < strategy.pause_at <= now + MAX_SCHEDULE_AHEAD
        ):
            raise InvalidArgument.one(
                "parameters.strategy.pause_at",
                f"must be in the future, at most {MAX_SCHEDULE_AHEAD.days} days ahead",
            )

        async def act(uow: UnitOfWork) -> tuple[tuple[Orchestration, WorkRequest], Remembered]:
            clusters = await uow.inventory.all_clusters(
                ClusterQuery(compartment_id=cmd.compartment_id)
            )
            selected = resolve_targets(parameters.targets, clusters)
            if not selected:
                included = resolve_targets(TargetSpec(parameters.targets.include), clusters)
                raise no_targets(cmd.compartment_id, len(clusters), len(included))
            stage_of = rollouts.assign_stages(strategy.stages, selected)
            start = strategy.start_time(now)
            orchestration_id = new_id(IdKind.ORCHESTRATION)
            operations = [
                OrchestrationOperation.for_cluster(
                    new_id(IdKind.OPERATION),
                    orchestration_id,
                    cluster,
                    parameters,
                    now,
                    start,
                    stage=stage,
                )
                for cluster, stage in zip(selected, stage_of, strict=True)
            ]
            if parameters.dry_run:
                # Nothing runs, so nothing waits: every operation is judged now.
                start = now
                for operation, cluster in zip(operations, selected, strict=True):
                    state, description = dry_run_outcome(
                        cluster, cluster.id, self.versions, parameters.kubernetes_version
                    )
                    operation.end(state, description, now)
            later = start if start > now else None
            run = OperationStart(
                cmd.compartment_id,
                OperationType.ORCHESTRATION_RUN,
                OrchestrationRunParams(orchestration_id),
                [orchestration_resource(orchestration_id, ActionType.IN_PROGRESS)],
                lock=[orchestration_id],
                run_after=start,
                reason=cmd.reason,
            )
            orchestration = Orchestration(
                id=orchestration_id,
                compartment_id=cmd.compartment_id,
                state=OrchestrationState.PENDING,
                description=scheduled_description(len(operations), later),
                parameters=parameters,
                work_request_id=run.id,
                create_time=now,
                update_time=now,
                counts=OperationCounts(),
                created_by=current_caller().name,
                rollout=Rollout(stages=rollouts.initial_stages(strategy.stages)),
            )
            for operation in operations:
                orchestration.move(operation.stage, None, operation.state)
            start_note = f" at {later.isoformat().replace('+00:00', 'Z')}" if later else ""
            wr = await start_operation(uow, replace(run, log=_plan_log(orchestration, start_note)))
            await uow.orchestrations.add(orchestration)
            await uow.orchestrations.add_operations(operations)
            return (orchestration, wr), {
                "orchestration_id": orchestration_id,
                "work_request_id": wr.id,
            }

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[Orchestration, WorkRequest]:
            return (
                await require_orchestration(uow, prior["orchestration_id"]),
                await get_work_request(uow, prior["work_request_id"]),
            )

        return await run_once(self.store, "CreateOrchestration", cmd, act, replay)

    async def get(self, orchestration_id: str) -> Orchestration:
        """With the estimate of when it ends."""
        async with self.store.read() as uow:
            orchestration = await require_orchestration(uow, orchestration_id)
            last_due = (
                await uow.orchestrations.last_due(orchestration_id)
                if orchestration.counts.waiting and orchestration.rollout.finished_runs
                else None
            )
        orchestration.estimated_end = rollouts.estimate_end(
            orchestration, self.clock.now(), last_due
        )
        return orchestration

    async def list_orchestrations(
        self, query: OrchestrationQuery, page: PageRequest
    ) -> Page[Orchestration]:
        scoped = replace(
            query,
            visible_compartments=visible_compartments(Verb.INSPECT, Family.ORCHESTRATIONS),
        )
        async with self.store.read() as uow:
            return await uow.orchestrations.list_orchestrations(scoped, page)

    async def list_operations(
        self,
        orchestration_id: str,
        states: frozenset[OrchestrationState],
        page: PageRequest,
        stage: str = "",
    ) -> Page[OrchestrationOperation]:
        """Each waiting operation says what it waits for, as of now."""
        async with self.store.read() as uow:
            orchestration = await require_orchestration(uow, orchestration_id)
            index = _stage_index(orchestration, stage, "stage") if stage else None
            result = await uow.orchestrations.list_operations(
                orchestration_id, states, page, stage=index
            )
        now = self.clock.now()
        for operation in result.items:
            _annotate(orchestration, operation, now)
        return result

    async def get_operation(self, orchestration_id: str, operation_id: str) -> OperationDetail:
        async with self.store.read() as uow:
            orchestration = await require_orchestration(uow, orchestration_id)
            operation = await uow.orchestrations.get_operation(operation_id)
            if operation is None or operation.orchestration_id != orchestration_id:
                raise NotFound("orchestration operation", operation_id)
            _annotate(orchestration, operation, self.clock.now())
            cluster = await uow.inventory.get_cluster(operation.runtime_id)
            pools = await uow.inventory.live_node_pools(operation.runtime_id) if cluster else []
        current = cluster.kubernetes_version if cluster else operation.cluster_version
        components = [
            ComponentConfig(
                "kubernetes",
                operation.target_version,
                {"current_version": current, "upgrade_from": operation.cluster_version},
            ),
            *(
                ComponentConfig(
                    f"node-pool/{pool.name}",
                    pool.kubernetes_version,
                    {
                        "node_pool_id": pool.id,
                        "node_shape": pool.node_shape,
                        "node_count": str(pool.node_count),
                    },
                )
                for pool in sorted(pools, key=lambda p: p.name)
            ),
        ]
        return OperationDetail(
            operation,
            ClusterConfig(
                kubernetes_version=current,
                target_version=operation.target_version,
                region=operation.region,
                plan_name=operation.plan_name,
                shoot_name=operation.shoot_name,
                plan_id=operation.plan_id,
            ),
            components,
        )

    async def cancel(self, cmd: CancelOrchestrationCommand) -> Orchestration:
        """CANCELING at once; the run then cancels what has not started and ends CANCELED
        when the running operations have finished."""

        async def act(uow: UnitOfWork) -> tuple[Orchestration, Remembered]:
            orchestration, wr = await _lock_with_run(uow, cmd.orchestration_id, verb=Verb.USE)
            if cmd.etag and cmd.etag != orchestration.etag:
                raise EtagMismatch("orchestration", orchestration.id, orchestration.etag)
            if orchestration.state not in (
                OrchestrationState.CANCELING,
                OrchestrationState.CANCELED,
            ):
                orchestration.require_state(
                    (
                        OrchestrationState.PENDING,
                        OrchestrationState.IN_PROGRESS,
                        OrchestrationState.RETRYING,
                        OrchestrationState.PAUSED,
                    ),
                    "canceling it",
                    "ORCHESTRATION_STATE",
                )
                now = self.clock.now()
                if wr.status is not WorkRequestStatus.CANCELING:
                    wr.transition(WorkRequestStatus.CANCELING, now)
                    await uow.work_requests.save(
                        wr,
                        logs=[
                            LogEntry(
                                f"Cancellation of orchestration {orchestration.id} requested "
                                f"{_by(cmd.reason)}; operations that have not started are "
                                "canceled, running ones finish",
                                now,
                            )
                        ],
                    )
                    await uow.leases.wake(wr.id, now)
                orchestration.rollout.pause = None
                orchestration.state = OrchestrationState.CANCELING
                orchestration.description = orchestration.progress()
                orchestration.touch(now)
                await uow.orchestrations.save(orchestration)
            return orchestration, {"orchestration_id": orchestration.id}

        async def replay(uow: UnitOfWork, prior: Remembered) -> Orchestration:
            return await require_orchestration(uow, prior["orchestration_id"])

        return await run_once(self.store, "CancelOrchestration", cmd, act, replay)

    async def retry(self, cmd: RetryOrchestrationCommand) -> tuple[Orchestration, list[str]]:
        """Failed operations wait to run again as new attempts (their earlier attempts are
        kept); a finished orchestration gets a new run work request."""

        async def act(uow: UnitOfWork) -> tuple[tuple[Orchestration, list[str]], Remembered]:
            orchestration, wr = await _lock_with_run(uow, cmd.orchestration_id, verb=Verb.MANAGE)
            if cmd.etag and cmd.etag != orchestration.etag:
                raise EtagMismatch("orchestration", orchestration.id, orchestration.etag)
            orchestration.require_state(
                (
                    OrchestrationState.IN_PROGRESS,
                    OrchestrationState.RETRYING,
                    OrchestrationState.FAILED,
                ),
                "retrying its failed operations",
                "ORCHESTRATION_STATE",
            )
            operations = await self._retriable(uow, orchestration, cmd.operation_ids)
            now = self.clock.now()
            strategy = orchestration.parameters.strategy
            stages = orchestration.rollout.stages
            for operation in operations:
                before = operation.state
                due: datetime | None
                if stages and stages[operation.stage].state not in OPENED_STAGE_STATES:
                    due = None  # its stage opens it
                else:
                    due = (
                        now
                        if operation.dry_run
                        else strategy.due(operation.maintenance_window, now)
                    )
                operation.retry(now, due)
                orchestration.move(operation.stage, before, operation.state)
            await uow.orchestrations.save_operations(operations)
            # Continue from where a failure budget stopped it: the budget counts afresh.
            orchestration.rollout.halt = None
            orchestration.rollout.failure_reason = ""
            rollouts.reopen_halted(orchestration)
            note = f"Retrying {len(operations)} failed operation(s)"
            if wr.status.is_terminal:
                run = await start_operation(
                    uow,
                    OperationStart(
                        orchestration.compartment_id,
                        OperationType.ORCHESTRATION_RUN,
                        OrchestrationRunParams(orchestration.id),
                        [orchestration_resource(orchestration.id, ActionType.IN_PROGRESS)],
                        lock=[orchestration.id],
                        log=f"{note} of orchestration {orchestration.id}, requested "
                        f"{_by(cmd.reason)}; its previous run was work request {wr.id}",
                        reason=cmd.reason,
                    ),
                )
                orchestration.work_request_id = run.id
            else:
                await uow.work_requests.save(
                    wr, logs=[LogEntry(f"{note} requested {_by(cmd.reason)}", now)]
                )
                await uow.leases.wake(wr.id, now)
            orchestration.state = OrchestrationState.RETRYING
            orchestration.description = note
            orchestration.touch(now)
            await uow.orchestrations.save(orchestration)
            retried = [op.id for op in operations]
            return (orchestration, retried), {
                "orchestration_id": orchestration.id,
                "retried_operation_ids": retried,
            }

        async def replay(uow: UnitOfWork, prior: Remembered) -> tuple[Orchestration, list[str]]:
            return (
                await require_orchestration(uow, prior["orchestration_id"]),
                list(prior["retried_operation_ids"]),
            )

        return await run_once(self.store, "RetryOrchestration", cmd, act, replay)

    async def _retriable(
        self, uow: UnitOfWork, orchestration: Orchestration, operation_ids: tuple[str, ...]
    ) -> list[OrchestrationOperation]:
        if not operation_ids:
            failed = await uow.orchestrations.in_state(orchestration.id, OrchestrationState.FAILED)
            if not failed:
                raise FailedPrecondition(
                    f"orchestration {orchestration.id} has no failed operations to retry",
                    violation_type="NO_FAILED_OPERATIONS",
                    subject=orchestration.id,
                )
            return failed
        wanted = list(dict.fromkeys(operation_ids))
        found = {op.id: op for op in await uow.orchestrations.operations(wanted)}
        for operation_id in wanted:
            operation = found.get(operation_id)
            if operation is None or operation.orchestration_id != orchestration.id:
                raise NotFound("orchestration operation", operation_id)
            if operation.state is not OrchestrationState.FAILED:
                raise FailedPrecondition(
                    f'operation {operation_id} is "{operation.state.value}"; only failed '
                    "operations can be retried",
                    violation_type="OPERATION_STATE",
                    subject=operation_id,
                    metadata={"state": operation.state.value},
                )
        return [found[i] for i in wanted]

    # pause, resume, approve

    async def pause(self, cmd: PauseOrchestrationCommand) -> Orchestration:
        """PAUSED at once: the run starts nothing more; running operations finish. Pausing a
        paused orchestration changes nothing."""

        async def act(uow: UnitOfWork) -> tuple[Orchestration, Remembered]:
            orchestration, wr = await _lock_with_run(uow, cmd.orchestration_id, verb=Verb.USE)
            if cmd.etag and cmd.etag != orchestration.etag:
                raise EtagMismatch("orchestration", orchestration.id, orchestration.etag)
            if orchestration.state is not OrchestrationState.PAUSED:
                orchestration.require_state(
                    rollouts.PAUSABLE_STATES, "pausing it", "ORCHESTRATION_STATE"
                )
                now = self.clock.now()
                rollouts.pause(orchestration, current_caller().name, cmd.reason, now)
                await self._record(
                    uow,
                    orchestration,
                    wr,
                    f"Paused {_by(cmd.reason)}; no operation starts until it is resumed, "
                    "running ones finish",
                )
            return orchestration, {"orchestration_id": orchestration.id}

        return await run_once(self.store, "PauseOrchestration", cmd, act, self._replay)

    async def resume(self, cmd: ResumeOrchestrationCommand) -> Orchestration:
        async def act(uow: UnitOfWork) -> tuple[Orchestration, Remembered]:
            orchestration, wr = await _lock_with_run(uow, cmd.orchestration_id, verb=Verb.USE)
            if cmd.etag and cmd.etag != orchestration.etag:
                raise EtagMismatch("orchestration", orchestration.id, orchestration.etag)
            orchestration.require_state(
                (OrchestrationState.PAUSED,), "resuming it", "ORCHESTRATION_STATE"
            )
            rollouts.resume(orchestration)
            await self._record(uow, orchestration, wr, f"Resumed {_by(cmd.reason)}")
            return orchestration, {"orchestration_id": orchestration.id}

        return await run_once(self.store, "ResumeOrchestration", cmd, act, self._replay)

    async def approve(self, cmd: ApproveStageCommand) -> Orchestration:
        """Open a stage's gate (before it is reached, too); approving twice changes
        nothing."""

        async def act(uow: UnitOfWork) -> tuple[Orchestration, Remembered]:
            orchestration, wr = await _lock_with_run(uow, cmd.orchestration_id, verb=Verb.MANAGE)
            if cmd.etag and cmd.etag != orchestration.etag:
                raise EtagMismatch("orchestration", orchestration.id, orchestration.etag)
            index = _stage_index(orchestration, cmd.stage, "stage")
            spec = orchestration.parameters.strategy.stages[index]
            stage = orchestration.rollout.stages[index]
            if not spec.requires_approval:
                raise FailedPrecondition(
                    f'stage "{spec.name}" of orchestration {orchestration.id} has no approval '
                    "gate (requires_approval is false)",
                    violation_type="STAGE_WITHOUT_GATE",
                    subject=spec.name,
                )
            if not stage.approved_by:
                if orchestration.state.is_terminal or stage.state is StageState.CANCELED:
                    raise FailedPrecondition(
                        f'orchestration {orchestration.id} is "{orchestration.state.value}"; '
                        "approving a stage needs it to be running",
                        violation_type="ORCHESTRATION_STATE",
                        subject=orchestration.id,
                        metadata={"state": orchestration.state.value},
                    )
                now = self.clock.now()
                stage.approved_by = current_caller().name
                stage.approve_time = now
                await self._record(
                    uow, orchestration, wr, f'Stage "{spec.name}" approved {_by(cmd.reason)}'
                )
            return orchestration, {"orchestration_id": orchestration.id}

        return await run_once(self.store, "ApproveOrchestrationStage", cmd, act, self._replay)

    async def _record(
        self, uow: UnitOfWork, orchestration: Orchestration, wr: WorkRequest, log: str
    ) -> None:
        """Save a decision about the orchestration, log it on its run and wake the run."""
        now = self.clock.now()
        orchestration.description = orchestration.progress()
        orchestration.touch(now)
        await uow.orchestrations.save(orchestration)
        await uow.work_requests.save(wr, logs=[LogEntry(log, now)])
        if not wr.status.is_terminal:
            await uow.leases.wake(wr.id, now)

    async def _replay(self, uow: UnitOfWork, prior: Remembered) -> Orchestration:
        return await require_orchestration(uow, prior["orchestration_id"])


def _stage_index(orchestration: Orchestration, name: str, field_name: str) -> int:
    """The index of the stage called `name`; INVALID_ARGUMENT naming the stages if none is."""
    names = [s.name for s in orchestration.parameters.strategy.stages]
    if name not in names:
        known = ", ".join(names) if names else "none: it has no stages"
        raise InvalidArgument.one(
            field_name, f'orchestration {orchestration.id} has no stage "{name}" (stages: {known})'
        )
    return names.index(name)


def _annotate(
    orchestration: Orchestration, operation: OrchestrationOperation, now: datetime
) -> None:
    """What a read adds to a stored operation: its stage's name, what it waits for."""
    stages = orchestration.parameters.strategy.stages
    operation.stage_name = stages[operation.stage].name if stages else ""
    operation.wait = rollouts.wait_of(orchestration, operation, now)
