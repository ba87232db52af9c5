"""WorkRequestService: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from clusterops.v1 import work_requests_pb2 as pb
from clusterops.v1 import work_requests_pb2_grpc as pb_grpc

from clusterops_server.domain.filtering import FieldKind, FilterField
from clusterops_server.domain.listing import OrderBy
from clusterops_server.domain.work_requests import (
    ActionType,
    EntityType,
    ErrorEntry,
    LogEntry,
    OperationType,
    WorkRequest,
    WorkRequestEvent,
    WorkRequestQuery,
    WorkRequestResource,
    WorkRequestSetEvent,
    WorkRequestStatus,
)
from clusterops_server.ids import IdKind
from clusterops_server.services.work_requests import (
    CancelWorkRequestCommand,
    WorkRequestService,
)
from clusterops_server.wire.convert import EnumMap, timestamp
from clusterops_server.wire.errors import servicer
from clusterops_server.wire.validate import Validator

STATUS = EnumMap(pb.WorkRequestStatus, WorkRequestStatus, "WORK_REQUEST_STATUS_")
OPERATION = EnumMap(pb.WorkRequestOperationType, OperationType, "WORK_REQUEST_OPERATION_TYPE_")
ACTION = EnumMap(pb.WorkRequestResourceActionType, ActionType, "WORK_REQUEST_RESOURCE_ACTION_TYPE_")

FILTER_FIELDS = {
    "operation_type": FilterField(
        FieldKind.ENUM, frozenset(o.value for o in OperationType), "WORK_REQUEST_OPERATION_TYPE_"
    ),
    "status": FilterField(
        FieldKind.ENUM, frozenset(s.value for s in WorkRequestStatus), "WORK_REQUEST_STATUS_"
    ),
    "compartment_id": FilterField(FieldKind.STRING),
    "time_accepted": FilterField(FieldKind.TIMESTAMP),
    "percent_complete": FilterField(FieldKind.NUMBER),
    "created_by": FilterField(FieldKind.STRING),
}
DEFAULT_ORDER = OrderBy("time_accepted", descending=True)


def resource_to_proto(r: WorkRequestResource) -> pb.WorkRequestResource:
    return pb.WorkRequestResource(
        entity_type=r.entity_type.value,
        action_type=ACTION.to_proto(r.action_type),  # type: ignore[arg-type]
        identifier=r.identifier,
        entity_uri=r.entity_uri,
    )


def work_request_to_proto(
    wr: WorkRequest, *, resources: tuple[WorkRequestResource, ...] | None = None
) -> pb.WorkRequest:
    return pb.WorkRequest(
        id=wr.id,
        compartment_id=wr.compartment_id,
        operation_type=OPERATION.to_proto(wr.operation_type),  # type: ignore[arg-type]
        status=STATUS.to_proto(wr.status),  # type: ignore[arg-type]
        percent_complete=wr.percent_complete,
        time_accepted=timestamp(wr.time_accepted),
        time_started=timestamp(wr.time_started),
        time_finished=timestamp(wr.time_finished),
        resources=[
            resource_to_proto(r) for r in (wr.resources if resources is None else resources)
        ],
        revision=wr.revision,
        last_error=error_to_proto(wr.last_error) if wr.last_error else None,
        created_by=wr.created_by,
        reason=wr.reason,
    )


def log_to_proto(entry: LogEntry) -> pb.WorkRequestLogEntry:
    return pb.WorkRequestLogEntry(message=entry.message, timestamp=timestamp(entry.timestamp))


def error_to_proto(entry: ErrorEntry) -> pb.WorkRequestError:
    return pb.WorkRequestError(
        code=entry.code, message=entry.message, timestamp=timestamp(entry.timestamp)
    )


class _WorkRequestMessages:
    """Work request messages by (id, revision, what the caller is shown). Every
    committed change of a work request's visible fields gives it a new revision, so
    the key names one message: a work request read again (Get, List pages, polling
    clients) is converted once. Authorization happens before the cache is asked, on
    every call; a caller that may only list a work request gets it without its newest
    error (the service redacts it), and that is part of the key, so one caller's
    message never reaches another who may see less."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.messages: OrderedDict[tuple[str, int, bool], pb.WorkRequest] = OrderedDict()

    def get(self, wr: WorkRequest) -> pb.WorkRequest:
        key = (wr.id, wr.revision, wr.last_error is None)
        message = self.messages.get(key)
        if message is None:
            message = self.messages[key] = work_request_to_proto(wr)
            if len(self.messages) > self.size:
                self.messages.popitem(last=False)
        return message


