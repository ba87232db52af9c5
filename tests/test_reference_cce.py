"""CCE's example upgrade workflow (cce-upgrade-workflow.txt), replayed through the API.

The document's cluster runs v1.17.17-r0 and upgrades to v1.19.16-r80 without a snapshot:
its Snapshot point has only its task type, the lines run PreCheck -> Cluster -> PostCheck,
and the Cluster task fails, leaving the workflow Pending. Here the same request goes
through gRPC, the SDK and the CLI of a real in-process server, and the answer is compared
field by field with the document's response (CCE's JSON names, our values).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.domain.upgrade_workflows import UpgradePhase, UpgradeTaskStatus
from clusterops_server.domain.versions import KubernetesVersion, VersionCatalogue

from tests.conftest import Stubs, seed_cluster, simulator
from tests.helpers import watch_to_end
from tests.sdk_support import sdk_client
from tests.test_cli import Run
from tests.upgrade_helpers import TASK_NAMES, errors_of, get_workflow

# The document's response, as printed there (times and ids are its own).
DOCUMENT: dict[str, Any] = {
    "kind": "WorkFlowTask",
    "apiVersion": "v3",
    "metadata": {
        "uid": "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1",
        "creationTimestamp": "2023-11-25 06:32:34.923248 +0000 UTC",
        "updateTimestamp": "2023-11-25 07:49:30.281911 +0000 UTC",
    },
    "spec": {
        "clusterID": "b4b9e60f-8aa2-11ee-af09-0255ac10004f",
        "clusterVersion": "v1.17.17-r0",
        "targetVersion": "v1.19.16-r80",
    },
    "status": {
        "phase": "Pending",
        "pointStatuses": [
            {
                "taskType": "PreCheck",
                "taskID": "f61e008c-1600-41c0-9bde-121de5a30660",
                "status": "Success",
                "startTimeStamp": "2023-11-25 07:20:04.592972 +0000 UTC",
                "endTimeStamp": "2023-11-25 07:21:05.518966 +0000 UTC",
                "expireTimeStamp": "2023-11-25 08:21:05.518966 +0000 UTC",
            },
            {"taskType": "Snapshot"},
            {
                "taskType": "Cluster",
                "taskID": "6d799ff6-3afe-4242-80b4-6f0a0fa746cb",
                "status": "Failed",
                "startTimeStamp": "2023-11-25 07:49:30.283459 +0000 UTC",
                "endTimeStamp": "2023-11-25 07:58:35.507243 +0000 UTC",
            },
            {"taskType": "PostCheck"},
        ],
        "lineStatuses": [
            {"startPoint": {"taskType": "PreCheck"}, "endPoint": {"taskType": "Cluster"}},
            {"startPoint": {"taskType": "Cluster"}, "endPoint": {"taskType": "PostCheck"}},
        ],
    },
}
TIMES = ("creationTimestamp", "updateTimestamp", "startTimeStamp", "endTimeStamp")
_STATUS = {
    getattr(uw_pb, f"UPGRADE_TASK_STATUS_{s.name}"): s.value
    for s in UpgradeTaskStatus
    if s is not UpgradeTaskStatus.SKIPPED
}
_PHASE = {getattr(uw_pb, f"UPGRADE_WORKFLOW_PHASE_{p.name}"): p.value for p in UpgradePhase}


def _shape(document: dict[str, Any]) -> dict[str, Any]:
    """The document with its own ids and times replaced by what they are."""
    shaped = copy.deepcopy(document)
    del shaped["kind"], shaped["apiVersion"]
    shaped["metadata"] = {k: "<time>" if k in TIMES else "<id>" for k in shaped["metadata"]}
    shaped["spec"]["clusterID"] = "<id>"
    for point in shaped["status"]["pointStatuses"]:
        for key in point:
            if key == "taskID":
                point[key] = "<id>"
            elif key.endswith("TimeStamp"):
                point[key] = "<time>"
    return shaped


def _cce_view(workflow: uw_pb.UpgradeWorkflow) -> dict[str, Any]:
    """Our workflow in CCE's names, with ids and times replaced by what they are."""

    points = []
    for p in workflow.status.point_statuses:
        point: dict[str, Any] = {"taskType": TASK_NAMES[p.task_type]}
        if p.task_id:
            point["taskID"] = "<id>"
        if p.status:
            point["status"] = _STATUS[p.status]
        if p.HasField("start_timestamp"):
            point["startTimeStamp"] = "<time>"
        if p.HasField("end_timestamp"):
            point["endTimeStamp"] = "<time>"
        if p.HasField("expire_timestamp"):
            point["expireTimeStamp"] = "<time>"
        points.append(point)
    return {
        "metadata": {
            "uid": "<id>" if workflow.metadata.uid else "",
            "creationTimestamp": "<time>"
            if workflow.metadata.HasField("creation_timestamp")
            else "",
            "updateTimestamp": "<time>" if workflow.metadata.HasField("update_timestamp") else "",
        },
        "spec": {
            "clusterID": "<id>" if workflow.spec.cluster_id else "",
            "clusterVersion": workflow.spec.cluster_version,
            "targetVersion": workflow.spec.target_version,
        },
        "status": {
            "phase": _PHASE[workflow.status.phase],
            "pointStatuses": points,
            "lineStatuses": [
                {
                    "startPoint": {"taskType": TASK_NAMES[line.start_point]},
                    "endPoint": {"taskType": TASK_NAMES[line.end_point]},
                }
                for line in workflow.status.line_statuses
            ],
        },
    }


