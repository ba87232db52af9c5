"""Orchestrations end to end over gRPC: real upgrade workflows per cluster, dry runs,
conflicts, cancel, retry, and the reads (counts, pages of operations, operation detail)."""

from __future__ import annotations

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.domain.orchestrations import OPERATION_LABEL, ORCHESTRATION_LABEL

from tests.conftest import AppFactory, Stubs, connect, seed_cluster, simulator
from tests.helpers import details_of, watch_to_end
from tests.orchestration_helpers import (
    GatedProvider,
    assert_counts_match_the_operations,
    by_runtime,
    counts,
    create,
    gated,
    get,
    logged,
    operations,
    watch_until,
)
from tests.upgrade_helpers import errors_of, get_workflow, logs_of

SUCCEEDED = orc_pb.ORCHESTRATION_STATE_SUCCEEDED
FAILED = orc_pb.ORCHESTRATION_STATE_FAILED


async def cluster_of(stubs: Stubs, cluster_id: str) -> cl_pb.Cluster:
    return (await stubs.clusters.GetCluster(cl_pb.GetClusterRequest(cluster_id=cluster_id))).cluster


async def work_request(stubs: Stubs, work_request_id: str) -> wr_pb.WorkRequest:
    response = await stubs.work_requests.GetWorkRequest(
        wr_pb.GetWorkRequestRequest(work_request_id=work_request_id)
    )
    return response.work_request


async def test_each_target_is_upgraded_by_its_own_workflow_linked_both_ways(
    app: App, stubs: Stubs
) -> None:
    fleet = [await seed_cluster(app, version="v1.29.8") for _ in range(2)]
    created = await create(stubs, workers=2, request_id="fleet-upgrade-1")
    orchestration, run = created.orchestration, created.work_request
    assert orchestration.id.startswith("orc-")
    assert orchestration.state == orc_pb.ORCHESTRATION_STATE_PENDING
    assert orchestration.description == "Scheduled 2 operations"
    assert counts(orchestration) == {"pending": 2, "total": 2}
    assert orchestration.parameters.strategy.parallel.workers == 2
    assert orchestration.parameters.kubernetes_version == "v1.30.4"
    assert orchestration.work_request_id == run.id
    assert orchestration.etag
    assert run.status == wr_pb.WORK_REQUEST_STATUS_ACCEPTED
    assert run.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_ORCHESTRATION_RUN
    assert [(r.entity_type, r.identifier) for r in run.resources] == [
        ("orchestration", orchestration.id)
    ]

    events = await watch_to_end(stubs, run.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert events[-1].work_request.percent_complete == 100
    done = await get(stubs, orchestration.id)
    assert done.state == SUCCEEDED
    assert done.description == "2 of 2 operations succeeded"
    assert counts(done) == {"succeeded": 2, "total": 2}
    await assert_counts_match_the_operations(app, orchestration.id)

    ops = await by_runtime(stubs, orchestration.id)
    assert set(ops) == {c.id for c in fleet}
    run_logs = await logs_of(stubs, run.id)
    for cluster in fleet:
        op = ops[cluster.id]
        assert op.id.startswith("op-")
        assert op.state == SUCCEEDED
        assert op.description == "Upgraded from v1.29.8 to v1.30.4"
        assert op.attempt == 1
        assert not op.dry_run
        # operation -> workflow and work request
        workflow = await get_workflow(stubs, op.upgrade_workflow_id)
        assert workflow.spec.cluster_id == cluster.id
        assert workflow.work_request_id == op.work_request_id
        assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS
        # workflow and work request -> orchestration and operation
        assert workflow.metadata.labels[ORCHESTRATION_LABEL] == orchestration.id
        assert workflow.metadata.labels[OPERATION_LABEL] == op.id
        assert workflow.metadata.annotations[ORCHESTRATION_LABEL] == orchestration.id
        upgrade = await work_request(stubs, op.work_request_id)
        assert upgrade.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_CLUSTER_UPGRADE
        assert ("orchestration", orchestration.id) in {
            (r.entity_type, r.identifier) for r in upgrade.resources
        }
        assert (await cluster_of(stubs, cluster.id)).kubernetes_version == "v1.30.4"
        assert f"Operation {op.id} on cluster {cluster.id}: Upgraded from v1.29.8 to v1.30.4" in (
            run_logs
        )
    related = await stubs.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(resource_id=orchestration.id)
    )
    assert {w.id for w in related.work_requests} == {
        run.id,
        *(op.work_request_id for op in ops.values()),
    }
    again = await create(stubs, workers=2, request_id="fleet-upgrade-1")
    assert again.orchestration.id == orchestration.id
    assert again.work_request.id == run.id


