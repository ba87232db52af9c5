"""Errors fit through every client: however many fields are wrong, the status the server
sends stays small enough for grpc Python's trailer limits, so the SDK raises
InvalidArgument (not RESOURCE_EXHAUSTED "received metadata size exceeds hard limit")."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from clusterops import AsyncClient
from clusterops import InvalidArgument as SdkInvalidArgument
from clusterops._options import CallOptions
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import addons_pb2_grpc as ad_grpc
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import orchestrations_pb2_grpc as orc_grpc
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import upgrade_workflows_pb2_grpc as uw_grpc
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc
from clusterops_server.app import App
from clusterops_server.domain.errors import FieldViolation, InvalidArgument
from clusterops_server.ids import IdKind, new_id
from clusterops_server.wire.errors import (
    MAX_FIELD_VIOLATIONS,
    MAX_STATUS_BYTES,
    fit,
    to_rpc_status,
)
from google.rpc import status_pb2

from tests.sdk_support import sdk_client
from tests.test_grpcurl import grpcurl

Send = Callable[[AsyncClient], Awaitable[Any]]


def raw(client: AsyncClient, method: Any, request: Any) -> Awaitable[Any]:
    """A request the SDK's typed arguments would refuse, sent through the SDK's transport
    (its one choke point and its channel)."""
    return client._transport.unary(method, request, CallOptions(), read=True)


def channel(client: AsyncClient) -> grpc.aio.Channel:
    return client._transport.channel


CASES: dict[str, Send] = {
    "ListWorkRequests with 30 bad statuses": lambda c: raw(
        c,
        wr_grpc.WorkRequestServiceStub(channel(c)).ListWorkRequests,
        wr_pb.ListWorkRequestsRequest(statuses=[99] * 30),  # type: ignore[list-item]
    ),
    "ListWorkRequests with 1000 bad statuses": lambda c: raw(
        c,
        wr_grpc.WorkRequestServiceStub(channel(c)).ListWorkRequests,
        wr_pb.ListWorkRequestsRequest(statuses=[99] * 1000),  # type: ignore[list-item]
    ),
    "ListAddons with 30 bad states": lambda c: raw(
        c,
        ad_grpc.AddonServiceStub(channel(c)).ListAddons,
        ad_pb.ListAddonsRequest(
            cluster_id=new_id(IdKind.CLUSTER),
            lifecycle_states=[99] * 30,  # type: ignore[list-item]
        ),
    ),
    "ListOrchestrations with 30 bad states": lambda c: raw(
        c,
        orc_grpc.OrchestrationServiceStub(channel(c)).ListOrchestrations,
        orc_pb.ListOrchestrationsRequest(states=[99] * 30),  # type: ignore[list-item]
    ),
    "ListUpgradeWorkflows with 30 bad phases": lambda c: raw(
        c,
        uw_grpc.UpgradeWorkflowServiceStub(channel(c)).ListUpgradeWorkflows,
        uw_pb.ListUpgradeWorkflowsRequest(phases=[99] * 30),  # type: ignore[list-item]
    ),
    "RetryOrchestration with 100 bad operation ids": lambda c: c.orchestrations.retry_operations(
        new_id(IdKind.ORCHESTRATION), [f"not-an-operation-{'x' * 60}-{i}" for i in range(100)]
    ),
    "CreateCluster with 64 bad label keys": lambda c: c.clusters.create(
        compartment_id="dev",
        name="c",
        kubernetes_version="v1.29.8",
        region="eu-frankfurt-1",
        plan="aws",
        labels={f"BAD KEY {i} {'é' * 40}": "v" * 100 for i in range(64)},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_many_bad_fields_reach_the_sdk_as_invalid_argument(app: App, case: str) -> None:
    async with sdk_client(app) as client:
        with pytest.raises(SdkInvalidArgument) as refused:
            await CASES[case](client)
    error = refused.value
    assert len(error.field_violations) <= MAX_FIELD_VIOLATIONS + 1
    assert len(str(error)) < 1024
    if len(error.field_violations) > MAX_FIELD_VIOLATIONS:
        assert "more" in error.field_violations[-1].description


def test_one_place_bounds_every_status() -> None:
    huge = InvalidArgument(
        [FieldViolation(f"field_{i}" * 50, "é" * 5000) for i in range(5000)],
    )
    status = to_rpc_status(huge)
    assert status.ByteSize() < MAX_STATUS_BYTES
    assert len(status.message.encode()) <= 512
    oversized = status_pb2.Status(code=3, message="x" * 100_000, details=list(status.details) * 50)
    assert fit(oversized).ByteSize() <= MAX_STATUS_BYTES


async def test_a_thousand_bad_values_reach_grpcurl_as_invalid_argument_with_details(
    app: App,
) -> None:
    # grpc Go (grpcurl) has its own header limits; the bounded status must pass them too.
    code, _, err = await grpcurl(
        app,
        "clusterops.v1.WorkRequestService/ListWorkRequests",
        data={"compartment_id": "dev", "statuses": [99] * 1000},
    )
    assert code != 0
    assert "Code: InvalidArgument" in err, err
    # grpcurl prints each detail as "N)<tab>{json}".
    details = [json.loads(line.split("\t", 1)[1]) for line in err.splitlines() if "\t{" in line]
    bad_request = next(d for d in details if d["@type"].endswith("google.rpc.BadRequest"))
    violations = bad_request["field_violations"]
    assert len(violations) == MAX_FIELD_VIOLATIONS + 1
    assert "995 more" in violations[-1]["description"]
