"""SDK against a real in-process server: every verb of client.orchestrations, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from clusterops import (
    AsyncClient,
    Client,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Operation,
    OperationFailed,
    Orchestration,
    Stage,
)
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock

from tests.conftest import seed_cluster, simulator
from tests.sdk_support import QUICK_RETRY, sdk_client, target


@pytest.fixture
async def client(app: App) -> AsyncIterator[AsyncClient]:
    async with sdk_client(app) as connected:
        yield connected


async def test_create_returns_a_handle_whose_result_is_the_finished_orchestration(
    app: App, client: AsyncClient
) -> None:
    frankfurt = await seed_cluster(app, region="eu-frankfurt-1")
    await seed_cluster(app, region="us-ashburn-1")
    operation = await client.orchestrations.create(
        "dev",
        include=[{"target": "all"}],
        exclude=[orc_pb.RuntimeTarget(region="us-.*")],
        kubernetes_version="v1.30.4",
        workers=2,
    )
    assert operation.resource.state == orc_pb.ORCHESTRATION_STATE_PENDING
    assert operation.resource.description == "Scheduled 1 operation"
    assert operation.work_request.operation_type == (
        wr_pb.WORK_REQUEST_OPERATION_TYPE_ORCHESTRATION_RUN
    )
    orchestration = await operation.result(timeout=20)
    assert orchestration.id == operation.resource.id
    assert orchestration.state == orc_pb.ORCHESTRATION_STATE_SUCCEEDED
    assert orchestration.operation_counts.succeeded == 1
    assert await client.orchestrations.get(orchestration.id) == orchestration

    [op] = [o async for o in client.orchestrations.list_operations(orchestration.id)]
    assert op.runtime_id == frankfurt.id
    detail = await client.orchestrations.get_operation(orchestration.id, op.id)
    assert detail.cluster_config.target_version == "v1.30.4"
    assert detail.component_configs[0].component == "kubernetes"

    listed = client.orchestrations.list(compartment_id="dev", states=["SUCCEEDED"])
    assert [o.id async for o in listed] == [orchestration.id]
    assert [o async for o in client.orchestrations.list(states=["FAILED"])] == []


async def test_operation_pages_carry_the_total_count(app: App, client: AsyncClient) -> None:
    for _ in range(5):
        await seed_cluster(app)
    operation = await client.orchestrations.create(
        "dev", include=[{"target": "all"}], kubernetes_version="v1.30.4", dry_run=True
    )
    await operation.wait(timeout=20)
    pages = [
        page
        async for page in client.orchestrations.list_operations(
            operation.resource.id, page_size=2
        ).pages()
    ]
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert {p.total_count for p in pages} == {5}
    assert len({op.id for p in pages for op in p.items}) == 5
    assert all(op.dry_run for p in pages for op in p.items)


async def test_failures_raise_with_details_and_retry_runs_them_again(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("upgrade:Cluster", cluster.id, message="api server down")
    operation = await client.orchestrations.create(
        "dev", include=[{"runtime_id": cluster.id}], kubernetes_version="v1.30.4"
    )
    with pytest.raises(OperationFailed) as failed:
        await operation.result(timeout=20)
    assert [e.code for e in failed.value.errors] == ["OperationFailed"]
    assert "api server down" in failed.value.errors[0].message
    orchestration = await client.orchestrations.get(operation.resource.id)
    assert orchestration.state == orc_pb.ORCHESTRATION_STATE_FAILED

    with pytest.raises(EtagMismatch) as stale:
        await client.orchestrations.retry_operations(orchestration.id, etag="0" * 16)
    assert stale.value.current_etag == orchestration.etag
    [op] = [o async for o in client.orchestrations.list_operations(orchestration.id)]
    retried = await client.orchestrations.retry_operations(
        orchestration.id, [op.id], etag=orchestration.etag
    )
    assert list(retried.retried_operation_ids) == [op.id]
    assert retried.orchestration.state == orc_pb.ORCHESTRATION_STATE_RETRYING
    final = await client.work_requests.wait(retried.orchestration.work_request_id, timeout=20)
    assert final.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    again = await client.orchestrations.get_operation(orchestration.id, op.id)
    assert again.attempt == 2
    assert again.previous_attempts[0].state == orc_pb.ORCHESTRATION_STATE_FAILED
    with pytest.raises(FailedPrecondition) as finished:
        await client.orchestrations.cancel(orchestration.id)
    assert finished.value.reason == "ORCHESTRATION_STATE"


async def test_a_scheduled_orchestration_can_be_canceled_before_it_starts(
    app: App, client: AsyncClient, clock: FakeClock
) -> None:
    await seed_cluster(app)
    operation = await client.orchestrations.create(
        "dev",
        include=[{"target": "all"}],
        kubernetes_version="v1.30.4",
        schedule="TIME",
        schedule_time=clock.now() + timedelta(hours=3),
    )
    assert operation.resource.parameters.strategy.schedule == orc_pb.SCHEDULE_TYPE_TIME
    canceled = await client.orchestrations.cancel(
        operation.resource.id, etag=operation.resource.etag
    )
    assert canceled.state == orc_pb.ORCHESTRATION_STATE_CANCELING
    final = await operation.wait(timeout=20)
    assert final.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    orchestration = await client.orchestrations.get(operation.resource.id)
    assert orchestration.state == orc_pb.ORCHESTRATION_STATE_CANCELED
    assert orchestration.operation_counts.canceled == 1


async def test_bad_requests_raise_typed_errors_naming_the_field(
    app: App, client: AsyncClient
) -> None:
    await seed_cluster(app)
    with pytest.raises(InvalidArgument) as invalid:
        await client.orchestrations.create(
            "dev", include=[{"region": "eu-(frankfurt"}], kubernetes_version="v1.30.4"
        )
    assert [v.field for v in invalid.value.field_violations] == [
        "parameters.targets.include[0].region"
    ]
    with pytest.raises(FailedPrecondition) as nothing:
        await client.orchestrations.create(
            "dev", include=[{"plan_name": "no-such-plan"}], kubernetes_version="v1.30.4"
        )
    assert nothing.value.reason == "NO_TARGETS"
    with pytest.raises(NotFound):
        await client.orchestrations.get("orc-00000000000000000000")
    with pytest.raises(ValueError, match="unknown target key"):
        await client.orchestrations.create("dev", include=[{"zone": "a"}])
    with pytest.raises(ValueError, match="schedule"):
        await client.orchestrations.create("dev", include=[{"target": "all"}], schedule="later")


async def test_the_blocking_client_runs_an_orchestration(app: App) -> None:
    await seed_cluster(app)

    def scenario() -> Orchestration:
        with Client(target(app), retry=QUICK_RETRY) as client:
            operation = client.orchestrations.create(
                "dev", include=[{"target": "all"}], kubernetes_version="v1.30.4"
            )
            assert isinstance(operation, Operation)
            orchestration = operation.result(timeout=20)
            [op] = list(client.orchestrations.list_operations(orchestration.id))
            assert client.orchestrations.get_operation(orchestration.id, op.id).id == op.id
            assert [
                p.total_count
                for p in client.orchestrations.list_operations(orchestration.id).pages()
            ] == [1]
            return orchestration

    orchestration = await asyncio.to_thread(scenario)
    assert orchestration.state == orc_pb.ORCHESTRATION_STATE_SUCCEEDED


async def test_rollout_verbs_stages_pause_resume_and_approve(
    app: App, client: AsyncClient, clock: FakeClock
) -> None:
    for _ in range(3):
        await seed_cluster(app, window=None)
    operation = await client.orchestrations.create(
        "dev",
        include=[{"target": "all"}],
        kubernetes_version="v1.30.4",
        stages=[
            Stage("canary", count=1, soak=timedelta(minutes=30), failure_budget=0),
            Stage("rest", workers=2, requires_approval=True),
        ],
        failure_budget="50%",
        reason="sdk rollout",
    )
    orchestration_id = operation.resource.id
    strategy = operation.resource.parameters.strategy
    assert [s.name for s in strategy.stages] == ["canary", "rest"]
    assert strategy.stages[0].soak.seconds == 1800
    assert strategy.stages[0].HasField("failure_budget")
    assert strategy.failure_budget.max_failure_percent == 50
    assert operation.work_request.reason == "sdk rollout"
    await app.engine.wait_idle()
    paused = await client.orchestrations.pause(orchestration_id, reason="look first")
    assert paused.state == orc_pb.ORCHESTRATION_STATE_PAUSED
    rest = [
        op async for op in client.orchestrations.list_operations(orchestration_id, stage="rest")
    ]
    assert [op.wait_reason for op in rest] == [orc_pb.OPERATION_WAIT_REASON_PAUSE] * 2
    resumed = await client.orchestrations.resume(orchestration_id, reason="looked")
    assert resumed.state == orc_pb.ORCHESTRATION_STATE_IN_PROGRESS
    approved = await client.orchestrations.approve_stage(orchestration_id, "rest")
    assert approved.stages[1].approved_by == "system"
    clock.advance(1800)
    done = await operation.result(timeout=20)
    assert done.state == orc_pb.ORCHESTRATION_STATE_SUCCEEDED
    with pytest.raises(FailedPrecondition):
        await client.orchestrations.pause(orchestration_id)
