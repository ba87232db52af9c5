"""KEB's example orchestration (kyma-orchestrations.txt), replayed on the demo fleet.

The document dry-runs an orchestration over every runtime ("target": "all"), parallel
with one worker, immediately: "Scheduled 2 operations", one on a gcp runtime whose
maintenance window is 04:00-08:00 and one on an azure runtime whose window is
22:00-02:00, each carrying its plan's id (servicePlanID) next to its name. Here the same
request goes through gRPC, the SDK and the CLI of a real in-process server seeded with
`serve --demo`'s fleet, and the answers are compared field by field with the document's
(KEB's JSON names, our values).
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops_server.app import App
from clusterops_server.demo import seed_demo_fleet
from clusterops_server.domain.inventory import ClusterQuery
from clusterops_server.domain.plans import PlanCatalogue
from google.protobuf import json_format

from tests.conftest import Stubs
from tests.helpers import details_of, watch_to_end
from tests.sdk_support import sdk_client
from tests.test_cli import Run

DOCUMENT_ORCHESTRATION: dict[str, Any] = {
    "orchestrationID": "07089b96-8e31-49a4-96d0-f8288253c804",
    "state": "in progress",
    "description": "Scheduled 2 operations",
    "createdAt": "2020-10-12T19:27:22.281515Z",
    "updatedAt": "2020-10-12T19:27:22.281515Z",
    "parameters": {
        "targets": {"include": [{"target": "all"}]},
        "strategy": {"type": "parallel", "schedule": "immediate", "parallel": {"workers": 1}},
        "dryRun": True,
    },
}
# The document's operations, as printed there. (Its list gives gcp's plan id as
# "ca1e5357-..." and its detail as "ca6e5357-...", KEB's real gcp plan id; the catalogue
# has the real one, so the comparison below uses it.)
DOCUMENT_OPERATIONS: dict[str, Any] = {
    "data": [
        {
            "operationID": "c4aa1f4b-be2a-4e8d-90e6-edd00194aaa9",
            "runtimeID": "5791e81d-8959-4b78-82e4-7e4edea45683",
            "globalAccountID": "3e64ebae-38b5-46a0-b1ed-9ccee153a0ae",
            "subAccountID": "39b19a66-2c1a-4fe4-a28e-6e5db434084e",
            "orchestrationID": "17089b96-8e31-49a4-96d0-f8288253c804",
            "servicePlanID": "ca6e5357-707f-4565-bbbd-b3ab732597c6",
            "servicePlanName": "gcp",
            "dryRun": True,
            "shootName": "c-3a3xdaf",
            "maintenanceWindowBegin": "0000-01-01T04:00:00Z",
            "maintenanceWindowEnd": "0000-01-01T08:00:00Z",
        },
        {
            "operationID": "669c1644-44c2-349d-a3c5-8bc63dceff93",
            "runtimeID": "8071f119-29a5-3e81-bae3-04751881f317",
            "globalAccountID": "3e64ebae-68b5-46a0-b1ed-9ccee153a0ae",
            "subAccountID": "A791EFE6-6121-1714-9933-E2D3D8CA2992",
            "orchestrationID": "a7089b96-8e31-49a4-96d0-f8288253c804",
            "servicePlanID": "4deee563-e5ec-4731-b9b1-53b42d855f0c",
            "servicePlanName": "azure",
            "dryRun": True,
            "shootName": "c-5d2xd83",
            "maintenanceWindowBegin": "0000-01-01T22:00:00Z",
            "maintenanceWindowEnd": "0000-01-01T02:00:00Z",
        },
    ],
    "count": 2,
    "totalCount": 2,
}
IDS = ("operationID", "runtimeID", "globalAccountID", "subAccountID", "orchestrationID")


def _keb_state(state: int) -> str:
    name = orc_pb.OrchestrationState.Name(state)  # type: ignore[arg-type]
    return name.removeprefix("ORCHESTRATION_STATE_").lower().replace("_", " ")


def keb_orchestration(o: orc_pb.Orchestration) -> dict[str, Any]:
    p = o.parameters
    targets = [json_format.MessageToDict(t) for t in p.targets.include]
    strategy: dict[str, Any] = {
        "type": orc_pb.StrategyType.Name(p.strategy.type).removeprefix("STRATEGY_TYPE_").lower(),
        "schedule": orc_pb.ScheduleType.Name(p.strategy.schedule)
        .removeprefix("SCHEDULE_TYPE_")
        .lower(),
        "parallel": {"workers": p.strategy.parallel.workers},
    }
    return {
        "orchestrationID": "<id>" if o.id else "",
        "state": _keb_state(o.state),
        "description": o.description,
        "createdAt": "<time>" if o.HasField("create_time") else "",
        "updatedAt": "<time>" if o.HasField("update_time") else "",
        "parameters": {
            "targets": {"include": targets},
            "strategy": strategy,
            "dryRun": p.dry_run,
        },
    }


def _window(hhmm: str) -> str:
    return f"0000-01-01T{hhmm}:00Z"


def keb_operation(op: orc_pb.OrchestrationOperation) -> dict[str, Any]:
    return {
        "operationID": op.id,
        "runtimeID": op.runtime_id,
        "globalAccountID": op.global_account_id,
        "subAccountID": op.sub_account_id,
        "orchestrationID": op.orchestration_id,
        "servicePlanID": op.plan_id,
        "servicePlanName": op.plan_name,
        "dryRun": op.dry_run,
        "shootName": op.shoot_name,
        "maintenanceWindowBegin": _window(op.maintenance_window_begin),
        "maintenanceWindowEnd": _window(op.maintenance_window_end),
    }


def masked(operation: dict[str, Any]) -> dict[str, Any]:
    """Ids and the shoot name are each side's own; everything else must match."""
    return {k: "<id>" if k in (*IDS, "shootName") else v for k, v in operation.items()}