def expected() -> dict[str, Any]:
    shaped = _shape(DOCUMENT)
    # The one difference: CCE leaves a task that never got queued without a status; ours
    # says Init (no task id, no times), as it does for every task not yet scheduled.
    shaped["status"]["pointStatuses"][3]["status"] = "Init"
    return shaped


def check_against_document(workflow: uw_pb.UpgradeWorkflow, cluster_id: str) -> None:
    assert _cce_view(workflow) == expected()
    assert workflow.spec.cluster_id == cluster_id
    by_type = {TASK_NAMES[p.task_type]: p for p in workflow.status.point_statuses}
    # The skipped Snapshot is bare on the wire: its task type and nothing else.
    assert by_type["Snapshot"] == uw_pb.UpgradeTaskPointStatus(
        task_type=uw_pb.UPGRADE_TASK_TYPE_SNAPSHOT
    )
    pre_check = by_type["PreCheck"]
    # As in the document: the PreCheck result expires an hour after it ended.
    assert (
        pre_check.expire_timestamp.ToDatetime() - pre_check.end_timestamp.ToDatetime()
        == timedelta(hours=1)
    )
    assert by_type["Cluster"].start_timestamp.ToDatetime() >= pre_check.end_timestamp.ToDatetime()
    assert all(line.critical for line in workflow.status.line_statuses)


async def doc_cluster(app: App) -> str:
    cluster = await seed_cluster(app, name="cce-example", version="v1.17.17-r0")
    await simulator(app).inject_fault(
        "upgrade:Cluster", cluster.id, message="control plane upgrade failed"
    )
    return cluster.id


