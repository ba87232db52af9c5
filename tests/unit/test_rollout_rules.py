"""The rules of a rollout under control, as plain Python (domain/rollouts.py): stage
selection, stages opening and soaking, failure budgets, wait reasons, the estimate."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from clusterops_server.domain import rollouts
from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.inventory import Cluster, ClusterState, MaintenanceWindow
from clusterops_server.domain.orchestrations import (
    FailureBudget,
    Orchestration,
    OrchestrationOperation,
    OrchestrationParameters,
    OrchestrationState,
    Rollout,
    StageSpec,
    StageState,
    Strategy,
)
from clusterops_server.domain.rollouts import WaitReason
from clusterops_server.domain.targets import RuntimeTarget, TargetSpec

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PENDING = OrchestrationState.PENDING
FAILED = OrchestrationState.FAILED
SUCCEEDED = OrchestrationState.SUCCEEDED
RUNNING = OrchestrationState.IN_PROGRESS


def cluster(
    n: int, region: str = "eu-frankfurt-1", window: MaintenanceWindow | None = None
) -> Cluster:
    return Cluster(
        id=f"cls-{n:020x}",
        compartment_id="dev",
        name=f"c{n}",
        kubernetes_version="v1.29.8",
        region=region,
        plan="aws",
        global_account_id="ga",
        sub_account_id="sa",
        shoot_name=f"s{n}",
        lifecycle_state=ClusterState.ACTIVE,
        create_time=NOW,
        update_time=NOW,
        maintenance_window=window,
    )


def orchestration(
    strategy: Strategy, stage_of: list[int]
) -> tuple[Orchestration, list[OrchestrationOperation]]:
    params = OrchestrationParameters(
        TargetSpec((RuntimeTarget(target="all"),)), strategy, "v1.30.4"
    )
    orc = Orchestration(
        id="orc-1",
        compartment_id="dev",
        state=RUNNING,
        description="",
        parameters=params,
        work_request_id="wr-1",
        create_time=NOW,
        update_time=NOW,
        rollout=Rollout(stages=rollouts.initial_stages(strategy.stages)),
    )
    ops = []
    for i, stage in enumerate(stage_of):
        op = OrchestrationOperation.for_cluster(
            f"op-{i}", orc.id, cluster(i), params, NOW, NOW, stage
        )
        orc.move(stage, None, op.state)
        ops.append(op)
    return orc, ops


def end(orc: Orchestration, op: OrchestrationOperation, state: OrchestrationState) -> None:
    before = op.state
    op.end(state, "", NOW)
    orc.move(op.stage, before, state)


def test_stages_take_a_count_then_a_percentage_of_the_rest_rounded_up_then_all_left() -> None:
    fleet = [cluster(n) for n in (5, 1, 4, 2, 3, 6, 7, 8, 9, 10, 11)]
    stages = [StageSpec("canary", count=1), StageSpec("tenth", percent=10), StageSpec("rest")]
    stage_of = dict(zip((c.id for c in fleet), rollouts.assign_stages(stages, fleet), strict=True))
    # In runtime id order: the canary is the lowest id; 10 % of ten is one; the rest nine.
    assert stage_of[cluster(1).id] == 0
    assert stage_of[cluster(2).id] == 1
    assert sorted(stage_of.values()) == [0, 1] + [2] * 9


def test_a_target_list_stage_takes_only_matching_clusters_not_taken_before() -> None:
    fleet = [cluster(1, "us-ashburn-1"), cluster(2, "us-ashburn-1"), cluster(3)]
    stages = [
        StageSpec("one", count=1),
        StageSpec("us", targets=TargetSpec((RuntimeTarget(region="^us-"),))),
        StageSpec("rest"),
    ]
    assert rollouts.assign_stages(stages, fleet) == [0, 1, 2]


def test_targets_no_stage_takes_are_refused_naming_how_many() -> None:
    with pytest.raises(FailedPrecondition) as refused:
        rollouts.assign_stages([StageSpec("canary", count=1)], [cluster(1), cluster(2), cluster(3)])
    assert refused.value.reason == "UNSTAGED_TARGETS"
    assert "2 target(s) fall into no stage" in refused.value.explanation


def test_a_stage_soaks_after_its_last_operation_and_the_gate_waits_for_approval() -> None:
    strategy = Strategy(
        stages=(
            StageSpec("canary", count=1, soak=timedelta(minutes=30)),
            StageSpec("rest", requires_approval=True),
        )
    )
    orc, ops = orchestration(strategy, [0, 1])
    moves = rollouts.advance_stages(strategy, orc, NOW)
    assert moves.opened == [0]
    assert rollouts.wait_of(orc, ops[1], NOW) == rollouts.Wait(
        WaitReason.STAGE, None, 'stage "canary" (running) must end before stage "rest" starts'
    )
    end(orc, ops[0], SUCCEEDED)
    rollouts.advance_stages(strategy, orc, NOW)
    assert orc.rollout.stages[0].state is StageState.SOAKING
    soak_end = NOW + timedelta(minutes=30)
    wait = rollouts.wait_of(orc, ops[1], NOW)
    assert wait is not None
    assert (wait.reason, wait.until) == (WaitReason.SOAK, soak_end)
    # Not a second early.
    assert rollouts.advance_stages(strategy, orc, soak_end - timedelta(seconds=1)).opened == []
    moves = rollouts.advance_stages(strategy, orc, soak_end)
    assert moves.opened == []
    assert orc.rollout.stages[1].state is StageState.WAITING_FOR_APPROVAL
    wait = rollouts.wait_of(orc, ops[1], soak_end)
    assert wait is not None
    assert wait.reason is WaitReason.APPROVAL
    orc.rollout.stages[1].approved_by = "alice"
    assert rollouts.advance_stages(strategy, orc, soak_end).opened == [1]


def test_a_budget_is_exceeded_by_the_failure_after_the_last_one_allowed() -> None:
    strategy = Strategy(failure_budget=FailureBudget(max_failures=1))
    orc, ops = orchestration(strategy, [0, 0, 0, 0])
    end(orc, ops[0], FAILED)
    assert rollouts.exceeded_budget(strategy, orc) is None
    end(orc, ops[1], FAILED)
    assert rollouts.exceeded_budget(strategy, orc) == (
        "the orchestration's budget, at most 1 failed operation: 2 failed"
    )


def test_a_percentage_budget_rounds_down_and_a_stage_budget_counts_its_stage_only() -> None:
    assert FailureBudget(percent=10).allowed(19) == 1
    strategy = Strategy(
        stages=(StageSpec("canary", count=1, failure_budget=FailureBudget()), StageSpec("rest"))
    )
    orc, ops = orchestration(strategy, [0, 1, 1])
    end(orc, ops[1], FAILED)
    assert rollouts.exceeded_budget(strategy, orc) is None
    end(orc, ops[0], FAILED)
    exceeded = rollouts.exceeded_budget(strategy, orc)
    assert exceeded is not None
    assert exceeded.startswith('stage "canary"')


def test_pause_comes_before_every_other_reason_and_resume_restores_the_state() -> None:
    strategy = Strategy(stages=(StageSpec("a", count=1), StageSpec("b")))
    orc, ops = orchestration(strategy, [0, 1])
    rollouts.pause(orc, "bob", "freeze", NOW)
    assert orc.state is OrchestrationState.PAUSED
    for op in ops:
        wait = rollouts.wait_of(orc, op, NOW)
        assert wait is not None
        assert wait.reason is WaitReason.PAUSE
        assert "paused by bob: freeze" in wait.detail
    rollouts.resume(orc)
    assert orc.state is RUNNING
    assert orc.rollout.pause is None


def test_pause_at_pauses_once() -> None:
    at = NOW + timedelta(hours=1)
    orc, _ = orchestration(Strategy(pause_at=at), [0])
    assert not rollouts.pause_at_due(orc, at - timedelta(seconds=1))
    assert rollouts.pause_at_due(orc, at)
    assert not rollouts.pause_at_due(orc, at + timedelta(hours=1))


def test_a_windowed_operation_waits_for_the_opening_and_others_for_a_worker() -> None:
    strategy = Strategy(maintenance_window=True, workers=1)
    orc, ops = orchestration(strategy, [0, 0])
    ops[0].maintenance_window = MaintenanceWindow(time(10), time(12))
    ops[0].start(NOW, "v1.29.8", "uw", "wr")
    orc.move(0, PENDING, RUNNING)
    ops[1].maintenance_window = MaintenanceWindow(time(10), time(12))
    wait = rollouts.wait_of(orc, ops[1], NOW)
    assert wait is not None
    assert (wait.reason, wait.until) == (WaitReason.MAINTENANCE_WINDOW, NOW + timedelta(hours=1))
    ops[1].maintenance_window = None
    assert rollouts.wait_of(orc, ops[1], NOW) == rollouts.Wait(
        WaitReason.WORKER, None, "a free worker (1 of 1 busy)"
    )
    assert rollouts.wait_of(orc, ops[0], NOW) is None


def test_the_estimate_multiplies_the_mean_duration_by_rounds_of_workers_and_adds_soaks() -> None:
    strategy = Strategy(
        workers=2,
        stages=(StageSpec("a", count=1, soak=timedelta(hours=1)), StageSpec("b")),
    )
    orc, ops = orchestration(strategy, [0, 1, 1, 1, 1])
    assert rollouts.estimate_end(orc, NOW, None) is None  # nothing has finished yet
    rollouts.advance_stages(strategy, orc, NOW)
    end(orc, ops[0], SUCCEEDED)
    orc.rollout.finished_seconds, orc.rollout.finished_runs = 600.0, 1
    rollouts.advance_stages(strategy, orc, NOW)
    # Soaking until 10:00, then 4 operations on 2 workers: two rounds of 10 minutes.
    assert rollouts.estimate_end(orc, NOW, None) == NOW + timedelta(hours=1, minutes=20)
    # A window far ahead moves it: the last due operation plus one duration.
    late = NOW + timedelta(days=1)
    assert rollouts.estimate_end(orc, NOW, late) == late + timedelta(minutes=10)
    rollouts.pause(orc, "bob", "", NOW)
    assert rollouts.estimate_end(orc, NOW, None) is None
