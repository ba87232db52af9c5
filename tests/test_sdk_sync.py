"""The blocking Client: every verb of work_requests and clusters, and a representative few of
upgrade_workflows and addons (the same async methods, borrowed), run from a worker thread while
the in-process server keeps serving on the test's event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
from clusterops import (
    Client,
    EtagMismatch,
    FailedPrecondition,
    NotFound,
    Operation,
    OperationFailed,
    Pager,
    WatchEvent,
)
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, seed_cluster, simulator
from tests.sdk_support import QUICK_RETRY, target


def connect(app: App) -> Client:
    return Client(target(app), retry=QUICK_RETRY)


async def test_the_blocking_client_offers_every_cluster_and_work_request_verb(app: App) -> None:
    def scenario() -> None:
        with connect(app) as client:
            creating = client.clusters.create(
                compartment_id="dev",
                name="sync-1",
                kubernetes_version="v1.30.4",
                region="eu-frankfurt-1",
                plan="aws",
            )
            assert isinstance(creating, Operation)
            cluster = creating.result(timeout=20)
            assert cluster.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
            assert client.clusters.get(cluster.id) == cluster
            listed = client.clusters.list(compartment_id="dev", page_size=1)
            assert isinstance(listed, Pager)
            assert [c.id for c in listed] == [cluster.id]

            callback_threads: set[int] = set()
            events: list[WatchEvent] = []

            def on_event(event: WatchEvent) -> None:
                callback_threads.add(threading.get_ident())
                events.append(event)

            adding = client.clusters.create_node_pool(cluster.id, name="w", node_count=2)
            pool = adding.result(timeout=20, on_event=on_event)
            assert callback_threads == {threading.get_ident()}  # callbacks run in our thread
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            assert adding.work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            assert client.clusters.get_node_pool(pool.id) == pool
            assert [p.id for p in client.clusters.list_node_pools(cluster.id)] == [pool.id]
            assert len(list(client.clusters.list_nodes(pool.id, page_size=1))) == 2

            work_request = client.work_requests.get(adding.id)
            assert work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            pages = list(client.work_requests.list(page_size=1).pages())
            assert [len(page.items) for page in pages] == [1, 1]
            succeeded = client.work_requests.list(statuses=["SUCCEEDED"])
            assert {wr.id for wr in succeeded} == {adding.id, creating.id}
            logs = [entry.message for entry in client.work_requests.list_logs(adding.id)]
            assert logs == [entry.message for event in events for entry in event.log_entries]
            assert list(client.work_requests.list_errors(adding.id)) == []
            snapshot = list(client.work_requests.watch(adding.id))
            assert [e.event_type for e in snapshot] == [wr_pb.WATCH_EVENT_TYPE_SNAPSHOT]
            assert client.work_requests.wait(adding.id, timeout=5) == work_request
            with pytest.raises(FailedPrecondition):
                client.work_requests.cancel(adding.id)

            removing = client.clusters.delete_node_pool(pool.id)
            removing.result(timeout=20)
            assert removing.work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            with pytest.raises(NotFound):
                client.clusters.get_node_pool(pool.id)
            deleting = client.clusters.delete(cluster.id, etag=client.clusters.get(cluster.id).etag)
            assert deleting.wait(timeout=20).status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            with pytest.raises(NotFound):
                client.clusters.get(cluster.id)

    await asyncio.to_thread(scenario)


async def test_the_blocking_client_upgrades_a_cluster_and_manages_its_addons(app: App) -> None:
    cluster = await seed_cluster(app, version="v1.29.8")
    failing = await seed_cluster(app, version="v1.29.8")
    await simulator(app).inject_fault("upgrade:PostCheck", failing.id, times=1)

    def scenario() -> None:
        with connect(app) as client:
            versions = client.upgrade_workflows.list_kubernetes_versions()
            target = max(next(v for v in versions if v.version == "v1.29.8").upgrade_targets)
            upgrading = client.upgrade_workflows.create(cluster.id, target_version=target)
            assert isinstance(upgrading, Operation)
            workflow = upgrading.result(timeout=20)
            assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS
            assert client.upgrade_workflows.get(workflow.metadata.uid) == workflow
            assert client.clusters.get(cluster.id).kubernetes_version == target
            with pytest.raises(FailedPrecondition) as finished:
                client.upgrade_workflows.cancel(workflow.metadata.uid)
            assert finished.value.precondition_violations[0].type == "UPGRADE_WORKFLOW_PHASE"
            with pytest.raises(OperationFailed, match="PostCheckFailed"):
                client.upgrade_workflows.create(failing.id, target_version=target).result(
                    timeout=20
                )
            pending = client.upgrade_workflows.list(phases=["PENDING"], page_size=1)
            assert isinstance(pending, Pager)
            assert [w.spec.cluster_id for w in pending] == [failing.id]

            options = client.addons.list_options(kubernetes_version=target, page_size=2)
            assert "CertManager" in [o.name for o in options]
            addon = client.addons.install(cluster.id, "CertManager").result(timeout=20)
            assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
            client.addons.install(cluster.id, "KubernetesDashboard").result(timeout=20)
            listed = client.addons.list(cluster.id, page_size=1)
            assert [a.name for a in listed] == ["CertManager", "KubernetesDashboard"]
            disabled = client.addons.disable(cluster.id, "KubernetesDashboard").result(timeout=20)
            assert disabled.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_DELETED
            with pytest.raises(NotFound):
                client.addons.get(cluster.id, "KubernetesDashboard")
            updated = client.addons.update(
                cluster.id, "CertManager", etag=addon.etag, configurations={"numOfReplicas": "2"}
            ).result(timeout=20)
            assert [(c.key, c.value) for c in updated.configurations] == [("numOfReplicas", "2")]
            with pytest.raises(EtagMismatch):
                client.addons.update(cluster.id, "CertManager", etag=addon.etag)

    await asyncio.to_thread(scenario)


async def test_a_blocking_operation_handle_cancels_and_watches_its_work_request(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"provision_node": 60}))
    client = await asyncio.to_thread(connect, app)
    try:
        cluster = await asyncio.to_thread(
            lambda: client.clusters.create(
                compartment_id="dev",
                name="sync-2",
                kubernetes_version="v1.30.4",
                region="eu-frankfurt-1",
                plan="aws",
            ).result(timeout=20)
        )
        adding = await asyncio.to_thread(
            client.clusters.create_node_pool, cluster.id, name="w", node_count=1
        )
        await clock.wait_for_sleepers(1)
        canceling = await asyncio.to_thread(adding.cancel)
        assert canceling.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
        watch = adding.watch(timeout=20)
        first = await asyncio.to_thread(next, watch)
        assert first.work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
        clock.advance(60)
        rest = await asyncio.to_thread(list, watch)
        assert rest[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
        refreshed = await asyncio.to_thread(adding.refresh)
        assert refreshed.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    finally:
        await asyncio.to_thread(client.close)
    with pytest.raises(RuntimeError, match="closed"):
        client.work_requests.get(adding.id)
    client.close()  # closing twice is harmless


async def test_stopping_a_blocking_watch_early_ends_its_stream(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"provision_node": 60}))
    client = await asyncio.to_thread(connect, app)
    try:
        cluster = await seed_cluster(app)
        adding = await asyncio.to_thread(
            client.clusters.create_node_pool, cluster.id, name="w", node_count=1
        )
        events = adding.watch()
        await asyncio.to_thread(next, events)
        assert app.hub.watchers == 1
        await asyncio.to_thread(events.close)
        for _ in range(50):  # the server notices the cancelled stream promptly
            if app.hub.watchers == 0:
                break
            await asyncio.sleep(0.02)
        assert app.hub.watchers == 0
    finally:
        await asyncio.to_thread(client.close)
