"""The engine's park: a handler waits for a time or for its children as a row, not a task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from clusterops_server.clock import FakeClock
from clusterops_server.domain.work_requests import (
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.engine.context import OperationContext
from clusterops_server.engine.engine import Engine
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import (
    OperationParams,
    OrchestrationRunParams,
    UpgradeParams,
    encode_params,
)
from clusterops_server.store.database import Database, default_sqlite_url
from clusterops_server.store.migrate import upgrade_to_head
from clusterops_server.store.uow import Store, UnitOfWork

# Operation types whose params may name a parent, borrowed for the test handlers: the
# parent's params name its children, the child's how long it takes (as its target).
PARENT = OperationType.ORCHESTRATION_RUN
CHILD = OperationType.CLUSTER_UPGRADE


class Parent:
    """Parks for an hour until its children are done, counting how often it runs."""

    operation_type = PARENT

    def __init__(self) -> None:
        self.runs: list[datetime] = []

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        return

    async def run(self, ctx: OperationContext) -> None:
        self.runs.append(ctx.clock.now())
        async with ctx.store.read() as uow:
            children = [
                await uow.work_requests.get(c)
                for c in ctx.params_as(OrchestrationRunParams).orchestration_id.split(",")
            ]
        if all(c is not None and c.status.is_terminal for c in children):
            await ctx.finish(WorkRequestStatus.SUCCEEDED, log="children done")
            return
        await ctx.park(ctx.clock.now() + timedelta(hours=1))

    async def undo(self, ctx: OperationContext) -> None:
        await ctx.finish(WorkRequestStatus.CANCELED)

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        return


class Child:
    """Finishes after waiting as many seconds as its params' target says, on the clock."""

    operation_type = CHILD

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        return

    async def run(self, ctx: OperationContext) -> None:
        await ctx.clock.sleep(float(ctx.params_as(UpgradeParams).target_version))
        await ctx.finish(WorkRequestStatus.SUCCEEDED)

    async def undo(self, ctx: OperationContext) -> None:
        await ctx.finish(WorkRequestStatus.CANCELED)

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        return


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    database = Database(default_sqlite_url(tmp_path / "park.db"))
    await upgrade_to_head(database)
    yield Store(database, clock)
    await database.dispose()


async def add(store: Store, operation_type: OperationType, params: OperationParams) -> str:
    wr = WorkRequest(
        id=new_id(IdKind.WORK_REQUEST),
        compartment_id="dev",
        operation_type=operation_type,
        status=WorkRequestStatus.ACCEPTED,
        time_accepted=store.clock.now(),
    )
    async with store.write() as uow:
        await uow.work_requests.add(wr, params=encode_params(operation_type, params))
        await uow.commit()
    return wr.id


async def status(store: Store, work_request_id: str) -> WorkRequestStatus:
    async with store.read() as uow:
        wr = await uow.work_requests.get(work_request_id)
    assert wr is not None
    return wr.status


async def test_a_parked_work_request_runs_again_when_due_and_holds_no_task_meanwhile(
    store: Store, clock: FakeClock
) -> None:
    parent = Parent()
    engine = Engine(store, clock, {PARENT: parent, CHILD: Child()}, poll_seconds=0.05)
    await engine.start()
    try:
        t0 = clock.now()
        # A child that is never created stands for one that is not done yet.
        parent_id = await add(store, PARENT, OrchestrationRunParams(new_id(IdKind.WORK_REQUEST)))
        engine.wake()
        await engine.wait_idle()
        assert parent.runs == [t0]
        assert engine.running == frozenset()
        assert await status(store, parent_id) is WorkRequestStatus.IN_PROGRESS
        clock.advance(3599)
        await engine.wait_idle()
        assert parent.runs == [t0]
        clock.advance(1)
        await engine.wait_idle()
        assert parent.runs == [t0, t0 + timedelta(hours=1)]
    finally:
        await engine.stop()


async def test_a_finishing_child_makes_its_parked_parent_due_at_once(
    store: Store, clock: FakeClock
) -> None:
    parent = Parent()
    engine = Engine(store, clock, {PARENT: parent, CHILD: Child()}, poll_seconds=0.05)
    await engine.start()
    try:
        t0 = clock.now()
        child_id = new_id(IdKind.WORK_REQUEST)
        parent_id = await add(store, PARENT, OrchestrationRunParams(child_id))
        engine.wake()
        await engine.wait_idle()  # the parent ran once and parked for an hour
        child = WorkRequest(
            id=child_id,
            compartment_id="dev",
            operation_type=CHILD,
            status=WorkRequestStatus.ACCEPTED,
            time_accepted=t0,
        )
        async with store.write() as uow:
            await uow.work_requests.add(
                child,
                params=encode_params(CHILD, UpgradeParams("", "", "60", parent_id)),
            )
            await uow.commit()
        engine.wake()
        await clock.wait_for_sleeper_until(t0 + timedelta(seconds=60))
        clock.advance(60)  # the child finishes long before the parent's hour is up
        await engine.wait_idle()
        assert await status(store, child_id) is WorkRequestStatus.SUCCEEDED
        assert await status(store, parent_id) is WorkRequestStatus.SUCCEEDED
        assert parent.runs == [t0, t0 + timedelta(seconds=60)]
    finally:
        await engine.stop()
