"""`client.work_requests`: read, list, cancel and follow work requests."""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable

from clusterops._enums import EnumArg, enum_values
from clusterops._errors import DeadlineExceeded, NotFound
from clusterops._options import DEFAULT, CallOptions, Metadata, Retry, Timeout
from clusterops._pager import AsyncPager, paged
from clusterops._retry import RECONNECT
from clusterops._sync import Facade, blocking, blocking_iterator, blocking_pager
from clusterops._transport import Deadline, Transport
from clusterops._watch import follow, follow_many, is_terminal
from clusterops.v1 import work_requests_pb2 as pb
from clusterops.v1 import work_requests_pb2_grpc as pb_grpc

WatchEvent = pb.WatchWorkRequestResponse
WatchManyEvent = pb.WatchWorkRequestsResponse
AsyncOnEvent = Callable[[WatchEvent], Awaitable[object] | object]
OnEvent = Callable[[WatchEvent], object]


def idempotency_key(given: str | None) -> str:
    """The caller's idempotency key, or a fresh one so the mutation is safe to retry."""
    return given or str(uuid.uuid4())


class AsyncWorkRequests:
    """Work requests: every asynchronous mutation's record of progress."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._stub = pb_grpc.WorkRequestServiceStub(transport.channel)

    async def get(
        self,
        work_request_id: str,
        *,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.WorkRequest:
        """Get one work request. Raises NotFound if there is none with this id."""
        response = await self._transport.unary(
            self._stub.GetWorkRequest,
            pb.GetWorkRequestRequest(work_request_id=work_request_id),
            CallOptions(timeout, metadata, retry),
            read=True,
        )
        return response.work_request

    def list(
        self,
        *,
        compartment_id: str = "",
        resource_id: str = "",
        resource_type: str = "",
        statuses: Iterable[EnumArg] = (),
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.WorkRequest]:
        """Work requests, newest first unless `order_by` says otherwise, fetched lazily.

        `statuses` are names such as "IN_PROGRESS"; `filter` is an AIP-160 expression
        such as ``operation_type = NODEPOOL_CREATE AND status != FAILED``. `timeout`
        applies to each page's call.
        """
        request = pb.ListWorkRequestsRequest(
            compartment_id=compartment_id,
            resource_id=resource_id,
            resource_type=resource_type,
            statuses=enum_values(pb.WorkRequestStatus, statuses, argument="statuses"),
            filter=filter,
            order_by=order_by,
            page_size=page_size,
            page_token=page_token,
        )
        return paged(
            self._transport,
            self._stub.ListWorkRequests,
            request,
            CallOptions(timeout, metadata, retry),
            lambda response: response.work_requests,
        )

    def list_logs(
        self,
        work_request_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.WorkRequestLogEntry]:
        """The log entries a work request recorded, oldest first, fetched lazily."""
        return paged(
            self._transport,
            self._stub.ListWorkRequestLogs,
            pb.ListWorkRequestLogsRequest(
                work_request_id=work_request_id, page_size=page_size, page_token=page_token
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.log_entries,
        )

    def list_errors(
        self,
        work_request_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncPager[pb.WorkRequestError]:
        """The errors a work request recorded, oldest first, fetched lazily."""
        return paged(
            self._transport,
            self._stub.ListWorkRequestErrors,
            pb.ListWorkRequestErrorsRequest(
                work_request_id=work_request_id, page_size=page_size, page_token=page_token
            ),
            CallOptions(timeout, metadata, retry),
            lambda response: response.errors,
        )

    async def cancel(
        self,
        work_request_id: str,
        *,
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.WorkRequest:
        """Ask a work request to stop; it goes CANCELING, then CANCELED once undone.

        Raises FailedPrecondition if it has already finished.
        """
        response = await self._transport.unary(
            self._stub.CancelWorkRequest,
            pb.CancelWorkRequestRequest(
                work_request_id=work_request_id, request_id=idempotency_key(request_id)
            ),
            CallOptions(timeout, metadata, retry),
            read=False,
        )
        return response.work_request

    def watch(
        self,
        work_request_id: str,
        *,
        after_revision: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Each change of a work request, in revision order, ending after the terminal one.

        The first event is a SNAPSHOT of the whole work request (unless resuming after
        `after_revision`). A dropped connection or a restarting server is resumed from
        the last revision seen, with backoff (`retry`; by default until `timeout`), so
        no event is missed or repeated. If the history needed to resume has been
        compacted, the watch starts again with a fresh SNAPSHOT. `timeout` (seconds,
        None: no limit) bounds the whole watch; running out raises DeadlineExceeded.
        """
        return follow(
            self._transport,
            self._stub,
            work_request_id,
            after_revision=after_revision,
            deadline=Deadline(timeout),
            retry=self._transport.policy(retry, default=RECONNECT),
            metadata=metadata,
        )

    async def wait(
        self,
        work_request_id: str,
        *,
        timeout: float | None = None,
        on_event: AsyncOnEvent | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.WorkRequest:
        """Follow a work request until it finishes and return it (SUCCEEDED, FAILED or
        CANCELED; this does not raise for FAILED).

        `on_event` (a function or a coroutine function) sees each watch event exactly
        once: percent complete, new log entries and errors. Reconnects as `watch` does;
        raises DeadlineExceeded after `timeout` seconds (None: no limit).
        """
        events = self.watch(work_request_id, timeout=timeout, metadata=metadata, retry=retry)
        async with contextlib.aclosing(events):
            async for event in events:
                if on_event is not None:
                    outcome = on_event(event)
                    if inspect.isawaitable(outcome):
                        await outcome
        # A CHANGE event carries only the resources it altered: read the whole record.
        return await self.get(work_request_id, metadata=metadata)

    def watch_many(
        self,
        *,
        compartment_id: str = "",
        resource_id: str = "",
        resource_type: str = "",
        statuses: Iterable[EnumArg] = (),
        filter: str = "",
        work_request_ids: Iterable[str] = (),
        after_revision: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncGenerator[WatchManyEvent, None]:
        """Every work request that matches, then each change, for as long as you iterate.

        The filters are those of `list` (and `work_request_ids`). Without
        `after_revision`: a SNAPSHOT event per matching work request, then a SYNCED
        event, then CHANGE events in revision order; with it, exactly the changes after
        it. A change that takes a work request out of the filter comes with
        `left_filter` set. A dropped connection or a restarting server is resumed from
        the last SYNCED or CHANGE revision, so no change is missed or repeated; if the
        history needed is gone (or the connection dropped during the snapshot), the
        watch starts again with SNAPSHOT events. `timeout` (seconds, None: no limit)
        bounds the whole watch.
        """
        request = pb.WatchWorkRequestsRequest(
            compartment_id=compartment_id,
            resource_id=resource_id,
            resource_type=resource_type,
            statuses=enum_values(pb.WorkRequestStatus, statuses, argument="statuses"),
            filter=filter,
            work_request_ids=list(work_request_ids),
            after_revision=after_revision,
        )
        return follow_many(
            self._transport,
            self._stub,
            request,
            deadline=Deadline(timeout),
            retry=self._transport.policy(retry, default=RECONNECT),
            metadata=metadata,
        )

    async def wait_all(
        self,
        work_request_ids: Iterable[str],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> dict[str, pb.WorkRequest]:
        """Wait until every one of these work requests (at most 1000) has finished, through
        one stream; return each as it ended (SUCCEEDED, FAILED with its `last_error`, or
        CANCELED), by id in the order given. Raises NotFound naming the ids that do not
        exist (or that you may not see), DeadlineExceeded after `timeout` seconds (None:
        no limit).
        """
        ids = list(dict.fromkeys(work_request_ids))
        latest: dict[str, pb.WorkRequest] = {}
        if not ids:
            return {}
        events = self.watch_many(
            work_request_ids=ids, timeout=timeout, metadata=metadata, retry=retry
        )
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.event_type == pb.WATCH_EVENT_TYPE_SNAPSHOT:
                        latest[event.work_request.id] = event.work_request
                    elif event.event_type == pb.WATCH_EVENT_TYPE_CHANGE:
                        latest[event.work_request.id] = _merged(
                            latest.get(event.work_request.id), event.work_request
                        )
                    elif missing := [i for i in ids if i not in latest]:
                        raise NotFound(
                            f"no work request {', '.join(missing)}",
                            reason="NOT_FOUND",
                            metadata={"work_request_ids": ",".join(missing)},
                            resource_type="work request",
                            resource_name=missing[0],
                        )
                    if len(latest) == len(ids) and all(map(is_terminal, latest.values())):
                        return {i: latest[i] for i in ids}
        except DeadlineExceeded as error:
            pending = [i for i in ids if i not in latest or not is_terminal(latest[i])]
            raise DeadlineExceeded(
                f"{len(pending)} of {len(ids)} work requests did not finish in time: "
                + ", ".join(pending),
                reason="WAIT_TIMEOUT",
                metadata={"work_request_ids": ",".join(pending)},
            ) from error
        raise AssertionError("the watch ended before the work requests did")  # pragma: no cover


def _merged(known: pb.WorkRequest | None, change: pb.WorkRequest) -> pb.WorkRequest:
    """A CHANGE's work request (which lists only the resources it altered) over the
    record known so far."""
    merged = pb.WorkRequest()
    merged.CopyFrom(change)
    if known is None:
        return merged
    resources = {(r.entity_type, r.identifier): r for r in known.resources}
    resources.update({(r.entity_type, r.identifier): r for r in change.resources})
    del merged.resources[:]
    merged.resources.extend(resources.values())
    if not merged.HasField("last_error") and known.HasField("last_error"):
        merged.last_error.CopyFrom(known.last_error)
    return merged


class WorkRequests(Facade[AsyncWorkRequests]):
    """Work requests: every asynchronous mutation's record of progress."""

    get = blocking(AsyncWorkRequests.get)
    list = blocking_pager(AsyncWorkRequests.list)
    list_logs = blocking_pager(AsyncWorkRequests.list_logs)
    list_errors = blocking_pager(AsyncWorkRequests.list_errors)
    cancel = blocking(AsyncWorkRequests.cancel)
    watch = blocking_iterator(AsyncWorkRequests.watch)
    watch_many = blocking_iterator(AsyncWorkRequests.watch_many)
    wait_all = blocking(AsyncWorkRequests.wait_all)

    def wait(
        self,
        work_request_id: str,
        *,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> pb.WorkRequest:
        """Follow a work request until it finishes and return it (SUCCEEDED, FAILED or
        CANCELED; this does not raise for FAILED).

        `on_event` is called in your thread with each watch event, exactly once:
        percent complete, new log entries and errors. A dropped connection or a
        restarting server is resumed without losing or repeating an event; raises
        DeadlineExceeded after `timeout` seconds (None: no limit).
        """
        with self.watch(work_request_id, timeout=timeout, metadata=metadata, retry=retry) as events:
            for event in events:
                if on_event is not None:
                    on_event(event)
        return self.get(work_request_id, metadata=metadata)
