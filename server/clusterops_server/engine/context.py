"""What an operation handler sees while it runs: durable steps over its work request.

A step's start is committed before its action runs and its end (with the domain
changes it causes) is committed before the next step begins. A step's journaled
outcome is final: one that succeeded returns its journaled result and one that failed
raises its journaled StepFailed, without running again and without running its
callbacks again (their changes were committed with the outcome). So a handler resumed
after a crash retraces its path from the journal to the first step without an
outcome, and ends as it would have without the crash. Only a step whose start was
journaled without an end runs again, which is why provider actions must be safe to
repeat.

A handler that waits for something outside itself (a time, or other work requests)
parks instead of finishing: `park(until)` gives up the lease and makes the work
request due again at `until`, so waiting costs a row, not a task. A work request
whose params name a `parent_work_request_id` makes that parent due at once when it
finishes, so a parent parked on its children hears about each of them.

Handlers read their typed params (operations/params.py) with `ctx.params_as(Kind)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from clusterops_server.clock import Clock
from clusterops_server.domain.work_requests import (
    ErrorEntry,
    LogEntry,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.operations.params import OperationParams, UpgradeParams, decode_params
from clusterops_server.providers.base import ProviderError
from clusterops_server.store.steps import StepRecord, StepStatus
from clusterops_server.store.uow import Store, UnitOfWork

Json = dict[str, Any]
# Callbacks run inside the step's transaction with the work request loaded.
OnStart = Callable[[UnitOfWork, WorkRequest], Awaitable[None]]
OnDone = Callable[[UnitOfWork, WorkRequest, Json], Awaitable[None]]
OnFailed = Callable[[UnitOfWork, WorkRequest, ProviderError], Awaitable[None]]
Apply = Callable[[UnitOfWork, WorkRequest], Awaitable[None]]
Recheck = Callable[[UnitOfWork, WorkRequest], Awaitable[bool]]
P = TypeVar("P")
# What a work request, and the domain objects it leaves, say when its handler kept crashing.
UNEXPECTED_FAILURE = "the operation failed unexpectedly; see server logs"


class LeaseLost(Exception):
    """Another server took this work request over; stop without touching it."""


class OperationCanceled(Exception):
    """The work request is CANCELING: stop doing and start undoing."""


class Parked(Exception):
    """The handler has more to do later; its work request waits, unleased, until then."""


def journaled_error(record: StepRecord) -> ProviderError:
    """The provider's error a FAILED step recorded."""
    result = record.result or {}
    return ProviderError(str(result.get("code", "")), str(result.get("message", "")))


class StepFailed(Exception):
    def __init__(self, key: str, error: ProviderError) -> None:
        super().__init__(f"step {key} failed: {error.message}")
        self.key = key
        self.error = error


@dataclass(frozen=True)
class EngineSettings:
    lease_seconds: float = 30.0
    concurrency: int = 64


