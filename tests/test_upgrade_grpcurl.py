"""Acceptance: grpcurl creates, gets and lists upgrade workflows with JSON."""

from __future__ import annotations

import json

from clusterops_server.app import App

from tests.conftest import Stubs, seed_cluster
from tests.helpers import watch_to_end
from tests.test_grpcurl import grpcurl

SERVICE = "clusterops.v1.UpgradeWorkflowService"


async def test_grpcurl_creates_and_gets_an_upgrade_workflow_with_json(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app, name="edge", version="v1.29.8")
    code, out, err = await grpcurl(
        app,
        f"{SERVICE}/CreateUpgradeWorkflow",
        data={
            "cluster_id": cluster.id,
            "target_version": "v1.30.4",
            "annotations": {"ticket": "CHG-1234"},
        },
    )
    assert code == 0, err
    created = json.loads(out)
    workflow_id = created["upgrade_workflow"]["metadata"]["uid"]
    assert created["upgrade_workflow"]["status"]["phase"] == "UPGRADE_WORKFLOW_PHASE_INIT"
    assert (
        created["work_request"]["operation_type"] == "WORK_REQUEST_OPERATION_TYPE_CLUSTER_UPGRADE"
    )
    await watch_to_end(stubs, created["work_request"]["id"])

    code, out, err = await grpcurl(
        app, f"{SERVICE}/GetUpgradeWorkflow", data={"upgrade_workflow_id": workflow_id}
    )
    assert code == 0, err
    workflow = json.loads(out)["upgrade_workflow"]
    assert workflow["spec"] == {
        "cluster_id": cluster.id,
        "cluster_version": "v1.29.8",
        "target_version": "v1.30.4",
    }
    assert workflow["metadata"]["annotations"] == {"ticket": "CHG-1234"}
    assert workflow["status"]["phase"] == "UPGRADE_WORKFLOW_PHASE_SUCCESS"
    tasks = [
        (p["task_type"], p["status"]) for p in workflow["status"]["point_statuses"] if "status" in p
    ]
    assert tasks[:4] == [
        ("UPGRADE_TASK_TYPE_PRE_CHECK", "UPGRADE_TASK_STATUS_SUCCESS"),
        ("UPGRADE_TASK_TYPE_SNAPSHOT", "UPGRADE_TASK_STATUS_SUCCESS"),
        ("UPGRADE_TASK_TYPE_CLUSTER", "UPGRADE_TASK_STATUS_SUCCESS"),
        ("UPGRADE_TASK_TYPE_POST_CHECK", "UPGRADE_TASK_STATUS_SUCCESS"),
    ]
    assert "expire_timestamp" in workflow["status"]["point_statuses"][0]

    code, out, err = await grpcurl(
        app, f"{SERVICE}/ListUpgradeWorkflows", data={"cluster_id": cluster.id}
    )
    assert code == 0, err
    assert [w["metadata"]["uid"] for w in json.loads(out)["upgrade_workflows"]] == [workflow_id]


async def test_grpcurl_lists_the_upgrade_service_and_shows_a_bad_version(app: App) -> None:
    code, out, _ = await grpcurl(app, "list")
    assert code == 0
    assert SERVICE in out.split()
    code, out, err = await grpcurl(app, "grpc.health.v1.Health/Check", data={"service": SERVICE})
    assert code == 0, err
    assert json.loads(out)["status"] == "SERVING"

    cluster = await seed_cluster(app, version="v1.29.8")
    code, out, err = await grpcurl(
        app,
        f"{SERVICE}/CreateUpgradeWorkflow",
        data={"cluster_id": cluster.id, "target_version": "v1.28.13"},
    )
    assert code != 0
    text = (out + err).replace(" ", "")
    assert "InvalidArgument" in out + err
    assert '"field":"target_version"' in text
    assert "downgrades" in out + err