def expected_operations() -> list[dict[str, Any]]:
    return sorted(
        (masked(o) for o in DOCUMENT_OPERATIONS["data"]), key=lambda o: o["servicePlanName"]
    )


def expected_orchestration(state: str, description: str = "") -> dict[str, Any]:
    shaped = dict(DOCUMENT_ORCHESTRATION)
    shaped.update(orchestrationID="<id>", createdAt="<time>", updatedAt="<time>", state=state)
    if description:
        shaped["description"] = description
    return shaped


# How a finished dry run describes itself (KEB's description moves on too once the
# orchestration ends).
FINISHED = ("succeeded", "2 of 2 operations succeeded")


def request(compartment: str = "prod") -> orc_pb.CreateOrchestrationRequest:
    return orc_pb.CreateOrchestrationRequest(
        compartment_id=compartment,
        parameters=orc_pb.OrchestrationParameters(
            targets=orc_pb.TargetSpec(include=[orc_pb.RuntimeTarget(target="all")]),
            strategy=orc_pb.StrategySpec(
                type=orc_pb.STRATEGY_TYPE_PARALLEL,
                schedule=orc_pb.SCHEDULE_TYPE_IMMEDIATE,
                parallel=orc_pb.ParallelStrategy(workers=1),
            ),
            dry_run=True,
            kubernetes_version="v1.30.4",
        ),
    )


async def check_operations(
    app: App, orchestration_id: str, response: orc_pb.ListOrchestrationOperationsResponse
) -> None:
    assert (response.count, response.total_count) == (
        DOCUMENT_OPERATIONS["count"],
        DOCUMENT_OPERATIONS["totalCount"],
    )
    ours = sorted((keb_operation(o) for o in response.data), key=lambda o: o["servicePlanName"])
    assert [masked(o) for o in ours] == expected_operations()
    # The ids that were masked are the right ones: each operation's cluster's.
    async with app.store.read() as uow:
        clusters = {c.id: c for c in await uow.inventory.all_clusters(ClusterQuery("prod"))}
    for operation in ours:
        cluster = clusters[operation["runtimeID"]]
        assert operation["orchestrationID"] == orchestration_id
        assert (operation["globalAccountID"], operation["subAccountID"]) == (
            cluster.global_account_id,
            cluster.sub_account_id,
        )
        assert operation["shootName"] == cluster.shoot_name
        assert operation["servicePlanID"] == cluster.plan_id


