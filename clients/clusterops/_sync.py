"""The blocking client is the asyncio client run on a private event loop thread.

Every sync namespace is a facade over its async namespace: each method is declared
once, on the async class, and the facade borrows it through a descriptor that keeps
its exact signature and docstring (`get = blocking(AsyncWorkRequests.get)`), so the
two clients cannot drift apart and no request building or error mapping is written
twice. Callbacks (`wait(on_event=...)`) run in the caller's thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from clusterops._pager import AsyncPager, Page

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _anext(iterator: AsyncIterator[T]) -> T:
    # Called on the loop thread so an async generator registers its finalizer there.
    return await iterator.__anext__()


class Portal:
    """An event loop on a daemon thread, and a way to run coroutines on it and wait."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="clusterops-client", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def call(self, awaitable: Awaitable[T]) -> T:
        """Run `awaitable` on the loop and return its result (or raise its exception)."""
        if self._closed:
            if isinstance(awaitable, Coroutine):
                awaitable.close()
            raise RuntimeError("the clusterops client is closed")
        if threading.current_thread() is self._thread:
            raise RuntimeError("the blocking client cannot be called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: stop the RPC too
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


class SyncIterator(Iterator[T]):
    """A blocking iterator over an async iterator running on the portal's loop."""

    def __init__(self, portal: Portal, iterator: AsyncIterator[T]) -> None:
        self._portal = portal
        self._iterator = iterator

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        try:
            return self._portal.call(_anext(self._iterator))
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Stop early (ends the underlying stream)."""
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            self._portal.call(aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Pager(Generic[T]):
    """The items of a list call, fetched page by page as you iterate.

    `for item in pager` yields every item across pages; `pager.pages()` yields whole
    pages. Each iteration starts again from the first page asked for.
    """

    def __init__(self, portal: Portal, pager: AsyncPager[T]) -> None:
        self._portal = portal
        self._pager = pager

    def __iter__(self) -> Iterator[T]:
        return SyncIterator(self._portal, aiter(self._pager))

    def pages(self) -> Iterator[Page[T]]:
        """Each page in turn, until the server returns no next_page_token."""
        return SyncIterator(self._portal, self._pager.pages())


class Facade(Generic[A]):
    """A sync namespace over the async namespace `A`."""

    def __init__(self, portal: Portal, wrapped: A) -> None:
        self._portal = portal
        self._async = wrapped


class _Borrowed(Generic[P, R]):
    """A method of the async namespace, offered blocking on the facade."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self._method = method
        self.__doc__ = method.__doc__
        # help() and IDEs show the facade's own signature: no `self`, no async return type.
        signature = inspect.signature(method)
        self._signature = signature.replace(
            parameters=list(signature.parameters.values())[1:],
            return_annotation=inspect.Signature.empty,
        )

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: Facade[Any], owner: type[Any]) -> Callable[P, R]: ...
    def __get__(self, obj: Facade[Any] | None, owner: type[Any]) -> Self | Callable[P, R]:
        if obj is None:
            return self
        method = self._method

        @functools.wraps(method)
        def bound(*args: P.args, **kwargs: P.kwargs) -> R:
            return self._adapt(obj._portal, method(obj._async, *args, **kwargs))

        del bound.__wrapped__
        bound.__signature__ = self._signature  # type: ignore[attr-defined]
        return bound

    def _adapt(self, portal: Portal, produced: Any) -> R:
        raise NotImplementedError


class blocking(_Borrowed[P, T]):  # noqa: N801 (used like a decorator)
    """`async def m(...) -> T` becomes `def m(...) -> T`."""

    def __init__(self, method: Callable[Concatenate[Any, P], Awaitable[T]]) -> None:
        super().__init__(method)

    def _adapt(self, portal: Portal, produced: Any) -> T:
        result: T = portal.call(produced)
        return result


class blocking_pager(_Borrowed[P, Pager[T]]):  # noqa: N801
    """`def m(...) -> AsyncPager[T]` becomes `def m(...) -> Pager[T]`."""

    def __init__(self, method: Callable[Concatenate[Any, P], AsyncPager[T]]) -> None:
        super().__init__(method)

    def _adapt(self, portal: Portal, produced: Any) -> Pager[T]:
        return Pager(portal, produced)


class blocking_iterator(_Borrowed[P, SyncIterator[T]]):  # noqa: N801
    """`def m(...) -> AsyncIterator[T]` becomes `def m(...) -> SyncIterator[T]`."""

    def __init__(self, method: Callable[Concatenate[Any, P], AsyncIterator[T]]) -> None:
        super().__init__(method)

    def _adapt(self, portal: Portal, produced: Any) -> SyncIterator[T]:
        return SyncIterator(portal, produced)
