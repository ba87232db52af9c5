"""Upgrade workflows and their task points."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.domain.listing import Page, PageRequest
from clusterops_server.domain.upgrade_workflows import (
    TaskPoint,
    UpgradePhase,
    UpgradeTaskStatus,
    UpgradeTaskType,
    UpgradeWorkflow,
    UpgradeWorkflowQuery,
)
from clusterops_server.store.paging import Keyset, paginate
from clusterops_server.store.tables import UpgradeWorkflowRow


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _point_to_json(p: TaskPoint) -> dict[str, Any]:
    return {
        "task_type": p.task_type.value,
        "status": p.status.value,
        "task_id": p.task_id,
        "start": _time(p.start_time),
        "end": _time(p.end_time),
        "expire": _time(p.expire_time),
        "message": p.message,
    }


def _point_from_json(data: dict[str, Any]) -> TaskPoint:
    return TaskPoint(
        task_type=UpgradeTaskType(data["task_type"]),
        status=UpgradeTaskStatus(data["status"]),
        task_id=data.get("task_id", ""),
        start_time=_parse_time(data.get("start")),
        end_time=_parse_time(data.get("end")),
        expire_time=_parse_time(data.get("expire")),
        message=data.get("message", ""),
    )


def _to_domain(row: UpgradeWorkflowRow) -> UpgradeWorkflow:
    return UpgradeWorkflow(
        id=row.id,
        name=row.name,
        compartment_id=row.compartment_id,
        cluster_id=row.cluster_id,
        cluster_version=row.cluster_version,
        target_version=row.target_version,
        work_request_id=row.work_request_id,
        phase=UpgradePhase(row.phase),
        points=[_point_from_json(p) for p in row.points],
        create_time=row.created_at,
        update_time=row.updated_at,
        labels=dict(row.labels),
        annotations=dict(row.annotations),
        version=row.version,
    )


def _values(w: UpgradeWorkflow) -> dict[str, Any]:
    return {
        "compartment_id": w.compartment_id,
        "cluster_id": w.cluster_id,
        "work_request_id": w.work_request_id,
        "name": w.name,
        "cluster_version": w.cluster_version,
        "target_version": w.target_version,
        "phase": w.phase.value,
        "points": [_point_to_json(p) for p in w.points],
        "labels": dict(w.labels),
        "annotations": dict(w.annotations),
        "created_at": w.create_time,
        "updated_at": w.update_time,
        "version": w.version,
    }


class UpgradeWorkflowRepository:
    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    async def add(self, workflow: UpgradeWorkflow) -> None:
        self.session.add(UpgradeWorkflowRow(id=workflow.id, **_values(workflow)))
        await self.session.flush()

    async def get(self, workflow_id: str, *, for_update: bool = False) -> UpgradeWorkflow | None:
        stmt = select(UpgradeWorkflowRow).where(UpgradeWorkflowRow.id == workflow_id)
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        row = await self.session.scalar(stmt)
        return _to_domain(row) if row else None

    async def by_work_request(self, work_request_id: str) -> UpgradeWorkflow | None:
        row = await self.session.scalar(
            select(UpgradeWorkflowRow).where(UpgradeWorkflowRow.work_request_id == work_request_id)
        )
        return _to_domain(row) if row else None

    async def save(self, workflow: UpgradeWorkflow) -> None:
        row = await self.session.get(UpgradeWorkflowRow, workflow.id)
        assert row is not None, workflow.id
        for key, value in _values(workflow).items():
            setattr(row, key, value)

    async def list_workflows(
        self, query: UpgradeWorkflowQuery, page: PageRequest
    ) -> Page[UpgradeWorkflow]:
        """Newest first."""
        conditions: list[ColumnElement[bool]] = []
        if query.visible_compartments is not None:
            conditions.append(
                UpgradeWorkflowRow.compartment_id.in_(sorted(query.visible_compartments))
            )
        if query.compartment_id:
            conditions.append(UpgradeWorkflowRow.compartment_id == query.compartment_id)
        if query.cluster_id:
            conditions.append(UpgradeWorkflowRow.cluster_id == query.cluster_id)
        if query.phases:
            conditions.append(UpgradeWorkflowRow.phase.in_(sorted(p.value for p in query.phases)))
        return await paginate(
            self.session,
            select(UpgradeWorkflowRow).where(*conditions),
            Keyset((UpgradeWorkflowRow.created_at, UpgradeWorkflowRow.id), descending=True),
            page,
            query.fingerprint(),
            _to_domain,
            key_of=lambda row: (row.created_at, row.id),
        )
