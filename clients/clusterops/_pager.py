"""Lazy iteration over list RPCs: the next page is fetched only when the last one is used up."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import grpc

from clusterops._options import CallOptions
from clusterops._transport import Transport

T = TypeVar("T")


class _PagedRequest(Protocol):
    page_token: str


class _PagedResponse(Protocol):
    @property
    def next_page_token(self) -> str: ...


Req = TypeVar("Req", bound=_PagedRequest)
Resp = TypeVar("Resp", bound=_PagedResponse)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items and the token of the next page ("" on the last).

    `total_count` is how many items match across all pages, for lists that say
    (orchestration operations, as KEB's totalCount); None for the others.
    """

    items: tuple[T, ...]
    next_page_token: str
    total_count: int | None = None


class AsyncPager(Generic[T]):
    """The items of a list call, fetched page by page as you iterate.

    `async for item in pager` yields every item across pages; `pager.pages()` yields
    whole pages. Each iteration starts again from the first page asked for.
    """

    def __init__(self, fetch: Callable[[str], Awaitable[Page[T]]], page_token: str = "") -> None:
        self._fetch = fetch
        self._first_token = page_token

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _items(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Each page in turn, until the server returns no next_page_token."""
        token = self._first_token
        while True:
            page = await self._fetch(token)
            yield page
            if not page.next_page_token:
                return
            token = page.next_page_token


def paged(
    transport: Transport,
    method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
    request: Req,
    options: CallOptions,
    items: Callable[[Resp], Iterable[T]],
    total: Callable[[Resp], int] | None = None,
) -> AsyncPager[T]:
    """A pager over a list RPC; `request` is already validated, `items` picks the results
    (and `total` the total count, for lists that report one)."""

    async def fetch(token: str) -> Page[T]:
        page_request = copy.deepcopy(request)
        page_request.page_token = token
        response = await transport.unary(method, page_request, options, read=True)
        return Page(
            tuple(items(response)),
            response.next_page_token,
            total(response) if total is not None else None,
        )

    return AsyncPager(fetch, request.page_token)
