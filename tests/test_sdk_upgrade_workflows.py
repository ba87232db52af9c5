"""SDK against a real in-process server: every verb of client.upgrade_workflows, its operation
handles and the typed exceptions an upgrade can raise."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from clusterops import (
    AsyncClient,
    Conflict,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    KubernetesVersion,
    NotFound,
    OperationCanceled,
    OperationFailed,
    WatchEvent,
)
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, seed_cluster, simulator
from tests.sdk_support import CallCounter, sdk_client
from tests.upgrade_helpers import CRITICAL_PATH, ROLLBACK, TASK_NAMES, drive, points

TASK_SECONDS = 60


@pytest.fixture
async def client(app: App) -> AsyncIterator[AsyncClient]:
    async with sdk_client(app) as connected:
        yield connected


@pytest.fixture
async def timed(make_app: AppFactory) -> App:
    """Each upgrade task takes a minute of fake time, so a workflow waits where it is."""
    seconds = {f"upgrade:{name}": float(TASK_SECONDS) for name in TASK_NAMES.values()}
    return await make_app(simulation=SimulationSettings(seconds=seconds))


async def test_create_returns_a_handle_whose_result_is_the_successful_workflow(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app, name="alpha", version="v1.29.8")
    events: list[WatchEvent] = []
    operation = await client.upgrade_workflows.create(
        cluster.id,
        target_version="v1.30.4",
        labels={"team": "platform"},
        annotations={"ticket": "CHG-1234"},
    )
    created = operation.resource
    assert created.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_INIT
    assert created.metadata.name == "upgrade-alpha-v1.30.4"
    assert created.work_request_id == operation.id
    assert (
        operation.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_CLUSTER_UPGRADE
    )

    workflow = await operation.result(timeout=20, on_event=events.append)
    # result() read the workflow again: the same one, finished.
    assert workflow.metadata.uid == created.metadata.uid
    assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS
    by_type = points(workflow)
    assert [by_type[t].status for t in CRITICAL_PATH] == [uw_pb.UPGRADE_TASK_STATUS_SUCCESS] * 4
    assert by_type[ROLLBACK].status == uw_pb.UPGRADE_TASK_STATUS_INIT
    assert dict(workflow.metadata.labels) == {"team": "platform"}
    assert dict(workflow.metadata.annotations) == {"ticket": "CHG-1234"}
    assert operation.work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    logged = [entry.message for event in events for entry in event.log_entries]
    assert f"Cluster task {by_type[uw_pb.UPGRADE_TASK_TYPE_CLUSTER].task_id} started" in logged
    assert await client.upgrade_workflows.get(workflow.metadata.uid) == workflow
    upgraded = await client.clusters.get(cluster.id)
    assert upgraded.kubernetes_version == "v1.30.4"


async def test_a_failed_task_raises_operation_failed_naming_the_task(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await simulator(app).inject_fault(
        "upgrade:Cluster", cluster.id, times=1, message="apiserver crashloop"
    )
    operation = await client.upgrade_workflows.create(cluster.id, target_version="v1.30.4")
    with pytest.raises(OperationFailed) as failed:
        await operation.result(timeout=20)
    assert failed.value.work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    assert [e.code for e in failed.value.errors] == ["ClusterFailed"]
    workflow = await client.upgrade_workflows.get(operation.resource.metadata.uid)
    cluster_task = points(workflow)[uw_pb.UPGRADE_TASK_TYPE_CLUSTER]
    assert f"ClusterFailed: Cluster task {cluster_task.task_id} failed" in str(failed.value)
    assert "apiserver crashloop" in str(failed.value)
    # The workflow stopped after rolling back; the cluster kept its version.
    assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING
    assert points(workflow)[ROLLBACK].status == uw_pb.UPGRADE_TASK_STATUS_SUCCESS
    assert (await client.clusters.get(cluster.id)).kubernetes_version == "v1.29.8"


async def test_list_pages_newest_first_and_filters_by_cluster_compartment_and_phase(
    app: App, clock: FakeClock
) -> None:
    dev_a = await seed_cluster(app, compartment="dev", version="v1.28.13")
    dev_b = await seed_cluster(app, compartment="dev", version="v1.29.8")
    prod = await seed_cluster(app, compartment="prod", version="v1.29.8")
    await simulator(app).inject_fault("upgrade:PreCheck", dev_b.id, times=1)
    counter = CallCounter()
    async with sdk_client(app, interceptors=[counter]) as client:
        created: list[str] = []
        for cluster_id, target in [
            (dev_a.id, "v1.29.8"),
            (dev_b.id, "v1.30.4"),
            (prod.id, "v1.30.4"),
            (dev_a.id, "v1.30.4"),
        ]:
            operation = await client.upgrade_workflows.create(cluster_id, target_version=target)
            await operation.wait(timeout=20)
            created.append(operation.resource.metadata.uid)
            clock.advance(1)

        async def ids(**filters: object) -> list[str]:
            listed = client.upgrade_workflows.list(**filters)  # type: ignore[arg-type]
            return [w.metadata.uid async for w in listed]

        newest_first = created[::-1]
        before = counter.calls["ListUpgradeWorkflows"]
        assert await ids(page_size=3) == newest_first
        assert counter.calls["ListUpgradeWorkflows"] - before == 2  # lazily, page by page
        pages = [page async for page in client.upgrade_workflows.list(page_size=2).pages()]
        assert [[w.metadata.uid for w in page.items] for page in pages] == [
            newest_first[:2],
            newest_first[2:],
        ]
        assert await ids(cluster_id=dev_a.id) == [created[3], created[0]]
        assert await ids(compartment_id="prod") == [created[2]]
        assert await ids(phases=["PENDING"]) == [created[1]]
        # Names are forgiving: any case, or the full proto name, or the value.
        assert await ids(compartment_id="dev", phases=["success"]) == [created[3], created[0]]
        assert await ids(phases=["UPGRADE_WORKFLOW_PHASE_PENDING"]) == [created[1]]
        assert await ids(phases=[uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL]) == []

        with pytest.raises(ValueError, match="phases: 'DONE' is not one of INIT, RUNNING"):
            client.upgrade_workflows.list(phases=["DONE"])
        with pytest.raises(InvalidArgument) as bad:
            await ids(cluster_id="nope", page_size=-1)
        assert sorted(v.field for v in bad.value.field_violations) == ["cluster_id", "page_size"]


async def test_cancel_before_the_cluster_task_stops_the_upgrade_and_its_handle_says_so(
    timed: App, clock: FakeClock
) -> None:
    cluster = await seed_cluster(timed, version="v1.29.8")
    async with sdk_client(timed) as client:
        operation = await client.upgrade_workflows.create(cluster.id, target_version="v1.30.4")
        workflow_id = operation.resource.metadata.uid
        await clock.wait_for_sleepers(1)  # PreCheck is running: the workflow changed
        with pytest.raises(EtagMismatch) as stale:
            await client.upgrade_workflows.cancel(workflow_id, etag=operation.resource.etag)
        current = await client.upgrade_workflows.get(workflow_id)
        assert stale.value.current_etag == current.etag

        canceled = await client.upgrade_workflows.cancel(workflow_id, etag=current.etag)
        assert canceled.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
        assert (await operation.refresh()).status == wr_pb.WORK_REQUEST_STATUS_CANCELING
        clock.advance(TASK_SECONDS)  # the running PreCheck ends; nothing starts after it
        with pytest.raises(OperationCanceled):
            await operation.result(timeout=20)
        assert (await client.upgrade_workflows.get(workflow_id)).status.phase == (
            uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
        )
        unchanged = await client.clusters.get(cluster.id)
        assert unchanged.kubernetes_version == "v1.29.8"
        assert unchanged.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE


async def test_cancel_past_the_point_of_no_return_raises_failed_precondition(
    timed: App, clock: FakeClock
) -> None:
    cluster = await seed_cluster(timed, version="v1.29.8")
    async with sdk_client(timed) as client:
        operation = await client.upgrade_workflows.create(cluster.id, target_version="v1.30.4")
        workflow_id = operation.resource.metadata.uid
        await drive(clock, TASK_SECONDS, tasks=2)  # PreCheck, Snapshot
        await clock.wait_for_sleepers(1)  # Cluster is running

        with pytest.raises(FailedPrecondition) as refused:
            await client.upgrade_workflows.cancel(workflow_id)
        (violation,) = refused.value.precondition_violations
        assert violation.type == "POINT_OF_NO_RETURN"
        assert "point of no return" in refused.value.message
        # Canceling the work request through the handle follows the same rule.
        with pytest.raises(FailedPrecondition, match="point of no return"):
            await operation.cancel()

        await drive(clock, TASK_SECONDS, tasks=2)  # Cluster, PostCheck
        workflow = await operation.result(timeout=20)
        assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS


async def test_a_second_upgrade_of_a_busy_cluster_raises_conflict_naming_the_first(
    timed: App, clock: FakeClock
) -> None:
    cluster = await seed_cluster(timed, version="v1.29.8")
    async with sdk_client(timed) as client:
        first = await client.upgrade_workflows.create(cluster.id, target_version="v1.30.4")
        with pytest.raises(Conflict) as busy:
            await client.upgrade_workflows.create(cluster.id, target_version="v1.30.6")
        assert busy.value.reason == "RESOURCE_BUSY"
        assert busy.value.blocking_work_request_id == first.id
        assert busy.value.metadata["upgrade_workflow_id"] == first.resource.metadata.uid
        await drive(clock, TASK_SECONDS, tasks=4)
        await first.result(timeout=20)


async def test_a_retried_create_with_its_request_id_returns_the_first_workflow(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    first = await client.upgrade_workflows.create(
        cluster.id, target_version="v1.30.4", request_id="chg-1234"
    )
    again = await client.upgrade_workflows.create(
        cluster.id, target_version="v1.30.4", request_id="chg-1234"
    )
    assert again.id == first.id
    assert again.resource.metadata.uid == first.resource.metadata.uid
    await first.wait(timeout=20)


@pytest.mark.parametrize(
    ("current", "target", "error", "detail"),
    [
        ("v1.29.8", "v1.28.13", InvalidArgument, "target_version"),
        ("v1.27.16", "v1.30.4", InvalidArgument, "target_version"),
        ("v1.29.8", "1.30", InvalidArgument, "target_version"),
        ("v1.30.4", "v1.30.4", FailedPrecondition, "ALREADY_AT_VERSION"),
    ],
    ids=["downgrade", "too-far", "malformed", "already"],
)
async def test_a_bad_upgrade_path_raises_a_typed_error_with_its_details(
    app: App,
    client: AsyncClient,
    current: str,
    target: str,
    error: type[InvalidArgument | FailedPrecondition],
    detail: str,
) -> None:
    cluster = await seed_cluster(app, version=current)
    with pytest.raises(error) as refused:
        await client.upgrade_workflows.create(cluster.id, target_version=target)
    if isinstance(refused.value, InvalidArgument):
        assert [v.field for v in refused.value.field_violations] == [detail]
    else:
        assert refused.value.precondition_violations[0].type == detail
        assert refused.value.precondition_violations[0].subject == cluster.id
    assert [w async for w in client.upgrade_workflows.list(cluster_id=cluster.id)] == []


async def test_get_of_an_unknown_workflow_raises_not_found(client: AsyncClient) -> None:
    with pytest.raises(NotFound) as missing:
        await client.upgrade_workflows.get("uw-00000000000000000000")
    assert missing.value.resource_name == "uw-00000000000000000000"
    with pytest.raises(InvalidArgument) as malformed:
        await client.upgrade_workflows.get("cls-00000000000000000000")
    assert [v.field for v in malformed.value.field_violations] == ["upgrade_workflow_id"]


async def test_list_kubernetes_versions_gives_each_version_and_its_upgrade_targets(
    client: AsyncClient,
) -> None:
    versions = await client.upgrade_workflows.list_kubernetes_versions()
    assert all(isinstance(v, KubernetesVersion) for v in versions)
    targets = {v.version: list(v.upgrade_targets) for v in versions}
    assert targets["v1.29.8"] == ["v1.29.10", "v1.30.4", "v1.30.6", "v1.31.1", "v1.31.2"]
    assert targets["v1.31.2"] == []
