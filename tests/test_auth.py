"""Authentication by bearer token and OCI-style authorization across compartments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import notifications_pb2 as nt_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import SERVICE_NAMES, App
from clusterops_server.auth.policy import PolicyError, parse_statement
from clusterops_server.auth.tokens import TokenStore, token_digest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import AppFactory, Stubs, seed_cluster, simulator
from tests.helpers import details_of, next_set_event, watch_to_end

AUTH = {
    "principals": [
        {"name": "alice", "groups": ["DevAdmins"], "token_sha256": token_digest("alice-token")},
        {"name": "bob", "groups": ["ProdAdmins"], "token": "bob-token"},
        {"name": "carol", "groups": ["DevReaders"], "token": "carol-token"},
        {"name": "dave", "groups": ["Support"], "token": "dave-token"},
        {"name": "erin", "groups": ["DevOperators"], "token": "erin-token"},
        {"name": "frank", "groups": ["DevViewers"], "token": "frank-token"},
    ],
    "policies": [
        "allow group DevAdmins to manage all-resources in compartment dev",
        "allow group ProdAdmins to manage all-resources in compartment prod",
        "allow group DevReaders to read clusters in compartment dev",
        "allow group Support to inspect work-requests in tenancy",
        "allow group DevOperators to use orchestrations in compartment dev",
        "allow group DevViewers to read orchestrations in compartment dev",
    ],
}


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Tenants:
    app: App
    stubs: Stubs
    dev_cluster: str
    prod_cluster: str
    dev_pool: str
    prod_pool: str
    dev_wr: str
    prod_wr: str
    dev_upgrade: str
    prod_upgrade: str
    dev_orchestration: str
    prod_orchestration: str
    dev_operation: str
    prod_operation: str
    dev_subscription: str
    prod_subscription: str


@pytest.fixture
async def tenants(make_app: AppFactory) -> AsyncIterator[Tenants]:
    app = await make_app(tokens=TokenStore.from_json(AUTH))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stubs = Stubs(channel)
        made: dict[str, str] = {}
        for who, compartment in (("alice", "dev"), ("bob", "prod")):
            cluster = await seed_cluster(app, compartment=compartment)
            created = await stubs.clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1),
                metadata=metadata(f"{who}-token"),
            )
            await watch_to_end_as(stubs, created.work_request.id, f"{who}-token")
            made[f"{compartment}_cluster"] = cluster.id
            made[f"{compartment}_pool"] = created.node_pool.id
            made[f"{compartment}_wr"] = created.work_request.id
            upgrade = await stubs.upgrade_workflows.CreateUpgradeWorkflow(
                uw_pb.CreateUpgradeWorkflowRequest(cluster_id=cluster.id, target_version="v1.30.4"),
                metadata=metadata(f"{who}-token"),
            )
            await watch_to_end_as(stubs, upgrade.work_request.id, f"{who}-token")
            made[f"{compartment}_upgrade"] = upgrade.upgrade_workflow.metadata.uid
            addon = await stubs.addons.InstallAddon(
                ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager"),
                metadata=metadata(f"{who}-token"),
            )
            await watch_to_end_as(stubs, addon.work_request.id, f"{who}-token")
            orchestration = await stubs.orchestrations.CreateOrchestration(
                orc_pb.CreateOrchestrationRequest(
                    compartment_id=compartment,
                    parameters=orc_pb.OrchestrationParameters(
                        targets=orc_pb.TargetSpec(include=[orc_pb.RuntimeTarget(target="all")]),
                        kubernetes_version="v1.31.1",
                        dry_run=True,
                    ),
                ),
                metadata=metadata(f"{who}-token"),
            )
            await watch_to_end_as(stubs, orchestration.work_request.id, f"{who}-token")
            operations = await stubs.orchestrations.ListOrchestrationOperations(
                orc_pb.ListOrchestrationOperationsRequest(
                    orchestration_id=orchestration.orchestration.id
                ),
                metadata=metadata(f"{who}-token"),
            )
            made[f"{compartment}_orchestration"] = orchestration.orchestration.id
            made[f"{compartment}_operation"] = operations.data[0].id
            subscription = await stubs.notifications.CreateSubscription(
                nt_pb.CreateSubscriptionRequest(
                    compartment_id=compartment,
                    url="http://127.0.0.1:9/hook",  # nothing listens: deliveries just retry
                    secret="s" * 16,
                ),
                metadata=metadata(f"{who}-token"),
            )
            made[f"{compartment}_subscription"] = subscription.subscription.id
        yield Tenants(app, stubs, **made)


async def watch_to_end_as(stubs: Stubs, wr_id: str, token: str) -> list[Any]:
    call = stubs.work_requests.WatchWorkRequest(
        wr_pb.WatchWorkRequestRequest(work_request_id=wr_id), metadata=metadata(token)
    )
    return await asyncio.wait_for(_collect(call), 20)


async def status_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _collect(call: Any) -> list[Any]:
    return [item async for item in call]


async def _watched_set(call: Any) -> wr_pb.ListWorkRequestsResponse:
    """A WatchWorkRequests snapshot, as the list it amounts to."""
    snapshot = []
    async for event in call:
        if event.event_type == wr_pb.WATCH_EVENT_TYPE_SYNCED:
            call.cancel()
            break
        snapshot.append(event.work_request)
    return wr_pb.ListWorkRequestsResponse(work_requests=snapshot)


async def test_calls_without_a_valid_token_are_unauthenticated(tenants: Tenants) -> None:
    request = wr_pb.ListWorkRequestsRequest()
    for md in ((), metadata("wrong-token"), (("authorization", "Basic YWxpY2U6eA=="),)):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await tenants.stubs.work_requests.ListWorkRequests(request, metadata=md)
        details = details_of(denied.value)
        assert details.code == grpc.StatusCode.UNAUTHENTICATED
        assert details.error_info is not None
        assert details.error_info.reason == "INVALID_TOKEN"
    with pytest.raises(grpc.aio.AioRpcError) as denied_stream:
        await watch_to_end(tenants.stubs, tenants.dev_wr)
    assert denied_stream.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_caller_without_a_token_learns_nothing_from_malformed_bytes(
    tenants: Tenants,
) -> None:
    def raw(data: bytes) -> bytes:
        return data

    get = tenants.stubs.channel.unary_unary(
        "/clusterops.v1.WorkRequestService/GetWorkRequest",
        request_serializer=raw,
        response_deserializer=raw,
    )
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await get(b"\xff\xff\xff")
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_stays_open_without_a_token(tenants: Tenants) -> None:
    health = health_pb2_grpc.HealthStub(tenants.stubs.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[0]))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# Every RPC, called by alice (dev) on bob's prod resources. Each entry builds the call.
Call = Callable[[Stubs, Tenants, Any], Awaitable[Any]]
CROSS_TENANT: dict[str, Call] = {
    "WorkRequestService/GetWorkRequest": lambda s, t, md: s.work_requests.GetWorkRequest(
        wr_pb.GetWorkRequestRequest(work_request_id=t.prod_wr), metadata=md
    ),
    "WorkRequestService/ListWorkRequestErrors": lambda s, t, md: (
        s.work_requests.ListWorkRequestErrors(
            wr_pb.ListWorkRequestErrorsRequest(work_request_id=t.prod_wr), metadata=md
        )
    ),
    "WorkRequestService/ListWorkRequestLogs": lambda s, t, md: s.work_requests.ListWorkRequestLogs(
        wr_pb.ListWorkRequestLogsRequest(work_request_id=t.prod_wr), metadata=md
    ),
    "WorkRequestService/CancelWorkRequest": lambda s, t, md: s.work_requests.CancelWorkRequest(
        wr_pb.CancelWorkRequestRequest(work_request_id=t.prod_wr), metadata=md
    ),
    "WorkRequestService/WatchWorkRequest": lambda s, t, md: _collect(
        s.work_requests.WatchWorkRequest(
            wr_pb.WatchWorkRequestRequest(work_request_id=t.prod_wr), metadata=md
        )
    ),
    "NotificationService/GetSubscription": lambda s, t, md: s.notifications.GetSubscription(
        nt_pb.GetSubscriptionRequest(subscription_id=t.prod_subscription), metadata=md
    ),
    "NotificationService/DeleteSubscription": lambda s, t, md: s.notifications.DeleteSubscription(
        nt_pb.DeleteSubscriptionRequest(subscription_id=t.prod_subscription), metadata=md
    ),
    "NotificationService/ResumeSubscription": lambda s, t, md: s.notifications.ResumeSubscription(
        nt_pb.ResumeSubscriptionRequest(subscription_id=t.prod_subscription), metadata=md
    ),
    "ClusterService/GetCluster": lambda s, t, md: s.clusters.GetCluster(
        cl_pb.GetClusterRequest(cluster_id=t.prod_cluster), metadata=md
    ),
    "ClusterService/DeleteCluster": lambda s, t, md: s.clusters.DeleteCluster(
        cl_pb.DeleteClusterRequest(cluster_id=t.prod_cluster), metadata=md
    ),
    "ClusterService/CreateNodePool": lambda s, t, md: s.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=t.prod_cluster, name="x", node_count=1),
        metadata=md,
    ),
    "ClusterService/GetNodePool": lambda s, t, md: s.clusters.GetNodePool(
        cl_pb.GetNodePoolRequest(node_pool_id=t.prod_pool), metadata=md
    ),
    "ClusterService/ListNodePools": lambda s, t, md: s.clusters.ListNodePools(
        cl_pb.ListNodePoolsRequest(cluster_id=t.prod_cluster), metadata=md
    ),
    "ClusterService/DeleteNodePool": lambda s, t, md: s.clusters.DeleteNodePool(
        cl_pb.DeleteNodePoolRequest(node_pool_id=t.prod_pool), metadata=md
    ),
    "ClusterService/ListNodes": lambda s, t, md: s.clusters.ListNodes(
        cl_pb.ListNodesRequest(node_pool_id=t.prod_pool), metadata=md
    ),
    "UpgradeWorkflowService/GetUpgradeWorkflow": lambda s, t, md: (
        s.upgrade_workflows.GetUpgradeWorkflow(
            uw_pb.GetUpgradeWorkflowRequest(upgrade_workflow_id=t.prod_upgrade), metadata=md
        )
    ),
    "UpgradeWorkflowService/CancelUpgradeWorkflow": lambda s, t, md: (
        s.upgrade_workflows.CancelUpgradeWorkflow(
            uw_pb.CancelUpgradeWorkflowRequest(upgrade_workflow_id=t.prod_upgrade), metadata=md
        )
    ),
    "UpgradeWorkflowService/CreateUpgradeWorkflow": lambda s, t, md: (
        s.upgrade_workflows.CreateUpgradeWorkflow(
            uw_pb.CreateUpgradeWorkflowRequest(cluster_id=t.prod_cluster, target_version="v1.31.1"),
            metadata=md,
        )
    ),
    "AddonService/InstallAddon": lambda s, t, md: s.addons.InstallAddon(
        ad_pb.InstallAddonRequest(cluster_id=t.prod_cluster, name="KubernetesDashboard"),
        metadata=md,
    ),
    "AddonService/GetAddon": lambda s, t, md: s.addons.GetAddon(
        ad_pb.GetAddonRequest(cluster_id=t.prod_cluster, name="CertManager"), metadata=md
    ),
    "AddonService/ListAddons": lambda s, t, md: s.addons.ListAddons(
        ad_pb.ListAddonsRequest(cluster_id=t.prod_cluster), metadata=md
    ),
    "AddonService/UpdateAddon": lambda s, t, md: s.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(cluster_id=t.prod_cluster, name="CertManager"), metadata=md
    ),
    "AddonService/DisableAddon": lambda s, t, md: s.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=t.prod_cluster, name="CertManager"), metadata=md
    ),
    "OrchestrationService/GetOrchestration": lambda s, t, md: s.orchestrations.GetOrchestration(
        orc_pb.GetOrchestrationRequest(orchestration_id=t.prod_orchestration), metadata=md
    ),
    "OrchestrationService/ListOrchestrationOperations": lambda s, t, md: (
        s.orchestrations.ListOrchestrationOperations(
            orc_pb.ListOrchestrationOperationsRequest(orchestration_id=t.prod_orchestration),
            metadata=md,
        )
    ),
    "OrchestrationService/GetOrchestrationOperation": lambda s, t, md: (
        s.orchestrations.GetOrchestrationOperation(
            orc_pb.GetOrchestrationOperationRequest(
                orchestration_id=t.prod_orchestration, operation_id=t.prod_operation
            ),
            metadata=md,
        )
    ),
    "OrchestrationService/CancelOrchestration": lambda s, t, md: (
        s.orchestrations.CancelOrchestration(
            orc_pb.CancelOrchestrationRequest(orchestration_id=t.prod_orchestration), metadata=md
        )
    ),
    "OrchestrationService/RetryOrchestration": lambda s, t, md: s.orchestrations.RetryOrchestration(
        orc_pb.RetryOrchestrationRequest(orchestration_id=t.prod_orchestration), metadata=md
    ),
    "OrchestrationService/PauseOrchestration": lambda s, t, md: s.orchestrations.PauseOrchestration(
        orc_pb.PauseOrchestrationRequest(orchestration_id=t.prod_orchestration), metadata=md
    ),
    "OrchestrationService/ResumeOrchestration": lambda s, t, md: (
        s.orchestrations.ResumeOrchestration(
            orc_pb.ResumeOrchestrationRequest(orchestration_id=t.prod_orchestration), metadata=md
        )
    ),
    "OrchestrationService/ApproveOrchestrationStage": lambda s, t, md: (
        s.orchestrations.ApproveOrchestrationStage(
            orc_pb.ApproveOrchestrationStageRequest(
                orchestration_id=t.prod_orchestration, stage="canary"
            ),
            metadata=md,
        )
    ),
}
# Calls about no one's resources: any authenticated caller may make them.
PUBLIC: dict[str, Call] = {
    "AddonService/ListAddonOptions": lambda s, t, md: s.addons.ListAddonOptions(
        ad_pb.ListAddonOptionsRequest(), metadata=md
    ),
    "UpgradeWorkflowService/ListKubernetesVersions": lambda s, t, md: (
        s.upgrade_workflows.ListKubernetesVersions(
            uw_pb.ListKubernetesVersionsRequest(), metadata=md
        )
    ),
}
# Calls that name a compartment themselves: refusing them reveals nothing.
DENIED_IN_OTHER_COMPARTMENT: dict[str, Call] = {
    "ClusterService/CreateCluster": lambda s, t, md: s.clusters.CreateCluster(
        cl_pb.CreateClusterRequest(
            compartment_id="prod",
            name="sneaky",
            kubernetes_version="v1.30.4",
            region="eu-frankfurt-1",
            plan="aws",
        ),
        metadata=md,
    ),
    "NotificationService/CreateSubscription": lambda s, t, md: s.notifications.CreateSubscription(
        nt_pb.CreateSubscriptionRequest(
            compartment_id="prod", url="https://hooks.example.com/x", secret="s" * 16
        ),
        metadata=md,
    ),
    # Targets resolve only in the orchestration's own compartment, which must be allowed.
    "OrchestrationService/CreateOrchestration": lambda s, t, md: (
        s.orchestrations.CreateOrchestration(
            orc_pb.CreateOrchestrationRequest(
                compartment_id="prod",
                parameters=orc_pb.OrchestrationParameters(
                    targets=orc_pb.TargetSpec(
                        include=[orc_pb.RuntimeTarget(runtime_id=t.prod_cluster)]
                    ),
                    kubernetes_version="v1.31.1",
                ),
            ),
            metadata=md,
        )
    ),
}
# Lists: they answer, without the other compartment's items.
LISTS: dict[str, Call] = {
    "WorkRequestService/ListWorkRequests": lambda s, t, md: s.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(), metadata=md
    ),
    "WorkRequestService/WatchWorkRequests": lambda s, t, md: _watched_set(
        s.work_requests.WatchWorkRequests(wr_pb.WatchWorkRequestsRequest(), metadata=md)
    ),
    "NotificationService/ListSubscriptions": lambda s, t, md: s.notifications.ListSubscriptions(
        nt_pb.ListSubscriptionsRequest(), metadata=md
    ),
    "ClusterService/ListClusters": lambda s, t, md: s.clusters.ListClusters(
        cl_pb.ListClustersRequest(), metadata=md
    ),
    "UpgradeWorkflowService/ListUpgradeWorkflows": lambda s, t, md: (
        s.upgrade_workflows.ListUpgradeWorkflows(uw_pb.ListUpgradeWorkflowsRequest(), metadata=md)
    ),
    "OrchestrationService/ListOrchestrations": lambda s, t, md: s.orchestrations.ListOrchestrations(
        orc_pb.ListOrchestrationsRequest(), metadata=md
    ),
}


def test_the_matrix_covers_every_rpc_the_server_serves() -> None:
    served = {
        f"{service.name}/{method.name}"
        for service in map(descriptor_pool.Default().FindServiceByName, SERVICE_NAMES)
        for method in service.methods
    }
    covered = set(CROSS_TENANT) | set(DENIED_IN_OTHER_COMPARTMENT) | set(LISTS) | set(PUBLIC)
    assert served == covered


# One two-tenant setup serves the whole matrix (it is the slow part); each row reports
# its RPC when it fails.
async def test_every_rpc_across_compartments_leaks_nothing(tenants: Tenants) -> None:
    stubs, alice, bob = tenants.stubs, metadata("alice-token"), metadata("bob-token")
    for rpc, call in sorted(PUBLIC.items()):
        assert await status_of(call(stubs, tenants, metadata("dave-token"))) == (
            grpc.StatusCode.OK
        ), rpc
    for rpc, call in sorted(CROSS_TENANT.items()):
        assert await status_of(call(stubs, tenants, alice)) == grpc.StatusCode.NOT_FOUND, rpc
        if not rpc.split("/")[1].startswith(MUTATING_VERBS):
            # The owner's read answers: the hidden resource does exist.
            assert await status_of(call(stubs, tenants, bob)) == grpc.StatusCode.OK, rpc
    for rpc, call in sorted(DENIED_IN_OTHER_COMPARTMENT.items()):
        assert await status_of(call(stubs, tenants, alice)) == (
            grpc.StatusCode.PERMISSION_DENIED
        ), rpc
    for rpc, call in sorted(LISTS.items()):
        for caller, mine in ((alice, "dev"), (bob, "prod")):
            reply = await call(stubs, tenants, caller)
            items = next(v for f, v in reply.ListFields() if f.is_repeated)
            assert items, rpc
            assert {i.compartment_id for i in items} == {mine}, rpc


MUTATING_VERBS = (
    "Cancel",
    "Create",
    "Delete",
    "Disable",
    "Install",
    "Update",
    "Retry",
    "Pause",
    "Resume",
    "Approve",
)


async def test_pausing_and_resuming_need_use_and_approving_needs_manage(
    tenants: Tenants,
) -> None:
    """The verbs of issue 16 on the dev orchestration (a finished dry run, so a caller who
    passes the permission check meets the state check: FAILED_PRECONDITION)."""
    stubs, orchestration = tenants.stubs, tenants.dev_orchestration
    calls: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "pause": lambda md: stubs.orchestrations.PauseOrchestration(
            orc_pb.PauseOrchestrationRequest(orchestration_id=orchestration, reason="r"),
            metadata=md,
        ),
        "resume": lambda md: stubs.orchestrations.ResumeOrchestration(
            orc_pb.ResumeOrchestrationRequest(orchestration_id=orchestration), metadata=md
        ),
        "approve": lambda md: stubs.orchestrations.ApproveOrchestrationStage(
            orc_pb.ApproveOrchestrationStageRequest(orchestration_id=orchestration, stage="x"),
            metadata=md,
        ),
    }
    passed = grpc.StatusCode.FAILED_PRECONDITION
    expected = {
        # manage: every verb passes the permission check.
        "alice": {"pause": passed, "resume": passed, "approve": grpc.StatusCode.INVALID_ARGUMENT},
        # use: pause and resume, not approve.
        "erin": {
            "pause": passed,
            "resume": passed,
            "approve": grpc.StatusCode.PERMISSION_DENIED,
        },
        # read: sees it, may change nothing.
        "frank": dict.fromkeys(calls, grpc.StatusCode.PERMISSION_DENIED),
        # nothing on orchestrations: it does not exist for them.
        "carol": dict.fromkeys(calls, grpc.StatusCode.NOT_FOUND),
    }
    for who, verbs in expected.items():
        for verb, status in verbs.items():
            got = await status_of(calls[verb](metadata(f"{who}-token")))
            assert got == status, (who, verb)


async def test_work_requests_record_the_principal_that_created_them(tenants: Tenants) -> None:
    stubs = tenants.stubs
    for who, wr_id in (("alice", tenants.dev_wr), ("bob", tenants.prod_wr)):
        reply = await stubs.work_requests.GetWorkRequest(
            wr_pb.GetWorkRequestRequest(work_request_id=wr_id), metadata=metadata(f"{who}-token")
        )
        assert reply.work_request.created_by == who
    # Support lists everything; by creator, only what alice created.
    mine = await stubs.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(created_by="alice"), metadata=metadata("dave-token")
    )
    assert mine.work_requests
    assert {w.created_by for w in mine.work_requests} == {"alice"}
    assert tenants.dev_wr in {w.id for w in mine.work_requests}
    assert tenants.prod_wr not in {w.id for w in mine.work_requests}


async def test_work_requests_inherit_the_permission_of_their_operation(tenants: Tenants) -> None:
    stubs = tenants.stubs
    # carol may read clusters in dev, so she sees dev's node-pool work request...
    seen = await stubs.work_requests.GetWorkRequest(
        wr_pb.GetWorkRequestRequest(work_request_id=tenants.dev_wr),
        metadata=metadata("carol-token"),
    )
    assert seen.work_request.id == tenants.dev_wr
    listed = await stubs.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(), metadata=metadata("carol-token")
    )
    assert [w.id for w in listed.work_requests] == [tenants.dev_wr]
    # ...but reading is not canceling, and prod stays invisible.
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stubs.work_requests.CancelWorkRequest(
            wr_pb.CancelWorkRequestRequest(work_request_id=tenants.dev_wr),
            metadata=metadata("carol-token"),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await stubs.work_requests.GetWorkRequest(
            wr_pb.GetWorkRequestRequest(work_request_id=tenants.prod_wr),
            metadata=metadata("carol-token"),
        )
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    # Support inspects work requests everywhere, as OKE's tenancy-wide policy allows.
    everything = await stubs.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(), metadata=metadata("dave-token")
    )
    assert {w.id for w in everything.work_requests} >= {tenants.dev_wr, tenants.prod_wr}
    assert {w.compartment_id for w in everything.work_requests} == {"dev", "prod"}
    # Inspecting is listing: reading one is refused openly, since its existence is known.
    with pytest.raises(grpc.aio.AioRpcError) as listed_only:
        await stubs.work_requests.GetWorkRequest(
            wr_pb.GetWorkRequestRequest(work_request_id=tenants.prod_wr),
            metadata=metadata("dave-token"),
        )
    assert listed_only.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_watching_many_shows_each_caller_only_what_it_may_list(tenants: Tenants) -> None:
    stubs, alice = tenants.stubs, metadata("alice-token")
    # A filter naming the other compartment reveals nothing: an empty set, not an error.
    prying = stubs.work_requests.WatchWorkRequests(
        wr_pb.WatchWorkRequestsRequest(compartment_id="prod"), metadata=alice
    )
    assert (await asyncio.wait_for(_watched_set(prying), 10)).work_requests == []
    mine = stubs.work_requests.WatchWorkRequests(wr_pb.WatchWorkRequestsRequest(), metadata=alice)
    overseer = stubs.work_requests.WatchWorkRequests(
        wr_pb.WatchWorkRequestsRequest(), metadata=metadata("dave-token")
    )
    for call in (mine, overseer):
        while (await next_set_event(call)).event_type != wr_pb.WATCH_EVENT_TYPE_SYNCED:
            pass
    for who, cluster in (("bob", tenants.prod_cluster), ("alice", tenants.dev_cluster)):
        created = await stubs.clusters.CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=cluster, name="later", node_count=1),
            metadata=metadata(f"{who}-token"),
        )
        await watch_to_end_as(stubs, created.work_request.id, f"{who}-token")
    # Bob's pool came first; alice's stream starts with her own pool's changes.
    first = await next_set_event(mine)
    assert first.work_request.compartment_id == "dev"
    assert first.log_entries  # she may read her own work requests' logs
    # Dave may list work requests everywhere but read none: changes without logs.
    seen = [await next_set_event(overseer) for _ in range(2)]
    assert {e.work_request.compartment_id for e in seen} == {"prod"}
    assert all(not e.log_entries for e in seen)
    mine.cancel()
    overseer.cancel()


async def test_request_ids_are_per_caller(tenants: Tenants) -> None:
    stubs = tenants.stubs
    mine = await stubs.clusters.CreateCluster(
        cl_pb.CreateClusterRequest(
            compartment_id="dev",
            name="a1",
            kubernetes_version="v1.30.4",
            region="eu-frankfurt-1",
            plan="aws",
            request_id="same-id",
        ),
        metadata=metadata("alice-token"),
    )
    theirs = await stubs.clusters.CreateCluster(
        cl_pb.CreateClusterRequest(
            compartment_id="prod",
            name="b1",
            kubernetes_version="v1.30.4",
            region="eu-frankfurt-1",
            plan="aws",
            request_id="same-id",
        ),
        metadata=metadata("bob-token"),
    )
    assert mine.cluster.id != theirs.cluster.id


@pytest.mark.parametrize(
    "statement",
    [
        "allow group X to juggle clusters in tenancy",
        "allow group X to manage spaceships in tenancy",
        "allow X to manage clusters in tenancy",
        "allow group X to manage clusters in compartment",
    ],
)
def test_malformed_policies_are_refused(statement: str) -> None:
    with pytest.raises(PolicyError):
        parse_statement(statement)


async def test_orchestration_targets_never_reach_into_another_compartment(
    tenants: Tenants,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await tenants.stubs.orchestrations.CreateOrchestration(
            orc_pb.CreateOrchestrationRequest(
                compartment_id="dev",
                parameters=orc_pb.OrchestrationParameters(
                    targets=orc_pb.TargetSpec(
                        include=[
                            orc_pb.RuntimeTarget(runtime_id=tenants.prod_cluster),
                            orc_pb.RuntimeTarget(sub_account="sa-prod"),
                        ]
                    ),
                    kubernetes_version="v1.31.1",
                ),
            ),
            metadata=metadata("alice-token"),
        )
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.error_info is not None
    assert details.error_info.reason == "NO_TARGETS"
    assert tenants.prod_cluster not in details.message


async def test_no_token_reaches_the_logs(
    tenants: Tenants, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    stubs = tenants.stubs
    for token in ("alice-token", "not-a-token-at-all", "carol-token"):
        for call in (
            stubs.work_requests.ListWorkRequests(
                wr_pb.ListWorkRequestsRequest(), metadata=metadata(token)
            ),
            stubs.clusters.DeleteCluster(
                cl_pb.DeleteClusterRequest(cluster_id=tenants.prod_cluster),
                metadata=metadata(token),
            ),
            stubs.work_requests.ListWorkRequests(
                wr_pb.ListWorkRequestsRequest(filter="no such field"), metadata=metadata(token)
            ),
        ):
            await status_of(call)
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records
    )
    assert caplog.records, "the server logged nothing at DEBUG: the check would prove nothing"
    for token in ("alice-token", "not-a-token-at-all", "carol-token"):
        assert token not in logged


async def test_a_caller_that_may_only_list_never_sees_a_work_requests_error(
    tenants: Tenants,
) -> None:
    """dave may inspect (list) prod's work requests but not read them: the newest error
    inline in List and WatchWorkRequests would tell him what ListWorkRequestErrors
    refuses him."""
    stubs, bob, dave = tenants.stubs, metadata("bob-token"), metadata("dave-token")
    await simulator(tenants.app).inject_fault(
        "provision_node", tenants.prod_cluster, times=1, message="rack 7 is on fire"
    )
    watching = stubs.work_requests.WatchWorkRequests(
        wr_pb.WatchWorkRequestsRequest(compartment_id="prod"), metadata=dave
    )
    while (await next_set_event(watching)).event_type != wr_pb.WATCH_EVENT_TYPE_SYNCED:
        pass
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=tenants.prod_cluster, name="f", node_count=1),
        metadata=bob,
    )
    failed = created.work_request.id
    await watch_to_end_as(stubs, failed, "bob-token")
    for who, sees_error in ((bob, True), (dave, False)):
        listed = await stubs.work_requests.ListWorkRequests(
            wr_pb.ListWorkRequestsRequest(compartment_id="prod"), metadata=who
        )
        (found,) = [w for w in listed.work_requests if w.id == failed]
        assert found.status == wr_pb.WORK_REQUEST_STATUS_FAILED
        assert found.HasField("last_error") is sees_error
        snapshot = stubs.work_requests.WatchWorkRequests(
            wr_pb.WatchWorkRequestsRequest(compartment_id="prod"), metadata=who
        )
        (seen,) = [w for w in (await _watched_set(snapshot)).work_requests if w.id == failed]
        assert seen.HasField("last_error") is sees_error
    # Every change dave was sent while the pool failed: never its error.
    changes: list[wr_pb.WatchWorkRequestsResponse] = []
    while not changes or changes[-1].work_request.status != wr_pb.WORK_REQUEST_STATUS_FAILED:
        event = await asyncio.wait_for(next_set_event(watching), 10)
        if event.work_request.id == failed:
            changes.append(event)
    watching.cancel()
    assert all(
        not c.HasField("work_request") or not c.work_request.HasField("last_error") for c in changes
    )
    assert all(not c.errors for c in changes)


@pytest.mark.both_backends
async def test_a_principal_with_a_long_name_retries_with_its_request_id(
    make_app: AppFactory,
) -> None:
    """The request_id scope is a 64-character column: a 200-character principal name
    must neither fail the write (PostgreSQL checks lengths) nor share a scope."""
    long_names = ("x" * 199 + "a", "x" * 199 + "b")
    app = await make_app(
        tokens=TokenStore.from_json(
            {
                "principals": [
                    {"name": name, "groups": ["Admins"], "token": f"token-{name[-1]}"}
                    for name in long_names
                ],
                "policies": ["allow group Admins to manage all-resources in tenancy"],
            }
        )
    )
    clusters = {"a": await seed_cluster(app), "b": await seed_cluster(app)}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stubs = Stubs(channel)
        made: dict[str, set[str]] = {}
        for who in ("a", "a", "b"):
            reply = await stubs.clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(
                    cluster_id=clusters[who].id, name="w", node_count=1, request_id="same-key"
                ),
                metadata=metadata(f"token-{who}"),
            )
            made.setdefault(who, set()).add(reply.work_request.id)
    assert len(made["a"]) == 1  # the retry answered with the first work request
    assert made["a"].isdisjoint(made["b"])  # the other principal's key is its own
