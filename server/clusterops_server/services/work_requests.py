"""Reading, canceling and watching work requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from clusterops_server.auth.caller import Caller, current_caller
from clusterops_server.auth.policy import Verb
from clusterops_server.clock import Clock
from clusterops_server.domain.errors import (
    FailedPrecondition,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Unavailable,
)
from clusterops_server.domain.listing import Page, PageRequest
from clusterops_server.domain.work_requests import (
    ErrorEntry,
    LogEntry,
    WorkRequest,
    WorkRequestEvent,
    WorkRequestQuery,
    WorkRequestSetEvent,
    WorkRequestStatus,
)
from clusterops_server.engine.engine import Engine
from clusterops_server.services.idempotency import previous_result, remember
from clusterops_server.store import work_request_reads
from clusterops_server.store.uow import Store, UnitOfWork
from clusterops_server.watch import Subscription, SubscriptionClosed, WatchHub, concerns

_HISTORY_BATCH = 500
_SNAPSHOT_BATCH = 500


@dataclass(frozen=True)
class CancelWorkRequestCommand:
    work_request_id: str
    request_id: str = ""


async def get_work_request(
    uow: UnitOfWork, work_request_id: str, *, verb: Verb = Verb.READ, for_update: bool = False
) -> WorkRequest:
    """The work request, if the caller may `verb` it (with the permission of the operation
    that spawned it). NOT_FOUND, exactly as if it did not exist, for a caller who could
    not even list it; PERMISSION_DENIED for one who can list it, so knows it exists."""
    wr = await uow.work_requests.get(work_request_id, for_update=for_update)
    return authorized(wr, work_request_id, verb)


def authorized(wr: WorkRequest | None, work_request_id: str, verb: Verb) -> WorkRequest:
    """`wr` if the caller may `verb` it; NOT_FOUND or PERMISSION_DENIED as above."""
    caller = current_caller()
    if wr is None or not caller.can_see_work_request(
        Verb.INSPECT, wr.operation_type, wr.compartment_id
    ):
        raise NotFound("work request", work_request_id)
    if not caller.can_see_work_request(verb, wr.operation_type, wr.compartment_id):
        raise PermissionDenied(
            f"{caller.name} may not {verb.name.lower()} work request {wr.id}; "
            "ask an administrator for a policy that allows it",
            metadata={"verb": verb.name.lower()},
        )
    return wr


class WorkRequestService:
    def __init__(self, store: Store, clock: Clock, engine: Engine, hub: WatchHub) -> None:
        self.store = store
        self.clock = clock
        self.engine = engine
        self.hub = hub

    async def get(self, work_request_id: str) -> WorkRequest:
        wr = await work_request_reads.get_work_request(self.store.reads, work_request_id)
        return authorized(wr, work_request_id, Verb.READ)

    async def list_work_requests(
        self, query: WorkRequestQuery, page: PageRequest
    ) -> Page[WorkRequest]:
        caller = current_caller()
        scoped = replace(query, visibility=caller.work_request_visibility(Verb.INSPECT))
        found = await self.store.work_request_lists.list(scoped, page)
        return replace(found, items=[_as_seen_by(caller, wr) for wr in found.items])

    async def list_logs(self, work_request_id: str, page: PageRequest) -> Page[LogEntry]:
        async with self.store.read() as uow:
            await get_work_request(uow, work_request_id)
            return await uow.work_requests.list_logs(work_request_id, page)

    async def list_errors(self, work_request_id: str, page: PageRequest) -> Page[ErrorEntry]:
        async with self.store.read() as uow:
            await get_work_request(uow, work_request_id)
            return await uow.work_requests.list_errors(work_request_id, page)

    async def cancel(self, cmd: CancelWorkRequestCommand) -> WorkRequest:
        """Ask the operation to stop; a second cancel of a CANCELING request is a no-op, and a
        retry with the same request_id answers with the work request as it is now."""
        async with self.store.write() as uow:
            prior = await previous_result(uow, "CancelWorkRequest", cmd.request_id, cmd)
            if prior is not None:
                return await get_work_request(uow, prior["work_request_id"])
            wr = await get_work_request(uow, cmd.work_request_id, verb=Verb.USE, for_update=True)
            await remember(uow, "CancelWorkRequest", cmd.request_id, {"work_request_id": wr.id})
            if wr.status is WorkRequestStatus.CANCELING:
                await uow.commit()
                return wr
            if wr.status.is_terminal:
                raise FailedPrecondition(
                    f"work request {wr.id} is already {wr.status.value}; only ACCEPTED or "
                    "IN_PROGRESS work requests can be canceled",
                    violation_type="WORK_REQUEST_STATE",
                    subject=wr.id,
                    metadata={"status": wr.status.value},
                )
            await self.engine.handler(wr.operation_type).check_cancel(uow, wr)
            now = self.clock.now()
            wr.transition(WorkRequestStatus.CANCELING, now)
            await uow.work_requests.save(wr, logs=[LogEntry("Cancellation requested", now)])
            await uow.leases.wake(wr.id, now)
            await uow.commit()
        return wr

    async def watch(
        self, work_request_id: str, after_revision: int
    ) -> AsyncIterator[WorkRequestEvent]:
        """The work request's events: a snapshot (or the history after `after_revision`),
        then each change as it commits, ending after the terminal state."""
        subscription = self.hub.subscribe(work_request_id)
        try:
            history, ended = await self._opening(work_request_id, after_revision)
            cursor = after_revision
            # An idle watch keeps nothing of what it sent: the snapshot (with every log)
            # would otherwise stay referenced by this frame for as long as it waits.
            while history:
                full_batch = len(history) >= _HISTORY_BATCH
                for event in history:
                    yield event
                    cursor, terminal = event.revision, event.is_terminal
                    del event
                    if terminal:
                        return
                history = await self._history(work_request_id, cursor) if full_batch else []
            if ended:
                # Resumed at or after the terminal change: nothing more will come.
                return
            while True:
                try:
                    delivered = await subscription.next()
                except SubscriptionClosed:
                    raise Unavailable(
                        "the server is shutting down; resume the watch with "
                        f"after_revision={cursor}",
                        metadata={"resume_after_revision": str(cursor)},
                    ) from None
                backlog = (
                    [delivered]
                    if delivered is not None
                    else await self._history(work_request_id, cursor)
                )
                for item in backlog:
                    if item.revision <= cursor:
                        continue
                    yield item
                    cursor = item.revision
                    if item.is_terminal:
                        return
        finally:
            self.hub.unsubscribe(subscription)

    async def _opening(
        self, work_request_id: str, after_revision: int
    ) -> tuple[list[WorkRequestEvent], bool]:
        """What a watch sends first (a snapshot, or the history after `after_revision`)
        and whether the work request had already ended."""
        if after_revision:
            async with self.store.read() as uow:
                wr = await get_work_request(uow, work_request_id)
                await self._check_resumable(uow, after_revision)
                history = await uow.events.for_work_request(
                    work_request_id, after_revision, limit=_HISTORY_BATCH
                )
            return history, wr.status.is_terminal
        # One statement: the work request, its logs and its errors agree.
        found = await work_request_reads.get_snapshot(self.store.reads, work_request_id)
        wr = authorized(found[0] if found else None, work_request_id, Verb.READ)
        assert found is not None
        _, logs, errors = found
        snapshot = WorkRequestEvent(
            wr.revision, wr, tuple(wr.resources), tuple(logs), tuple(errors), snapshot=True
        )
        return [snapshot], wr.status.is_terminal

    async def watch_many(
        self, query: WorkRequestQuery, after_revision: int
    ) -> AsyncIterator[WorkRequestSetEvent]:
        """Every work request in the query's set: a snapshot of each and a marker (or the
        history after `after_revision`), then each change that concerns the set, in
        revision order, for as long as the caller listens. Authorization is List's: the
        caller sees only what it may list, and the filter is narrowed to that first."""
        caller = current_caller()
        scoped = replace(query, visibility=caller.work_request_visibility(Verb.INSPECT))
        subscription = self.hub.subscribe_filtered(scoped)
        try:
            cursor = after_revision
            if after_revision:
                async with self.store.read() as uow:
                    await self._check_resumable(uow, after_revision)
            else:
                head, snapshot = await self._snapshot(scoped)
                for wr, newest_log in snapshot:
                    yield WorkRequestSetEvent(
                        wr.revision,
                        WorkRequestEvent(
                            wr.revision,
                            _as_seen_by(caller, wr),
                            tuple(wr.resources),
                            (newest_log,) if newest_log else (),
                            (wr.last_error,) if wr.last_error else (),
                            snapshot=True,
                        ),
                        readable=_readable(caller, wr),
                    )
                del snapshot
                yield WorkRequestSetEvent(head, None)
                cursor = head
            # What the hub had read before this watch subscribed comes from the store.
            if subscription.start > cursor:
                for event in await self._set_history(scoped, cursor, upto=subscription.start):
                    yield _set_event(caller, scoped, event)
                cursor = max(cursor, subscription.start)
            while True:
                backlog = await self._next_for(subscription, scoped, cursor)
                for event in backlog:
                    if event.revision <= cursor:
                        continue
                    yield _set_event(caller, scoped, event)
                    cursor = event.revision
        finally:
            self.hub.unsubscribe(subscription)

    async def _next_for(
        self, subscription: Subscription, query: WorkRequestQuery, cursor: int
    ) -> list[WorkRequestEvent]:
        try:
            delivered = await subscription.next()
        except SubscriptionClosed:
            raise Unavailable(
                f"the watch was closed by the server; resume it with after_revision={cursor}",
                metadata={"resume_after_revision": str(cursor)},
            ) from None
        if delivered is not None:
            return [delivered]
        # The watcher fell behind the hub's queue: catch up from the store.
        return await self._set_history(query, cursor, upto=None)

    async def _snapshot(
        self, query: WorkRequestQuery
    ) -> tuple[int, list[tuple[WorkRequest, LogEntry | None]]]:
        """The set as of one revision: one read transaction (a consistent snapshot on
        both stores) holds the head revision and every batch."""
        found: list[tuple[WorkRequest, LogEntry | None]] = []
        async with self.store.read() as uow:
            head = (await uow.events.revision_range()).head
            after = None
            while True:
                batch = await uow.work_requests.matching(query, after=after, limit=_SNAPSHOT_BATCH)
                logs = await uow.work_requests.newest_logs([wr.id for wr in batch])
                found.extend((wr, logs.get(wr.id)) for wr in batch)
                if len(batch) < _SNAPSHOT_BATCH:
                    return head, found
                after = (batch[-1].time_accepted, batch[-1].id)

    async def _set_history(
        self, query: WorkRequestQuery, after: int, *, upto: int | None
    ) -> list[WorkRequestEvent]:
        """The events after `after` (up to `upto`) that concern the query, from the store."""
        found: list[WorkRequestEvent] = []
        async with self.store.read() as uow:
            await self._check_resumable(uow, after)
            while upto is None or after < upto:
                batch = await uow.events.after(after, limit=_HISTORY_BATCH, all_resources=True)
                for event in batch:
                    if upto is not None and event.revision > upto:
                        return found
                    if concerns(query, event):
                        found.append(event)
                if len(batch) < _HISTORY_BATCH:
                    return found
                after = batch[-1].revision
        return found

    async def _history(self, work_request_id: str, after: int) -> list[WorkRequestEvent]:
        """Catch up from the store (a watcher that fell behind the hub's queue)."""
        async with self.store.read() as uow:
            await self._check_resumable(uow, after)
            events: list[WorkRequestEvent] = []
            while True:
                batch = await uow.events.for_work_request(
                    work_request_id, after, limit=_HISTORY_BATCH
                )
                events.extend(batch)
                if len(batch) < _HISTORY_BATCH:
                    return events
                after = batch[-1].revision

    async def _check_resumable(self, uow: UnitOfWork, after_revision: int) -> None:
        revisions = await uow.events.revision_range()
        if after_revision < revisions.compacted:
            raise OutOfRange(
                f"revision {after_revision} is older than the oldest revision kept "
                f"({revisions.compacted}); read the work request again and watch without "
                "after_revision",
                reason="REVISION_COMPACTED",
                metadata={
                    "compacted_revision": str(revisions.compacted),
                    "requested_revision": str(after_revision),
                },
            )
        if after_revision > revisions.head:
            raise OutOfRange(
                f"revision {after_revision} is ahead of the store (at {revisions.head}); "
                "pass a revision this server returned",
                reason="REVISION_AHEAD",
                metadata={"head_revision": str(revisions.head)},
            )


def _readable(caller: Caller, wr: WorkRequest) -> bool:
    return caller.can_see_work_request(Verb.READ, wr.operation_type, wr.compartment_id)


def _as_seen_by(caller: Caller, wr: WorkRequest) -> WorkRequest:
    """What a caller that may only list (inspect) a work request sees of it: not its
    newest error, which ListWorkRequestErrors would refuse that caller."""
    if wr.last_error is None or _readable(caller, wr):
        return wr
    return replace(wr, last_error=None)


def _set_event(
    caller: Caller, query: WorkRequestQuery, event: WorkRequestEvent
) -> WorkRequestSetEvent:
    seen = _as_seen_by(caller, event.work_request)
    return WorkRequestSetEvent(
        event.revision,
        event if seen is event.work_request else replace(event, work_request=seen),
        left_filter=not query.matches(event.work_request),
        readable=_readable(caller, event.work_request),
    )
