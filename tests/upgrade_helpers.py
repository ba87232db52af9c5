"""Helpers shared by the upgrade workflow tests."""

from __future__ import annotations

from clusterops.v1 import upgrade_workflows_pb2 as uw_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.clock import FakeClock

from tests.conftest import Stubs

PRE_CHECK = uw_pb.UPGRADE_TASK_TYPE_PRE_CHECK
SNAPSHOT = uw_pb.UPGRADE_TASK_TYPE_SNAPSHOT
CLUSTER = uw_pb.UPGRADE_TASK_TYPE_CLUSTER
POST_CHECK = uw_pb.UPGRADE_TASK_TYPE_POST_CHECK
ROLLBACK = uw_pb.UPGRADE_TASK_TYPE_ROLLBACK
CRITICAL_PATH = [PRE_CHECK, SNAPSHOT, CLUSTER, POST_CHECK]
# The domain's names for the task types, as the simulated provider's actions use them.
TASK_NAMES = {
    PRE_CHECK: "PreCheck",
    SNAPSHOT: "Snapshot",
    CLUSTER: "Cluster",
    POST_CHECK: "PostCheck",
    ROLLBACK: "Rollback",
}


async def create_upgrade(
    stubs: Stubs, cluster_id: str, target: str = "v1.30.4", **fields: object
) -> uw_pb.CreateUpgradeWorkflowResponse:
    return await stubs.upgrade_workflows.CreateUpgradeWorkflow(
        uw_pb.CreateUpgradeWorkflowRequest(
            cluster_id=cluster_id,
            target_version=target,
            **fields,  # type: ignore[arg-type]
        )
    )


async def get_workflow(stubs: Stubs, workflow_id: str) -> uw_pb.UpgradeWorkflow:
    response = await stubs.upgrade_workflows.GetUpgradeWorkflow(
        uw_pb.GetUpgradeWorkflowRequest(upgrade_workflow_id=workflow_id)
    )
    return response.upgrade_workflow


def points(workflow: uw_pb.UpgradeWorkflow) -> dict[int, uw_pb.UpgradeTaskPointStatus]:
    return {p.task_type: p for p in workflow.status.point_statuses}


async def logs_of(stubs: Stubs, work_request_id: str) -> list[str]:
    response = await stubs.work_requests.ListWorkRequestLogs(
        wr_pb.ListWorkRequestLogsRequest(work_request_id=work_request_id, page_size=1000)
    )
    return [entry.message for entry in response.log_entries]


async def errors_of(stubs: Stubs, work_request_id: str) -> list[wr_pb.WorkRequestError]:
    response = await stubs.work_requests.ListWorkRequestErrors(
        wr_pb.ListWorkRequestErrorsRequest(work_request_id=work_request_id)
    )
    return list(response.errors)


async def drive(clock: FakeClock, seconds: float, tasks: int) -> None:
    """Let `tasks` simulated tasks of `seconds` each run, one after another."""
    for _ in range(tasks):
        await clock.wait_for_sleepers(1)
        clock.advance(seconds)
