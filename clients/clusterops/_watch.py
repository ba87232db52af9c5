"""Following a work request's watch stream across dropped connections and server restarts.

`follow` yields each event exactly once, in revision order, and ends after the terminal
event. UNAVAILABLE (a dropped connection, a server shutting down or restarting) is
answered by reconnecting with `after_revision` = the last revision seen, after a
backoff; OUT_OF_RANGE (history compacted, or a store that went back in time) by a
fresh watch, whose first event is a SNAPSHOT of the whole work request. Everything
else is raised. An overall deadline bounds the whole of it.

Each reconnection is logged (logger "clusterops.watch", INFO); the record's attributes
say what happened for a program that shows it (as the CLI does): `watch_action`
"reconnect" (after `attempt` failures, resuming after `revision`) or "restart" (from a
fresh snapshot), and `work_request_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

from clusterops._errors import DeadlineExceeded, OutOfRange, Unavailable
from clusterops._options import Metadata
from clusterops._retry import RetryPolicy
from clusterops._transport import Deadline, Transport
from clusterops.v1 import work_requests_pb2 as pb
from clusterops.v1 import work_requests_pb2_grpc as pb_grpc

logger = logging.getLogger("clusterops.watch")
logger.addHandler(logging.NullHandler())

TERMINAL = frozenset(
    {
        pb.WORK_REQUEST_STATUS_SUCCEEDED,
        pb.WORK_REQUEST_STATUS_FAILED,
        pb.WORK_REQUEST_STATUS_CANCELED,
    }
)


def is_terminal(work_request: pb.WorkRequest) -> bool:
    """Whether the work request has finished (SUCCEEDED, FAILED or CANCELED)."""
    return work_request.status in TERMINAL


async def follow(
    transport: Transport,
    stub: pb_grpc.WorkRequestServiceAsyncStub,
    work_request_id: str,
    *,
    after_revision: int,
    deadline: Deadline,
    retry: RetryPolicy,
    metadata: Metadata,
) -> AsyncGenerator[pb.WatchWorkRequestResponse, None]:
    cursor = after_revision
    failures = 0
    while True:
        request = pb.WatchWorkRequestRequest(work_request_id=work_request_id, after_revision=cursor)
        stream = transport.stream(
            stub.WatchWorkRequest, request, timeout=deadline.remaining(), metadata=metadata
        )
        try:
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if event.event_type == pb.WATCH_EVENT_TYPE_CHANGE and event.revision <= cursor:
                        continue  # already delivered before a reconnect
                    cursor = event.revision
                    failures = 0
                    yield event
                    if is_terminal(event.work_request):
                        return
            return  # resumed at or after the terminal change: nothing more will come
        except Unavailable:
            failures += 1
            delay = retry.backoff(failures)
            if not (retry.attempts_left(failures) and deadline.allows(delay)):
                raise
            logger.info(
                "watch of %s: connection lost; resuming from revision %d in %.1fs (attempt %d)",
                work_request_id,
                cursor,
                delay,
                failures,
                extra={
                    "watch_action": "reconnect",
                    "work_request_id": work_request_id,
                    "revision": cursor,
                    "attempt": failures,
                },
            )
            await asyncio.sleep(delay)
        except OutOfRange:
            if cursor == 0:
                raise
            logger.info(
                "watch of %s: revision %d can no longer be resumed; starting again from a snapshot",
                work_request_id,
                cursor,
                extra={
                    "watch_action": "restart",
                    "work_request_id": work_request_id,
                    "revision": cursor,
                    "attempt": 0,
                },
            )
            cursor = 0  # the history is gone: start again from the current state
        except DeadlineExceeded as error:
            if deadline.expired:
                raise DeadlineExceeded(
                    f"work request {work_request_id} did not finish in time "
                    f"(last revision seen: {cursor})",
                    reason="WAIT_TIMEOUT",
                    metadata={"work_request_id": work_request_id, "revision": str(cursor)},
                ) from error
            raise


async def follow_many(
    transport: Transport,
    stub: pb_grpc.WorkRequestServiceAsyncStub,
    request: pb.WatchWorkRequestsRequest,
    *,
    deadline: Deadline,
    retry: RetryPolicy,
    metadata: Metadata,
) -> AsyncGenerator[pb.WatchWorkRequestsResponse, None]:
    """WatchWorkRequests across dropped connections: each change once, in revision order.

    Resumes after the last SYNCED or CHANGE revision seen. A connection lost during the
    snapshot, or a revision that can no longer be resumed (OUT_OF_RANGE), starts again
    with a fresh snapshot: the caller sees SNAPSHOT events again, then SYNCED, and
    should rebuild its view from them. Runs until the caller stops or the deadline.
    """
    cursor = request.after_revision
    synced = cursor > 0
    failures = 0
    while True:
        attempt = pb.WatchWorkRequestsRequest()
        attempt.CopyFrom(request)
        attempt.after_revision = cursor if synced else 0
        stream = transport.stream(
            stub.WatchWorkRequests, attempt, timeout=deadline.remaining(), metadata=metadata
        )
        try:
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if event.event_type == pb.WATCH_EVENT_TYPE_SYNCED:
                        cursor, synced = event.revision, True
                    elif event.event_type == pb.WATCH_EVENT_TYPE_CHANGE:
                        if event.revision <= cursor:
                            continue  # already delivered before a reconnect
                        cursor = event.revision
                    failures = 0
                    yield event
            return  # the server ended the stream (it never does on its own)
        except Unavailable:
            failures += 1
            delay = retry.backoff(failures)
            if not (retry.attempts_left(failures) and deadline.allows(delay)):
                raise
            logger.info(
                "watch of many work requests: connection lost; resuming from revision %d "
                "in %.1fs (attempt %d)",
                cursor,
                delay,
                failures,
                extra={
                    "watch_action": "reconnect" if synced else "restart",
                    "work_request_id": "",
                    "revision": cursor,
                    "attempt": failures,
                },
            )
            await asyncio.sleep(delay)
        except OutOfRange:
            if not synced:
                raise
            logger.info(
                "watch of many work requests: revision %d can no longer be resumed; "
                "starting again from a snapshot",
                cursor,
                extra={
                    "watch_action": "restart",
                    "work_request_id": "",
                    "revision": cursor,
                    "attempt": 0,
                },
            )
            cursor, synced = 0, False
        except DeadlineExceeded as error:
            if deadline.expired:
                raise DeadlineExceeded(
                    f"the watch of many work requests ran out of time "
                    f"(last revision seen: {cursor})",
                    reason="WAIT_TIMEOUT",
                    metadata={"revision": str(cursor)},
                ) from error
            raise
