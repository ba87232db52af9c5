"""Deleting a cluster and its add-ons: one operation at a time, decided by the lock table,
and a deleted cluster's add-ons are no longer reconciled."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.domain.addons import AddonState

from tests.addon_helpers import get_addon, get_work_request, install, next_wakeup, run_next_check
from tests.conftest import Stubs, seed_cluster, simulator
from tests.helpers import details_of, watch_to_end

pytestmark = pytest.mark.both_backends


def blocking(failure: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[str, str]:
    """ABORTED / RESOURCE_BUSY: the busy resource and the work request holding it."""
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.ABORTED
    assert details.error_info is not None
    assert details.error_info.reason == "RESOURCE_BUSY"
    metadata = details.error_info.metadata
    return metadata["resource_id"], metadata["blocking_work_request_id"]


async def test_delete_cluster_during_an_addon_install_is_aborted_naming_it(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await app.engine.stop()  # keep the install in flight
    installing = await stubs.addons.InstallAddon(
        ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CertManager")
    )
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stubs.clusters.DeleteCluster(cl_pb.DeleteClusterRequest(cluster_id=cluster.id))
    assert blocking(failure) == (f"{cluster.id}/CertManager", installing.work_request.id)

    await app.engine.start()
    await watch_to_end(stubs, installing.work_request.id)
    deleting = await stubs.clusters.DeleteCluster(cl_pb.DeleteClusterRequest(cluster_id=cluster.id))
    events = await watch_to_end(stubs, deleting.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_addon_operations_on_a_cluster_being_deleted_are_aborted_naming_the_deletion(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    await app.engine.stop()  # keep the deletion in flight
    deleting = await stubs.clusters.DeleteCluster(cl_pb.DeleteClusterRequest(cluster_id=cluster.id))
    delete_id = deleting.work_request.id
    assert {r.identifier for r in deleting.work_request.resources} == {
        cluster.id,
        f"{cluster.id}/CertManager",
    }
    attempts: list[Awaitable[object]] = [
        stubs.addons.InstallAddon(ad_pb.InstallAddonRequest(cluster_id=cluster.id, name="CoreDNS")),
        stubs.addons.UpdateAddon(
            ad_pb.UpdateAddonRequest(cluster_id=cluster.id, name="CertManager", version="v1.13.3")
        ),
        stubs.addons.UpdateAddon(
            ad_pb.UpdateAddonRequest(cluster_id=cluster.id, name="CertManager")
        ),
        stubs.addons.DisableAddon(
            ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CertManager")
        ),
    ]
    for attempt in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await attempt
        assert blocking(failure) == (cluster.id, delete_id)


async def test_a_deleted_clusters_addons_are_deleted_with_it_and_no_longer_checked(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id, "CoreDNS")
    # It waits between NEEDS_ATTENTION checks: the deletion supersedes that reconciliation.
    await simulator(app).make_addon_unhealthy(cluster.id, "CoreDNS", "pods pending")
    await run_next_check(clock)
    await next_wakeup(clock)
    waiting = (await get_addon(stubs, cluster.id, "CoreDNS")).work_request_id
    assert (await get_work_request(stubs, waiting)).status == (
        wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    )
    await install(stubs, cluster.id)

    deleting = await stubs.clusters.DeleteCluster(cl_pb.DeleteClusterRequest(cluster_id=cluster.id))
    events = await watch_to_end(stubs, deleting.work_request.id)
    final = events[-1].work_request
    assert final.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert {r.identifier: r.action_type for r in final.resources} == {
        cluster.id: wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_DELETED,
        f"{cluster.id}/CertManager": wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_DELETED,
        f"{cluster.id}/CoreDNS": wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_DELETED,
    }
    assert (await get_work_request(stubs, waiting)).status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    async with app.store.read() as uow:
        for name in ("CertManager", "CoreDNS"):
            addon = await uow.addons.get(cluster.id, name)
            assert addon is not None
            assert addon.lifecycle_state is AddonState.DELETED
            assert (addon.next_check_at, addon.reconciliation_id) == (None, "")
        assert await uow.addons.next_check() is None
    # Nothing is scheduled any more: no check opens on the deleted cluster.
    assert await app.reconciler.open_due() is None