class _ChangeCache:
    """The last few CHANGE events as messages. One change reaches every watcher of its
    work request as the same event, so it is converted once, not once per stream; a
    revision names exactly one change, so it is the key (snapshots are per watcher)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.messages: OrderedDict[int, pb.WatchWorkRequestResponse] = OrderedDict()

    def get(self, event: WorkRequestEvent) -> pb.WatchWorkRequestResponse:
        if event.snapshot:
            return event_to_proto(event)
        message = self.messages.get(event.revision)
        if message is None:
            message = self.messages[event.revision] = event_to_proto(event)
            if len(self.messages) > self.size:
                self.messages.popitem(last=False)
        return message


def event_to_proto(event: WorkRequestEvent) -> pb.WatchWorkRequestResponse:
    return pb.WatchWorkRequestResponse(
        revision=event.revision,
        event_type=(pb.WATCH_EVENT_TYPE_SNAPSHOT if event.snapshot else pb.WATCH_EVENT_TYPE_CHANGE),
        work_request=work_request_to_proto(event.work_request, resources=event.resources),
        log_entries=[log_to_proto(e) for e in event.logs],
        errors=[error_to_proto(e) for e in event.errors],
    )


class _SetChangeCache:
    """WatchWorkRequests' CHANGE messages, converted once for every stream that gets them
    the same way (a change is the same message unless one stream sees it leave its
    filter or may not read its logs)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.messages: OrderedDict[tuple[int, bool, bool], pb.WatchWorkRequestsResponse] = (
            OrderedDict()
        )

    def get(self, item: WorkRequestSetEvent) -> pb.WatchWorkRequestsResponse:
        if item.event is None or item.event.snapshot:
            return set_event_to_proto(item)
        key = (item.revision, item.left_filter, item.readable)
        message = self.messages.get(key)
        if message is None:
            message = self.messages[key] = set_event_to_proto(item)
            if len(self.messages) > self.size:
                self.messages.popitem(last=False)
        return message


def set_event_to_proto(item: WorkRequestSetEvent) -> pb.WatchWorkRequestsResponse:
    event = item.event
    if event is None:
        return pb.WatchWorkRequestsResponse(
            revision=item.revision, event_type=pb.WATCH_EVENT_TYPE_SYNCED
        )
    return pb.WatchWorkRequestsResponse(
        revision=item.revision,
        event_type=(pb.WATCH_EVENT_TYPE_SNAPSHOT if event.snapshot else pb.WATCH_EVENT_TYPE_CHANGE),
        work_request=work_request_to_proto(event.work_request, resources=event.resources),
        log_entries=[log_to_proto(e) for e in event.logs] if item.readable else [],
        errors=[error_to_proto(e) for e in event.errors] if item.readable else [],
        left_filter=item.left_filter,
    )


def _query(check: Validator, request: Any) -> WorkRequestQuery:
    """The set a ListWorkRequests or WatchWorkRequests request selects."""
    return WorkRequestQuery(
        compartment_id=check.compartment("compartment_id", request.compartment_id, required=False),
        resource_id=check.text("resource_id", request.resource_id, limit=64),
        resource_type=parse_entity_type(check, request.resource_type),
        statuses=check.enums("statuses", request.statuses, STATUS),
        filter=check.filter(request.filter, FILTER_FIELDS),
    )


MAX_WATCHED_IDS = 1000


def _work_request_ids(check: Validator, request: pb.WatchWorkRequestsRequest) -> frozenset[str]:
    ids = list(request.work_request_ids)
    if len(ids) > MAX_WATCHED_IDS:
        check.fail("work_request_ids", f"at most {MAX_WATCHED_IDS}; watch by filter instead")
        return frozenset()
    for i, wr_id in enumerate(ids):
        check.resource_id(f"work_request_ids[{i}]", wr_id, IdKind.WORK_REQUEST)
    return frozenset(ids)


def _work_request_id(request: Any) -> str:
    check = Validator()
    check.resource_id("work_request_id", request.work_request_id, IdKind.WORK_REQUEST)
    check.check()
    return str(request.work_request_id)


