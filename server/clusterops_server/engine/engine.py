"""The engine: claims due work requests from the store and runs their handlers.

There is no in-memory queue to lose. A new or canceled work request wakes the
engine at once; otherwise it wakes when the earliest scheduled work becomes due
(on the injected clock) and, in real time, every `poll_seconds` to pick up work whose
lease another server let expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from clusterops_server.clock import Clock
from clusterops_server.domain.work_requests import OperationType, WorkRequest, WorkRequestStatus
from clusterops_server.engine.context import (
    UNEXPECTED_FAILURE,
    EngineSettings,
    LeaseLost,
    OperationCanceled,
    OperationContext,
    Parked,
)
from clusterops_server.store.uow import Store, UnitOfWork

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class OperationHandler(Protocol):
    """Runs one operation type. `run` and `undo` must end with `ctx.finish(...)`, or with
    `ctx.park(until)` to be run again from the top later."""

    operation_type: OperationType

    async def run(self, ctx: OperationContext) -> None: ...

    async def undo(self, ctx: OperationContext) -> None:
        """Undo what `run` started, after a cancel, and finish CANCELED."""
        ...

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        """Raise FailedPrecondition if this work request can no longer be canceled."""
        ...

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        """The handler crashed MAX_ATTEMPTS times: leave the domain objects in a failed,
        actionable state (the way a failed step leaves them), so that nothing stays
        CREATING or UPDATING and the resource takes a new operation. Runs inside the
        transaction that fails the work request, which may have been CANCELING."""
        ...


class Engine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        handlers: Mapping[OperationType, OperationHandler],
        *,
        settings: EngineSettings | None = None,
        poll_seconds: float = 2.0,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.handlers = dict(handlers)
        self.settings = settings or EngineSettings()
        self.poll_seconds = poll_seconds
        self.owner = owner or f"engine-{uuid.uuid4().hex[:12]}"
        self._wakeup = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        # Looks at the store begun so far, and the latest that found nothing to do.
        self._looks = 0
        self._idle_look = 0
        # Every commit that adds work, or makes it due sooner, wakes the loop.
        store.on_work_added(self.wake)

    def handler(self, operation_type: OperationType) -> OperationHandler:
        return self.handlers[operation_type]

    async def start(self) -> None:
        if self.store.single_node:
            # Nobody else can be running this file's work: resume it all now.
            async with self.store.write() as uow:
                await uow.leases.release_all()
                await uow.commit()
        self._tasks = [
            asyncio.create_task(self._loop(), name="engine-loop"),
            asyncio.create_task(self._heartbeat(), name="engine-heartbeat"),
        ]

    async def stop(self) -> None:
        """Stop claiming and interrupt running handlers; their journals let them resume."""
        for task in self._tasks:
            task.cancel()
        # Taken before the handlers end: each removes itself from _running as it stops.
        ids = list(self._running)
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, *running, return_exceptions=True)
        self._running.clear()
        with contextlib.suppress(Exception):
            async with self.store.write() as uow:
                for work_request_id in ids:
                    await uow.leases.release(work_request_id, self.owner)
                await uow.commit()

    def wake(self) -> None:
        self._wakeup.set()

    async def wait_idle(self) -> None:
        """Return once a fresh look at the store finds nothing due and nothing running.

        Fresh: begun after this call, so it sees everything committed before it."""
        since = self._looks
        while self._idle_look <= since:
            self._idle.clear()
            self.wake()
            await self._idle.wait()

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                next_due = await self._claim_and_spawn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming work failed; retrying")
                next_due = None
            await self._sleep(next_due)

    async def _claim_and_spawn(self) -> float | None:
        free = self.settings.concurrency - len(self._running)
        self._looks += 1
        look = self._looks
        # Idle only if nothing ran while the store was looked at: a handler that ends
        # during the look may have made work due after the look missed it.
        quiet = not self._running
        now = self.clock.now()
        async with self.store.write() as uow:
            claimed: list[str] = []
            if free > 0:
                claimed = await uow.leases.claim(
                    self.owner,
                    now,
                    now + timedelta(seconds=self.settings.lease_seconds),
                    limit=free,
                    exclude=set(self._running),
                )
            next_due = await uow.leases.next_due()
            await uow.commit()
        for work_request_id in claimed:
            task = asyncio.create_task(self._run(work_request_id), name=f"op-{work_request_id}")
            self._running[work_request_id] = task
        if not claimed and quiet and not self._running:
            self._idle_look = look
            self._idle.set()
        if len(self._running) >= self.settings.concurrency:
            # Full: looking again before a handler ends (it wakes the loop) would only spin.
            return None
        if next_due is None:
            return None
        return max(0.0, (next_due - self.clock.now()).total_seconds())

    async def _sleep(self, seconds_until_due: float | None) -> None:
        if seconds_until_due == 0.0:
            await asyncio.sleep(0)
            return
        waits: list[asyncio.Task[Any]] = [asyncio.create_task(self._wakeup.wait())]
        if seconds_until_due is not None:
            waits.append(asyncio.create_task(self.clock.sleep(seconds_until_due)))
        try:
            await asyncio.wait(
                waits, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in waits:
                task.cancel()

    async def _heartbeat(self) -> None:
        interval = max(0.05, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            ids = list(self._running)
            if not ids:
                continue
            try:
                until = self.clock.now() + timedelta(seconds=self.settings.lease_seconds)
                async with self.store.write() as uow:
                    held = await uow.leases.renew_all(self.owner, ids, until)
                    await uow.commit()
                for lost in set(ids) - held:
                    task = self._running.get(lost)
                    if task is not None:
                        log.warning("lease on %s lost; stopping its handler", lost)
                        task.cancel()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing leases failed")

    async def _run(self, work_request_id: str) -> None:
        ctx = OperationContext(self.store, self.clock, work_request_id, self.owner, self.settings)
        try:
            wr = await ctx.load()
            handler = self.handlers[wr.operation_type]
            if wr.status is WorkRequestStatus.ACCEPTED:
                await ctx.begin()
            if ctx.status is not WorkRequestStatus.CANCELING:
                with contextlib.suppress(OperationCanceled):
                    await handler.run(ctx)
            if not ctx.finished and not ctx.parked:
                ctx.undoing = True
                await handler.undo(ctx)
            if not ctx.finished:
                raise RuntimeError(f"{type(handler).__name__} returned without finishing")
        except Parked:
            log.debug("work request %s parked until its next run", work_request_id)
        except LeaseLost:
            log.info("work request %s moved on without this server", work_request_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("operation %s crashed", work_request_id)
            await self._after_crash(ctx)
        finally:
            self._running.pop(work_request_id, None)
            self.wake()

    async def _after_crash(self, ctx: OperationContext) -> None:
        """Retry with backoff; after MAX_ATTEMPTS the work request fails for good, and its
        handler's `abandon` settles what it was working on in the same transaction."""
        try:
            async with self.store.write() as uow:
                attempts = await uow.leases.count_failure(ctx.id)
                if attempts < MAX_ATTEMPTS:
                    delay = timedelta(seconds=2**attempts)
                    await uow.leases.release(ctx.id, self.owner, run_after=self.clock.now() + delay)
                    await uow.commit()
                    return
                await uow.commit()
            if ctx.operation_type is None:
                await ctx.load()
            assert ctx.operation_type is not None
            handler = self.handlers[ctx.operation_type]
            gave_up = f"Gave up after {MAX_ATTEMPTS} unexpected failures"
            errors = [("InternalError", UNEXPECTED_FAILURE)]
            try:
                await ctx.give_up(
                    apply=functools.partial(handler.abandon, ctx), log=gave_up, errors=errors
                )
            except LeaseLost:
                raise
            except Exception:
                # Fail the work request anyway, or it would crash and be retried for ever.
                log.exception("could not settle what %s was working on", ctx.id)
                await ctx.give_up(
                    apply=None,
                    log=f"{gave_up}; what it was working on could not be marked failed",
                    errors=errors,
                )
        except LeaseLost:
            log.info("work request %s moved on without this server", ctx.id)
        except Exception:
            log.exception("could not record the failure of %s", ctx.id)