class OperationContext:
    def __init__(
        self, store: Store, clock: Clock, work_request_id: str, owner: str, settings: EngineSettings
    ) -> None:
        self.store = store
        self.clock = clock
        self.id = work_request_id
        self.owner = owner
        self.settings = settings
        self._params: OperationParams | None = None
        self.operation_type: OperationType | None = None
        self.status: WorkRequestStatus | None = None
        self.journal: dict[str, StepRecord] = {}
        self.undoing = False
        self.finished = False
        self.parked = False

    async def load(self) -> WorkRequest:
        async with self.store.read() as uow:
            wr = await uow.work_requests.get(self.id)
            if wr is None:
                raise LeaseLost(f"work request {self.id} is gone")
            raw = await uow.work_requests.params(self.id)
            self.journal = await uow.steps.journal(self.id)
        self._params = decode_params(wr.operation_type, raw)
        self.operation_type = wr.operation_type
        self.status = wr.status
        return wr

    async def _enter(self, uow: UnitOfWork, *, cancel_check: bool) -> WorkRequest:
        """Renew the lease and load the work request, inside a step transaction."""
        until = self.clock.now() + timedelta(seconds=self.settings.lease_seconds)
        if not await uow.leases.renew(self.id, self.owner, until):
            raise LeaseLost(self.id)
        wr = await uow.work_requests.get(self.id, for_update=True)
        if wr is None:
            raise LeaseLost(self.id)
        self.status = wr.status
        if wr.status.is_terminal:
            raise LeaseLost(f"work request {self.id} is already {wr.status}")
        if cancel_check and not self.undoing and wr.status is WorkRequestStatus.CANCELING:
            raise OperationCanceled(self.id)
        return wr

    @property
    def params(self) -> OperationParams:
        assert self._params is not None, "load() first"
        return self._params

    def params_as(self, kind: type[P]) -> P:
        """The params, as the handler's operation type takes them."""
        params = self.params
        if not isinstance(params, kind):
            raise TypeError(f"{self.id} has {type(params).__name__}, not {kind.__name__}")
        return params

    def done(self, key: str) -> bool:
        record = self.journal.get(key)
        return record is not None and record.status is StepStatus.DONE

    def result(self, key: str) -> Json | None:
        record = self.journal.get(key)
        return record.result if record else None

    async def begin(self) -> None:
        """ACCEPTED becomes IN_PROGRESS (a CANCELING work request stays as it is)."""

        async def start(uow: UnitOfWork, wr: WorkRequest) -> None:
            if wr.status is WorkRequestStatus.ACCEPTED:
                wr.transition(WorkRequestStatus.IN_PROGRESS, self.clock.now())
                await uow.work_requests.save(wr, logs=[self.log_entry("Work request started")])

        await self.update(start, cancel_check=False)

    async def step(
        self,
        key: str,
        action: Callable[[], Awaitable[Json | None]],
        *,
        started: OnStart | None = None,
        done: OnDone | None = None,
        failed: OnFailed | None = None,
    ) -> Json:
        """Run `action` once, durably: journal its start, run it, journal its end.

        Raises OperationCanceled (at the start, unless undoing), StepFailed when the
        provider fails or failed before (as journaled), LeaseLost when another server
        owns the work now.
        """
        record = self.journal.get(key)
        if record is not None and record.status is StepStatus.DONE:
            return record.result or {}
        if record is not None and record.status is StepStatus.FAILED:
            raise StepFailed(key, journaled_error(record))
        async with self.store.write() as uow:
            wr = await self._enter(uow, cancel_check=True)
            await uow.steps.start(self.id, key, self.clock.now())
            if started is not None:
                await started(uow, wr)
            await uow.commit()
        try:
            result = await action() or {}
        except ProviderError as error:
            outcome = {"code": error.code, "message": error.message}
            async with self.store.write() as uow:
                wr = await self._enter(uow, cancel_check=False)
                now = self.clock.now()
                await uow.steps.finish(self.id, key, now, StepStatus.FAILED, outcome)
                if failed is not None:
                    await failed(uow, wr, error)
                await uow.commit()
            self.journal[key] = StepRecord(key, StepStatus.FAILED, now, now, outcome)
            raise StepFailed(key, error) from error
        async with self.store.write() as uow:
            wr = await self._enter(uow, cancel_check=False)
            now = self.clock.now()
            await uow.steps.finish(self.id, key, now, StepStatus.DONE, result)
            if done is not None:
                await done(uow, wr, result)
            await uow.commit()
        self.journal[key] = StepRecord(key, StepStatus.DONE, now, now, result)
        return result

    async def update(self, apply: Apply, *, cancel_check: bool = False) -> None:
        """Run `apply` in one transaction with the work request loaded."""
        async with self.store.write() as uow:
            wr = await self._enter(uow, cancel_check=cancel_check)
            await apply(uow, wr)
            await uow.commit()

    async def finish(
        self,
        status: WorkRequestStatus,
        *,
        apply: Apply | None = None,
        log: str = "",
        errors: Sequence[tuple[str, str]] = (),
    ) -> None:
        """End the work request in `status`, together with the domain changes in `apply`."""

        async def end(uow: UnitOfWork, wr: WorkRequest) -> None:
            if wr.status is WorkRequestStatus.CANCELING and not self.undoing:
                # Canceled while the last step ran: undo instead of ending as if it had not been.
                raise OperationCanceled(self.id)
            parent = (
                self.params.parent_work_request_id if isinstance(self.params, UpgradeParams) else ""
            )
            if parent:
                # Before `apply`: a parent's work request is locked after its child's and
                # before any domain row (the lock order in store/uow.py).
                await uow.leases.wake(parent, self.clock.now())
            before = list(wr.resources)
            if apply is not None:
                await apply(uow, wr)
            now = self.clock.now()
            wr.transition(status, now)
            await uow.work_requests.save(
                wr,
                changed=[r for r in wr.resources if r not in before],
                logs=[LogEntry(log, now)] if log else [],
                errors=[ErrorEntry(code, message, now) for code, message in errors],
            )
            await uow.leases.release(self.id, self.owner)

        await self.update(end)
        self.finished = True
        self.status = status

    async def give_up(
        self, *, apply: Apply | None, log: str, errors: Sequence[tuple[str, str]]
    ) -> None:
        """End the work request FAILED for good after its handler kept crashing, with the
        domain changes in `apply`; a CANCELING one too, since nothing is left to undo it."""
        self.undoing = True
        await self.finish(WorkRequestStatus.FAILED, apply=apply, log=log, errors=errors)

    async def park(
        self, until: datetime, *, apply: Apply | None = None, recheck: Recheck | None = None
    ) -> NoReturn:
        """Stop without finishing; the engine runs the handler again from the top at `until`
        (on the injected clock), or sooner when something wakes the work request.

        The work request stays non-terminal without a lease, so it is claimed when due,
        after a restart too; nothing sleeps in between. `apply` runs in the same
        transaction. So does `recheck`, after the lease is given up: if it says something
        changed since the handler last looked, the work request is due at once. A waker
        (`leases.wake`) either commits before this transaction, and `recheck` sees its
        change, or after it, and finds the new run_after to move: no wake-up is lost.
        Raises Parked, which the engine treats as a normal exit.
        """

        async def release(uow: UnitOfWork, wr: WorkRequest) -> None:
            if apply is not None:
                await apply(uow, wr)
            now = self.clock.now()
            await uow.leases.release(self.id, self.owner, run_after=max(until, now))
            if recheck is not None and await recheck(uow, wr):
                await uow.leases.wake(self.id, now)

        # A CANCELING work request is not parked: it undoes now.
        await self.update(release, cancel_check=True)
        self.parked = True
        raise Parked(self.id)

    def log_entry(self, message: str) -> LogEntry:
        return LogEntry(message, self.clock.now())

    def error_entry(self, code: str, message: str) -> ErrorEntry:
        return ErrorEntry(code, message, self.clock.now())


async def run_parallel(jobs: Sequence[Callable[[], Awaitable[None]]], *, limit: int) -> None:
    """Run jobs at most `limit` at a time; the first cancel, lost lease or crash stops the rest.

    Errors come out as the plain exception (not an ExceptionGroup), preferring
    LeaseLost, then OperationCanceled, so callers can handle them like a single step's.
    """

    gate = asyncio.Semaphore(limit)

    async def gated(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(gated(job))
    except BaseExceptionGroup as failure:
        for kind in (LeaseLost, OperationCanceled):
            match = failure.subgroup(kind)
            if match is not None:
                raise _first(match) from None
        raise _first(failure) from None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
