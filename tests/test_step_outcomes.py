"""A journaled step outcome is final: OperationContext.step and the journal beneath it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from clusterops_server.clock import FakeClock
from clusterops_server.domain.work_requests import OperationType, WorkRequest, WorkRequestStatus
from clusterops_server.engine.context import EngineSettings, OperationContext, StepFailed
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import ClusterParams, encode_params
from clusterops_server.store.database import Database, default_sqlite_url
from clusterops_server.store.migrate import upgrade_to_head
from clusterops_server.store.steps import OutcomeRewritten, StepStatus
from clusterops_server.store.uow import Store

OWNER = "engine-test"


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    database = Database(default_sqlite_url(tmp_path / "steps.db"))
    await upgrade_to_head(database)
    yield Store(database, clock)
    await database.dispose()


async def leased_work_request(store: Store) -> str:
    now = store.clock.now()
    wr = WorkRequest(
        id=new_id(IdKind.WORK_REQUEST),
        compartment_id="dev",
        operation_type=OperationType.CLUSTER_CREATE,
        status=WorkRequestStatus.IN_PROGRESS,
        time_accepted=now,
        time_started=now,
    )
    async with store.write() as uow:
        params = encode_params(OperationType.CLUSTER_CREATE, ClusterParams("cls-x"))
        await uow.work_requests.add(wr, params=params)
        await uow.leases.claim(OWNER, now, now.replace(year=now.year + 1), limit=1, exclude=set())
        await uow.commit()
    return wr.id


async def context(store: Store, work_request_id: str) -> OperationContext:
    ctx = OperationContext(store, store.clock, work_request_id, OWNER, EngineSettings())
    await ctx.load()
    return ctx


async def test_a_step_journaled_failed_raises_its_failure_again_without_running(
    store: Store,
) -> None:
    wr_id = await leased_work_request(store)
    async with store.write() as uow:
        await uow.steps.start(wr_id, "create", store.clock.now())
        await uow.steps.finish(
            wr_id,
            "create",
            store.clock.now(),
            StepStatus.FAILED,
            {"code": "NoCapacity", "message": "no capacity in AD-1"},
        )
        await uow.commit()
    runs: list[str] = []

    async def action() -> None:
        runs.append("action")

    async def on_failure(*_: object) -> None:
        runs.append("failure callback")

    ctx = await context(store, wr_id)  # as a restarted server would
    with pytest.raises(StepFailed) as failed:
        await ctx.step("create", action, failed=on_failure)
    assert runs == []
    assert (failed.value.error.code, failed.value.error.message) == (
        "NoCapacity",
        "no capacity in AD-1",
    )


async def test_only_a_step_started_without_an_end_runs_again(store: Store) -> None:
    wr_id = await leased_work_request(store)
    async with store.write() as uow:
        await uow.steps.start(wr_id, "cut-short", store.clock.now())
        await uow.commit()
    ctx = await context(store, wr_id)

    async def action() -> dict[str, object]:
        return {"done": True}

    assert await ctx.step("cut-short", action) == {"done": True}
    assert (await context(store, wr_id)).journal["cut-short"].status is StepStatus.DONE


@pytest.mark.parametrize("outcome", [StepStatus.DONE, StepStatus.FAILED])
async def test_the_journal_refuses_to_rewrite_an_outcome(store: Store, outcome: StepStatus) -> None:
    wr_id = await leased_work_request(store)
    async with store.write() as uow:
        await uow.steps.start(wr_id, "once", store.clock.now())
        await uow.steps.finish(wr_id, "once", store.clock.now(), outcome, {})
        await uow.commit()
    async with store.write() as uow:
        with pytest.raises(OutcomeRewritten):
            await uow.steps.start(wr_id, "once", store.clock.now())
    async with store.write() as uow:
        with pytest.raises(OutcomeRewritten):
            await uow.steps.finish(wr_id, "once", store.clock.now(), StepStatus.DONE, {})
