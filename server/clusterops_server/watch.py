"""Fan-out of work request events to watchers.

One reader per server follows the store's event log in revision order and hands
each event to the watchers of that work request, and to every filtered watch
(WatchWorkRequests) whose filter the work request matches now or matched just before
the change (so the watch learns that it left). Watchers never query the store while
they wait, so ten thousand idle watches cost memory, not queries; a filtered watch
keeps no state per work request, since each event says what it changed from. The reader
is woken by local commits (and on PostgreSQL by other replicas' notifications),
and also polls at a slow interval so a missed wake-up only delays, never loses.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections import defaultdict

from clusterops_server.domain.work_requests import WorkRequestEvent, WorkRequestQuery
from clusterops_server.store.uow import Store

log = logging.getLogger(__name__)


class SubscriptionClosed(Exception):
    """The server is shutting down (or shedding watchers): resume the watch elsewhere or later."""


def concerns(query: WorkRequestQuery, event: WorkRequestEvent) -> bool:
    """Whether a filtered watch gets `event`: its work request matches the query after
    the change, or matched before it (the change took it out). The event's work request
    must list all its resources (EventRepository.after(all_resources=True))."""
    wr = event.work_request
    return query.matches(wr) or (event.previous is not None and query.matches(wr, event.previous))


class Subscription:
    """One watch's place in the hub: the events delivered to it and not yet taken.

    Lean on purpose, since ten thousand idle watches are ten thousand of these: slots,
    no queue until the first event, and a future only while the watch waits."""

    __slots__ = (
        "_events",
        "_waiter",
        "capacity",
        "closed",
        "overflowed",
        "query",
        "start",
        "work_request_id",
    )

    def __init__(
        self, work_request_id: str, capacity: int, query: WorkRequestQuery | None = None
    ) -> None:
        self.work_request_id = work_request_id
        # A filtered watch's query (with the caller's visibility); None for one work request.
        self.query = query
        # The hub's cursor when it subscribed: every later event is delivered (or
        # `overflowed` is set); earlier ones are the watcher's to read from the store.
        self.start = 0
        self.capacity = capacity
        self._events: collections.deque[WorkRequestEvent] | None = None
        self._waiter: asyncio.Future[None] | None = None
        # Set when events were dropped because the watcher fell behind.
        self.overflowed = False
        self.closed = False

    def deliver(self, event: WorkRequestEvent) -> None:
        if self._events is None:
            self._events = collections.deque()
        if len(self._events) >= self.capacity:
            self.overflowed = True
        else:
            self._events.append(event)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> WorkRequestEvent | None:
        """The next delivered event; None when events were dropped (catch up from the store)."""
        while True:
            if self._events:
                return self._events.popleft()
            if self.overflowed:
                self.overflowed = False
                return None
            if self.closed:
                raise SubscriptionClosed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class WatchHub:
    def __init__(
        self,
        store: Store,
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        queue_capacity: int = 256,
    ) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.queue_capacity = queue_capacity
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._filtered: set[Subscription] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.cursor = 0
        self.closing = False

    @property
    def watchers(self) -> int:
        return sum(len(s) for s in self._subscriptions.values()) + len(self._filtered)

    async def start(self) -> None:
        async with self.store.read() as uow:
            self.cursor = (await uow.events.revision_range()).head
        self._task = asyncio.create_task(self._follow(), name="watch-hub")

    async def close(self) -> None:
        """End every watch (they answer UNAVAILABLE with their resume revision) and stop."""
        self.closing = True
        self.drop_watchers()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def notify(self, revision: int = 0) -> None:
        """A commit up to `revision` happened here or on another replica (0: unknown)."""
        if revision and revision <= self.cursor:
            return  # already read (a replica hears its own commits twice on PostgreSQL)
        self._wakeup.set()

    def drop_watchers(self) -> None:
        """End every open watch (UNAVAILABLE with its resume revision); clients reconnect.
        For shutdown, and for shedding a replica's watchers onto the others."""
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.close()
        for subscription in self._filtered:
            subscription.close()

    def subscribe(self, work_request_id: str) -> Subscription:
        subscription = Subscription(work_request_id, self.queue_capacity)
        subscription.start = self.cursor
        if self.closing:
            subscription.close()
        self._subscriptions[work_request_id].add(subscription)
        return subscription

    def subscribe_filtered(self, query: WorkRequestQuery) -> Subscription:
        """Every event after the hub's cursor (`subscription.start`) that `concerns` the query."""
        subscription = Subscription("", self.queue_capacity, query)
        subscription.start = self.cursor
        if self.closing:
            subscription.close()
        self._filtered.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription.query is not None:
            self._filtered.discard(subscription)
            return
        subscriptions = self._subscriptions.get(subscription.work_request_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._subscriptions[subscription.work_request_id]

    async def _follow(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # lands as the wake-up fires, and close() would then wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the event log failed; will retry")

    async def _drain(self) -> None:
        while True:
            if not self._subscriptions and not self._filtered:
                async with self.store.read() as uow:
                    head = (await uow.events.revision_range()).head
                # Checked again after the read: a watcher that subscribed meanwhile reads
                # its own history after this point, so skipping to `head` loses nothing.
                if not self._subscriptions and not self._filtered:
                    self.cursor = max(self.cursor, head)
                    return
            async with self.store.read() as uow:
                # Filters on resources need every resource of each work request.
                events = await uow.events.after(
                    self.cursor, limit=self.batch_size, all_resources=bool(self._filtered)
                )
            for event in events:
                self.cursor = event.revision
                for subscription in list(self._subscriptions.get(event.work_request.id, ())):
                    subscription.deliver(event)
                # Read once, matched against every filter.
                for subscription in list(self._filtered):
                    assert subscription.query is not None
                    if concerns(subscription.query, event):
                        subscription.deliver(event)
            if len(events) < self.batch_size:
                return
