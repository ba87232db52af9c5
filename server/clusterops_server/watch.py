"""Fan-out of work request events to watchers.

One reader per server follows the store's event log in revision order and hands
each event to the watchers of that work request. Watchers never query the store
while they wait, so ten thousand idle watches cost memory, not queries. The reader
is woken by local commits (and on PostgreSQL by other replicas' notifications),
and also polls at a slow interval so a missed wake-up only delays, never loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from clusterops_server.domain.work_requests import WorkRequestEvent
from clusterops_server.store.uow import Store

log = logging.getLogger(__name__)


class SubscriptionClosed(Exception):
    """The server is shutting down: resume the watch elsewhere or later."""


class Subscription:
    def __init__(self, work_request_id: str, capacity: int) -> None:
        self.work_request_id = work_request_id
        self._queue: asyncio.Queue[WorkRequestEvent] = asyncio.Queue(capacity)
        self._signal = asyncio.Event()
        # Set when events were dropped because the watcher fell behind.
        self.overflowed = False
        self.closed = False

    def deliver(self, event: WorkRequestEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
        self._signal.set()

    def close(self) -> None:
        self.closed = True
        self._signal.set()

    async def next(self) -> WorkRequestEvent | None:
        """The next delivered event; None when events were dropped (catch up from the store)."""
        while True:
            if not self._queue.empty():
                return self._queue.get_nowait()
            if self.overflowed:
                self.overflowed = False
                return None
            if self.closed:
                raise SubscriptionClosed
            self._signal.clear()
            await self._signal.wait()


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
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.cursor = 0
        self.closing = False

    @property
    def watchers(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())

    async def start(self) -> None:
        async with self.store.read() as uow:
            self.cursor = (await uow.events.revision_range()).head
        self._task = asyncio.create_task(self._follow(), name="watch-hub")

    async def close(self) -> None:
        """End every watch (they answer UNAVAILABLE with their resume revision) and stop."""
        self.closing = True
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def notify(self, revision: int = 0) -> None:
        """A commit up to `revision` happened here or on another replica (0: unknown)."""
        if revision and revision <= self.cursor:
            return  # already read (a replica hears its own commits twice on PostgreSQL)
        self._wakeup.set()

    def subscribe(self, work_request_id: str) -> Subscription:
        subscription = Subscription(work_request_id, self.queue_capacity)
        if self.closing:
            subscription.close()
        self._subscriptions[work_request_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
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
            if not self._subscriptions:
                async with self.store.read() as uow:
                    head = (await uow.events.revision_range()).head
                # Checked again after the read: a watcher that subscribed meanwhile reads
                # its own history after this point, so skipping to `head` loses nothing.
                if not self._subscriptions:
                    self.cursor = max(self.cursor, head)
                    return
            async with self.store.read() as uow:
                events = await uow.events.after(self.cursor, limit=self.batch_size)
            for event in events:
                self.cursor = event.revision
                for subscription in list(self._subscriptions.get(event.work_request.id, ())):
                    subscription.deliver(event)
            if len(events) < self.batch_size:
                return
