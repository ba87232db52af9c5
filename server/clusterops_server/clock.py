"""Injected time: every wait and schedule in the service goes through a Clock.

The server uses SystemClock. Tests use FakeClock, whose time moves only when the test
advances it, so twelve hours of reconciliation run in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, when: datetime) -> None: ...


class SystemClock:
    """Wall time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: datetime) -> None:
        await self.sleep((when - self.now()).total_seconds())


class FakeClock:
    """A clock that stands still until advanced.

    Sleepers are kept in deadline order; `advance` moves time forward and wakes every
    sleeper whose deadline has come. `wait_for_sleepers` lets a test wait, by event
    rather than by sleeping, until the code under test has parked on the clock.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._heap: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._parked = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + timedelta(seconds=max(0.0, seconds)))

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (when, next(self._seq), future))
        async with self._parked:
            self._parked.notify_all()
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def pending(self) -> list[datetime]:
        """Deadlines of the sleepers still waiting, earliest first."""
        return sorted(when for when, _, fut in self._heap if not fut.done())

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper that is due."""
        self.advance_to(self._now + timedelta(seconds=seconds))

    def advance_to(self, when: datetime) -> None:
        if when > self._now:
            self._now = when
        while self._heap and self._heap[0][0] <= self._now:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)

    async def wait_for_sleepers(self, count: int = 1, *, within: float = 10.0) -> None:
        """Wait (in real time, at most `within` seconds) until `count` sleepers are parked."""

        async def parked() -> None:
            async with self._parked:
                await self._parked.wait_for(lambda: len(self.pending()) >= count)

        await asyncio.wait_for(parked(), within)

    async def wait_for_sleeper_until(self, when: datetime, *, within: float = 10.0) -> None:
        """Wait until some sleeper is parked with a deadline at or before `when`."""

        async def parked() -> None:
            async with self._parked:
                await self._parked.wait_for(
                    lambda: any(deadline <= when for deadline in self.pending())
                )

        await asyncio.wait_for(parked(), within)
