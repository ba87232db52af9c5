"""Orchestrations and their operations.

The scheduler's queries touch only what it needs: the operations due to start (an
index on due_at, which is NULL once an operation started), and the running ones
whose upgrade work request has finished (at most `workers` rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.inventory import MaintenanceWindow
from clusterops_server.domain.listing import Page, PageRequest, fingerprint
from clusterops_server.domain.orchestrations import (
    WAITING_STATES,
    FailureBudget,
    Halt,
    OperationAttempt,
    OperationCounts,
    Orchestration,
    OrchestrationOperation,
    OrchestrationParameters,
    OrchestrationQuery,
    OrchestrationState,
    PauseInfo,
    Rollout,
    ScheduleType,
    StageProgress,
    StageSpec,
    StageState,
    Strategy,
    StrategyType,
)
from clusterops_server.domain.targets import RuntimeTarget, TargetSpec
from clusterops_server.domain.work_requests import TERMINAL_STATUSES, WorkRequestStatus
from clusterops_server.store.paging import Keyset, paginate
from clusterops_server.store.tables import (
    OrchestrationOperationRow,
    OrchestrationRow,
    WorkRequestRow,
)

_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)
_WAITING = sorted(s.value for s in WAITING_STATES)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


# --- parameters as JSON ------------------------------------------------------------------


def _targets_to_json(t: TargetSpec) -> dict[str, Any]:
    return {"include": [asdict(r) for r in t.include], "exclude": [asdict(r) for r in t.exclude]}


def _targets_from_json(data: dict[str, Any]) -> TargetSpec:
    return TargetSpec(
        include=tuple(RuntimeTarget(**t) for t in data["include"]),
        exclude=tuple(RuntimeTarget(**t) for t in data["exclude"]),
    )


def _budget_to_json(b: FailureBudget | None) -> dict[str, int] | None:
    return None if b is None else {"max_failures": b.max_failures, "percent": b.percent}


def _budget_from_json(data: dict[str, int] | None) -> FailureBudget | None:
    return None if data is None else FailureBudget(int(data["max_failures"]), int(data["percent"]))


def _stage_to_json(st: StageSpec) -> dict[str, Any]:
    return {
        "name": st.name,
        "targets": _targets_to_json(st.targets) if st.targets is not None else None,
        "count": st.count,
        "percent": st.percent,
        "workers": st.workers,
        "soak_seconds": st.soak.total_seconds(),
        "requires_approval": st.requires_approval,
        "failure_budget": _budget_to_json(st.failure_budget),
    }


def _stage_from_json(data: dict[str, Any]) -> StageSpec:
    return StageSpec(
        name=data["name"],
        targets=_targets_from_json(data["targets"]) if data["targets"] is not None else None,
        count=int(data["count"]),
        percent=int(data["percent"]),
        workers=int(data["workers"]),
        soak=timedelta(seconds=float(data["soak_seconds"])),
        requires_approval=bool(data["requires_approval"]),
        failure_budget=_budget_from_json(data["failure_budget"]),
    )


def _strategy_extras(s: Strategy) -> dict[str, Any]:
    """The rollout controls, written only when used: KEB orchestrations' JSON is as before."""
    extras: dict[str, Any] = {}
    if s.stages:
        extras["stages"] = [_stage_to_json(st) for st in s.stages]
    if s.failure_budget is not None:
        extras["failure_budget"] = _budget_to_json(s.failure_budget)
    if s.pause_at is not None:
        extras["pause_at"] = _time(s.pause_at)
    return extras


def parameters_to_json(p: OrchestrationParameters) -> dict[str, Any]:
    s = p.strategy
    return {
        "targets": _targets_to_json(p.targets),
        "strategy": {
            "type": s.type.value,
            "schedule": s.schedule.value,
            "schedule_time": _time(s.schedule_time),
            "maintenance_window": s.maintenance_window,
            "workers": s.workers,
            **_strategy_extras(s),
        },
        "kubernetes_version": p.kubernetes_version,
        "dry_run": p.dry_run,
    }