async def test_a_dry_run_records_operations_and_changes_no_cluster(app: App, stubs: Stubs) -> None:
    ready = await seed_cluster(app, version="v1.29.8")
    current = await seed_cluster(app, version="v1.30.4")
    too_old = await seed_cluster(app, version="v1.27.16")
    newer = await seed_cluster(app, version="v1.30.6")
    before = {c.id: await cluster_of(stubs, c.id) for c in (ready, current, too_old, newer)}
    created = await create(stubs, dry_run=True, workers=1, maintenance_window=True)
    assert created.orchestration.parameters.dry_run
    events = await watch_to_end(stubs, created.work_request.id)
    # The run itself judged every operation: one would be refused.
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    ops = await by_runtime(stubs, created.orchestration.id)
    assert all(op.dry_run for op in ops.values())
    assert ops[ready.id].state == SUCCEEDED
    assert ops[ready.id].description == (
        "Dry run: would upgrade from v1.29.8 to v1.30.4; nothing changed"
    )
    assert ops[current.id].state == SUCCEEDED
    assert ops[current.id].description == "Dry run: the cluster already runs v1.30.4"
    assert ops[too_old.id].state == FAILED
    assert "Dry run: the upgrade would be refused" in ops[too_old.id].description
    # The reason reads as a sentence, not as the validator's "invalid request: field: ...".
    assert ops[newer.id].state == FAILED
    assert ops[newer.id].description == (
        "Dry run: the upgrade would be refused: v1.30.4 is older than the cluster's v1.30.6; "
        "downgrades are not supported"
    )
    assert all(not op.upgrade_workflow_id and not op.work_request_id for op in ops.values())

    assert {c: await cluster_of(stubs, c) for c in before} == before
    workflows = await stubs.upgrade_workflows.ListUpgradeWorkflows(
        uw_pb.ListUpgradeWorkflowsRequest()
    )
    assert list(workflows.upgrade_workflows) == []
    upgrades = await stubs.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(filter="operation_type = CLUSTER_UPGRADE")
    )
    assert list(upgrades.work_requests) == []


