"""UpgradeWorkflowService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from clusterops.v1 import upgrade_workflows_pb2 as pb
from clusterops.v1 import upgrade_workflows_pb2_grpc as pb_grpc

from clusterops_server.domain.upgrade_workflows import (
    TaskLine,
    TaskPoint,
    UpgradePhase,
    UpgradeTaskStatus,
    UpgradeTaskType,
    UpgradeWorkflow,
    UpgradeWorkflowQuery,
)
from clusterops_server.ids import IdKind
from clusterops_server.services.upgrade_workflows import (
    CancelUpgradeWorkflowCommand,
    CreateUpgradeWorkflowCommand,
    UpgradeWorkflowService,
)
from clusterops_server.wire.convert import EnumMap, timestamp
from clusterops_server.wire.errors import servicer
from clusterops_server.wire.validate import Validator
from clusterops_server.wire.work_requests import work_request_to_proto

PHASE = EnumMap(pb.UpgradeWorkflowPhase, UpgradePhase, "UPGRADE_WORKFLOW_PHASE_")
TASK_TYPE = EnumMap(pb.UpgradeTaskType, UpgradeTaskType, "UPGRADE_TASK_TYPE_")
TASK_STATUS = EnumMap(pb.UpgradeTaskStatus, UpgradeTaskStatus, "UPGRADE_TASK_STATUS_")

_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?")
MAX_ANNOTATIONS = 64
MAX_ANNOTATION_VALUE = 4096
MAX_NAME = 128


def point_to_proto(p: TaskPoint) -> pb.UpgradeTaskPointStatus:
    if p.status is UpgradeTaskStatus.SKIPPED:
        # As CCE shows a task the workflow does not run: its type and nothing else.
        return pb.UpgradeTaskPointStatus(task_type=TASK_TYPE.to_proto(p.task_type))  # type: ignore[arg-type]
    return pb.UpgradeTaskPointStatus(
        task_type=TASK_TYPE.to_proto(p.task_type),  # type: ignore[arg-type]
        task_id=p.task_id,
        status=TASK_STATUS.to_proto(p.status),  # type: ignore[arg-type]
        start_timestamp=timestamp(p.start_time),
        end_timestamp=timestamp(p.end_time),
        expire_timestamp=timestamp(p.expire_time),
        message=p.message,
    )


def line_to_proto(line: TaskLine) -> pb.UpgradeTaskLineStatus:
    return pb.UpgradeTaskLineStatus(
        start_point=TASK_TYPE.to_proto(line.start),  # type: ignore[arg-type]
        end_point=TASK_TYPE.to_proto(line.end),  # type: ignore[arg-type]
        critical=line.critical,
    )


def workflow_to_proto(w: UpgradeWorkflow) -> pb.UpgradeWorkflow:
    return pb.UpgradeWorkflow(
        metadata=pb.UpgradeWorkflowMetadata(
            uid=w.id,
            name=w.name,
            labels=w.labels,
            annotations=w.annotations,
            creation_timestamp=timestamp(w.create_time),
            update_timestamp=timestamp(w.update_time),
        ),
        spec=pb.UpgradeWorkflowSpec(
            cluster_id=w.cluster_id,
            cluster_version=w.cluster_version,
            target_version=w.target_version,
        ),
        status=pb.UpgradeWorkflowStatus(
            phase=PHASE.to_proto(w.phase),  # type: ignore[arg-type]
            point_statuses=[point_to_proto(p) for p in w.points],
            line_statuses=[line_to_proto(line) for line in w.lines],
        ),
        compartment_id=w.compartment_id,
        work_request_id=w.work_request_id,
        etag=w.etag,
    )


def _annotations(check: Validator, field: str, values: Mapping[str, str]) -> dict[str, str]:
    if len(values) > MAX_ANNOTATIONS:
        check.fail(field, f"at most {MAX_ANNOTATIONS} annotations")
        return {}
    for key, value in values.items():
        if _ANNOTATION_KEY.fullmatch(key) is None:
            check.fail(
                f"{field}[{key[:40]!r}]",
                "keys are 1 to 253 letters, digits, . _ / -, starting and ending with a "
                "letter or digit",
            )
        if len(value) > MAX_ANNOTATION_VALUE:
            check.fail(
                f"{field}[{key[:40]!r}]", f"values are at most {MAX_ANNOTATION_VALUE} characters"
            )
    return dict(values)


def _workflow_id(check: Validator, value: str) -> str:
    return check.resource_id("upgrade_workflow_id", value, IdKind.UPGRADE_WORKFLOW)


@servicer
class UpgradeWorkflowServicer(pb_grpc.UpgradeWorkflowServiceServicer):
    def __init__(self, service: UpgradeWorkflowService) -> None:
        self.service = service

    async def CreateUpgradeWorkflow(  # noqa: N802 (gRPC method names)
        self, request: pb.CreateUpgradeWorkflowRequest, context: Any
    ) -> pb.CreateUpgradeWorkflowResponse:
        check = Validator()
        command = CreateUpgradeWorkflowCommand(
            cluster_id=check.resource_id("cluster_id", request.cluster_id, IdKind.CLUSTER),
            target_version=check.text(
                "target_version", request.target_version, required=True, limit=32
            ),
            name=check.text("name", request.name, limit=MAX_NAME),
            labels=check.labels("labels", request.labels),
            annotations=_annotations(check, "annotations", request.annotations),
            request_id=check.request_id("request_id", request.request_id),
            skip_snapshot=request.skip_snapshot,
        )
        check.check()
        workflow, wr = await self.service.create(command)
        return pb.CreateUpgradeWorkflowResponse(
            upgrade_workflow=workflow_to_proto(workflow), work_request=work_request_to_proto(wr)
        )

    async def GetUpgradeWorkflow(  # noqa: N802
        self, request: pb.GetUpgradeWorkflowRequest, context: Any
    ) -> pb.GetUpgradeWorkflowResponse:
        check = Validator()
        _workflow_id(check, request.upgrade_workflow_id)
        check.check()
        workflow = await self.service.get(request.upgrade_workflow_id)
        return pb.GetUpgradeWorkflowResponse(upgrade_workflow=workflow_to_proto(workflow))

    async def ListUpgradeWorkflows(  # noqa: N802
        self, request: pb.ListUpgradeWorkflowsRequest, context: Any
    ) -> pb.ListUpgradeWorkflowsResponse:
        check = Validator()
        query = UpgradeWorkflowQuery(
            compartment_id=check.compartment(
                "compartment_id", request.compartment_id, required=False
            ),
            cluster_id=check.resource_id(
                "cluster_id", request.cluster_id, IdKind.CLUSTER, required=False
            ),
            phases=check.enums("phases", request.phases, PHASE),
        )
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_workflows(query, page)
        return pb.ListUpgradeWorkflowsResponse(
            upgrade_workflows=[workflow_to_proto(w) for w in result.items],
            next_page_token=result.next_page_token,
        )

    async def CancelUpgradeWorkflow(  # noqa: N802
        self, request: pb.CancelUpgradeWorkflowRequest, context: Any
    ) -> pb.CancelUpgradeWorkflowResponse:
        check = Validator()
        command = CancelUpgradeWorkflowCommand(
            upgrade_workflow_id=_workflow_id(check, request.upgrade_workflow_id),
            etag=check.text("etag", request.etag, limit=64),
            request_id=check.request_id("request_id", request.request_id),
        )
        check.check()
        workflow = await self.service.cancel(command)
        return pb.CancelUpgradeWorkflowResponse(upgrade_workflow=workflow_to_proto(workflow))

    async def ListKubernetesVersions(  # noqa: N802
        self, request: pb.ListKubernetesVersionsRequest, context: Any
    ) -> pb.ListKubernetesVersionsResponse:
        return pb.ListKubernetesVersionsResponse(
            versions=[
                pb.KubernetesVersion(version=v.version, upgrade_targets=v.upgrade_targets)
                for v in self.service.list_versions()
            ]
        )