async def test_the_documents_dry_run_over_grpc_schedules_two_operations_with_plan_ids(
    app: App, stubs: Stubs
) -> None:
    await seed_demo_fleet(app)
    created = await stubs.orchestrations.CreateOrchestration(request())
    # The document caught it in progress; at creation it is pending, on the same path.
    assert keb_orchestration(created.orchestration) == expected_orchestration("pending")
    await watch_to_end(stubs, created.work_request.id)
    got = await stubs.orchestrations.GetOrchestration(
        orc_pb.GetOrchestrationRequest(orchestration_id=created.orchestration.id)
    )
    # A dry run ends succeeded: every operation was judged at once.
    assert keb_orchestration(got.orchestration) == expected_orchestration(*FINISHED)

    listed = await stubs.orchestrations.ListOrchestrationOperations(
        orc_pb.ListOrchestrationOperationsRequest(orchestration_id=created.orchestration.id)
    )
    await check_operations(app, created.orchestration.id, listed)

    # One operation in detail: the same fields, and its cluster's configuration.
    first = listed.data[0]
    detail = (
        await stubs.orchestrations.GetOrchestrationOperation(
            orc_pb.GetOrchestrationOperationRequest(
                orchestration_id=created.orchestration.id, operation_id=first.id
            )
        )
    ).operation
    assert keb_operation(detail) == keb_operation(first)
    assert detail.cluster_config.plan_id == first.plan_id
    assert detail.cluster_config.plan_name == first.plan_name
    assert detail.component_configs


async def test_the_documents_dry_run_through_the_sdk_and_the_cli(
    app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_demo_fleet(app)
    async with sdk_client(app) as client:
        operation = await client.orchestrations.create(
            "prod", include=[{"target": "all"}], kubernetes_version="v1.30.4", dry_run=True
        )
        await operation.wait(timeout=20)
        orchestration_id = operation.resource.id
        got = await client.orchestrations.get(orchestration_id)
        assert keb_orchestration(got) == expected_orchestration(*FINISHED)

    run = Run(app, capsys)
    assert await run("orc", "operations", orchestration_id, "-o", "json") == 0
    shown = run.json()
    assert isinstance(shown, list)
    by_plan = {o["plan_name"]: o for o in shown}
    assert by_plan["gcp"]["plan_id"] == "ca6e5357-707f-4565-bbbd-b3ab732597c6"
    assert by_plan["azure"]["plan_id"] == "4deee563-e5ec-4731-b9b1-53b42d855f0c"
    assert (
        by_plan["gcp"]["maintenance_window_begin"],
        by_plan["gcp"]["maintenance_window_end"],
    ) == (
        "04:00",
        "08:00",
    )


async def test_create_cluster_refuses_an_unknown_plan_or_region_and_records_the_plan_id(
    app: App, stubs: Stubs
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.clusters.CreateCluster(
            cl_pb.CreateClusterRequest(
                compartment_id="dev",
                name="nowhere",
                kubernetes_version="v1.30.4",
                region="moon-base-1",
                plan="standard",
            )
        )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(failure.value)
    assert details.fields == ["plan", "region"]
    assert details.bad_request is not None
    assert "azure, azure_lite, aws, gcp, trial, free" in (
        details.bad_request.field_violations[0].description
    )
    listed = await stubs.clusters.ListClusters(cl_pb.ListClustersRequest(compartment_id="dev"))
    assert list(listed.clusters) == []

    created = await stubs.clusters.CreateCluster(
        cl_pb.CreateClusterRequest(
            compartment_id="dev",
            name="edge-1",
            kubernetes_version="v1.30.4",
            region="europe-west3",
            plan="gcp",
        )
    )
    assert created.cluster.plan_id == "ca6e5357-707f-4565-bbbd-b3ab732597c6"
    await watch_to_end(stubs, created.work_request.id)
    by_id = await stubs.clusters.ListClusters(
        cl_pb.ListClustersRequest(filter='plan_id = "ca6e5357-707f-4565-bbbd-b3ab732597c6"')
    )
    assert [c.name for c in by_id.clusters] == ["edge-1"]

    # Targets still select by plan name.
    only_gcp = request("dev")
    only_gcp.parameters.targets.include[0].CopyFrom(orc_pb.RuntimeTarget(plan_name="gcp"))
    orchestration = await stubs.orchestrations.CreateOrchestration(only_gcp)
    assert orchestration.orchestration.description == "Scheduled 1 operation"


async def test_the_demo_fleet_uses_the_catalogues_plans_and_regions(app: App) -> None:
    await seed_demo_fleet(app)
    plans = PlanCatalogue.load()
    async with app.store.read() as uow:
        clusters = await uow.inventory.all_clusters(ClusterQuery())
    assert clusters
    for cluster in clusters:
        assert plans.resolve(plan=cluster.plan, region=cluster.region).id == cluster.plan_id
