"""Upgrade workflows survive restarts: finished tasks never run again, the rest resume."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App, ServerConfig
from clusterops_server.clock import Clock, FakeClock
from clusterops_server.domain.inventory import Cluster
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType
from clusterops_server.providers.simulated import SimulatedProvider, SimulationSettings
from clusterops_server.store.database import default_sqlite_url
from clusterops_server.store.uow import Store

from tests.conftest import Stubs, seed_cluster
from tests.helpers import watch_to_end
from tests.test_server_process import running_server
from tests.upgrade_helpers import (
    CRITICAL_PATH,
    ROLLBACK,
    create_upgrade,
    get_workflow,
    logs_of,
    points,
)


class CountingProvider(SimulatedProvider):
    """The simulator, counting how often each upgrade task runs."""

    calls: Counter[UpgradeTaskType] = Counter()

    async def run_upgrade_task(
        self, cluster: Cluster, task_type: UpgradeTaskType, target_version: str
    ) -> None:
        CountingProvider.calls[task_type] += 1
        await super().run_upgrade_task(cluster, task_type, target_version)


def build(tmp_path: Path, clock: FakeClock) -> App:
    def factory(store: Store, clk: Clock) -> CountingProvider:
        return CountingProvider(store, clk, SimulationSettings(seconds={"upgrade:Cluster": 60}))

    return App(
        ServerConfig(
            database_url=default_sqlite_url(tmp_path / "upgrade.db"),
            port=0,
            engine_poll_seconds=0.2,
            watch_poll_seconds=0.2,
        ),
        clock=clock,
        provider_factory=factory,
    )


async def test_a_restart_during_the_cluster_task_resumes_without_rerunning_finished_tasks(
    tmp_path: Path, clock: FakeClock
) -> None:
    CountingProvider.calls.clear()
    first = build(tmp_path, clock)
    await first.start()
    cluster = await seed_cluster(first, version="v1.29.8")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        created = await create_upgrade(Stubs(channel), cluster.id, "v1.30.4")
        await clock.wait_for_sleepers(1)  # the Cluster task is running
    await first.stop(grace=0)
    assert CountingProvider.calls == Counter(
        {UpgradeTaskType.PRE_CHECK: 1, UpgradeTaskType.SNAPSHOT: 1, UpgradeTaskType.CLUSTER: 1}
    )

    second = build(tmp_path, clock)
    await second.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            stubs = Stubs(channel)
            await clock.wait_for_sleepers(1)  # the interrupted Cluster task, run again
            clock.advance(60)
            events = await watch_to_end(stubs, created.work_request.id)
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
            assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS
    finally:
        await second.stop(grace=0)
    # Only the task that was running when the server stopped ran twice.
    assert CountingProvider.calls == Counter(
        {
            UpgradeTaskType.PRE_CHECK: 1,
            UpgradeTaskType.SNAPSHOT: 1,
            UpgradeTaskType.CLUSTER: 2,
            UpgradeTaskType.POST_CHECK: 1,
        }
    )


@pytest.mark.slow  # seconds of real time: started first
async def test_sigkill_during_an_upgrade_resumes_it_after_restart(tmp_path: Path) -> None:
    database = tmp_path / "upgrade-kill.db"
    async with running_server(database, "--sim-step-seconds", "1", "--insecure-no-auth") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            made = await stubs.clusters.CreateCluster(
                cl_pb.CreateClusterRequest(
                    compartment_id="dev",
                    name="kill-me",
                    kubernetes_version="v1.29.8",
                    region="eu-frankfurt-1",
                    plan="aws",
                )
            )
            await watch_to_end(stubs, made.work_request.id)
            created = await create_upgrade(stubs, made.cluster.id, "v1.30.4")
            watch = stubs.work_requests.WatchWorkRequest(
                wr_pb.WatchWorkRequestRequest(work_request_id=created.work_request.id)
            )
            async for event in watch:
                if any(
                    e.message.startswith("Snapshot task") and e.message.endswith("started")
                    for e in event.log_entries
                ):
                    break
            watch.cancel()
        server.process.send_signal(signal.SIGKILL)
        await server.process.wait()

    async with running_server(database, "--sim-step-seconds", "0", "--insecure-no-auth") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            events = await watch_to_end(stubs, created.work_request.id)
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            workflow = await get_workflow(stubs, created.upgrade_workflow.metadata.uid)
            assert workflow.status.phase == uw_pb.UPGRADE_WORKFLOW_PHASE_SUCCESS
            by_type = points(workflow)
            assert all(
                by_type[t].status == uw_pb.UPGRADE_TASK_STATUS_SUCCESS for t in CRITICAL_PATH
            )
            assert by_type[ROLLBACK].status == uw_pb.UPGRADE_TASK_STATUS_INIT
            upgraded = (
                await stubs.clusters.GetCluster(cl_pb.GetClusterRequest(cluster_id=made.cluster.id))
            ).cluster
            assert upgraded.kubernetes_version == "v1.30.4"
            assert upgraded.lifecycle_state == cl_pb.CLUSTER_LIFECYCLE_STATE_ACTIVE
            messages = await logs_of(stubs, created.work_request.id)
            # PreCheck had finished before the kill: it ran exactly once.
            pre_check = by_type[CRITICAL_PATH[0]].task_id
            assert messages.count(f"PreCheck task {pre_check} started") == 1
        server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
