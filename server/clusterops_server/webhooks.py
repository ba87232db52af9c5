"""Webhook deliveries: each subscription's changes POSTed in revision order, at least once.

Replicas share subscriptions with leases: a replica delivers only the subscriptions it
holds, renews each lease while it works, and takes over one whose lease lapsed (its
holder crashed). Each held subscription has a task of its own that reads the event log
from the subscription's durable cursor (never the watch hub: a slow receiver never
slows watch streams, and nothing here is on the engine's path), POSTs one CloudEvent
per change that concerns it, and moves the cursor only after a 2xx. A failed POST is
retried after a capped exponential backoff with jitter on the injectable clock; a
subscription failing for `suspend_after` is suspended with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
from collections.abc import Callable
from datetime import datetime

import httpx

from clusterops_server.clock import Clock
from clusterops_server.domain.notifications import (
    Subscription,
    SubscriptionState,
    WebhookSettings,
)
from clusterops_server.domain.work_requests import (
    WorkRequestEvent,
    WorkRequestQuery,
    WorkRequestSetEvent,
)
from clusterops_server.store.uow import Store
from clusterops_server.watch import concerns

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Clusterops-Signature"
CONTENT_TYPE = "application/cloudevents+json"
_BATCH = 200

Render = Callable[[Subscription, WorkRequestSetEvent, datetime], bytes]
QueryOf = Callable[[Subscription], WorkRequestQuery]


def signature(secret: str, body: bytes) -> str:
    """The header value: HMAC-SHA256 of the exact body under the subscription's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDispatcher:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: WebhookSettings,
        *,
        owner: str,
        render: Render,
        query_of: QueryOf,
        poll_seconds: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.owner = owner
        self.render = render
        self.query_of = query_of
        self.poll_seconds = poll_seconds
        self.rng = rng or random.Random()
        self.workers: dict[str, asyncio.Task[None]] = {}
        # When each held lease was last renewed (on the injectable clock).
        self._renewed: dict[str, datetime] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.settings.request_timeout)
        self._task = asyncio.create_task(self._claim_forever(), name="webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self.workers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Leases are left to lapse: another replica takes over, or this one on restart.
        if self._http is not None:
            await self._http.aclose()

    def wake(self, _revision: int = 0) -> None:
        """New events were committed (here or on another replica)."""
        self._wakeup.set()

    async def _claim_forever(self) -> None:
        while True:
            try:
                await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming webhook subscriptions failed; will retry")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()

    async def _claim(self) -> None:
        now = self.clock.now()
        # A read first: an idle replica looks for work without taking the write lock.
        async with self.store.read() as uow:
            claimable = await uow.subscriptions.claimable(self.owner, now, limit=100)
        if not set(claimable) - {i for i, t in self.workers.items() if not t.done()}:
            return
        async with self.store.write() as uow:
            claimed = await uow.subscriptions.claim(
                self.owner, now, now + self.settings.lease, limit=100
            )
            await uow.commit()
        for subscription_id in claimed:
            worker = self.workers.get(subscription_id)
            if worker is None or worker.done():
                self.workers[subscription_id] = asyncio.create_task(
                    self._deliver_forever(subscription_id), name=f"webhook-{subscription_id}"
                )

    async def _deliver_forever(self, subscription_id: str) -> None:
        try:
            while await self._step(subscription_id):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering to subscription %s failed; will retry", subscription_id)
        finally:
            self.workers.pop(subscription_id, None)

    async def _step(self, subscription_id: str) -> bool:
        """One round: renew the lease, then wait, skip or deliver one event. False when
        this replica should stop delivering the subscription."""
        now = self.clock.now()
        renewed = self._renewed.get(subscription_id)
        if renewed is None or now - renewed >= self.settings.lease / 3:
            async with self.store.write() as uow:
                sub = await uow.subscriptions.get(subscription_id)
                held = sub is not None and await uow.subscriptions.renew(
                    subscription_id, self.owner, now + self.settings.lease
                )
                await uow.commit()
            self._renewed[subscription_id] = now
        else:
            async with self.store.read() as uow:
                sub = await uow.subscriptions.get(subscription_id)
            held = sub is not None and sub.owner == self.owner
        if sub is None or not held or sub.state is not SubscriptionState.ACTIVE:
            self._renewed.pop(subscription_id, None)
            return False
        # Sleep in pieces shorter than the lease, renewing it between them.
        renew_by = now + self.settings.lease / 3
        due = sub.delivery.next_attempt
        if due is not None and due > now:
            await self.clock.sleep_until(min(due, renew_by))
            return True
        async with self.store.read() as uow:
            revisions = await uow.events.revision_range()
            batch = await uow.events.after(sub.delivery.cursor, limit=_BATCH, all_resources=True)
        if sub.delivery.cursor < revisions.compacted:
            sub.state = SubscriptionState.SUSPENDED
            sub.suspended_reason = (
                f"the events after revision {sub.delivery.cursor} were compacted before they "
                "could be delivered"
            )
            return await self._save(sub) and False
        query = self.query_of(sub)
        event = next((e for e in batch if concerns(query, e)), None)
        if event is None:
            if batch:  # nothing here concerns it: move past, durably
                sub.delivery.cursor = batch[-1].revision
                return await self._save(sub)
            await self._idle()
            return True
        return await self._post(sub, query, event)

    async def _idle(self) -> None:
        """Wait for a commit (the dispatcher's wake-up reaches every worker) or a while."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_seconds):
                await self._wakeup.wait()

    async def _post(
        self, sub: Subscription, query: WorkRequestQuery, event: WorkRequestEvent
    ) -> bool:
        now = self.clock.now()
        item = WorkRequestSetEvent(
            event.revision, event, left_filter=not query.matches(event.work_request)
        )
        body = self.render(sub, item, now)
        status, error = 0, ""
        try:
            status = await self._send(sub, body)
            if not 200 <= status < 300:
                error = f"the receiver answered HTTP {status}"
        except TimeoutError:
            error = f"the receiver did not answer within {self.settings.request_timeout:g} s"
        except httpx.HTTPError as failure:
            error = f"the receiver could not be reached: {type(failure).__name__}"
        d = sub.delivery
        d.last_attempt, d.last_status, d.last_error = now, status, error
        if not error:
            d.cursor, d.failures, d.failing_since, d.next_attempt = event.revision, 0, None, None
            return await self._save(sub)
        d.failures += 1
        d.failing_since = d.failing_since or now
        d.next_attempt = now + self.settings.backoff(d.failures, self.rng)
        if now - d.failing_since >= self.settings.suspend_after:
            sub.state = SubscriptionState.SUSPENDED
            sub.suspended_reason = (
                f"deliveries have failed since {d.failing_since.isoformat()} "
                f"({d.failures} attempts); last: {error}"
            )
            d.next_attempt = None
        return await self._save(sub) and sub.state is SubscriptionState.ACTIVE

    async def _send(self, sub: Subscription, body: bytes) -> int:
        """POST the event; its HTTP status. httpx's timeouts bound each read, so a
        receiver trickling its answer a byte at a time would hold the worker for ever:
        the whole exchange gets one deadline. Only the status line matters, so the
        answer's body is never read (a receiver cannot make us buffer gigabytes)."""
        assert self._http is not None
        async with asyncio.timeout(self.settings.request_timeout):
            request = self._http.build_request(
                "POST",
                sub.url,
                content=body,
                headers={
                    "Content-Type": CONTENT_TYPE,
                    SIGNATURE_HEADER: signature(sub.secret, body),
                },
            )
            response = await self._http.send(request, stream=True)
            await response.aclose()
            return response.status_code

    async def _save(self, sub: Subscription) -> bool:
        async with self.store.write() as uow:
            written = await uow.subscriptions.save_state(sub, owner=self.owner)
            await uow.commit()
        return written
