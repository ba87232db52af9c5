"""A handler that keeps crashing: the engine gives up, and nothing is left stuck.

After MAX_ATTEMPTS unexpected failures the work request FAILS, and the handler's `abandon`
leaves what it was working on in a failed state a person can act on: nothing stays
CREATING, UPDATING or Running, and the resource takes a new operation. The crashes come
from a provider with a bug (RuntimeError, not a ProviderError); the retries' backoff is
skipped on the fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import Clock, FakeClock
from clusterops_server.domain.addon_health import AddonSpec, AddonStatus
from clusterops_server.domain.inventory import Cluster
from clusterops_server.engine.context import UNEXPECTED_FAILURE
from clusterops_server.engine.engine import MAX_ATTEMPTS
from clusterops_server.engine.operations.orchestrations import RunOrchestration
from clusterops_server.providers.simulated import SimulatedProvider, SimulationSettings
from clusterops_server.store.uow import Store

from tests.addon_helpers import get_addon, install, run_next_check, until
from tests.conftest import AppFactory, Stubs, connect, seed_cluster
from tests.helpers import watch_to_end
from tests.orchestration_helpers import by_runtime, create
from tests.upgrade_helpers import create_upgrade, get_workflow, points

pytestmark = pytest.mark.both_backends

# The longest wait between two attempts.
LONGEST_BACKOFF = 2 ** (MAX_ATTEMPTS - 1)


class BuggyProvider(SimulatedProvider):
    """The simulator, except that the actions named in `crash_on` raise RuntimeError."""

    def __init__(
        self, store: Store, clock: Clock, settings: SimulationSettings | None = None
    ) -> None:
        super().__init__(store, clock, settings)
        self.crash_on: set[str] = set()
        self.crashes = 0

    def _bug(self, action: str) -> None:
        if action in self.crash_on:
            self.crashes += 1
            raise RuntimeError(f"a bug in {action}")

    async def act(self, action: str, targets: Sequence[str]) -> None:
        self._bug(action)
        await super().act(action, targets)

    async def inspect_addon(self, cluster: Cluster, name: str) -> AddonStatus | None:
        self._bug("inspect_addon")
        return await super().inspect_addon(cluster, name)

    async def apply_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        self._bug("apply_addon")
        return await super().apply_addon(cluster, spec)

    async def release_addon(self, cluster: Cluster, name: str) -> None:
        self._bug("release_addon")
        await super().release_addon(cluster, name)


@pytest.fixture
async def app(make_app: AppFactory) -> App:
    return await make_app(provider_factory=BuggyProvider)


def buggy(app: App) -> BuggyProvider:
    assert isinstance(app.provider, BuggyProvider)
    return app.provider


async def crash_until_given_up(
    stubs: Stubs, clock: FakeClock, work_request_id: str
) -> wr_pb.WorkRequest:
    """Follow the work request to its end, moving the clock past each retry's backoff."""
    ending = asyncio.ensure_future(watch_to_end(stubs, work_request_id, within=60.0))
    while not ending.done():
        retry = asyncio.ensure_future(
            clock.wait_for_sleeper_until(clock.now() + timedelta(seconds=LONGEST_BACKOFF))
        )
        await asyncio.wait([ending, retry], return_when=asyncio.FIRST_COMPLETED)
        if retry.done():
            retry.result()
            clock.advance(LONGEST_BACKOFF)
        else:
            retry.cancel()
    return (await ending)[-1].work_request


async def assert_gave_up(stubs: Stubs, wr: wr_pb.WorkRequest) -> None:
    assert wr.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    errors = await stubs.work_requests.ListWorkRequestErrors(
        wr_pb.ListWorkRequestErrorsRequest(work_request_id=wr.id)
    )
    assert [(e.code, e.message) for e in errors.errors][-1] == (
        "InternalError",
        UNEXPECTED_FAILURE,
    )