@servicer
class WorkRequestServicer(pb_grpc.WorkRequestServiceServicer):
    def __init__(self, service: WorkRequestService) -> None:
        self.service = service
        self._changes = _ChangeCache()
        self._set_changes = _SetChangeCache()
        self._messages = _WorkRequestMessages()

    async def GetWorkRequest(  # noqa: N802 (gRPC method names)
        self, request: pb.GetWorkRequestRequest, context: Any
    ) -> pb.GetWorkRequestResponse:
        wr = await self.service.get(_work_request_id(request))
        return pb.GetWorkRequestResponse(work_request=self._messages.get(wr))

    async def ListWorkRequests(  # noqa: N802
        self, request: pb.ListWorkRequestsRequest, context: Any
    ) -> pb.ListWorkRequestsResponse:
        check = Validator()
        query = replace(
            _query(check, request),
            order=check.order_by(request.order_by, ["time_accepted"], DEFAULT_ORDER),
            created_by=check.text("created_by", request.created_by, limit=1024),
        )
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_work_requests(query, page)
        return pb.ListWorkRequestsResponse(
            work_requests=[self._messages.get(w) for w in result.items],
            next_page_token=result.next_page_token,
        )

    async def ListWorkRequestErrors(  # noqa: N802
        self, request: pb.ListWorkRequestErrorsRequest, context: Any
    ) -> pb.ListWorkRequestErrorsResponse:
        check = Validator()
        check.resource_id("work_request_id", request.work_request_id, IdKind.WORK_REQUEST)
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_errors(request.work_request_id, page)
        return pb.ListWorkRequestErrorsResponse(
            errors=[error_to_proto(e) for e in result.items],
            next_page_token=result.next_page_token,
        )

    async def ListWorkRequestLogs(  # noqa: N802
        self, request: pb.ListWorkRequestLogsRequest, context: Any
    ) -> pb.ListWorkRequestLogsResponse:
        check = Validator()
        check.resource_id("work_request_id", request.work_request_id, IdKind.WORK_REQUEST)
        page = check.page(request.page_size, request.page_token)
        check.check()
        result = await self.service.list_logs(request.work_request_id, page)
        return pb.ListWorkRequestLogsResponse(
            log_entries=[log_to_proto(e) for e in result.items],
            next_page_token=result.next_page_token,
        )

    async def CancelWorkRequest(  # noqa: N802
        self, request: pb.CancelWorkRequestRequest, context: Any
    ) -> pb.CancelWorkRequestResponse:
        check = Validator()
        check.resource_id("work_request_id", request.work_request_id, IdKind.WORK_REQUEST)
        check.request_id("request_id", request.request_id)
        check.check()
        wr = await self.service.cancel(
            CancelWorkRequestCommand(request.work_request_id, request.request_id)
        )
        return pb.CancelWorkRequestResponse(work_request=work_request_to_proto(wr))

    async def WatchWorkRequest(  # noqa: N802
        self, request: pb.WatchWorkRequestRequest, context: Any
    ) -> AsyncIterator[pb.WatchWorkRequestResponse]:
        check = Validator()
        check.resource_id("work_request_id", request.work_request_id, IdKind.WORK_REQUEST)
        if request.after_revision < 0:
            check.fail("after_revision", "must not be negative")
        check.check()
        async for event in self.service.watch(request.work_request_id, request.after_revision):
            message = self._changes.get(event)
            del event  # an idle stream holds neither the event nor its message
            yield message
            del message

    async def WatchWorkRequests(  # noqa: N802
        self, request: pb.WatchWorkRequestsRequest, context: Any
    ) -> AsyncIterator[pb.WatchWorkRequestsResponse]:
        check = Validator()
        query = replace(_query(check, request), ids=_work_request_ids(check, request))
        if request.after_revision < 0:
            check.fail("after_revision", "must not be negative")
        check.check()
        async for item in self.service.watch_many(query, request.after_revision):
            yield self._set_changes.get(item)


def parse_entity_type(check: Validator, value: str) -> EntityType | None:
    if not value:
        return None
    try:
        return EntityType(value)
    except ValueError:
        check.fail("resource_type", f"use one of {', '.join(e.value for e in EntityType)}")
        return None