async def test_orchestrations_run_together_but_never_upgrade_one_cluster_twice(
    make_app: AppFactory,
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    provider = gated(app)
    async with connect(app) as stubs:
        shared = await seed_cluster(app, name="shared")
        other = await seed_cluster(app, name="other")
        first = await create(stubs, include=[{"runtime_id": shared.id}])
        assert await provider.next_entered() == shared.id
        second = await create(stubs, workers=2)
        assert await provider.next_entered() == other.id
        # Both run at once; the second's operation on the busy cluster failed with the conflict.
        for orchestration in (first, second):
            state = (await get(stubs, orchestration.orchestration.id)).state
            assert state == orc_pb.ORCHESTRATION_STATE_IN_PROGRESS
        ops = await by_runtime(stubs, second.orchestration.id)
        blocked = ops[shared.id]
        assert blocked.state == FAILED
        first_op = (await by_runtime(stubs, first.orchestration.id))[shared.id]
        assert blocked.description.startswith("Not started: cluster ")
        assert f"already being upgraded by workflow {first_op.upgrade_workflow_id}" in (
            blocked.description
        )
        assert not blocked.upgrade_workflow_id
        assert ops[other.id].state == orc_pb.ORCHESTRATION_STATE_IN_PROGRESS

        provider.release(shared.id)
        provider.release(other.id)
        assert (await watch_to_end(stubs, first.work_request.id))[-1].work_request.status == (
            wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
        )
        assert (await watch_to_end(stubs, second.work_request.id))[-1].work_request.status == (
            wr_pb.WORK_REQUEST_STATUS_FAILED
        )
        finished = await get(stubs, second.orchestration.id)
        assert finished.state == FAILED
        assert finished.description == "1 of 2 operations failed; 1 succeeded"
        errors = await errors_of(stubs, second.work_request.id)
        assert [e.code for e in errors] == ["OperationFailed"]
        assert blocked.id in errors[0].message
        # One upgrade of the shared cluster in all.
        workflows = await stubs.upgrade_workflows.ListUpgradeWorkflows(
            uw_pb.ListUpgradeWorkflowsRequest(cluster_id=shared.id)
        )
        assert len(workflows.upgrade_workflows) == 1


async def test_cancel_mid_way_lets_running_operations_finish_and_cancels_the_rest(
    make_app: AppFactory,
) -> None:
    app = await make_app(provider_factory=GatedProvider)
    provider = gated(app)
    async with connect(app) as stubs:
        fleet = [await seed_cluster(app) for _ in range(4)]
        created = await create(stubs, workers=1)
        running = await provider.next_entered()
        orchestration = await get(stubs, created.orchestration.id)

        canceled = await stubs.orchestrations.CancelOrchestration(
            orc_pb.CancelOrchestrationRequest(
                orchestration_id=orchestration.id, etag=orchestration.etag
            )
        )
        assert canceled.orchestration.state == orc_pb.ORCHESTRATION_STATE_CANCELING
        assert canceled.orchestration.description.startswith("Canceling: ")
        assert canceled.orchestration.etag != orchestration.etag
        run = await work_request(stubs, created.work_request.id)
        assert run.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
        await watch_until(stubs, run.id, logged("Canceled 3 operation(s) that had not started"))
        canceling = await get(stubs, orchestration.id)
        assert canceling.state == orc_pb.ORCHESTRATION_STATE_CANCELING
        assert counts(canceling) == {"in_progress": 1, "canceled": 3, "total": 4}

        provider.release(running)
        events = await watch_to_end(stubs, run.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
        ended = await get(stubs, orchestration.id)
        assert ended.state == orc_pb.ORCHESTRATION_STATE_CANCELED
        await assert_counts_match_the_operations(app, orchestration.id)
        assert ended.description == (
            "Canceled: 1 of 4 operations finished (1 succeeded); 3 canceled before starting"
        )
        ops = await by_runtime(stubs, orchestration.id)
        assert ops[running].state == SUCCEEDED
        for cluster in fleet:
            version = (await cluster_of(stubs, cluster.id)).kubernetes_version
            if cluster.id == running:
                assert version == "v1.30.4"
            else:
                assert version == "v1.29.8"
                assert ops[cluster.id].state == orc_pb.ORCHESTRATION_STATE_CANCELED
                assert ops[cluster.id].description == "Canceled before it started"
        # Canceling again changes nothing; a stale etag is refused.
        again = await stubs.orchestrations.CancelOrchestration(
            orc_pb.CancelOrchestrationRequest(orchestration_id=orchestration.id)
        )
        assert again.orchestration.etag == ended.etag
        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await stubs.orchestrations.CancelOrchestration(
                orc_pb.CancelOrchestrationRequest(
                    orchestration_id=orchestration.id, etag=orchestration.etag
                )
            )
        details = details_of(stale.value)
        assert details.code == grpc.StatusCode.ABORTED
        assert details.error_info is not None
        assert details.error_info.reason == "ETAG_MISMATCH"
        assert details.error_info.metadata["current_etag"] == ended.etag


async def test_cancel_work_request_of_the_run_cancels_the_orchestration(
    app: App, stubs: Stubs
) -> None:
    await seed_cluster(app)
    created = await create(
        stubs,
        schedule=orc_pb.SCHEDULE_TYPE_TIME,
        schedule_time=app.clock.now().replace(hour=23),
    )
    await stubs.work_requests.CancelWorkRequest(
        wr_pb.CancelWorkRequestRequest(work_request_id=created.work_request.id)
    )
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    ended = await get(stubs, created.orchestration.id)
    assert ended.state == orc_pb.ORCHESTRATION_STATE_CANCELED
    assert counts(ended) == {"canceled": 1, "total": 1}


async def test_a_finished_orchestration_cannot_be_canceled(app: App, stubs: Stubs) -> None:
    await seed_cluster(app)
    created = await create(stubs)
    await watch_to_end(stubs, created.work_request.id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.orchestrations.CancelOrchestration(
            orc_pb.CancelOrchestrationRequest(orchestration_id=created.orchestration.id)
        )
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.error_info is not None
    assert details.error_info.reason == "ORCHESTRATION_STATE"


async def test_retry_runs_failed_operations_again_and_keeps_the_failed_attempt(
    app: App, stubs: Stubs
) -> None:
    fleet = [await seed_cluster(app) for _ in range(3)]
    flaky = fleet[1]
    await simulator(app).inject_fault("upgrade:PreCheck", flaky.id, message="etcd is unhealthy")
    created = await create(stubs, workers=3)
    first_run = created.work_request.id
    events = await watch_to_end(stubs, first_run)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    failed = await get(stubs, created.orchestration.id)
    assert failed.state == FAILED
    assert failed.description == "1 of 3 operations failed; 2 succeeded"
    ops = await by_runtime(stubs, failed.id)
    broken = ops[flaky.id]
    assert broken.state == FAILED
    assert "PreCheckFailed" in broken.description
    assert "etcd is unhealthy" in broken.description
    assert [e.code for e in await errors_of(stubs, first_run)] == ["OperationFailed"]

    healthy = next(op for op in ops.values() if op.state == SUCCEEDED)
    with pytest.raises(grpc.aio.AioRpcError) as not_failed:
        await stubs.orchestrations.RetryOrchestration(
            orc_pb.RetryOrchestrationRequest(orchestration_id=failed.id, operation_ids=[healthy.id])
        )
    assert details_of(not_failed.value).code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stubs.orchestrations.RetryOrchestration(
            orc_pb.RetryOrchestrationRequest(
                orchestration_id=failed.id, operation_ids=["op-00000000000000000000"]
            )
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await stubs.orchestrations.RetryOrchestration(
            orc_pb.RetryOrchestrationRequest(orchestration_id=failed.id, etag="0000000000000000")
        )
    assert stale.value.code() == grpc.StatusCode.ABORTED

    retried = await stubs.orchestrations.RetryOrchestration(
        orc_pb.RetryOrchestrationRequest(orchestration_id=failed.id, etag=failed.etag)
    )
    assert list(retried.retried_operation_ids) == [broken.id]
    assert retried.orchestration.state == orc_pb.ORCHESTRATION_STATE_RETRYING
    assert counts(retried.orchestration) == {"succeeded": 2, "retrying": 1, "total": 3}
    second_run = retried.orchestration.work_request_id
    assert second_run != first_run
    waiting = (await by_runtime(stubs, failed.id))[flaky.id]
    assert waiting.state == orc_pb.ORCHESTRATION_STATE_RETRYING
    assert waiting.attempt == 2

    events = await watch_to_end(stubs, second_run)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    # retrying -> in progress -> succeeded
    assert f'Orchestration {failed.id} is "in progress"' in await logs_of(stubs, second_run)
    done = await get(stubs, failed.id)
    assert done.state == SUCCEEDED
    assert counts(done) == {"succeeded": 3, "total": 3}
    await assert_counts_match_the_operations(app, failed.id)
    again = (await by_runtime(stubs, failed.id))[flaky.id]
    assert again.state == SUCCEEDED
    assert again.attempt == 2
    assert again.upgrade_workflow_id != broken.upgrade_workflow_id
    [earlier] = again.previous_attempts
    assert earlier.attempt == 1
    assert earlier.state == FAILED
    assert earlier.description == broken.description
    assert earlier.upgrade_workflow_id == broken.upgrade_workflow_id
    assert earlier.work_request_id == broken.work_request_id
    assert earlier.start_time == broken.start_time
    assert earlier.end_time == broken.end_time
    # The first run keeps its own record, failure and all.
    assert (await work_request(stubs, first_run)).status == wr_pb.WORK_REQUEST_STATUS_FAILED
    assert (await cluster_of(stubs, flaky.id)).kubernetes_version == "v1.30.4"
    with pytest.raises(grpc.aio.AioRpcError) as nothing_to_retry:
        await stubs.orchestrations.RetryOrchestration(
            orc_pb.RetryOrchestrationRequest(orchestration_id=failed.id)
        )
    assert details_of(nothing_to_retry.value).code == grpc.StatusCode.FAILED_PRECONDITION


async def test_retry_of_named_operations_leaves_the_other_failures_alone(
    app: App, stubs: Stubs
) -> None:
    first, second = await seed_cluster(app), await seed_cluster(app)
    for cluster in (first, second):
        await simulator(app).inject_fault("upgrade:Snapshot", cluster.id)
    created = await create(stubs, workers=2)
    await watch_to_end(stubs, created.work_request.id)
    ops = await by_runtime(stubs, created.orchestration.id)
    retried = await stubs.orchestrations.RetryOrchestration(
        orc_pb.RetryOrchestrationRequest(
            orchestration_id=created.orchestration.id,
            operation_ids=[ops[first.id].id, ops[first.id].id],
        )
    )
    assert list(retried.retried_operation_ids) == [ops[first.id].id]
    await watch_to_end(stubs, retried.orchestration.work_request_id)
    after = await by_runtime(stubs, created.orchestration.id)
    assert (after[first.id].state, after[first.id].attempt) == (SUCCEEDED, 2)
    assert (after[second.id].state, after[second.id].attempt) == (FAILED, 1)
    assert after[second.id].previous_attempts == []
    ended = await get(stubs, created.orchestration.id)
    assert ended.state == FAILED
    assert counts(ended) == {"succeeded": 1, "failed": 1, "total": 2}


async def test_operations_page_with_data_count_and_total_count(app: App, stubs: Stubs) -> None:
    for i in range(7):
        await seed_cluster(app, version="v1.27.16" if i < 2 else "v1.29.8")
    created = await create(stubs, dry_run=True)
    await watch_to_end(stubs, created.work_request.id)
    seen: list[str] = []
    token = ""
    sizes = []
    while True:
        page = await stubs.orchestrations.ListOrchestrationOperations(
            orc_pb.ListOrchestrationOperationsRequest(
                orchestration_id=created.orchestration.id, page_size=3, page_token=token
            )
        )
        assert page.count == len(page.data)
        assert page.total_count == 7
        sizes.append(page.count)
        seen.extend(op.id for op in page.data)
        token = page.next_page_token
        if not token:
            break
    assert sizes == [3, 3, 1]
    assert len(set(seen)) == 7
    assert seen == sorted(seen)
    assert all(
        not op.HasField("cluster_config")
        for op in await operations(stubs, created.orchestration.id)
    )

    failed = await stubs.orchestrations.ListOrchestrationOperations(
        orc_pb.ListOrchestrationOperationsRequest(
            orchestration_id=created.orchestration.id,
            states=[FAILED, orc_pb.ORCHESTRATION_STATE_CANCELED],
        )
    )
    assert (failed.count, failed.total_count) == (2, 2)
    assert {op.state for op in failed.data} == {FAILED}

    for bad in (
        orc_pb.ListOrchestrationOperationsRequest(
            orchestration_id=created.orchestration.id, page_size=-1
        ),
        orc_pb.ListOrchestrationOperationsRequest(
            orchestration_id=created.orchestration.id, page_token="nope"
        ),
        orc_pb.ListOrchestrationOperationsRequest(
            orchestration_id=created.orchestration.id, page_token=page_token_of_other_query(seen)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs.orchestrations.ListOrchestrationOperations(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def page_token_of_other_query(_: list[str]) -> str:
    return "eyJrIjpbIm9wLTAiXSwicSI6IngifQ"


async def test_a_page_of_operations_holds_at_most_a_hundred(app: App, stubs: Stubs) -> None:
    for _ in range(101):
        await seed_cluster(app)
    created = await create(stubs, dry_run=True)
    first = await stubs.orchestrations.ListOrchestrationOperations(
        orc_pb.ListOrchestrationOperationsRequest(
            orchestration_id=created.orchestration.id, page_size=1000
        )
    )
    assert (first.count, first.total_count) == (100, 101)
    default = await stubs.orchestrations.ListOrchestrationOperations(
        orc_pb.ListOrchestrationOperationsRequest(orchestration_id=created.orchestration.id)
    )
    assert default.count == 100
    rest = await stubs.orchestrations.ListOrchestrationOperations(
        orc_pb.ListOrchestrationOperationsRequest(
            orchestration_id=created.orchestration.id, page_token=first.next_page_token
        )
    )
    assert (rest.count, rest.total_count, rest.next_page_token) == (1, 101, "")
    assert {op.id for op in first.data}.isdisjoint(op.id for op in rest.data)


async def test_get_operation_shows_the_cluster_and_component_configuration(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app, region="eu-amsterdam-1", plan="gcp")
    pool = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="workers", node_count=2)
    )
    await watch_to_end(stubs, pool.work_request.id)
    created = await create(stubs, dry_run=True)
    [listed] = await operations(stubs, created.orchestration.id)
    detail = (
        await stubs.orchestrations.GetOrchestrationOperation(
            orc_pb.GetOrchestrationOperationRequest(
                orchestration_id=created.orchestration.id, operation_id=listed.id
            )
        )
    ).operation
    assert detail.id == listed.id
    assert detail.runtime_id == cluster.id
    assert detail.cluster_config == orc_pb.ClusterConfig(
        kubernetes_version="v1.29.8",
        target_version="v1.30.4",
        region="eu-amsterdam-1",
        plan_name="gcp",
        plan_id="ca6e5357-707f-4565-bbbd-b3ab732597c6",
        shoot_name=cluster.shoot_name,
    )
    components = {c.component: c for c in detail.component_configs}
    assert list(components) == ["kubernetes", "node-pool/workers"]
    assert components["kubernetes"].version == "v1.30.4"
    assert dict(components["kubernetes"].configuration)["current_version"] == "v1.29.8"
    assert dict(components["node-pool/workers"].configuration) == {
        "node_pool_id": pool.node_pool.id,
        "node_shape": pool.node_pool.node_shape,
        "node_count": "2",
    }

    other = await create(stubs, dry_run=True)
    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await stubs.orchestrations.GetOrchestrationOperation(
            orc_pb.GetOrchestrationOperationRequest(
                orchestration_id=other.orchestration.id, operation_id=listed.id
            )
        )
    assert elsewhere.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_orchestrations_filters_by_state_and_compartment_newest_first(
    app: App, stubs: Stubs
) -> None:
    await seed_cluster(app, compartment="dev", version="v1.28.13")
    await seed_cluster(app, compartment="prod", version="v1.29.8")
    made = []
    for version in ("v1.29.8", "v1.31.2", "v1.30.6"):
        created = await create(stubs, dry_run=True, version=version)
        await watch_to_end(stubs, created.work_request.id)
        made.append(created.orchestration.id)
        app.clock.advance(60)  # type: ignore[attr-defined]
    prod = await create(stubs, compartment="prod", dry_run=True)
    await watch_to_end(stubs, prod.work_request.id)

    listed = await stubs.orchestrations.ListOrchestrations(
        orc_pb.ListOrchestrationsRequest(compartment_id="dev")
    )
    assert [o.id for o in listed.orchestrations] == made[::-1]
    failed = await stubs.orchestrations.ListOrchestrations(
        orc_pb.ListOrchestrationsRequest(states=[FAILED])
    )
    assert [o.id for o in failed.orchestrations] == [made[1]]  # three minor versions ahead
    assert failed.orchestrations[0].operation_counts.failed == 1
    pages: list[str] = []
    token = ""
    while True:
        page = await stubs.orchestrations.ListOrchestrations(
            orc_pb.ListOrchestrationsRequest(page_size=2, page_token=token)
        )
        pages.extend(o.id for o in page.orchestrations)
        token = page.next_page_token
        if not token:
            break
    assert pages == [prod.orchestration.id, *made[::-1]]


async def test_unknown_and_malformed_ids(app: App, stubs: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stubs.orchestrations.GetOrchestration(
            orc_pb.GetOrchestrationRequest(orchestration_id="orc-00000000000000000000")
        )
    details = details_of(missing.value)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.resource_info is not None
    assert details.resource_info.resource_type == "orchestration"
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await stubs.orchestrations.GetOrchestrationOperation(
            orc_pb.GetOrchestrationOperationRequest(orchestration_id="orc-1", operation_id="x")
        )
    assert details_of(malformed.value).fields == ["orchestration_id", "operation_id"]
