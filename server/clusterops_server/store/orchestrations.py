"""Orchestrations and their operations.

The scheduler's queries touch only what it needs: the operations due to start (an
index on due_at, which is NULL once an operation started), and the running ones
whose upgrade work request has finished (at most `workers` rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.inventory import MaintenanceWindow
from clusterops_server.domain.listing import Page, PageRequest, fingerprint
from clusterops_server.domain.orchestrations import (
    WAITING_STATES,
    OperationAttempt,
    OperationCounts,
    Orchestration,
    OrchestrationOperation,
    OrchestrationParameters,
    OrchestrationQuery,
    OrchestrationState,
    ScheduleType,
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


def parameters_to_json(p: OrchestrationParameters) -> dict[str, Any]:
    s = p.strategy
    return {
        "targets": {
            "include": [asdict(t) for t in p.targets.include],
            "exclude": [asdict(t) for t in p.targets.exclude],
        },
        "strategy": {
            "type": s.type.value,
            "schedule": s.schedule.value,
            "schedule_time": _time(s.schedule_time),
            "maintenance_window": s.maintenance_window,
            "workers": s.workers,
        },
        "kubernetes_version": p.kubernetes_version,
        "dry_run": p.dry_run,
    }


def parameters_from_json(data: dict[str, Any]) -> OrchestrationParameters:
    targets = data["targets"]
    s = data["strategy"]
    return OrchestrationParameters(
        targets=TargetSpec(
            include=tuple(RuntimeTarget(**t) for t in targets["include"]),
            exclude=tuple(RuntimeTarget(**t) for t in targets["exclude"]),
        ),
        strategy=Strategy(
            type=StrategyType(s["type"]),
            schedule=ScheduleType(s["schedule"]),
            schedule_time=_parse_time(s["schedule_time"]),
            maintenance_window=bool(s["maintenance_window"]),
            workers=int(s["workers"]),
        ),
        kubernetes_version=data["kubernetes_version"],
        dry_run=bool(data["dry_run"]),
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
        counts=OperationCounts(
            {OrchestrationState(k): int(v) for k, v in row.operation_counts.items()}
        ),
        version=row.version,
    )


def _orchestration_values(o: Orchestration) -> dict[str, Any]:
    return {
        "compartment_id": o.compartment_id,
        "state": o.state.value,
        "description": o.description,
        "parameters": parameters_to_json(o.parameters),
        "work_request_id": o.work_request_id,
        "operation_counts": {k.value: v for k, v in o.counts.by_state.items() if v},
        "created_at": o.create_time,
        "updated_at": o.update_time,
        "version": o.version,
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
        self, orchestration_id: str, states: frozenset[OrchestrationState], page: PageRequest
    ) -> Page[OrchestrationOperation]:
        """In id order, with the total count of matching operations."""
        stmt = select(OrchestrationOperationRow).where(
            OrchestrationOperationRow.orchestration_id == orchestration_id
        )
        if states:
            stmt = stmt.where(OrchestrationOperationRow.state.in_(sorted(s.value for s in states)))
        return await paginate(
            self.session,
            stmt,
            Keyset((OrchestrationOperationRow.id,)),
            page,
            fingerprint("orchestration_operations", orchestration_id, sorted(states)),
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

    async def end_waiting(
        self,
        orchestration_id: str,
        now: datetime,
        description: str,
        state: OrchestrationState = OrchestrationState.CANCELED,
    ) -> dict[OrchestrationState, int]:
        """End every operation that has not started in `state`; how many, by their former
        state."""
        ended: dict[OrchestrationState, int] = {}
        for waiting in sorted(WAITING_STATES):
            result = await self.session.execute(
                update(OrchestrationOperationRow)
                .where(
                    OrchestrationOperationRow.orchestration_id == orchestration_id,
                    OrchestrationOperationRow.state == waiting.value,
                )
                .values(
                    state=state.value,
                    description=description,
                    due_at=None,
                    ended_at=now,
                    updated_at=now,
                )
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            if count:
                ended[waiting] = count
        return ended
