"""Issue 16 end to end: a pause is stored, so it survives kill -9.

A real `clusterops serve` runs an orchestration with one worker; it is paused while its
first upgrade runs, and the server is killed (SIGKILL) at once. Restarted, the running
upgrade finishes and the run records it, but nothing else starts: the orchestration is
still paused and every other operation waits for the pause. Resumed, it finishes.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import work_requests_pb2 as wr_pb

from tests.conftest import Stubs
from tests.helpers import watch_to_end
from tests.orchestration_helpers import counts, logged, operations, parameters, watch_until
from tests.test_server_process import running_server

CLUSTERS = 3
OPEN = "--insecure-no-auth"


async def test_a_paused_orchestration_stays_paused_across_kill_9_and_resume_finishes_it(
    tmp_path: Path,
) -> None:
    database = tmp_path / "pause.db"
    async with running_server(database, OPEN, "--sim-step-seconds", "0") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            for i in range(CLUSTERS):
                made = await stubs.clusters.CreateCluster(
                    cl_pb.CreateClusterRequest(
                        compartment_id="dev",
                        name=f"c{i}",
                        kubernetes_version="v1.29.8",
                        region="eu-frankfurt-1",
                        plan="aws",
                    )
                )
                await watch_to_end(stubs, made.work_request.id)
        server.process.kill()
        await server.process.wait()

    # Upgrades take seconds of real time now: the first is still running when paused.
    async with running_server(database, OPEN, "--sim-step-seconds", "1") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            created = await stubs.orchestrations.CreateOrchestration(
                orc_pb.CreateOrchestrationRequest(
                    compartment_id="dev", parameters=parameters(workers=1)
                )
            )
            orchestration_id, run = created.orchestration.id, created.work_request.id
            await watch_until(stubs, run, logged("Upgrading from"), within=30)
            paused = await stubs.orchestrations.PauseOrchestration(
                orc_pb.PauseOrchestrationRequest(
                    orchestration_id=orchestration_id, reason="change freeze"
                )
            )
            assert paused.orchestration.state == orc_pb.ORCHESTRATION_STATE_PAUSED
            assert counts(paused.orchestration) == {"in_progress": 1, "pending": 2, "total": 3}
        server.process.kill()
        await server.process.wait()

    async with running_server(database, OPEN, "--sim-step-seconds", "0") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            # The upgrade that was running resumes and ends; the run records it...
            await watch_until(stubs, run, logged("Upgraded from"), within=60)
            after = (
                await stubs.orchestrations.GetOrchestration(
                    orc_pb.GetOrchestrationRequest(orchestration_id=orchestration_id)
                )
            ).orchestration
            # ...and starts nothing: still paused, by the same pause.
            assert after.state == orc_pb.ORCHESTRATION_STATE_PAUSED
            assert after.pause.reason == "change freeze"
            assert counts(after) == {"succeeded": 1, "pending": 2, "total": 3}
            pending = await operations(
                stubs, orchestration_id, states=[orc_pb.ORCHESTRATION_STATE_PENDING]
            )
            assert [op.wait_reason for op in pending] == [orc_pb.OPERATION_WAIT_REASON_PAUSE] * 2

            await stubs.orchestrations.ResumeOrchestration(
                orc_pb.ResumeOrchestrationRequest(orchestration_id=orchestration_id)
            )
            events = await watch_to_end(stubs, run, within=60)
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            done = (
                await stubs.orchestrations.GetOrchestration(
                    orc_pb.GetOrchestrationRequest(orchestration_id=orchestration_id)
                )
            ).orchestration
            assert counts(done) == {"succeeded": 3, "total": 3}
        server.process.kill()
        await server.process.wait()