async def test_the_documents_workflow_over_grpc_skips_the_snapshot_and_stops_pending(
    app: App, stubs: Stubs
) -> None:
    cluster_id = await doc_cluster(app)
    created = await stubs.upgrade_workflows.CreateUpgradeWorkflow(
        uw_pb.CreateUpgradeWorkflowRequest(
            cluster_id=cluster_id, target_version="v1.19.16-r80", skip_snapshot=True
        )
    )
    # Bare from the start, and the graph already without Snapshot and Rollback.
    first = created.upgrade_workflow
    assert [TASK_NAMES[p.task_type] for p in first.status.point_statuses] == [
        "PreCheck",
        "Snapshot",
        "Cluster",
        "PostCheck",
    ]
    assert len(first.status.line_statuses) == 2
    events = await watch_to_end(stubs, created.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED

    workflow = await get_workflow(stubs, first.metadata.uid)
    check_against_document(workflow, cluster_id)
    errors = await errors_of(stubs, created.work_request.id)
    assert [e.code for e in errors] == ["ClusterFailed"]
    # No snapshot, so nothing was rolled back; the cluster stays on its version.
    cluster = await app.inventory.get_cluster(cluster_id)
    assert cluster.kubernetes_version == "v1.17.17-r0"


async def test_an_upgrade_with_a_snapshot_still_has_it_and_rolls_back(
    app: App, stubs: Stubs
) -> None:
    cluster_id = await doc_cluster(app)
    created = await stubs.upgrade_workflows.CreateUpgradeWorkflow(
        uw_pb.CreateUpgradeWorkflowRequest(cluster_id=cluster_id, target_version="v1.19.16-r80")
    )
    await watch_to_end(stubs, created.work_request.id)
    view = _cce_view(await get_workflow(stubs, created.upgrade_workflow.metadata.uid))
    statuses = {p["taskType"]: p.get("status") for p in view["status"]["pointStatuses"]}
    assert statuses == {
        "PreCheck": "Success",
        "Snapshot": "Success",
        "Cluster": "Failed",
        "PostCheck": "Init",
        "Rollback": "Success",
    }
    assert [
        (ln["startPoint"]["taskType"], ln["endPoint"]["taskType"])
        for ln in view["status"]["lineStatuses"]
    ] == [
        ("PreCheck", "Snapshot"),
        ("Snapshot", "Cluster"),
        ("Cluster", "PostCheck"),
        ("Cluster", "Rollback"),
        ("PostCheck", "Rollback"),
    ]


async def test_the_documents_workflow_through_the_sdk_and_the_cli(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster_id = await doc_cluster(app)
    async with sdk_client(app) as client:
        operation = await client.upgrade_workflows.create(
            cluster_id, target_version="v1.19.16-r80", skip_snapshot=True
        )
        await operation.wait(timeout=20)
        workflow = await client.upgrade_workflows.get(operation.resource.metadata.uid)
    check_against_document(workflow, cluster_id)

    run = Run(app, capsys)
    assert await run("upgrade-workflows", "get", workflow.metadata.uid) == 0
    lines = run.out.splitlines()
    # The bare point prints as its task type alone.
    snapshot = lines.index("    - task_type: SNAPSHOT")
    assert lines[snapshot + 1] == "    - task_type: CLUSTER"
    assert "v1.17.17-r0" in run.out
    assert "v1.19.16-r80" in run.out

    # A second run on the CLI, now that the fault is spent, succeeds without a snapshot.
    assert (
        await run(
            "upgrade-workflows",
            "create",
            "--cluster",
            cluster_id,
            "--target-version",
            "v1.19.16-r80",
            "--skip-snapshot",
            "--watch",
        )
        == 0
    )
    assert "SUCCEEDED" in run.out.splitlines()[-1]


def test_versions_with_a_platform_revision_compare_after_the_patch() -> None:
    ordered = ["v1.17.17", "v1.17.17-r0", "v1.17.17-r9", "v1.17.17-r10", "v1.17.18", "v1.19.16-r80"]
    parsed = [KubernetesVersion.parse(v) for v in ordered]
    assert all(p is not None for p in parsed)
    assert parsed == sorted(parsed)  # type: ignore[type-var]
    assert [str(p) for p in parsed] == ordered
    for bad in ("v1.19.16-80", "v1.19.16-r", "v1.19.16r80", "1.19.16-r80"):
        assert KubernetesVersion.parse(bad) is None
    catalogue = VersionCatalogue.load()
    legacy = KubernetesVersion.parse("v1.17.17-r0")
    assert legacy is not None
    assert [str(v) for v in catalogue.upgrade_targets(legacy)] == ["v1.19.16-r80"]


async def test_revision_versions_are_accepted_by_clusters_and_orchestrations(
    app: App, stubs: Stubs
) -> None:
    listed = await stubs.upgrade_workflows.ListKubernetesVersions(
        uw_pb.ListKubernetesVersionsRequest()
    )
    targets = {v.version: list(v.upgrade_targets) for v in listed.versions}
    assert targets["v1.17.17-r0"] == ["v1.19.16-r80"]

    created = await stubs.clusters.CreateCluster(
        cl_pb.CreateClusterRequest(
            compartment_id="legacy",
            name="legacy-1",
            kubernetes_version="v1.17.17-r0",
            region="eu-frankfurt-1",
            plan="aws",
        )
    )
    await watch_to_end(stubs, created.work_request.id)
    orchestration = await stubs.orchestrations.CreateOrchestration(
        orc_pb.CreateOrchestrationRequest(
            compartment_id="legacy",
            parameters=orc_pb.OrchestrationParameters(
                targets=orc_pb.TargetSpec(include=[orc_pb.RuntimeTarget(target="all")]),
                kubernetes_version="v1.19.16-r80",
                dry_run=True,
            ),
        )
    )
    await watch_to_end(stubs, orchestration.work_request.id)
    operations = await stubs.orchestrations.ListOrchestrationOperations(
        orc_pb.ListOrchestrationOperationsRequest(orchestration_id=orchestration.orchestration.id)
    )
    (operation,) = operations.data
    assert operation.state == orc_pb.ORCHESTRATION_STATE_SUCCEEDED
    assert "from v1.17.17-r0 to v1.19.16-r80" in operation.description