def parameters_from_json(data: dict[str, Any]) -> OrchestrationParameters:
    targets = data["targets"]
    s = data["strategy"]
    return OrchestrationParameters(
        targets=_targets_from_json(targets),
        strategy=Strategy(
            type=StrategyType(s["type"]),
            schedule=ScheduleType(s["schedule"]),
            schedule_time=_parse_time(s["schedule_time"]),
            maintenance_window=bool(s["maintenance_window"]),
            workers=int(s["workers"]),
            stages=tuple(_stage_from_json(st) for st in s.get("stages", ())),
            failure_budget=_budget_from_json(s.get("failure_budget")),
            pause_at=_parse_time(s.get("pause_at")),
        ),
        kubernetes_version=data["kubernetes_version"],
        dry_run=bool(data["dry_run"]),
    )


def _counts_to_json(c: OperationCounts) -> dict[str, int]:
    return {k.value: v for k, v in c.by_state.items() if v}


def _counts_from_json(data: dict[str, Any]) -> OperationCounts:
    return OperationCounts({OrchestrationState(k): int(v) for k, v in data.items()})


def rollout_to_json(r: Rollout) -> dict[str, Any] | None:
    """None for a rollout that holds nothing (a KEB orchestration never paused)."""
    if r == Rollout():
        return None
    return {
        "stages": [
            {
                "state": st.state.value,
                "counts": _counts_to_json(st.counts),
                "start": _time(st.start_time),
                "end": _time(st.end_time),
                "soak_until": _time(st.soak_until),
                "approved_by": st.approved_by,
                "approve_time": _time(st.approve_time),
            }
            for st in r.stages
        ],
        "pause": (
            {
                "by": r.pause.paused_by,
                "reason": r.pause.reason,
                "at": _time(r.pause.pause_time),
                "resume_state": r.pause.resume_state.value,
            }
            if r.pause is not None
            else None
        ),
        "pause_at_done": r.pause_at_done,
        "halt": (
            {"budget": r.halt.budget, "operations": list(r.halt.operation_ids)}
            if r.halt is not None
            else None
        ),
        "failure_reason": r.failure_reason,
        "finished_seconds": r.finished_seconds,
        "finished_runs": r.finished_runs,
    }


def rollout_from_json(data: dict[str, Any] | None) -> Rollout:
    if not data:
        return Rollout()
    pause = data["pause"]
    halt = data["halt"]
    return Rollout(
        stages=[
            StageProgress(
                state=StageState(st["state"]),
                counts=_counts_from_json(st["counts"]),
                start_time=_parse_time(st["start"]),
                end_time=_parse_time(st["end"]),
                soak_until=_parse_time(st["soak_until"]),
                approved_by=st["approved_by"],
                approve_time=_parse_time(st["approve_time"]),
            )
            for st in data["stages"]
        ],
        pause=(
            PauseInfo(
                paused_by=pause["by"],
                reason=pause["reason"],
                pause_time=_parse_time(pause["at"]) or datetime.min,
                resume_state=OrchestrationState(pause["resume_state"]),
            )
            if pause
            else None
        ),
        pause_at_done=bool(data["pause_at_done"]),
        halt=Halt(halt["budget"], tuple(halt["operations"])) if halt else None,
        failure_reason=data["failure_reason"],
        finished_seconds=float(data["finished_seconds"]),
        finished_runs=int(data["finished_runs"]),
    )


# --- rows <-> domain ---------------------------------------------------------------------


def _orchestration(row: OrchestrationRow) -> Orchestration:
    return Orchestration(
        id=row.id,
        compartment_id=row.compartment_id,
        state=OrchestrationState(row.state),
        description=row.description,
        parameters=parameters_from_json(row.parameters),
        work_request_id=row.work_request_id,
        create_time=row.created_at,
        update_time=row.updated_at,
        counts=_counts_from_json(row.operation_counts),
        version=row.version,
        created_by=row.created_by,
        rollout=rollout_from_json(row.rollout),
    )


