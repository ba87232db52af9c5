"""Test helpers: rich error details, watching to the end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
from clusterops.v1 import work_requests_pb2 as wr_pb
from google.rpc import error_details_pb2, status_pb2

from tests.conftest import Stubs


@dataclass
class Details:
    code: grpc.StatusCode
    message: str
    error_info: error_details_pb2.ErrorInfo | None = None
    bad_request: error_details_pb2.BadRequest | None = None
    precondition: error_details_pb2.PreconditionFailure | None = None
    resource_info: error_details_pb2.ResourceInfo | None = None
    fields: list[str] = field(default_factory=list)


def details_of(error: grpc.aio.AioRpcError) -> Details:
    """Decode the google.rpc.Status the server attached to a failed call."""
    found = Details(error.code(), error.details() or "")
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for packed in status.details:
            for attr, kind in (
                ("error_info", error_details_pb2.ErrorInfo),
                ("bad_request", error_details_pb2.BadRequest),
                ("precondition", error_details_pb2.PreconditionFailure),
                ("resource_info", error_details_pb2.ResourceInfo),
            ):
                if packed.Is(kind.DESCRIPTOR):
                    message = kind()
                    packed.Unpack(message)
                    setattr(found, attr, message)
    if found.bad_request is not None:
        found.fields = [v.field for v in found.bad_request.field_violations]
    return found


async def watch_to_end(
    stubs: Stubs, work_request_id: str, *, after_revision: int = 0, within: float = 20.0
) -> list[wr_pb.WatchWorkRequestResponse]:
    """Every event of a watch until the server ends the stream."""

    async def collect() -> list[wr_pb.WatchWorkRequestResponse]:
        call = stubs.work_requests.WatchWorkRequest(
            wr_pb.WatchWorkRequestRequest(
                work_request_id=work_request_id, after_revision=after_revision
            )
        )
        return [event async for event in call]

    return await asyncio.wait_for(collect(), within)


TERMINAL = {
    wr_pb.WORK_REQUEST_STATUS_SUCCEEDED,
    wr_pb.WORK_REQUEST_STATUS_FAILED,
    wr_pb.WORK_REQUEST_STATUS_CANCELED,
}


async def next_set_event(call: Any, within: float = 10.0) -> wr_pb.WatchWorkRequestsResponse:
    """A WatchWorkRequests stream's next event, which must come `within` seconds."""
    event = await asyncio.wait_for(call.read(), within)
    assert isinstance(event, wr_pb.WatchWorkRequestsResponse), "the stream ended"
    return event