async def get_cluster(stubs: Stubs, cluster_id: str) -> cl_pb.Cluster:
    return (await stubs.clusters.GetCluster(cl_pb.GetClusterRequest(cluster_id=cluster_id))).cluster


async def get_pool(stubs: Stubs, pool_id: str) -> cl_pb.NodePool:
    return (
        await stubs.clusters.GetNodePool(cl_pb.GetNodePoolRequest(node_pool_id=pool_id))
    ).node_pool


async def delete_cluster(stubs: Stubs, cluster_id: str) -> wr_pb.WorkRequest:
    deleted = await stubs.clusters.DeleteCluster(cl_pb.DeleteClusterRequest(cluster_id=cluster_id))
    return (await watch_to_end(stubs, deleted.work_request.id))[-1].work_request


async def delete_pool(stubs: Stubs, pool_id: str) -> wr_pb.WorkRequest:
    deleted = await stubs.clusters.DeleteNodePool(cl_pb.DeleteNodePoolRequest(node_pool_id=pool_id))
    return (await watch_to_end(stubs, deleted.work_request.id))[-1].work_request


# clusters


async def test_a_cluster_whose_creation_keeps_crashing_is_failed_and_can_be_deleted(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    buggy(app).crash_on.add("create_cluster")
    created = await stubs.clusters.CreateCluster(
        cl_pb.CreateClusterRequest(
            compartment_id="dev",
            name="buggy",
            kubernetes_version="v1.30.4",
            region="eu-frankfurt-1",
            plan="aws",
        )
    )
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, created.work_request.id))
    assert buggy(app).crashes == MAX_ATTEMPTS
    cluster_id = created.cluster.id
    assert (await get_cluster(stubs, cluster_id)).lifecycle_state == (
        cl_pb.CLUSTER_LIFECYCLE_STATE_FAILED
    )

    buggy(app).crash_on.clear()
    assert (await delete_cluster(stubs, cluster_id)).status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_a_cluster_whose_undo_keeps_crashing_after_a_cancel_fails_too(
    make_app: AppFactory, clock: FakeClock
) -> None:
    slow = SimulationSettings(seconds={"create_cluster": 60})
    app = await make_app(provider_factory=lambda store, clock: BuggyProvider(store, clock, slow))
    async with connect(app) as stubs:
        created = await stubs.clusters.CreateCluster(
            cl_pb.CreateClusterRequest(
                compartment_id="dev",
                name="doomed",
                kubernetes_version="v1.30.4",
                region="eu-frankfurt-1",
                plan="aws",
            )
        )
        await clock.wait_for_sleepers(1)  # the control plane is being created
        await stubs.work_requests.CancelWorkRequest(
            wr_pb.CancelWorkRequestRequest(work_request_id=created.work_request.id)
        )
        buggy(app).crash_on.add("delete_cluster")
        clock.advance(60)
        # CANCELING, and undoing it crashes: it ends FAILED, not stuck CANCELING.
        gave_up = await crash_until_given_up(stubs, clock, created.work_request.id)
        await assert_gave_up(stubs, gave_up)
        cluster = await get_cluster(stubs, created.cluster.id)
        assert cluster.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_FAILED

        buggy(app).crash_on.clear()
        deleted = await delete_cluster(stubs, created.cluster.id)
        assert deleted.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_a_cluster_whose_deletion_keeps_crashing_is_failed_and_can_be_deleted_again(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    buggy(app).crash_on.add("delete_cluster")
    deleted = await stubs.clusters.DeleteCluster(cl_pb.DeleteClusterRequest(cluster_id=cluster.id))
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, deleted.work_request.id))
    assert (await get_cluster(stubs, cluster.id)).lifecycle_state == (
        cl_pb.CLUSTER_LIFECYCLE_STATE_FAILED
    )

    buggy(app).crash_on.clear()
    assert (await delete_cluster(stubs, cluster.id)).status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


# node pools