def _orchestration_values(o: Orchestration) -> dict[str, Any]:
    return {
        "compartment_id": o.compartment_id,
        "state": o.state.value,
        "description": o.description,
        "parameters": parameters_to_json(o.parameters),
        "work_request_id": o.work_request_id,
        "operation_counts": _counts_to_json(o.counts),
        "created_at": o.create_time,
        "updated_at": o.update_time,
        "version": o.version,
        "created_by": o.created_by,
        "rollout": rollout_to_json(o.rollout),
    }


def _attempt_to_json(a: OperationAttempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "state": a.state.value,
        "description": a.description,
        "upgrade_workflow_id": a.upgrade_workflow_id,
        "work_request_id": a.work_request_id,
        "start": _time(a.start_time),
        "end": _time(a.end_time),
    }


def _attempt_from_json(data: dict[str, Any]) -> OperationAttempt:
    return OperationAttempt(
        attempt=int(data["attempt"]),
        state=OrchestrationState(data["state"]),
        description=data["description"],
        upgrade_workflow_id=data["upgrade_workflow_id"],
        work_request_id=data["work_request_id"],
        start_time=_parse_time(data["start"]),
        end_time=_parse_time(data["end"]),
    )


def _operation(row: OrchestrationOperationRow) -> OrchestrationOperation:
    window = None
    if row.maintenance_start is not None and row.maintenance_end is not None:
        window = MaintenanceWindow(
            time.fromisoformat(row.maintenance_start), time.fromisoformat(row.maintenance_end)
        )
    return OrchestrationOperation(
        id=row.id,
        orchestration_id=row.orchestration_id,
        compartment_id=row.compartment_id,
        runtime_id=row.cluster_id,
        global_account_id=row.global_account_id,
        sub_account_id=row.sub_account_id,
        region=row.region,
        plan_name=row.plan_name,
        plan_id=row.plan_id,
        shoot_name=row.shoot_name,
        dry_run=row.dry_run,
        state=OrchestrationState(row.state),
        description=row.description,
        maintenance_window=window,
        cluster_version=row.cluster_version,
        target_version=row.target_version,
        create_time=row.created_at,
        update_time=row.updated_at,
        due_time=row.due_at,
        upgrade_workflow_id=row.upgrade_workflow_id or "",
        work_request_id=row.work_request_id or "",
        attempt=row.attempt,
        start_time=row.started_at,
        end_time=row.ended_at,
        previous_attempts=[_attempt_from_json(a) for a in row.previous_attempts],
        stage=row.stage,
        blocked_by=row.blocked_by or "",
    )


def _operation_values(op: OrchestrationOperation) -> dict[str, Any]:
    window = op.maintenance_window
    return {
        "orchestration_id": op.orchestration_id,
        "compartment_id": op.compartment_id,
        "cluster_id": op.runtime_id,
        "global_account_id": op.global_account_id,
        "sub_account_id": op.sub_account_id,
        "region": op.region,
        "plan_name": op.plan_name,
        "plan_id": op.plan_id,
        "shoot_name": op.shoot_name,
        "dry_run": op.dry_run,
        "state": op.state.value,
        "description": op.description,
        "maintenance_start": window.start.strftime("%H:%M") if window else None,
        "maintenance_end": window.end.strftime("%H:%M") if window else None,
        "cluster_version": op.cluster_version,
        "target_version": op.target_version,
        "upgrade_workflow_id": op.upgrade_workflow_id or None,
        "work_request_id": op.work_request_id or None,
        "attempt": op.attempt,
        "created_at": op.create_time,
        "updated_at": op.update_time,
        "started_at": op.start_time,
        "ended_at": op.end_time,
        "due_at": op.due_time,
        "previous_attempts": [_attempt_to_json(a) for a in op.previous_attempts],
        "stage": op.stage,
        "blocked_by": op.blocked_by or None,
    }


@dataclass(frozen=True)
class FinishedRun:
    """A running operation whose upgrade work request has ended."""

    operation: OrchestrationOperation
    status: WorkRequestStatus


