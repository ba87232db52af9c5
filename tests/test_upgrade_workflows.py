"""Upgrade workflows: the CCE task DAG driven end to end over gRPC with the injectable clock."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.domain.inventory import ClusterState
from clusterops_server.domain.upgrade_workflows import UpgradeSettings
from clusterops_server.operations.upgrades import start_upgrade
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, Stubs, connect, seed_cluster, simulator
from tests.helpers import details_of, watch_to_end
from tests.upgrade_helpers import (
    CLUSTER,
    CRITICAL_PATH,
    POST_CHECK,
    PRE_CHECK,
    ROLLBACK,
    SNAPSHOT,
    TASK_NAMES,
    create_upgrade,
    drive,
    errors_of,
    get_workflow,
    logs_of,
    points,
)

# Also on PostgreSQL: the same behaviour whatever the store.
pytestmark = pytest.mark.both_backends

TASK_SECONDS = 60


def timed(**overrides: float) -> SimulationSettings:
    seconds = {f"upgrade:{name}": float(TASK_SECONDS) for name in TASK_NAMES.values()}
    seconds.update({f"upgrade:{k}": v for k, v in overrides.items()})
    return SimulationSettings(seconds=seconds)


async def cluster_of(stubs: Stubs, cluster_id: str) -> cl_pb.Cluster:
    return (await stubs.clusters.GetCluster(cl_pb.GetClusterRequest(cluster_id=cluster_id))).cluster


# the happy path


async def test_create_returns_the_workflow_in_init_and_its_work_request_at_once(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app, name="alpha", version="v1.29.8")
        created = await create_upgrade(stubs, cluster.id, "v1.30.4", labels={"team": "platform"})

        workflow, wr = created.upgrade_workflow, created.work_request
        assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_INIT
        assert workflow.metadata.uid.startswith("uw-")
        assert workflow.metadata.name == "upgrade-alpha-v1.30.4"
        assert dict(workflow.metadata.labels) == {"team": "platform"}
        assert workflow.metadata.creation_timestamp.ToDatetime() == app.clock.now().replace(
            tzinfo=None
        )
        assert workflow.spec.cluster_id == cluster.id
        assert workflow.spec.cluster_version == "v1.29.8"
        assert workflow.spec.target_version == "v1.30.4"
        assert workflow.compartment_id == cluster.compartment_id
        assert workflow.work_request_id == wr.id
        assert workflow.etag

        assert wr.status == wr_pb.WORK_REQUEST_STATUS_ACCEPTED
        assert wr.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_CLUSTER_UPGRADE
        assert {(r.entity_type, r.identifier) for r in wr.resources} == {
            ("upgradeworkflow", workflow.metadata.uid),
            ("cluster", cluster.id),
        }

        by_type = points(workflow)
        assert list(by_type) == [*CRITICAL_PATH, ROLLBACK]
        assert by_type[PRE_CHECK].status == uw_pb.UPGRADE_TASK_STATUS_QUEUING
        assert by_type[PRE_CHECK].task_id.startswith("task-")
        for task in (SNAPSHOT, CLUSTER, POST_CHECK, ROLLBACK):
            assert by_type[task].status == uw_pb.UPGRADE_TASK_STATUS_INIT
            assert by_type[task].task_id == ""
        lines = {
            (line.start_point, line.end_point): line.critical
            for line in workflow.status.line_statuses
        }
        assert lines == {
            (PRE_CHECK, SNAPSHOT): True,
            (SNAPSHOT, CLUSTER): True,
            (CLUSTER, POST_CHECK): True,
            (CLUSTER, ROLLBACK): False,
            (POST_CHECK, ROLLBACK): False,
        }
        # PreCheck is running on the fake clock: the cluster is being upgraded.
        await clock.wait_for_sleepers(1)
        assert (await cluster_of(stubs, cluster.id)).lifecycle_state == (
            cl_pb.CLUSTER_LIFECYCLE_STATE_UPDATING
        )
        await drive(clock, TASK_SECONDS, tasks=4)
        await watch_to_end(stubs, wr.id)


async def test_happy_path_runs_every_task_in_order_and_upgrades_the_cluster(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app, version="v1.29.8")
        t0 = clock.now()
        created = await create_upgrade(stubs, cluster.id, "v1.30.4")
        wr_id = created.work_request.id
        await drive(clock, TASK_SECONDS, tasks=4)
        # Every change after the create, from the watch history.
        events = await watch_to_end(stubs, wr_id, after_revision=created.work_request.revision)

        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
        percents = [e.work_request.percent_complete for e in events]
        assert percents == sorted(percents)
        assert {25.0, 50.0, 75.0, 100.0} <= set(percents)

        workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
        assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS
        by_type = points(workflow)
        task_ids = [by_type[t].task_id for t in CRITICAL_PATH]
        assert len(set(task_ids)) == 4
        assert task_ids[0] == points(created.upgrade_workflow)[PRE_CHECK].task_id
        for i, task in enumerate(CRITICAL_PATH):
            point = by_type[task]
            assert point.status == uw_pb.UPGRADE_TASK_STATUS_SUCCESS
            start = t0 + timedelta(seconds=TASK_SECONDS * i)
            assert point.start_timestamp.ToDatetime(tzinfo=start.tzinfo) == start
            assert point.end_timestamp.ToDatetime(tzinfo=start.tzinfo) == start + timedelta(
                seconds=TASK_SECONDS
            )
        pre_check = by_type[PRE_CHECK]
        assert pre_check.expire_timestamp.ToDatetime() - pre_check.end_timestamp.ToDatetime() == (
            timedelta(hours=1)
        )
        assert not by_type[CLUSTER].HasField("expire_timestamp")
        assert by_type[ROLLBACK].status == uw_pb.UPGRADE_TASK_STATUS_INIT
        assert by_type[ROLLBACK].task_id == ""
        assert workflow.metadata.update_timestamp.ToDatetime() == (
            t0 + timedelta(seconds=4 * TASK_SECONDS)
        ).replace(tzinfo=None)

        upgraded = await cluster_of(stubs, cluster.id)
        assert upgraded.kubernetes_version == "v1.30.4"
        assert upgraded.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE

        final = events[-1].work_request
        assert final.percent_complete == 100
        messages = await logs_of(stubs, wr_id)
        expected = [
            f"{TASK_NAMES[t]} task {by_type[t].task_id} {verb}"
            for t in CRITICAL_PATH
            for verb in ("started", "succeeded")
        ]
        task_lines = [m for m in messages if " task task-" in m]
        assert [m.split(";")[0] for m in task_lines] == expected
        assert any("upgraded from v1.29.8 to v1.30.4" in m for m in messages)
        # Every one of those log lines reached the watch as it happened.
        watched = [entry.message for e in events for entry in e.log_entries]
        assert [m for m in watched if " task task-" in m] == task_lines
        wr = (
            await stubs.work_requests.GetWorkRequest(
                wr_pb.GetWorkRequestRequest(work_request_id=wr_id)
            )
        ).work_request
        cluster_resource = next(r for r in wr.resources if r.entity_type == "cluster")
        assert cluster_resource.action_type == wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_UPDATED


async def test_start_upgrade_joins_the_callers_unit_of_work(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    async with app.store.write() as uow:
        loaded = await uow.inventory.get_cluster(cluster.id, for_update=True)
        assert loaded is not None
        await start_upgrade(uow, app.versions, loaded, "v1.30.4")
        # Not committed: nothing of it may remain.
    async with app.store.read() as uow:
        untouched = await uow.inventory.get_cluster(cluster.id)
        assert untouched is not None
        assert untouched.lifecycle_state is ClusterState.ACTIVE
        assert await uow.work_requests.lock_holder(cluster.id) is None
    listed = await stubs.upgrade_workflows.ListUpgradeWorkflows(
        uw_pb.ListUpgradeWorkflowsRequest(cluster_id=cluster.id)
    )
    assert list(listed.upgrade_workflows) == []

    async with app.store.write() as uow:
        loaded = await uow.inventory.get_cluster(cluster.id, for_update=True)
        assert loaded is not None
        workflow, wr = await start_upgrade(uow, app.versions, loaded, "v1.30.4", name="by-hand")
        await uow.commit()
    app.engine.wake()
    events = await watch_to_end(stubs, wr.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert (await get_workflow(stubs, workflow.id)).metadata.name == "by-hand"


# failures


@pytest.mark.parametrize("failing", [PRE_CHECK, SNAPSHOT], ids=["PreCheck", "Snapshot"])
async def test_a_failure_before_the_cluster_task_leaves_the_workflow_pending_and_nothing_changed(
    app: App, stubs: Stubs, failing: uw_pb.UpgradeTaskType.ValueType
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    name = TASK_NAMES[failing]
    await simulator(app).inject_fault(
        f"upgrade:{name}", cluster.id, times=1, message=f"{name} says no: etcd is unhealthy"
    )
    created = await create_upgrade(stubs, cluster.id, "v1.30.4")
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED

    workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
    assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING
    by_type = points(workflow)
    assert by_type[failing].status == uw_pb.UPGRADE_TASK_STATUS_FAILED
    assert "etcd is unhealthy" in by_type[failing].message
    assert by_type[failing].HasField("end_timestamp")
    index = CRITICAL_PATH.index(failing)
    for earlier in CRITICAL_PATH[:index]:
        assert by_type[earlier].status == uw_pb.UPGRADE_TASK_STATUS_SUCCESS
    for later in (*CRITICAL_PATH[index + 1 :], ROLLBACK):
        assert by_type[later].status == uw_pb.UPGRADE_TASK_STATUS_INIT
        assert by_type[later].task_id == ""

    unchanged = await cluster_of(stubs, cluster.id)
    assert unchanged.kubernetes_version == "v1.29.8"
    assert unchanged.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
    errors = await errors_of(stubs, created.work_request.id)
    assert [e.code for e in errors] == [f"{name}Failed"]
    assert by_type[failing].task_id in errors[0].message
    assert errors[0].message.startswith(f"{name} task ")


@pytest.mark.parametrize("failing", [CLUSTER, POST_CHECK], ids=["Cluster", "PostCheck"])
async def test_a_failure_after_the_cluster_task_starts_rolls_back_and_keeps_the_version(
    make_app: AppFactory, clock: FakeClock, failing: uw_pb.UpgradeTaskType.ValueType
) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app, version="v1.29.8")
        name = TASK_NAMES[failing]
        await simulator(app).inject_fault(
            f"upgrade:{name}", cluster.id, times=1, message=f"{name} broke: apiserver crashloop"
        )
        created = await create_upgrade(stubs, cluster.id, "v1.30.4")
        # The tasks up to the failing one, then Rollback.
        await drive(clock, TASK_SECONDS, tasks=CRITICAL_PATH.index(failing) + 2)
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED

        workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
        assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING
        by_type = points(workflow)
        assert by_type[failing].status == uw_pb.UPGRADE_TASK_STATUS_FAILED
        assert "apiserver crashloop" in by_type[failing].message
        rollback = by_type[ROLLBACK]
        assert rollback.status == uw_pb.UPGRADE_TASK_STATUS_SUCCESS
        assert rollback.task_id.startswith("task-")
        assert rollback.start_timestamp.ToDatetime() >= by_type[failing].end_timestamp.ToDatetime()
        if failing == CLUSTER:
            assert by_type[POST_CHECK].status == uw_pb.UPGRADE_TASK_STATUS_INIT

        unchanged = await cluster_of(stubs, cluster.id)
        assert unchanged.kubernetes_version == "v1.29.8"
        assert unchanged.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
        errors = await errors_of(stubs, created.work_request.id)
        assert [e.code for e in errors] == [f"{name}Failed"]
        assert f"{name} task {by_type[failing].task_id} failed" in errors[0].message
        messages = await logs_of(stubs, created.work_request.id)
        assert f"Rollback task {rollback.task_id} succeeded" in messages
        assert any("rolled back" in m and "v1.29.8" in m for m in messages)


async def test_a_failed_rollback_marks_the_cluster_failed_and_names_both_tasks(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await simulator(app).inject_fault("upgrade:Cluster", cluster.id, times=1)
    await simulator(app).inject_fault("upgrade:Rollback", cluster.id, times=1)
    created = await create_upgrade(stubs, cluster.id, "v1.30.4")
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED

    workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
    assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING
    assert points(workflow)[ROLLBACK].status == uw_pb.UPGRADE_TASK_STATUS_FAILED
    assert [e.code for e in await errors_of(stubs, created.work_request.id)] == [
        "ClusterFailed",
        "RollbackFailed",
    ]
    broken = await cluster_of(stubs, cluster.id)
    assert broken.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_FAILED
    assert broken.kubernetes_version == "v1.29.8"


# a Pending workflow waits for a decision


@pytest.mark.parametrize(
    ("failing", "rollback_fails", "cluster_state"),
    [
        (PRE_CHECK, False, cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE),
        (CLUSTER, False, cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE),
        (CLUSTER, True, cl_pb.CLUSTER_LIFECYCLE_STATE_FAILED),
    ],
    ids=["before-the-cluster-task", "rolled-back", "rollback-failed"],
)
async def test_cancel_closes_a_pending_workflow_and_leaves_the_cluster_as_the_failure_did(
    app: App,
    stubs: Stubs,
    failing: uw_pb.UpgradeTaskType.ValueType,
    rollback_fails: bool,
    cluster_state: cl_pb.ClusterLifecycleState.ValueType,
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await simulator(app).inject_fault(f"upgrade:{TASK_NAMES[failing]}", cluster.id)
    if rollback_fails:
        await simulator(app).inject_fault("upgrade:Rollback", cluster.id)
    created = await create_upgrade(stubs, cluster.id, "v1.30.4")
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    pending = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
    assert pending.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING

    # Even past the point of no return: the workflow has stopped, so closing it is safe.
    canceled = await stubs.upgrade_workflows.CancelUpgradeWorkflow(
        uw_pb.CancelUpgradeWorkflowRequest(
            upgrade_workflow_id=pending.metadata.uid, etag=pending.etag
        )
    )
    closed = canceled.upgrade_workflow
    assert closed.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
    assert closed.etag != pending.etag
    # What happened stays on record: the failed task, the ended work request.
    assert points(closed) == points(pending)
    wr = await stubs.work_requests.GetWorkRequest(
        wr_pb.GetWorkRequestRequest(work_request_id=created.work_request.id)
    )
    assert wr.work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    after = await cluster_of(stubs, cluster.id)
    assert after.kubernetes_version == "v1.29.8"
    assert after.lifecycle_state == cluster_state

    again = await stubs.upgrade_workflows.CancelUpgradeWorkflow(
        uw_pb.CancelUpgradeWorkflowRequest(upgrade_workflow_id=pending.metadata.uid)
    )
    assert again.upgrade_workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
    assert again.upgrade_workflow.etag == closed.etag


@pytest.mark.parametrize("close_first", [False, True], ids=["left-pending", "closed"])
async def test_a_new_upgrade_is_accepted_after_a_pending_one(
    app: App, stubs: Stubs, close_first: bool
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    await simulator(app).inject_fault("upgrade:Cluster", cluster.id)
    failed = await create_upgrade(stubs, cluster.id, "v1.30.4")
    await watch_to_end(stubs, failed.work_request.id)
    failed_id = failed.upgrade_workflow.metadata.uid
    assert (await get_workflow(stubs, failed_id)).status.phase == (
        uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING
    )
    if close_first:
        await stubs.upgrade_workflows.CancelUpgradeWorkflow(
            uw_pb.CancelUpgradeWorkflowRequest(upgrade_workflow_id=failed_id)
        )

    retried = await create_upgrade(stubs, cluster.id, "v1.30.4")
    events = await watch_to_end(stubs, retried.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert (await cluster_of(stubs, cluster.id)).kubernetes_version == "v1.30.4"
    # The earlier workflow keeps its own ending.
    assert (await get_workflow(stubs, failed_id)).status.phase == (
        uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL if close_first else uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING
    )


# pre-check expiry


@pytest.mark.parametrize(
    ("validity", "snapshot_seconds", "pre_checks"),
    [
        (timedelta(hours=1), 7200.0, 2),
        (timedelta(hours=1), 1800.0, 1),
        (timedelta(minutes=10), 1800.0, 2),
    ],
    ids=["expired-default", "still-valid", "expired-configured"],
)
async def test_an_expired_pre_check_runs_again_before_the_cluster_task(
    make_app: AppFactory,
    clock: FakeClock,
    validity: timedelta,
    snapshot_seconds: float,
    pre_checks: int,
) -> None:
    app = await make_app(
        simulation=SimulationSettings(seconds={"upgrade:Snapshot": snapshot_seconds}),
        upgrades=UpgradeSettings(pre_check_validity=validity),
    )
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        created = await create_upgrade(stubs, cluster.id, "v1.30.4")
        first_pre_check = points(created.upgrade_workflow)[PRE_CHECK].task_id
        await clock.wait_for_sleepers(1)  # Snapshot is running
        clock.advance(snapshot_seconds)
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED

        workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
        by_type = points(workflow)
        messages = await logs_of(stubs, created.work_request.id)
        started = [m for m in messages if m.startswith("PreCheck task") and m.endswith("started")]
        assert len(started) == pre_checks
        pre_check = by_type[PRE_CHECK]
        assert pre_check.status == uw_pb.UPGRADE_TASK_STATUS_SUCCESS
        if pre_checks == 1:
            assert pre_check.task_id == first_pre_check
            assert not any("expired" in m for m in messages)
            return
        assert pre_check.task_id != first_pre_check
        assert any("PreCheck result expired" in m for m in messages)
        # The fresh pre-check ran after Snapshot and before Cluster, and is valid again.
        snapshot_end = by_type[SNAPSHOT].end_timestamp.ToDatetime()
        assert pre_check.start_timestamp.ToDatetime() >= snapshot_end
        assert by_type[CLUSTER].start_timestamp.ToDatetime() >= (
            pre_check.end_timestamp.ToDatetime()
        )
        assert pre_check.expire_timestamp.ToDatetime() - pre_check.end_timestamp.ToDatetime() == (
            validity
        )
        assert (await cluster_of(stubs, cluster.id)).kubernetes_version == "v1.30.4"


# cancel


async def test_cancel_before_the_cluster_task_stops_the_workflow_and_changes_nothing(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app, version="v1.29.8")
        created = await create_upgrade(stubs, cluster.id, "v1.30.4")
        await drive(clock, TASK_SECONDS, tasks=1)  # PreCheck
        await clock.wait_for_sleepers(1)  # Snapshot is running
        running = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
        assert running.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_RUNNING

        canceled = await stubs.upgrade_workflows.CancelUpgradeWorkflow(
            uw_pb.CancelUpgradeWorkflowRequest(
                upgrade_workflow_id=running.metadata.uid, etag=running.etag
            )
        )
        assert canceled.upgrade_workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
        wr = (
            await stubs.work_requests.GetWorkRequest(
                wr_pb.GetWorkRequestRequest(work_request_id=created.work_request.id)
            )
        ).work_request
        assert wr.status == wr_pb.WORK_REQUEST_STATUS_CANCELING

        clock.advance(TASK_SECONDS)  # the running Snapshot ends; nothing starts after it
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED

        workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
        assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
        by_type = points(workflow)
        assert by_type[SNAPSHOT].status == uw_pb.UPGRADE_TASK_STATUS_SUCCESS
        for task in (CLUSTER, POST_CHECK, ROLLBACK):
            assert by_type[task].status == uw_pb.UPGRADE_TASK_STATUS_INIT
        assert not any(m.startswith("Cluster task") for m in await logs_of(stubs, wr.id))
        unchanged = await cluster_of(stubs, cluster.id)
        assert unchanged.kubernetes_version == "v1.29.8"
        assert unchanged.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE

        again = await stubs.upgrade_workflows.CancelUpgradeWorkflow(
            uw_pb.CancelUpgradeWorkflowRequest(upgrade_workflow_id=workflow.metadata.uid)
        )
        assert again.upgrade_workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL


async def test_cancel_work_request_follows_the_workflow_rule_before_the_cluster_task(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        created = await create_upgrade(stubs, cluster.id)
        await clock.wait_for_sleepers(1)  # PreCheck is running
        await stubs.work_requests.CancelWorkRequest(
            wr_pb.CancelWorkRequestRequest(work_request_id=created.work_request.id)
        )
        clock.advance(TASK_SECONDS)
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
        workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
        assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_CANCEL
        assert points(workflow)[SNAPSHOT].status == uw_pb.UPGRADE_TASK_STATUS_INIT
        assert (await cluster_of(stubs, cluster.id)).lifecycle_state == (
            cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
        )


async def test_cancel_after_the_cluster_task_started_is_refused_both_ways(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        created = await create_upgrade(stubs, cluster.id)
        workflow_id = created.upgrade_workflow.metadata.uid
        await drive(clock, TASK_SECONDS, tasks=2)  # PreCheck, Snapshot
        await clock.wait_for_sleepers(1)  # Cluster is running

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs.upgrade_workflows.CancelUpgradeWorkflow(
                uw_pb.CancelUpgradeWorkflowRequest(upgrade_workflow_id=workflow_id)
            )
        details = details_of(refused.value)
        assert details.code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.precondition is not None
        assert details.precondition.violations[0].type == "POINT_OF_NO_RETURN"
        assert "point of no return" in details.message
        with pytest.raises(grpc.aio.AioRpcError) as refused_too:
            await stubs.work_requests.CancelWorkRequest(
                wr_pb.CancelWorkRequestRequest(work_request_id=created.work_request.id)
            )
        assert details_of(refused_too.value).code == grpc.StatusCode.FAILED_PRECONDITION
        assert "point of no return" in details_of(refused_too.value).message

        await drive(clock, TASK_SECONDS, tasks=1)  # Cluster
        await drive(clock, TASK_SECONDS, tasks=1)  # PostCheck
        events = await watch_to_end(stubs, created.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED

        with pytest.raises(grpc.aio.AioRpcError) as finished:
            await stubs.upgrade_workflows.CancelUpgradeWorkflow(
                uw_pb.CancelUpgradeWorkflowRequest(upgrade_workflow_id=workflow_id)
            )
        details = details_of(finished.value)
        assert details.code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.precondition is not None
        assert details.precondition.violations[0].type == "UPGRADE_WORKFLOW_PHASE"


async def test_cancel_with_a_stale_etag_is_aborted(make_app: AppFactory, clock: FakeClock) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app)
        created = await create_upgrade(stubs, cluster.id)
        stale = created.upgrade_workflow.etag
        await clock.wait_for_sleepers(1)  # PreCheck started: the workflow changed
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await stubs.upgrade_workflows.CancelUpgradeWorkflow(
                uw_pb.CancelUpgradeWorkflowRequest(
                    upgrade_workflow_id=created.upgrade_workflow.metadata.uid, etag=stale
                )
            )
        details = details_of(conflict.value)
        assert details.code == grpc.StatusCode.ABORTED
        assert details.error_info is not None
        assert details.error_info.reason == "ETAG_MISMATCH"
        current = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
        assert details.error_info.metadata["current_etag"] == current.etag
        assert current.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_RUNNING


# validation of the upgrade path


@pytest.mark.parametrize(
    ("current", "target", "code", "reason", "hint"),
    [
        ("v1.29.8", "v1.28.13", grpc.StatusCode.INVALID_ARGUMENT, "target_version", "downgrade"),
        ("v1.27.16", "v1.30.4", grpc.StatusCode.INVALID_ARGUMENT, "target_version", "in steps"),
        ("v1.29.8", "v1.29.9", grpc.StatusCode.INVALID_ARGUMENT, "target_version", "supported:"),
        ("v1.29.8", "1.30", grpc.StatusCode.INVALID_ARGUMENT, "target_version", "not a version"),
        ("v1.29.8", "", grpc.StatusCode.INVALID_ARGUMENT, "target_version", "required"),
        (
            "v1.30.4",
            "v1.30.4",
            grpc.StatusCode.FAILED_PRECONDITION,
            "ALREADY_AT_VERSION",
            "already runs",
        ),
        (
            "v1.14.1",
            "v1.27.16",
            grpc.StatusCode.FAILED_PRECONDITION,
            "UNSUPPORTED_CURRENT_VERSION",
            "new cluster",
        ),
        (
            "1.29-custom",
            "v1.30.4",
            grpc.StatusCode.FAILED_PRECONDITION,
            "UNKNOWN_CURRENT_VERSION",
            "not a known version",
        ),
    ],
    ids=["downgrade", "too-far", "unknown", "malformed", "missing", "already", "dropped", "odd"],
)
async def test_a_bad_upgrade_path_is_refused_with_a_reason_and_starts_nothing(
    app: App,
    stubs: Stubs,
    current: str,
    target: str,
    code: grpc.StatusCode,
    reason: str,
    hint: str,
) -> None:
    cluster = await seed_cluster(app, version=current)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_upgrade(stubs, cluster.id, target)
    details = details_of(refused.value)
    assert details.code == code
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert details.fields == [reason]
        assert details.bad_request is not None
        assert hint in details.bad_request.field_violations[0].description
    else:
        assert details.precondition is not None
        assert details.precondition.violations[0].type == reason
        assert details.precondition.violations[0].subject == cluster.id
        assert hint in details.message
    listed = await stubs.upgrade_workflows.ListUpgradeWorkflows(
        uw_pb.ListUpgradeWorkflowsRequest(cluster_id=cluster.id)
    )
    assert list(listed.upgrade_workflows) == []
    assert (await cluster_of(stubs, cluster.id)).lifecycle_state == (
        cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
    )


async def test_bad_ids_are_invalid_and_unknown_ones_not_found(app: App, stubs: Stubs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await create_upgrade(stubs, "my-cluster", "v1.30.4", request_id="bad id!")
    assert details_of(malformed.value).fields == ["cluster_id", "request_id"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await create_upgrade(stubs, "cls-00000000000000000000", "v1.30.4")
    assert details_of(missing.value).code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad_get:
        await get_workflow(stubs, "wr-00000000000000000000")
    assert details_of(bad_get.value).fields == ["upgrade_workflow_id"]
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await get_workflow(stubs, "uw-00000000000000000000")
    assert details_of(unknown.value).code == grpc.StatusCode.NOT_FOUND


# one upgrade per cluster, retries


async def test_a_second_upgrade_while_one_runs_is_aborted_naming_the_running_workflow(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=timed())
    async with connect(app) as stubs:
        cluster = await seed_cluster(app, version="v1.29.8")
        first = await create_upgrade(stubs, cluster.id, "v1.30.4")
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await create_upgrade(stubs, cluster.id, "v1.30.6")
        details = details_of(conflict.value)
        assert details.code == grpc.StatusCode.ABORTED
        assert details.error_info is not None
        assert details.error_info.reason == "RESOURCE_BUSY"
        metadata = details.error_info.metadata
        assert metadata["blocking_work_request_id"] == first.work_request.id
        assert metadata["upgrade_workflow_id"] == first.upgrade_workflow.metadata.uid
        assert first.upgrade_workflow.metadata.uid in details.message

        await drive(clock, TASK_SECONDS, tasks=4)
        await watch_to_end(stubs, first.work_request.id)
        # Once it ended, the next step up is allowed from the new version.
        second = await create_upgrade(stubs, cluster.id, "v1.31.2")
        assert second.upgrade_workflow.spec.cluster_version == "v1.30.4"
        await drive(clock, TASK_SECONDS, tasks=4)
        await watch_to_end(stubs, second.work_request.id)


async def test_a_retried_create_with_the_same_request_id_returns_the_same_workflow(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    first = await create_upgrade(stubs, cluster.id, "v1.30.4", request_id="upgrade-alpha-1")
    again = await create_upgrade(stubs, cluster.id, "v1.30.4", request_id="upgrade-alpha-1")
    assert again.upgrade_workflow.metadata.uid == first.upgrade_workflow.metadata.uid
    assert again.work_request.id == first.work_request.id
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await create_upgrade(stubs, cluster.id, "v1.30.6", request_id="upgrade-alpha-1")
    assert details_of(reused.value).code == grpc.StatusCode.INVALID_ARGUMENT
    await watch_to_end(stubs, first.work_request.id)


# reading


async def test_list_filters_by_cluster_compartment_and_phase_and_pages_newest_first(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    dev_a = await seed_cluster(app, compartment="dev", version="v1.28.13")
    dev_b = await seed_cluster(app, compartment="dev", version="v1.29.8")
    prod = await seed_cluster(app, compartment="prod", version="v1.29.8")
    await simulator(app).inject_fault("upgrade:PreCheck", dev_b.id, times=1)
    created: list[str] = []
    for cluster_id, target in [
        (dev_a.id, "v1.29.8"),
        (dev_b.id, "v1.30.4"),
        (prod.id, "v1.30.4"),
        (dev_a.id, "v1.30.4"),
    ]:
        response = await create_upgrade(stubs, cluster_id, target)
        await watch_to_end(stubs, response.work_request.id)
        created.append(response.upgrade_workflow.metadata.uid)
        clock.advance(1)

    async def ids(**request: object) -> list[str]:
        listed = await stubs.upgrade_workflows.ListUpgradeWorkflows(
            uw_pb.ListUpgradeWorkflowsRequest(**request)  # type: ignore[arg-type]
        )
        return [w.metadata.uid for w in listed.upgrade_workflows]

    newest_first = created[::-1]
    assert await ids() == newest_first
    assert await ids(cluster_id=dev_a.id) == [created[3], created[0]]
    assert await ids(compartment_id="prod") == [created[2]]
    assert await ids(phases=[uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING]) == [created[1]]
    assert await ids(compartment_id="dev", phases=[uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS]) == [
        created[3],
        created[0],
    ]

    paged: list[str] = []
    token = ""
    while True:
        page = await stubs.upgrade_workflows.ListUpgradeWorkflows(
            uw_pb.ListUpgradeWorkflowsRequest(page_size=3, page_token=token)
        )
        paged += [w.metadata.uid for w in page.upgrade_workflows]
        token = page.next_page_token
        if not token:
            break
    assert paged == newest_first

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stubs.upgrade_workflows.ListUpgradeWorkflows(
            uw_pb.ListUpgradeWorkflowsRequest(
                page_size=-1,
                phases=[uw_pb.UpgradeWorkflowPhase.ValueType(99)],
                cluster_id="nope",
                page_token="garbage",
            )
        )
    assert sorted(details_of(bad.value).fields) == [
        "cluster_id",
        "page_size",
        "page_token",
        "phases[0]",
    ]
    first_page = await stubs.upgrade_workflows.ListUpgradeWorkflows(
        uw_pb.ListUpgradeWorkflowsRequest(page_size=1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as other_query:
        await stubs.upgrade_workflows.ListUpgradeWorkflows(
            uw_pb.ListUpgradeWorkflowsRequest(
                page_size=1, cluster_id=dev_b.id, page_token=first_page.next_page_token
            )
        )
    assert details_of(other_query.value).fields == ["page_token"]


async def test_list_kubernetes_versions_gives_each_version_and_where_it_may_go(
    stubs: Stubs,
) -> None:
    listed = await stubs.upgrade_workflows.ListKubernetesVersions(
        uw_pb.ListKubernetesVersionsRequest()
    )
    targets = {v.version: list(v.upgrade_targets) for v in listed.versions}
    assert targets["v1.29.8"] == ["v1.29.10", "v1.30.4", "v1.30.6", "v1.31.1", "v1.31.2"]
    assert targets["v1.27.16"] == ["v1.28.13", "v1.28.15", "v1.29.8", "v1.29.10"]
    assert targets["v1.31.2"] == []
