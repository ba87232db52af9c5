"""Acceptance: grpcurl creates and gets orchestrations with JSON."""

from __future__ import annotations

import json

from clusterops_server.app import App

from tests.conftest import Stubs, seed_cluster
from tests.helpers import watch_to_end
from tests.test_grpcurl import grpcurl

SERVICE = "clusterops.v1.OrchestrationService"


async def test_grpcurl_creates_and_gets_an_orchestration_with_json(app: App, stubs: Stubs) -> None:
    frankfurt = await seed_cluster(app, region="eu-frankfurt-1")
    await seed_cluster(app, region="us-ashburn-1")
    code, out, err = await grpcurl(
        app,
        f"{SERVICE}/CreateOrchestration",
        data={
            "compartment_id": "dev",
            "parameters": {
                "targets": {"include": [{"target": "all"}], "exclude": [{"region": "us-.*"}]},
                "strategy": {
                    "type": "STRATEGY_TYPE_PARALLEL",
                    "schedule": "SCHEDULE_TYPE_IMMEDIATE",
                    "parallel": {"workers": 2},
                },
                "kubernetes_version": "v1.30.4",
            },
            "request_id": "grpcurl-orc-1",
        },
    )
    assert code == 0, err
    created = json.loads(out)
    orchestration = created["orchestration"]
    assert orchestration["state"] == "ORCHESTRATION_STATE_PENDING"
    assert orchestration["description"] == "Scheduled 1 operation"
    assert orchestration["operation_counts"] == {"pending": 1, "total": 1}
    assert (
        created["work_request"]["operation_type"] == "WORK_REQUEST_OPERATION_TYPE_ORCHESTRATION_RUN"
    )
    await watch_to_end(stubs, created["work_request"]["id"])

    code, out, err = await grpcurl(
        app, f"{SERVICE}/GetOrchestration", data={"orchestration_id": orchestration["id"]}
    )
    assert code == 0, err
    got = json.loads(out)["orchestration"]
    assert got["state"] == "ORCHESTRATION_STATE_SUCCEEDED"
    assert got["description"] == "1 of 1 operation succeeded"
    assert got["operation_counts"] == {"succeeded": 1, "total": 1}
    assert got["parameters"]["targets"]["exclude"] == [{"region": "us-.*"}]

    code, out, err = await grpcurl(
        app,
        f"{SERVICE}/ListOrchestrationOperations",
        data={"orchestration_id": orchestration["id"]},
    )
    assert code == 0, err
    listed = json.loads(out)
    assert listed["count"] == 1
    assert listed["total_count"] == 1
    assert listed["data"][0]["runtime_id"] == frankfurt.id
    assert listed["data"][0]["state"] == "ORCHESTRATION_STATE_SUCCEEDED"


async def test_grpcurl_shows_which_target_field_is_malformed(app: App) -> None:
    code, out, err = await grpcurl(
        app,
        f"{SERVICE}/CreateOrchestration",
        data={
            "compartment_id": "dev",
            "parameters": {
                "targets": {"include": [{"region": "eu-(frankfurt"}]},
                "kubernetes_version": "v1.30.4",
            },
        },
    )
    assert code != 0
    text = (out + err).replace(" ", "")
    assert "InvalidArgument" in out + err
    assert '"field":"parameters.targets.include[0].region"' in text