class OrchestrationRepository:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    # orchestrations

    async def add(self, orchestration: Orchestration) -> None:
        self.session.add(
            OrchestrationRow(id=orchestration.id, **_orchestration_values(orchestration))
        )
        await self.session.flush()

    async def get(self, orchestration_id: str, *, for_update: bool = False) -> Orchestration | None:
        stmt = select(OrchestrationRow).where(OrchestrationRow.id == orchestration_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        row = await self.session.scalar(stmt)
        return _orchestration(row) if row else None

    async def save(self, orchestration: Orchestration) -> None:
        row = await self.session.get(OrchestrationRow, orchestration.id)
        assert row is not None, orchestration.id
        for key, value in _orchestration_values(orchestration).items():
            setattr(row, key, value)

    async def list_orchestrations(
        self, query: OrchestrationQuery, page: PageRequest
    ) -> Page[Orchestration]:
        """Newest first."""
        conditions: list[ColumnElement[bool]] = []
        if query.visible_compartments is not None:
            conditions.append(
                OrchestrationRow.compartment_id.in_(sorted(query.visible_compartments))
            )
        if query.compartment_id:
            conditions.append(OrchestrationRow.compartment_id == query.compartment_id)
        if query.states:
            conditions.append(OrchestrationRow.state.in_(sorted(s.value for s in query.states)))
        return await paginate(
            self.session,
            select(OrchestrationRow).where(*conditions),
            Keyset((OrchestrationRow.created_at, OrchestrationRow.id), descending=True),
            page,
            query.fingerprint(),
            _orchestration,
            key_of=lambda row: (row.created_at, row.id),
        )

    # operations

    async def add_operations(self, operations: Sequence[OrchestrationOperation]) -> None:
        if operations:
            await self.session.execute(
                insert(OrchestrationOperationRow),
                [{"id": op.id, **_operation_values(op)} for op in operations],
            )

    async def get_operation(self, operation_id: str) -> OrchestrationOperation | None:
        row = await self.session.get(OrchestrationOperationRow, operation_id)
        return _operation(row) if row else None

    async def operations(self, ids: Sequence[str]) -> list[OrchestrationOperation]:
        rows = await self.session.scalars(
            select(OrchestrationOperationRow)
            .where(OrchestrationOperationRow.id.in_(sorted(set(ids))))
            .order_by(OrchestrationOperationRow.id)
        )
        return [_operation(r) for r in rows]

    async def save_operations(self, operations: Sequence[OrchestrationOperation]) -> None:
        """One bulk UPDATE by primary key for the lot."""
        if operations:
            await self.session.execute(
                update(OrchestrationOperationRow),
                [{"id": op.id, **_operation_values(op)} for op in operations],
            )

    async def list_operations(
        self,
        orchestration_id: str,
        states: frozenset[OrchestrationState],
        page: PageRequest,
        stage: int | None = None,
    ) -> Page[OrchestrationOperation]:
        """In id order, with the total count of matching operations."""
        stmt = select(OrchestrationOperationRow).where(
            OrchestrationOperationRow.orchestration_id == orchestration_id
        )
        if states:
            stmt = stmt.where(OrchestrationOperationRow.state.in_(sorted(s.value for s in states)))
        if stage is not None:
            stmt = stmt.where(OrchestrationOperationRow.stage == stage)
        parts: list[Any] = ["orchestration_operations", orchestration_id, sorted(states)]
        if stage is not None:
            parts.append(stage)  # pages of a stage are not pages of the whole
        return await paginate(
            self.session,
            stmt,
            Keyset((OrchestrationOperationRow.id,)),
            page,
            fingerprint(*parts),
            _operation,
            key_of=lambda row: (row.id,),
            with_total=True,
        )

    async def in_state(
        self, orchestration_id: str, state: OrchestrationState, *, limit: int | None = None
    ) -> list[OrchestrationOperation]:
        rows = await self.session.scalars(
            select(OrchestrationOperationRow)
            .where(
                OrchestrationOperationRow.orchestration_id == orchestration_id,
                OrchestrationOperationRow.state == state.value,
            )
            .order_by(OrchestrationOperationRow.id)
            .limit(limit)
        )
        return [_operation(r) for r in rows]

    async def count_by_state(self, orchestration_id: str) -> OperationCounts:
        """Counted from the operations themselves (the orchestration keeps its own counts)."""
        rows = await self.session.execute(
            select(OrchestrationOperationRow.state, func.count())
            .where(OrchestrationOperationRow.orchestration_id == orchestration_id)
            .group_by(OrchestrationOperationRow.state)
        )
        return OperationCounts({OrchestrationState(s): int(n) for s, n in rows})

    # the scheduler

    async def finished_runs(self, orchestration_id: str, *, limit: int) -> list[FinishedRun]:
        """Running operations whose upgrade work request has reached a terminal status."""
        rows = await self.session.execute(
            select(OrchestrationOperationRow, WorkRequestRow.status)
            .join(WorkRequestRow, WorkRequestRow.id == OrchestrationOperationRow.work_request_id)
            .where(
                OrchestrationOperationRow.orchestration_id == orchestration_id,
                OrchestrationOperationRow.state == OrchestrationState.IN_PROGRESS.value,
                WorkRequestRow.status.in_(_TERMINAL),
            )
            .order_by(OrchestrationOperationRow.id)
            .limit(limit)
        )
        return [FinishedRun(_operation(op), WorkRequestStatus(status)) for op, status in rows]

    async def due(
        self, orchestration_id: str, now: datetime, *, limit: int
    ) -> list[OrchestrationOperation]:
        """Waiting operations whose time has come, earliest first."""
        rows = await self.session.scalars(
            select(OrchestrationOperationRow)
            .where(
                OrchestrationOperationRow.orchestration_id == orchestration_id,
                OrchestrationOperationRow.due_at <= now,
            )
            .order_by(OrchestrationOperationRow.due_at, OrchestrationOperationRow.id)
            .limit(limit)
        )
        return [_operation(r) for r in rows]

    async def next_due(self, orchestration_id: str) -> datetime | None:
        return await self.session.scalar(
            select(func.min(OrchestrationOperationRow.due_at)).where(
                OrchestrationOperationRow.orchestration_id == orchestration_id
            )
        )

    async def last_due(self, orchestration_id: str) -> datetime | None:
        """The latest time a waiting operation is due (for the estimate)."""
        return await self.session.scalar(
            select(func.max(OrchestrationOperationRow.due_at)).where(
                OrchestrationOperationRow.orchestration_id == orchestration_id
            )
        )

    async def open_stage(self, orchestration_id: str, stage: int, now: datetime) -> int:
        """Make the waiting operations of a stage that opens due now (the scheduler then
        moves each one outside its maintenance window to the window's opening)."""
        result = await self.session.execute(
            update(OrchestrationOperationRow)
            .where(
                OrchestrationOperationRow.orchestration_id == orchestration_id,
                OrchestrationOperationRow.stage == stage,
                OrchestrationOperationRow.state.in_(_WAITING),
                OrchestrationOperationRow.due_at.is_(None),
            )
            .values(due_at=now, updated_at=now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def end_waiting(
        self,
        orchestration_id: str,
        now: datetime,
        description: str,
        state: OrchestrationState = OrchestrationState.CANCELED,
    ) -> dict[tuple[int, OrchestrationState], int]:
        """End every operation that has not started in `state`; how many, by their stage
        and former state."""
        counted = await self.session.execute(
            select(OrchestrationOperationRow.stage, OrchestrationOperationRow.state, func.count())
            .where(
                OrchestrationOperationRow.orchestration_id == orchestration_id,
                OrchestrationOperationRow.state.in_(_WAITING),
            )
            .group_by(OrchestrationOperationRow.stage, OrchestrationOperationRow.state)
        )
        ended = {(int(st), OrchestrationState(s)): int(n) for st, s, n in counted}
        if ended:
            await self.session.execute(
                update(OrchestrationOperationRow)
                .where(
                    OrchestrationOperationRow.orchestration_id == orchestration_id,
                    OrchestrationOperationRow.state.in_(_WAITING),
                )
                .values(
                    state=state.value,
                    description=description,
                    due_at=None,
                    blocked_by=None,
                    ended_at=now,
                    updated_at=now,
                )
            )
        return ended
