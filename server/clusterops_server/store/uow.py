"""Unit of work: one session, one transaction, repositories that never commit.

`async with store.write() as uow:` rolls back unless `await uow.commit()` ran. Work
request changes staged during the transaction get their revisions at commit time, in
one counter update, so the counter row is locked only for the last moment of the
transaction and revisions are assigned in commit order. A commit that added work (a new
work request, or one made due sooner) tells the store's work listeners (the engine)
after it lands, so no caller has to remember to wake the engine.

Lock order. On PostgreSQL every transaction takes its row locks (SELECT ... FOR UPDATE,
and the implicit lock of an UPDATE) in one order, so two of them never wait for each
other in a cycle:

1. work requests: the one the transaction drives, then (only to wake it) its parent;
   never a parent before its child;
2. the domain rows they drive: orchestration (then its operations), upgrade workflow,
   cluster; nodes before their node pool; an add-on after its cluster;
3. the revision counter, at commit.

The engine's steps lock their work request first (`OperationContext._enter`), so a
service that reaches a work request through a domain row reads the row without a lock,
locks the work request, then locks the row and checks that it still names that work
request. A locked read always returns the row as the database has it now, not as the
session last saw it. New rows (and resource locks) are inserted after the rows above.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from sqlalchemy import update

from clusterops_server.clock import Clock
from clusterops_server.domain.work_requests import (
    ErrorEntry,
    LogEntry,
    StoredState,
    WorkRequest,
    WorkRequestResource,
)
from clusterops_server.store.addons import AddonRepository
from clusterops_server.store.database import Database
from clusterops_server.store.events import EventRepository, event_payload
from clusterops_server.store.idempotency import IdempotencyRepository
from clusterops_server.store.inventory import InventoryRepository
from clusterops_server.store.leases import LeaseRepository
from clusterops_server.store.notify import announce
from clusterops_server.store.orchestrations import OrchestrationRepository
from clusterops_server.store.paging import PageTokenKeys
from clusterops_server.store.steps import StepRepository
from clusterops_server.store.subscriptions import SubscriptionRepository
from clusterops_server.store.tables import WorkRequestRow
from clusterops_server.store.upgrade_workflows import UpgradeWorkflowRepository
from clusterops_server.store.work_request_reads import WorkRequestLists
from clusterops_server.store.work_requests import WorkRequestRepository


@dataclass
class _StagedEvent:
    # The caller's object (it learns its revision at commit) and its state when staged.
    original: WorkRequest
    work_request: WorkRequest
    resources: list[WorkRequestResource]
    logs: list[LogEntry]
    errors: list[ErrorEntry]
    previous: StoredState | None


class UnitOfWork:
    def __init__(self, store: Store, *, write: bool) -> None:
        self.store = store
        self.clock = store.clock
        self.dialect = store.database.url.get_backend_name()
        self.session = store.database.session(write=write)
        self.session.info["page_token_keys"] = store.page_tokens
        self.work_requests = WorkRequestRepository(self.session, self)
        self.inventory = InventoryRepository(self.session, self.dialect)
        self.events = EventRepository(self.session)
        self.leases = LeaseRepository(self.session, self.dialect, on_due=self.work_added)
        self.steps = StepRepository(self.session)
        self.idempotency = IdempotencyRepository(self.session, self.dialect)
        self.upgrade_workflows = UpgradeWorkflowRepository(self.session, self.dialect)
        self.addons = AddonRepository(self.session, self.dialect)
        self.orchestrations = OrchestrationRepository(self.session, self.dialect)
        self.subscriptions = SubscriptionRepository(self.session)
        self._staged: list[_StagedEvent] = []
        self.committed_revision = 0
        self._added_work = False

    def work_added(self) -> None:
        """This transaction adds work the engine should look at once it commits."""
        self._added_work = True

    def stage_event(
        self,
        wr: WorkRequest,
        *,
        resources: Sequence[WorkRequestResource],
        logs: Sequence[LogEntry],
        errors: Sequence[ErrorEntry],
        previous: StoredState | None,
    ) -> None:
        snapshot = replace(wr, resources=list(wr.resources))
        self._staged.append(
            _StagedEvent(wr, snapshot, list(resources), list(logs), list(errors), previous)
        )

    async def commit(self) -> None:
        if self._staged:
            await self._write_events()
        await self.session.commit()
        if self.committed_revision:
            self.store.notify_committed(self.committed_revision)
        if self._added_work:
            self._added_work = False
            self.store.notify_work_added()

    async def _write_events(self) -> None:
        staged, self._staged = self._staged, []
        last = await self.events.allocate(len(staged))
        now = self.clock.now()
        for offset, event in enumerate(staged):
            revision = last - len(staged) + 1 + offset
            event.work_request.revision = revision
            event.original.revision = revision
            await self.events.add(
                revision,
                event.work_request.id,
                now,
                event_payload(
                    event.work_request, event.resources, event.logs, event.errors, event.previous
                ),
            )
        newest: dict[str, int] = {e.work_request.id: e.work_request.revision for e in staged}
        for work_request_id, revision in newest.items():
            await self.session.execute(
                update(WorkRequestRow)
                .where(WorkRequestRow.id == work_request_id)
                .values(revision=revision)
            )
        if self.dialect == "postgresql":
            await announce(self.session, last)  # wakes the other replicas' watch hubs
        self.committed_revision = last

    async def rollback(self) -> None:
        self._staged.clear()
        self._added_work = False
        await self.session.rollback()

    async def close(self) -> None:
        await self.session.close()


class Store:
    """The persistent state of the service, handed out one unit of work at a time."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock
        # Hot Get/List reads, outside any unit of work (see store/database.py).
        self.reads = database.reads
        self.page_tokens = PageTokenKeys(database, clock)
        self.work_request_lists = WorkRequestLists(self.reads, self.page_tokens)
        self._listeners: list[Callable[[int], None]] = []
        self._work_listeners: list[Callable[[], None]] = []

    @property
    def single_node(self) -> bool:
        """SQLite is embedded: exactly one server uses the file."""
        return self.database.is_sqlite

    def on_commit(self, listener: Callable[[int], None]) -> None:
        """Call `listener(revision)` after each commit that wrote work request events."""
        self._listeners.append(listener)

    def notify_committed(self, revision: int) -> None:
        for listener in self._listeners:
            listener(revision)

    def on_work_added(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after each commit that added work or made work due sooner."""
        self._work_listeners.append(listener)

    def notify_work_added(self) -> None:
        for listener in self._work_listeners:
            listener()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[UnitOfWork]:
        uow = UnitOfWork(self, write=True)
        try:
            yield uow
        finally:
            if uow.session.in_transaction():
                await uow.rollback()
            await uow.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[UnitOfWork]:
        uow = UnitOfWork(self, write=False)
        try:
            yield uow
        finally:
            await uow.rollback()
            await uow.close()