async def test_a_node_pool_whose_nodes_keep_crashing_is_failed_and_can_be_deleted(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    buggy(app).crash_on.add("provision_node")
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="workers", node_count=2)
    )
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, created.work_request.id))
    pool = await get_pool(stubs, created.node_pool.id)
    assert pool.lifecycle_state == cl_pb.NODE_POOL_LIFECYCLE_STATE_FAILED
    nodes = (await stubs.clusters.ListNodes(cl_pb.ListNodesRequest(node_pool_id=pool.id))).nodes
    assert [n.lifecycle_state for n in nodes] == [cl_pb.NODE_LIFECYCLE_STATE_FAILED] * 2

    buggy(app).crash_on.clear()
    assert (await delete_pool(stubs, pool.id)).status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_a_node_pool_whose_deletion_keeps_crashing_needs_attention_and_can_be_deleted(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="workers", node_count=2)
    )
    await watch_to_end(stubs, created.work_request.id)
    buggy(app).crash_on.add("delete_node")
    deleted = await stubs.clusters.DeleteNodePool(
        cl_pb.DeleteNodePoolRequest(node_pool_id=created.node_pool.id)
    )
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, deleted.work_request.id))
    assert (await get_pool(stubs, created.node_pool.id)).lifecycle_state == (
        cl_pb.NODE_POOL_LIFECYCLE_STATE_NEEDS_ATTENTION
    )

    buggy(app).crash_on.clear()
    again = await delete_pool(stubs, created.node_pool.id)
    assert again.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


# upgrades


@pytest.mark.parametrize(
    ("task", "cluster_state"),
    [
        ("PreCheck", cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE),
        ("Cluster", cl_pb.CLUSTER_LIFECYCLE_STATE_FAILED),
    ],
    ids=["before-the-point-of-no-return", "after-it"],
)
async def test_an_upgrade_whose_task_keeps_crashing_is_pending_and_frees_the_cluster(
    app: App, stubs: Stubs, clock: FakeClock, task: str, cluster_state: int
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    buggy(app).crash_on.add(f"upgrade:{task}")
    created = await create_upgrade(stubs, cluster.id, "v1.30.4")
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, created.work_request.id))

    workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
    assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING
    failed = [p for p in points(workflow).values() if p.status == uw_pb.UPGRADE_TASK_STATUS_FAILED]
    assert [uw_pb.UpgradeTaskType.Name(p.task_type) for p in failed] == [
        f"UPGRADE_TASK_TYPE_{'PRE_CHECK' if task == 'PreCheck' else 'CLUSTER'}"
    ]
    assert failed[0].message == UNEXPECTED_FAILURE
    assert not any(
        p.status in (uw_pb.UPGRADE_TASK_STATUS_RUNNING, uw_pb.UPGRADE_TASK_STATUS_QUEUING)
        for p in points(workflow).values()
    )
    after = await get_cluster(stubs, cluster.id)
    assert after.lifecycle_state == cluster_state
    assert after.kubernetes_version == "v1.29.8"

    if cluster_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE:
        # Not UPDATING for ever: the next upgrade is accepted and runs.
        buggy(app).crash_on.clear()
        again = await create_upgrade(stubs, cluster.id, "v1.30.4")
        events = await watch_to_end(stubs, again.work_request.id)
        assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


# orchestrations


