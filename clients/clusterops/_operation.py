"""Operation handles: what every mutation returns (in the manner of a Temporal workflow handle).

A handle names the work request the mutation started and holds the resource as the
mutation returned it; `result()` waits for the work request and returns the resource
as it is afterwards (or raises OperationFailed / OperationCanceled).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from clusterops._errors import OperationCanceled, OperationFailed
from clusterops._options import DEFAULT, Metadata, Retry, Timeout
from clusterops._sync import Facade, Portal, _Borrowed, blocking, blocking_iterator
from clusterops._work_requests import (
    AsyncOnEvent,
    AsyncWorkRequests,
    OnEvent,
    WatchEvent,
    WorkRequests,
)
from clusterops.v1 import work_requests_pb2 as wr_pb

T = TypeVar("T")
P = ParamSpec("P")


class AsyncOperation(Generic[T]):
    """A running operation: its work request, and the resource it creates or changes."""

    def __init__(
        self,
        work_requests: AsyncWorkRequests,
        work_request: wr_pb.WorkRequest,
        resource: T,
        fetch: Callable[[], Awaitable[T]] | None = None,
    ) -> None:
        self._work_requests = work_requests
        self._work_request = work_request
        self._resource = resource
        self._fetch = fetch

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    @property
    def id(self) -> str:
        """The work request's id."""
        return self._work_request.id

    @property
    def work_request(self) -> wr_pb.WorkRequest:
        """The work request as last read (at creation, or by refresh(), wait() or result())."""
        return self._work_request

    @property
    def resource(self) -> T:
        """The resource as the mutation returned it (before the operation ran)."""
        return self._resource

    async def refresh(
        self, *, timeout: Timeout = DEFAULT, metadata: Metadata = (), retry: Retry = DEFAULT
    ) -> wr_pb.WorkRequest:
        """Read the work request again."""
        self._work_request = await self._work_requests.get(
            self.id, timeout=timeout, metadata=metadata, retry=retry
        )
        return self._work_request

    def watch(
        self,
        *,
        after_revision: int = 0,
        timeout: float | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> AsyncGenerator[WatchEvent, None]:
        """The work request's events until it finishes (see WorkRequests.watch)."""
        return self._work_requests.watch(
            self.id, after_revision=after_revision, timeout=timeout, metadata=metadata, retry=retry
        )

    async def wait(
        self,
        *,
        timeout: float | None = None,
        on_event: AsyncOnEvent | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> wr_pb.WorkRequest:
        """Wait until the work request finishes and return it, whatever its outcome."""
        self._work_request = await self._work_requests.wait(
            self.id, timeout=timeout, on_event=on_event, metadata=metadata, retry=retry
        )
        return self._work_request

    async def result(
        self,
        *,
        timeout: float | None = None,
        on_event: AsyncOnEvent | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> T:
        """Wait until the work request finishes; return the resource as it is then.

        Raises OperationFailed (with the work request's errors) if it FAILED,
        OperationCanceled if it was CANCELED, DeadlineExceeded after `timeout` seconds.
        """
        work_request = await self.wait(
            timeout=timeout, on_event=on_event, metadata=metadata, retry=retry
        )
        return await self._outcome(work_request, metadata)

    async def cancel(
        self,
        *,
        request_id: str | None = None,
        timeout: Timeout = DEFAULT,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> wr_pb.WorkRequest:
        """Ask the operation to stop (see WorkRequests.cancel)."""
        self._work_request = await self._work_requests.cancel(
            self.id, request_id=request_id, timeout=timeout, metadata=metadata, retry=retry
        )
        return self._work_request

    async def _outcome(self, work_request: wr_pb.WorkRequest, metadata: Metadata) -> T:
        if work_request.status == wr_pb.WORK_REQUEST_STATUS_FAILED:
            errors = [e async for e in self._work_requests.list_errors(self.id, metadata=metadata)]
            raise OperationFailed(work_request, errors)
        if work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED:
            raise OperationCanceled(work_request)
        if self._fetch is None:
            return self._resource
        return await self._fetch()


class Operation(Facade[AsyncOperation[T]]):
    """A running operation: its work request, and the resource it creates or changes."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    @property
    def id(self) -> str:
        """The work request's id."""
        return self._async.id

    @property
    def work_request(self) -> wr_pb.WorkRequest:
        """The work request as last read (at creation, or by refresh(), wait() or result())."""
        return self._async.work_request

    @property
    def resource(self) -> T:
        """The resource as the mutation returned it (before the operation ran)."""
        return self._async.resource

    refresh = blocking(AsyncOperation.refresh)
    cancel = blocking(AsyncOperation.cancel)
    watch = blocking_iterator(AsyncOperation.watch)

    def wait(
        self,
        *,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> wr_pb.WorkRequest:
        """Wait until the work request finishes and return it, whatever its outcome.

        `on_event` is called in your thread with each watch event, exactly once.
        """
        work_requests = WorkRequests(self._portal, self._async._work_requests)
        work_request = work_requests.wait(
            self.id, timeout=timeout, on_event=on_event, metadata=metadata, retry=retry
        )
        self._async._work_request = work_request
        return work_request

    def result(
        self,
        *,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
        metadata: Metadata = (),
        retry: Retry = DEFAULT,
    ) -> T:
        """Wait until the work request finishes; return the resource as it is then.

        Raises OperationFailed (with the work request's errors) if it FAILED,
        OperationCanceled if it was CANCELED, DeadlineExceeded after `timeout` seconds.
        """
        work_request = self.wait(timeout=timeout, on_event=on_event, metadata=metadata, retry=retry)
        return self._portal.call(self._async._outcome(work_request, metadata))


class blocking_operation(_Borrowed[P, Operation[T]]):  # noqa: N801 (used like a decorator)
    """`async def m(...) -> AsyncOperation[T]` becomes `def m(...) -> Operation[T]`."""

    def __init__(self, method: Callable[Concatenate[Any, P], Awaitable[AsyncOperation[T]]]) -> None:
        super().__init__(method)

    def _adapt(self, portal: Portal, produced: Any) -> Operation[T]:
        return Operation(portal, portal.call(produced))
