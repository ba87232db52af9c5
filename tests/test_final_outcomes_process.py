"""Issue 11 end to end: a node that failed to register stays FAILED across kill -9.

A real `clusterops serve` creates a node pool; a one-shot provision_node fault makes one
node fail; the server is killed (SIGKILL) while the other nodes are still provisioned,
and started again. The work request must end FAILED naming that node, the node must stay
FAILED, and a second kill and restart must change nothing: same status, errors and log.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import simulator_pb2 as sim_pb
from clusterops.v1 import simulator_pb2_grpc as sim_grpc
from clusterops.v1 import work_requests_pb2 as wr_pb

from tests.conftest import Stubs
from tests.test_server_process import running_server

NODES = 16


async def outcome(stubs: Stubs, wr_id: str) -> tuple[int, list[tuple[str, str]], list[str]]:
    """The work request's status, errors and log, once it has ended."""
    call = stubs.work_requests.WatchWorkRequest(
        wr_pb.WatchWorkRequestRequest(work_request_id=wr_id)
    )
    async for event in call:
        if event.work_request.status in (
            wr_pb.WORK_REQUEST_STATUS_SUCCEEDED,
            wr_pb.WORK_REQUEST_STATUS_FAILED,
        ):
            call.cancel()
            break
    wr = (
        await stubs.work_requests.GetWorkRequest(wr_pb.GetWorkRequestRequest(work_request_id=wr_id))
    ).work_request
    errors = (
        await stubs.work_requests.ListWorkRequestErrors(
            wr_pb.ListWorkRequestErrorsRequest(work_request_id=wr_id, page_size=100)
        )
    ).errors
    logs = (
        await stubs.work_requests.ListWorkRequestLogs(
            wr_pb.ListWorkRequestLogsRequest(work_request_id=wr_id, page_size=100)
        )
    ).log_entries
    return wr.status, [(e.code, e.message) for e in errors], [entry.message for entry in logs]


async def node_states(stubs: Stubs, pool_id: str) -> dict[str, int]:
    nodes = (
        await stubs.clusters.ListNodes(cl_pb.ListNodesRequest(node_pool_id=pool_id, page_size=100))
    ).nodes
    return {n.id: n.lifecycle_state for n in nodes}


async def test_a_node_that_failed_to_register_stays_failed_after_kill_9(tmp_path: Path) -> None:
    database = tmp_path / "outcomes.db"
    open_server = ("--insecure-no-auth", "--sim-step-seconds")
    async with running_server(database, *open_server, "1") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            made = await stubs.clusters.CreateCluster(
                cl_pb.CreateClusterRequest(
                    compartment_id="dev",
                    name="prod",
                    kubernetes_version="v1.29.8",
                    region="eu-frankfurt-1",
                    plan="aws",
                )
            )
            cluster = made.cluster
            await outcome(stubs, made.work_request.id)
            # Into the running server, through its SimulatorService: no SQL needed.
            await sim_grpc.SimulatorServiceStub(channel).AddFault(
                sim_pb.AddFaultRequest(action="provision_node", message="injected")
            )
            created = await stubs.clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=NODES)
            )
            wr_id, pool_id = created.work_request.id, created.node_pool.id
            # Wait, by the watch stream, until a node failed to register, then kill -9
            # while the others are still being provisioned.
            call = stubs.work_requests.WatchWorkRequest(
                wr_pb.WatchWorkRequestRequest(work_request_id=wr_id)
            )
            failed_node = ""
            async for event in call:
                assert event.work_request.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS or (
                    event.work_request.status == wr_pb.WORK_REQUEST_STATUS_ACCEPTED
                )
                if any(e.code == "NodeRegistrationFailed" for e in event.errors):
                    failed_node = next(
                        r.identifier
                        for r in event.work_request.resources
                        if r.entity_type == "node"
                        and r.action_type == wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_FAILED
                    )
                    break
            call.cancel()
            assert (await node_states(stubs, pool_id))[failed_node] == (
                cl_pb.NODE_LIFECYCLE_STATE_FAILED
            )
        server.process.kill()
        await server.process.wait()

    # Restarted, it finishes the pool: the failure recorded before the kill stands.
    async with running_server(database, *open_server, "0") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            status, errors, logs = await outcome(stubs, wr_id)
            states = await node_states(stubs, pool_id)
            pool = (
                await stubs.clusters.GetNodePool(cl_pb.GetNodePoolRequest(node_pool_id=pool_id))
            ).node_pool
        server.process.kill()
        await server.process.wait()
    assert status == wr_pb.WORK_REQUEST_STATUS_FAILED
    assert [code for code, _ in errors] == ["NodeRegistrationFailed", "NodePoolCreationFailed"]
    assert failed_node in errors[0][1]
    assert errors[1][1] == f"1 of {NODES} nodes failed to register ACTIVE: {failed_node}"
    about_it = [line for line in logs if f"({failed_node})" in line]
    assert len(about_it) == 1
    assert about_it[0].endswith("failed to register: injected")
    assert sum(line.endswith(") is ACTIVE") for line in logs) == NODES - 1
    assert states[failed_node] == cl_pb.NODE_LIFECYCLE_STATE_FAILED
    assert sorted(states.values()).count(cl_pb.NODE_LIFECYCLE_STATE_ACTIVE) == NODES - 1
    assert pool.lifecycle_state == cl_pb.NODE_POOL_LIFECYCLE_STATE_NEEDS_ATTENTION

    # Killed again after the end and restarted: nothing is rewritten.
    async with running_server(database, *open_server, "0") as server:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        async with channel:
            stubs = Stubs(channel)
            assert await outcome(stubs, wr_id) == (status, errors, logs)
            assert await node_states(stubs, pool_id) == states
