"""Row locks on PostgreSQL come in one order (store/uow.py): work request, then domain rows.

Each test holds a work request's row the way an engine step does (locked first), lets a
service call or a finishing child run into that lock, and then asks for the domain rows
the step would go on to lock. The call must be waiting without holding any of them: had
it locked them before the work request, the two transactions would wait for each other
and PostgreSQL would abort one with a deadlock error, failing the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings
from clusterops_server.store.uow import UnitOfWork
from sqlalchemy import text

from tests.addon_helpers import get_addon, install, next_wakeup, run_next_check
from tests.conftest import AppFactory, connect, seed_cluster, simulator
from tests.helpers import watch_to_end
from tests.orchestration_helpers import (
    GatedProvider,
    create,
    gated,
    logged,
    operations,
    watch_until,
)
from tests.upgrade_helpers import create_upgrade, get_workflow

# A lock wait in the test's own transaction gives up after this long rather than hang.
LOCK_TIMEOUT_SECONDS = 5
# The statements a call is found waiting in.
LOCKING_A_WORK_REQUEST = "%FROM work_requests%FOR UPDATE%"
WAKING_A_WORK_REQUEST = "UPDATE work_requests SET run_after%"


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


@asynccontextmanager
async def engine_step(app: App, work_request_id: str) -> AsyncIterator[UnitOfWork]:
    """A transaction holding the work request's row, as a step holds it while it runs."""
    async with app.store.write() as uow:
        await uow.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"))
        assert await uow.work_requests.get(work_request_id, for_update=True) is not None
        yield uow
        await uow.commit()


async def blocked_on_lock(app: App, statement: str, *, within: float = 10.0) -> None:
    """Wait until a connection to the test's database waits for a lock in `statement`
    (a LIKE pattern). Nothing signals this, so pg_stat_activity is polled."""
    deadline = time.monotonic() + within
    while True:
        async with app.store.read() as uow:
            waiting = await uow.session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE :statement"
                ),
                {"statement": statement},
            )
        if waiting:
            return
        assert time.monotonic() < deadline, f"nothing came to wait for a lock in {statement}"
        await asyncio.sleep(0.01)


async def test_cancel_upgrade_workflow_locks_the_work_request_before_the_workflow(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"upgrade:PreCheck": 60}))
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        created = await create_upgrade(stubs, cluster.id)
        workflow_id = created.upgrade_workflow.metadata.uid
        await clock.wait_for_sleepers(1)  # PreCheck runs
        async with engine_step(app, created.work_request.id) as step:
            cancel = asyncio.ensure_future(
                stubs.upgrade_workflows.CancelUpgradeWorkflow(
                    uw_pb.CancelUpgradeWorkflowRequest(upgrade_workflow_id=workflow_id)
                )
            )
            await blocked_on_lock(app, LOCKING_A_WORK_REQUEST)
            workflow = await step.upgrade_workflows.get(workflow_id, for_update=True)
            assert workflow is not None
            # The step changes the workflow; the cancel must see it once it has the lock.
            workflow.annotations["noted-by"] = "the engine"
            workflow.touch(clock.now())
            await step.upgrade_workflows.save(workflow)
        canceled = (await cancel).upgrade_workflow
        assert canceled.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
        stored = await get_workflow(stubs, workflow_id)
        assert stored.metadata.annotations["noted-by"] == "the engine"
        clock.advance(60)
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED


async def test_cancel_and_retry_orchestration_lock_the_run_before_the_orchestration(
    make_app: AppFactory,
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    async with connect(app) as stubs:
        failing = await seed_cluster(app)
        held = await seed_cluster(app)
        await gated(app).inject_fault("upgrade:PreCheck", failing.id)
        created = await create(stubs, workers=2)
        orchestration_id = created.orchestration.id
        run_id = created.work_request.id
        assert await gated(app).next_entered() == held.id
        await watch_until(stubs, run_id, logged("Upgrade failed"))

        async with engine_step(app, run_id) as step:
            retry = asyncio.ensure_future(
                stubs.orchestrations.RetryOrchestration(
                    orc_pb.RetryOrchestrationRequest(orchestration_id=orchestration_id)
                )
            )
            await blocked_on_lock(app, LOCKING_A_WORK_REQUEST)
            assert await step.orchestrations.get(orchestration_id, for_update=True) is not None
        retried = await retry
        assert retried.orchestration.state == orc_pb.ORCHESTRATION_STATE_RETRYING

        async with engine_step(app, run_id) as step:
            cancel = asyncio.ensure_future(
                stubs.orchestrations.CancelOrchestration(
                    orc_pb.CancelOrchestrationRequest(orchestration_id=orchestration_id)
                )
            )
            await blocked_on_lock(app, LOCKING_A_WORK_REQUEST)
            assert await step.orchestrations.get(orchestration_id, for_update=True) is not None
        canceled = await cancel
        assert canceled.orchestration.state == orc_pb.ORCHESTRATION_STATE_CANCELING

        # Whatever is running finishes (the retried operation too, if it had started).
        gated(app).release(held.id)
        gated(app).release(failing.id)
        events = await watch_to_end(stubs, run_id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED


async def test_a_finishing_upgrade_wakes_its_orchestration_before_locking_its_own_rows(
    make_app: AppFactory,
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        created = await create(stubs)
        assert await gated(app).next_entered() == cluster.id
        (operation,) = await operations(stubs, created.orchestration.id)
        async with engine_step(app, created.work_request.id) as step:
            gated(app).release(cluster.id)
            await blocked_on_lock(app, WAKING_A_WORK_REQUEST)
            workflow_id = operation.upgrade_workflow_id
            assert await step.upgrade_workflows.get(workflow_id, for_update=True) is not None
            assert await step.inventory.get_cluster(cluster.id, for_update=True) is not None
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_update_addon_locks_the_open_reconciliation_before_the_addon(
    app: App, clock: FakeClock
) -> None:
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        await install(stubs, cluster.id)
        await simulator(app).make_addon_unhealthy(cluster.id, "CertManager", "pods pending")
        checked_at = await run_next_check(clock)
        assert await next_wakeup(clock) == checked_at + timedelta(minutes=2)
        waiting = (await get_addon(stubs, cluster.id)).work_request_id

        async with engine_step(app, waiting) as step:
            update = asyncio.ensure_future(
                stubs.addons.UpdateAddon(
                    ad_pb.UpdateAddonRequest(
                        cluster_id=cluster.id, name="CertManager", version="v1.13.3"
                    )
                )
            )
            await blocked_on_lock(app, LOCKING_A_WORK_REQUEST)
            assert await step.addons.get(cluster.id, "CertManager", for_update=True) is not None
            # Healthy again before the update checks it, so its work request can end.
            await simulator(app).make_addon_unhealthy(
                cluster.id, "CertManager", "pods pending", until=clock.now()
            )
        updated = await update
        assert updated.addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_UPDATING
        await watch_to_end(stubs, updated.work_request.id)
