"""Rollouts under control (issue 16) on the injectable clock: stages with soak and approval,
failure budgets, pause and resume, and what each pending operation waits for."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, Stubs, connect, seed_cluster
from tests.helpers import details_of, watch_to_end
from tests.orchestration_helpers import (
    GatedProvider,
    assert_counts_match_the_operations,
    by_runtime,
    counts,
    gated,
    get,
    logged,
    operations,
    running_in_store,
    watch_until,
)
from tests.rollout_helpers import (
    STAGE,
    WAIT,
    create_rollout,
    pause,
    resume,
    stage,
    stage_states,
    waits,
    when,
)
from tests.test_orchestration_scheduling import at
from tests.upgrade_helpers import errors_of, logs_of

STATE = orc_pb.OrchestrationState


@pytest.mark.both_backends
async def test_a_three_stage_rollout_soaks_between_stages_and_waits_for_approval(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    fleet = sorted([(await seed_cluster(app, window=None)).id for _ in range(6)])
    created = await create_rollout(
        stubs,
        stages=[
            stage("canary", count=1, soak=timedelta(minutes=30)),
            stage("half", percent=50, soak=timedelta(hours=1), workers=2),
            stage("rest", approval=True),
        ],
        reason="quarterly upgrade",
    )
    orchestration_id = created.orchestration.id
    assert created.work_request.reason == "quarterly upgrade"
    assert created.work_request.created_by == "system"
    # Runtime id order: the canary is the first; half of the five left, rounded up, is 3.
    ops = await by_runtime(stubs, orchestration_id)
    assert [ops[c].stage for c in fleet] == ["canary"] + ["half"] * 3 + ["rest"] * 2
    canary, half, rest = fleet[0], fleet[1:4], fleet[4:]

    await app.engine.wait_idle()
    soaking = await get(stubs, orchestration_id)
    assert soaking.state == STATE.ORCHESTRATION_STATE_IN_PROGRESS
    assert stage_states(soaking) == {
        "canary": STAGE.STAGE_STATE_SOAKING,
        "half": STAGE.STAGE_STATE_PENDING,
        "rest": STAGE.STAGE_STATE_PENDING,
    }
    assert when(soaking.stages[0].soak_end_time) == at(9, 30)
    assert when(soaking.stages[0].end_time) == at(9)
    assert soaking.stages[0].operation_counts.succeeded == 1
    soak_waits = {c: (WAIT.OPERATION_WAIT_REASON_SOAK, at(9, 30)) for c in half}
    stage_waits = dict.fromkeys(rest, (WAIT.OPERATION_WAIT_REASON_STAGE, None))
    assert await waits(stubs, orchestration_id) == soak_waits | stage_waits

    # A minute before the soak ends nothing has moved; at its end the next stage runs.
    clock.advance_to(at(9, 29))
    await app.engine.wait_idle()
    assert await waits(stubs, orchestration_id) == soak_waits | stage_waits
    clock.advance_to(at(9, 30))
    await app.engine.wait_idle()
    second = await get(stubs, orchestration_id)
    assert stage_states(second) == {
        "canary": STAGE.STAGE_STATE_COMPLETED,
        "half": STAGE.STAGE_STATE_SOAKING,
        "rest": STAGE.STAGE_STATE_PENDING,
    }
    assert when(second.stages[1].start_time) == at(9, 30)
    assert when(second.stages[1].soak_end_time) == at(10, 30)
    assert {c: (await by_runtime(stubs, orchestration_id))[c].state for c in half} == dict.fromkeys(
        half, STATE.ORCHESTRATION_STATE_SUCCEEDED
    )
    assert await waits(stubs, orchestration_id) == {
        c: (WAIT.OPERATION_WAIT_REASON_SOAK, at(10, 30)) for c in rest
    }

    # The soak over, the gate holds: hours later nothing has started.
    clock.advance_to(at(10, 30))
    await app.engine.wait_idle()
    clock.advance_to(at(13))
    await app.engine.wait_idle()
    gated_at = await get(stubs, orchestration_id)
    assert stage_states(gated_at)["rest"] == STAGE.STAGE_STATE_WAITING_FOR_APPROVAL
    assert gated_at.state == STATE.ORCHESTRATION_STATE_IN_PROGRESS
    assert await waits(stubs, orchestration_id) == dict.fromkeys(
        rest, (WAIT.OPERATION_WAIT_REASON_APPROVAL, None)
    )

    approved = await stubs.orchestrations.ApproveOrchestrationStage(
        orc_pb.ApproveOrchestrationStageRequest(
            orchestration_id=orchestration_id, stage="rest", reason="canary looks healthy"
        )
    )
    assert approved.orchestration.stages[2].approved_by == "system"
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    done = await get(stubs, orchestration_id)
    assert done.state == STATE.ORCHESTRATION_STATE_SUCCEEDED
    assert set(stage_states(done).values()) == {STAGE.STAGE_STATE_COMPLETED}
    assert when(done.stages[2].start_time) == at(13)
    assert when(done.stages[2].approve_time) == at(13)
    assert [s.operation_counts.total for s in done.stages] == [1, 3, 2]
    finished = await by_runtime(stubs, orchestration_id)
    assert when(finished[canary].start_time) == at(9)
    assert {when(finished[c].start_time) for c in rest} == {at(13)}
    logs = await logs_of(stubs, created.work_request.id)
    assert 'Stage "rest" approved by system: canary looks healthy' in logs
    assert 'Stage "canary" ended; soaking until 2026-01-05T09:30:00Z' in logs
    await assert_counts_match_the_operations(app, orchestration_id)

    # Operations are listed by stage.
    page = await stubs.orchestrations.ListOrchestrationOperations(
        orc_pb.ListOrchestrationOperationsRequest(orchestration_id=orchestration_id, stage="half")
    )
    assert sorted(op.runtime_id for op in page.data) == half
    assert page.total_count == 3
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stubs.orchestrations.ListOrchestrationOperations(
            orc_pb.ListOrchestrationOperationsRequest(
                orchestration_id=orchestration_id, stage="nope"
            )
        )
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "canary, half, rest" in details_of(unknown.value).message


@pytest.mark.both_backends
async def test_a_failure_budget_of_one_halts_after_the_second_failure_running_ones_finish(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    provider = gated(app)
    async with connect(app) as stubs:
        for _ in range(5):
            await seed_cluster(app, window=None)
        # Scheduled, so that the faults are in place before anything starts.
        created = await create_rollout(
            stubs,
            max_failures=1,
            workers=2,
            schedule=orc_pb.SCHEDULE_TYPE_TIME,
            schedule_time=at(9, 10),
        )
        orchestration_id = created.orchestration.id
        # Operations start in id order: the 1st and 3rd fail, the 2nd is held running.
        order = [op.runtime_id for op in await operations(stubs, orchestration_id)]
        first, second, third, fourth, fifth = order
        for failing in (first, third):
            await provider.inject_fault("upgrade:PreCheck", failing, message="broken")
        assert await waits(stubs, orchestration_id) == {
            c: (WAIT.OPERATION_WAIT_REASON_SCHEDULE, at(9, 10)) for c in order
        }

        clock.advance_to(at(9, 10))
        assert await provider.next_entered() == second
        # The engine is not idle while an upgrade is held: follow the run's log instead.
        await watch_until(stubs, created.work_request.id, logged("Failure budget exceeded"))
        halted = await get(stubs, orchestration_id)
        ops = await by_runtime(stubs, orchestration_id)
        assert [ops[c].state for c in order] == [
            STATE.ORCHESTRATION_STATE_FAILED,
            STATE.ORCHESTRATION_STATE_IN_PROGRESS,
            STATE.ORCHESTRATION_STATE_FAILED,
            STATE.ORCHESTRATION_STATE_PENDING,
            STATE.ORCHESTRATION_STATE_PENDING,
        ]
        # Halted, not ended: the running operation finishes first.
        assert halted.state == STATE.ORCHESTRATION_STATE_IN_PROGRESS
        assert halted.description.startswith("Failure budget exceeded (the orchestration's")
        assert await running_in_store(app.store) == (1, 1)
        assert await waits(stubs, orchestration_id) == {
            fourth: (WAIT.OPERATION_WAIT_REASON_FAILURE_BUDGET, None),
            fifth: (WAIT.OPERATION_WAIT_REASON_FAILURE_BUDGET, None),
        }

        provider.release(second)
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
        failed = await get(stubs, orchestration_id)
        assert failed.state == STATE.ORCHESTRATION_STATE_FAILED
        assert failed.failure_reason == "FAILURE_BUDGET_EXCEEDED"
        assert counts(failed) == {"succeeded": 1, "failed": 2, "pending": 2, "total": 5}
        errors = await errors_of(stubs, created.work_request.id)
        assert errors[0].code == "FAILURE_BUDGET_EXCEEDED"
        assert "at most 1 failed operation: 2 failed" in errors[0].message
        for failing in (first, third):
            assert ops[failing].id in errors[0].message
        assert events[-1].work_request.last_error.code == errors[-1].code
        assert ops[fourth].id not in errors[0].message

        # Fixed, a retry continues from there: the failed ones again, then the rest.
        await provider.clear_faults()
        for cluster in order:
            provider.release(cluster)
        retried = await stubs.orchestrations.RetryOrchestration(
            orc_pb.RetryOrchestrationRequest(
                orchestration_id=orchestration_id, reason="fixed the pre-check"
            )
        )
        assert sorted(retried.retried_operation_ids) == sorted([ops[first].id, ops[third].id])
        assert retried.orchestration.failure_reason == ""
        rerun = retried.orchestration.work_request_id
        events = await watch_to_end(stubs, rerun)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
        assert counts(await get(stubs, orchestration_id)) == {"succeeded": 5, "total": 5}
        await assert_counts_match_the_operations(app, orchestration_id)


@pytest.mark.both_backends
async def test_each_pending_operation_says_what_it_waits_for_at_each_moment(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    provider = gated(app)
    async with connect(app) as stubs:
        busy = await seed_cluster(app, name="busy", window=None)
        free = await seed_cluster(app, name="free", window=None)
        windowed = [
            (await seed_cluster(app, name=f"later-{i}", window=("10:00", "12:00"))).id
            for i in range(3)
        ]
        # Another work request holds one cluster (an upgrade, held at its Cluster task).
        holder = await stubs.upgrade_workflows.CreateUpgradeWorkflow(
            uw_pb.CreateUpgradeWorkflowRequest(cluster_id=busy.id, target_version="v1.30.4")
        )
        assert await provider.next_entered() == busy.id
        created = await create_rollout(
            stubs,
            max_failures=10,  # a rollout under control: it waits for a busy cluster
            workers=2,
            maintenance_window=True,
            schedule=orc_pb.SCHEDULE_TYPE_TIME,
            schedule_time=at(9, 10),
        )
        orchestration_id, run = created.orchestration.id, created.work_request.id
        everyone = (busy.id, free.id, *windowed)
        assert await waits(stubs, orchestration_id) == {
            c: (WAIT.OPERATION_WAIT_REASON_SCHEDULE, at(9, 10)) for c in everyone
        }

        clock.advance_to(at(9, 10))
        # Its upgrade runs only after the pass that started it committed.
        assert await provider.next_entered() == free.id
        window = (WAIT.OPERATION_WAIT_REASON_MAINTENANCE_WINDOW, at(10))
        assert await waits(stubs, orchestration_id) == {
            busy.id: (WAIT.OPERATION_WAIT_REASON_CLUSTER_BUSY, at(9, 11)),
            **dict.fromkeys(windowed, window),
        }
        op = (await by_runtime(stubs, orchestration_id))[busy.id]
        assert holder.work_request.id in op.wait_detail

        paused = await pause(stubs, orchestration_id, "change freeze")
        assert paused.state == STATE.ORCHESTRATION_STATE_PAUSED
        assert paused.pause.reason == "change freeze"
        paused_waits = dict.fromkeys((busy.id, *windowed), (WAIT.OPERATION_WAIT_REASON_PAUSE, None))
        assert await waits(stubs, orchestration_id) == paused_waits
        # Paused through the windows' opening: the running operation finishes, and the
        # pass that records it starts nothing.
        clock.advance_to(at(10, 5))
        free_op = (await by_runtime(stubs, orchestration_id))[free.id]
        provider.release(free.id)
        await watch_until(
            stubs, run, logged(f"Operation {free_op.id} on cluster {free.id}: Upgraded")
        )
        assert (await get(stubs, orchestration_id)).state == STATE.ORCHESTRATION_STATE_PAUSED
        assert await running_in_store(app.store) == (0, 1)
        assert await waits(stubs, orchestration_id) == paused_waits

        resumed = await resume(stubs, orchestration_id, "freeze lifted")
        assert resumed.state == STATE.ORCHESTRATION_STATE_IN_PROGRESS
        # Two workers: the busy cluster is tried first (due earliest) and still held, so
        # two windowed clusters run and the third waits for a worker.
        started = {await provider.next_entered(), await provider.next_entered()}
        assert started < set(windowed)
        (left,) = set(windowed) - started
        now_waiting = await waits(stubs, orchestration_id)
        assert now_waiting == {
            busy.id: (WAIT.OPERATION_WAIT_REASON_CLUSTER_BUSY, at(10, 6)),
            left: (WAIT.OPERATION_WAIT_REASON_WORKER, None),
        }
        logs = await logs_of(stubs, run)
        assert (
            "Paused by system: change freeze; no operation starts until it is resumed, "
            "running ones finish" in logs
        )
        assert "Resumed by system: freeze lifted" in logs

        for cluster in everyone:
            provider.release(cluster)
        await watch_to_end(stubs, holder.work_request.id)
        clock.advance_to(at(10, 7))
        events = await watch_to_end(stubs, run)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
        assert await waits(stubs, orchestration_id) == {}


async def test_bad_rollout_settings_are_refused_with_every_field_named(
    app: App, stubs: Stubs
) -> None:
    await seed_cluster(app, window=None)
    bad_soak = stage("b")
    bad_soak.soak.seconds = -5
    too_long = stage("c", soak=timedelta(days=8))
    both = stage("d", count=1, percent=10)
    both_budgets = stage("e")
    both_budgets.failure_budget.max_failures = 1
    both_budgets.failure_budget.max_failure_percent = 10
    field = "parameters.strategy.stages"
    # At most five violations are listed in one answer: two requests.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_rollout(
            stubs, stages=[stage("a"), stage("a"), stage("Bad Name"), bad_soak, too_long]
        )
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details.fields) == {
        f"{field}[1].name",
        f"{field}[2].name",
        f"{field}[3].soak",
        f"{field}[4].soak",
    }
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_rollout(
            stubs,
            stages=[both, both_budgets, stage("f", percent=101, workers=-1)],
            reason="x" * 501,
        )
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(details.fields) == {
        f"{field}[0]",
        f"{field}[1].failure_budget",
        f"{field}[2].percent",
        f"{field}[2].workers",
        "reason",
    }

    # Targets that no stage takes: the precondition names how many.
    await seed_cluster(app, window=None)
    with pytest.raises(grpc.aio.AioRpcError) as unstaged:
        await create_rollout(stubs, stages=[stage("canary", count=1)])
    details = details_of(unstaged.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.precondition is not None
    assert details.precondition.violations[0].type == "UNSTAGED_TARGETS"
    assert "1 target(s) fall into no stage" in details.message

    with pytest.raises(grpc.aio.AioRpcError) as past:
        await create_rollout(stubs, pause_at=at(8))
    assert details_of(past.value).fields == ["parameters.strategy.pause_at"]


async def test_wrong_states_and_gateless_stages_are_failed_preconditions(
    app: App, stubs: Stubs
) -> None:
    await seed_cluster(app, window=None)
    created = await create_rollout(stubs, stages=[stage("all")])
    orchestration_id = created.orchestration.id
    await watch_to_end(stubs, created.work_request.id)
    for call in (
        stubs.orchestrations.ResumeOrchestration(
            orc_pb.ResumeOrchestrationRequest(orchestration_id=orchestration_id)
        ),
        stubs.orchestrations.PauseOrchestration(
            orc_pb.PauseOrchestrationRequest(orchestration_id=orchestration_id)
        ),
        stubs.orchestrations.ApproveOrchestrationStage(
            orc_pb.ApproveOrchestrationStageRequest(orchestration_id=orchestration_id, stage="all")
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        details = details_of(refused.value)
        assert details.code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.precondition is not None
    with pytest.raises(grpc.aio.AioRpcError) as no_id:
        await stubs.orchestrations.PauseOrchestration(orc_pb.PauseOrchestrationRequest())
    assert details_of(no_id.value).fields == ["orchestration_id"]


async def test_pause_at_pauses_by_itself_once_and_a_resume_is_final(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    for _ in range(2):
        await seed_cluster(app, window=None)
    created = await create_rollout(
        stubs,
        stages=[stage("canary", count=1, soak=timedelta(hours=1)), stage("rest")],
        pause_at=at(9, 30),
    )
    orchestration_id = created.orchestration.id
    await app.engine.wait_idle()
    clock.advance_to(at(9, 30))
    await app.engine.wait_idle()
    paused = await get(stubs, orchestration_id)
    assert paused.state == STATE.ORCHESTRATION_STATE_PAUSED
    assert paused.pause.paused_by == "system"
    assert paused.pause.reason == "pause_at 2026-01-05T09:30:00Z reached"
    # The soak ends while paused: the next stage does not start.
    clock.advance_to(at(11))
    await app.engine.wait_idle()
    assert (await get(stubs, orchestration_id)).state == STATE.ORCHESTRATION_STATE_PAUSED
    assert list((await waits(stubs, orchestration_id)).values()) == [
        (WAIT.OPERATION_WAIT_REASON_PAUSE, None)
    ]
    await resume(stubs, orchestration_id)
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    done = await get(stubs, orchestration_id)
    assert done.state == STATE.ORCHESTRATION_STATE_SUCCEEDED
    assert not done.HasField("pause")


async def test_get_estimates_the_end_from_finished_durations_and_workers(
    make_app: AppFactory, clock: FakeClock
) -> None:
    # Every simulated step takes a minute: an upgrade takes several.
    app = await make_app(simulation=SimulationSettings(default_seconds=60))
    async with connect(app) as stubs:
        for _ in range(3):
            await seed_cluster(app, window=None)
        created = await create_rollout(stubs, max_failures=0, workers=1)
        orchestration_id = created.orchestration.id
        assert not (await get(stubs, orchestration_id)).HasField("estimated_end_time")
        # Drive the first upgrade to its end, minute by minute.
        while (await get(stubs, orchestration_id)).operation_counts.succeeded < 1:
            await clock.wait_for_sleepers(1)
            clock.advance(60)
        first = [op for op in await operations(stubs, orchestration_id) if op.HasField("end_time")]
        took = when(first[0].end_time) - when(first[0].start_time)
        estimate = await get(stubs, orchestration_id)
        now = clock.now()
        # Two operations left, one worker: two more durations from now.
        assert when(estimate.estimated_end_time) == now + 2 * took
