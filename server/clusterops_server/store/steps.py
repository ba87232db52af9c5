"""The step journal: each step's start and end, committed before the next step begins.

An end (DONE or FAILED) is final: only a step journaled STARTED, whose run a crash cut
short, may start again, and nothing rewrites an outcome. `forget` removes entries on
purpose, for steps a handler decides to run afresh (a new task id is the usual way).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clusterops_server.store.tables import WorkRequestStepRow


class StepStatus(StrEnum):
    STARTED = "STARTED"
    DONE = "DONE"
    FAILED = "FAILED"


class OutcomeRewritten(Exception):
    """A step that already has an outcome was started or ended again: a handler bug."""

    def __init__(self, work_request_id: str, key: str, status: str) -> None:
        super().__init__(f"step {key} of {work_request_id} is {status}; its outcome is final")


@dataclass(frozen=True)
class StepRecord:
    key: str
    status: StepStatus
    started_at: datetime
    ended_at: datetime | None
    result: dict[str, Any] | None


class StepRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def journal(self, work_request_id: str) -> dict[str, StepRecord]:
        rows = await self.session.scalars(
            select(WorkRequestStepRow).where(WorkRequestStepRow.work_request_id == work_request_id)
        )
        return {
            r.step_key: StepRecord(
                r.step_key, StepStatus(r.status), r.started_at, r.ended_at, r.result
            )
            for r in rows
        }

    async def start(self, work_request_id: str, key: str, now: datetime) -> None:
        existing = await self.session.get(WorkRequestStepRow, (work_request_id, key))
        if existing is None:
            self.session.add(
                WorkRequestStepRow(
                    work_request_id=work_request_id,
                    step_key=key,
                    status=StepStatus.STARTED.value,
                    started_at=now,
                    ended_at=None,
                    result=None,
                )
            )
        else:
            if existing.status != StepStatus.STARTED.value:
                raise OutcomeRewritten(work_request_id, key, existing.status)
            # A step cut short by a crash starts over.
            existing.status = StepStatus.STARTED.value
            existing.started_at = now
            existing.ended_at = None
            existing.result = None

    async def finish(
        self,
        work_request_id: str,
        key: str,
        now: datetime,
        status: StepStatus,
        result: dict[str, Any] | None,
    ) -> None:
        ended = await self.session.execute(
            update(WorkRequestStepRow)
            .where(
                WorkRequestStepRow.work_request_id == work_request_id,
                WorkRequestStepRow.step_key == key,
                WorkRequestStepRow.status == StepStatus.STARTED.value,
            )
            .values(status=status.value, ended_at=now, result=result)
        )
        if getattr(ended, "rowcount", 1) != 1:
            raise OutcomeRewritten(work_request_id, key, "not STARTED")

    async def forget(self, work_request_id: str, prefix: str) -> None:
        """Drop journal entries under `prefix` so those steps run again (e.g. an expired check)."""
        rows = await self.session.scalars(
            select(WorkRequestStepRow).where(
                WorkRequestStepRow.work_request_id == work_request_id,
                WorkRequestStepRow.step_key.startswith(prefix, autoescape=True),
            )
        )
        for row in rows:
            await self.session.delete(row)