async def test_an_orchestrated_upgrade_that_keeps_crashing_fails_its_operation(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    buggy(app).crash_on.add("upgrade:PreCheck")
    created = await create(stubs)
    # The orchestration hears that its upgrade gave up, and ends.
    run = await crash_until_given_up(stubs, clock, created.work_request.id)
    assert run.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    ended = (await by_runtime(stubs, created.orchestration.id))[cluster.id]
    assert ended.state == orc_pb.ORCHESTRATION_STATE_FAILED
    assert UNEXPECTED_FAILURE in ended.description
    upgrade = await stubs.work_requests.GetWorkRequest(
        wr_pb.GetWorkRequestRequest(work_request_id=ended.work_request_id)
    )
    await assert_gave_up(stubs, upgrade.work_request)
    workflow = await get_workflow(stubs, ended.upgrade_workflow_id)
    assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_PENDING


async def test_an_orchestration_whose_run_keeps_crashing_fails_and_can_be_retried(
    app: App, stubs: Stubs, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")

    async def bug(*_: object, **__: object) -> int:
        raise RuntimeError("a bug in starting operations")

    with monkeypatch.context() as patched:
        patched.setattr(RunOrchestration, "_start_due", bug)
        created = await create(stubs)
        gave_up = await crash_until_given_up(stubs, clock, created.work_request.id)
    await assert_gave_up(stubs, gave_up)
    orchestration = (
        await stubs.orchestrations.GetOrchestration(
            orc_pb.GetOrchestrationRequest(orchestration_id=created.orchestration.id)
        )
    ).orchestration
    assert orchestration.state == orc_pb.ORCHESTRATION_STATE_FAILED
    operation = (await by_runtime(stubs, orchestration.id))[cluster.id]
    assert operation.state == orc_pb.ORCHESTRATION_STATE_FAILED
    assert operation.description.startswith("Not started: the orchestration's run failed")

    retried = await stubs.orchestrations.RetryOrchestration(
        orc_pb.RetryOrchestrationRequest(orchestration_id=orchestration.id)
    )
    run = await watch_to_end(stubs, retried.orchestration.work_request_id)
    assert run[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert (await get_cluster(stubs, cluster.id)).kubernetes_version == "v1.30.4"


# add-ons


async def test_an_addon_whose_install_keeps_crashing_is_failed_and_can_be_disabled(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    buggy(app).crash_on.add("apply_addon")
    installing = await stubs.addons.InstallAddon(
        ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    wr = await crash_until_given_up(stubs, clock, installing.work_request.id)
    await assert_gave_up(stubs, wr)
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_FAILED
    assert addon.addon_error.message == UNEXPECTED_FAILURE

    buggy(app).crash_on.clear()
    disabled = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    events = await watch_to_end(stubs, disabled.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_an_addon_whose_update_keeps_crashing_needs_attention_and_can_be_updated(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    buggy(app).crash_on.add("apply_addon")
    updating = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(cluster_id=cluster.id, name="CertManager", version="v1.13.3")
    )
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, updating.work_request.id))
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION

    buggy(app).crash_on.clear()
    again = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(cluster_id=cluster.id, name="CertManager", version="v1.13.3")
    )
    events = await watch_to_end(stubs, again.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_an_addon_whose_disable_keeps_crashing_is_failed_and_can_be_disabled_again(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    buggy(app).crash_on.add("release_addon")
    disabling = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, disabling.work_request.id))
    assert (await get_addon(stubs, cluster.id)).lifecycle_state == (
        ad_pb.ADDON_LIFECYCLE_STATE_FAILED
    )

    buggy(app).crash_on.clear()
    again = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    events = await watch_to_end(stubs, again.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_a_reconciliation_that_keeps_crashing_lets_go_of_the_addon(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    installed_by = (await get_addon(stubs, cluster.id)).work_request_id
    buggy(app).crash_on.add("inspect_addon")
    await run_next_check(clock)

    async def opened() -> bool:
        return (await get_addon(stubs, cluster.id)).work_request_id != installed_by

    await until(app, opened)
    reconciliation = (await get_addon(stubs, cluster.id)).work_request_id
    await assert_gave_up(stubs, await crash_until_given_up(stubs, clock, reconciliation))
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    async with app.store.read() as uow:
        stored = await uow.addons.get(cluster.id, "CertManager")
    assert stored is not None
    assert stored.reconciliation_id == ""
    # The check that kept crashing moved to its next interval rather than again at once.
    assert stored.next_check_at is not None
    assert stored.next_check_at > clock.now()

    buggy(app).crash_on.clear()
    updated = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(cluster_id=cluster.id, name="CertManager", version="v1.13.3")
    )
    events = await watch_to_end(stubs, updated.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
