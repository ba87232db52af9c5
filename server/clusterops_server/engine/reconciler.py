"""The add-on reconciler's scheduler: due checks are found in the store, not in timers.

Every add-on the reconciler looks after has its next check time in the database
(indexed). This loop opens a RECONCILE_ADDON work request for each add-on whose check
has come, commits it (which wakes the engine), and sleeps on the injected clock until the next
check is due or something wakes it (an add-on was installed or updated, a
reconciliation ended). Thousands of add-ons cost one sleeping task. After a restart
the checks that came due meanwhile run at once and the others keep their times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from clusterops_server.clock import Clock
from clusterops_server.domain.addons import (
    Addon,
    ReconcileSettings,
    work_request_resources,
)
from clusterops_server.domain.errors import ResourceBusy
from clusterops_server.domain.work_requests import (
    LogEntry,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.operations.params import AddonParams
from clusterops_server.operations.start import OperationStart, start_operation
from clusterops_server.store.uow import Store, UnitOfWork

log = logging.getLogger(__name__)

# How long stop() lets a round of opening reconciliations finish before cutting it short.
_STOP_WAIT_SECONDS = 5.0


async def open_reconciliation(
    uow: UnitOfWork, addon: Addon, now: datetime, *, why: str
) -> WorkRequest:
    """Start a reconciliation of `addon` now: a RECONCILE_ADDON work request holding its lock.

    Raises ResourceBusy (with nothing written) when another work request holds the lock.
    """
    async with uow.session.begin_nested():
        wr = await start_operation(
            uow,
            OperationStart(
                addon.compartment_id,
                OperationType.RECONCILE_ADDON,
                AddonParams(addon.cluster_id, addon.name),
                work_request_resources(addon.cluster_id, addon.name),
                lock=[addon.resource_id],
                log=f"Reconciling {addon.name} ({why})",
            ),
        )
    addon.reconciliation_id = wr.id
    addon.work_request_id = wr.id
    await uow.addons.save(addon)
    return wr


async def supersede_reconciliation(uow: UnitOfWork, addon: Addon, now: datetime, by: str) -> None:
    """End the add-on's open reconciliation because a person's operation takes over.

    A reconciliation that is between checks is canceled on the spot; one that is in
    the middle of a check holds on, and the caller gets ResourceBusy naming it.

    Lock order (store/uow.py): the caller has locked the reconciliation's work request
    before `addon` (services/addons.py does); an add-on being installed again after it
    was disabled has no reconciliation open.
    """
    holder = await uow.work_requests.lock_holder(addon.resource_id)
    if holder is None or holder != addon.reconciliation_id:
        return
    wr = await uow.work_requests.get(holder, for_update=True)
    if wr is None or wr.status.is_terminal:
        return
    if await uow.leases.is_leased(holder, now):
        raise ResourceBusy(addon.resource_id, holder)
    if wr.status is not WorkRequestStatus.CANCELING:
        wr.transition(WorkRequestStatus.CANCELING, now)
    wr.transition(WorkRequestStatus.CANCELED, now)
    await uow.work_requests.save(wr, logs=[LogEntry(f"Superseded by {by}", now)])
    addon.reconciliation_id = ""


class AddonReconciler:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: ReconcileSettings,
        *,
        poll_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        # In real time: how often to look for checks another replica scheduled.
        self.poll_seconds = poll_seconds
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="addon-reconciler")

    async def stop(self) -> None:
        """Stop between two rounds rather than in the middle of one."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _STOP_WAIT_SECONDS)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def wake(self) -> None:
        """Look at the schedule again now (a check was added or moved)."""
        self._wakeup.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            try:
                next_check = await self.open_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("opening due add-on reconciliations failed; retrying")
                next_check = None
            if not self._stopping:
                await self._sleep(next_check)

    async def open_due(self) -> datetime | None:
        """Open a reconciliation for every add-on whose check is due; when the next is due."""
        while True:
            now = self.clock.now()
            async with self.store.write() as uow:
                due = await uow.addons.due(now, limit=self.settings.batch_size)
                for addon in due:
                    try:
                        due_at = addon.next_check_at or now
                        # Its commit wakes the engine.
                        await open_reconciliation(
                            uow, addon, now, why=f"check due at {due_at:%Y-%m-%dT%H:%M:%SZ}"
                        )
                    except ResourceBusy as busy:
                        # An operation holds the add-on; it will set the schedule when it ends.
                        log.info(
                            "%s is busy with %s", addon.resource_id, busy.blocking_work_request_id
                        )
                        addon.next_check_at = now + self.settings.busy_retry
                        await uow.addons.save(addon)
                next_check = await uow.addons.next_check()
                await uow.commit()
            if len(due) < self.settings.batch_size or self._stopping:
                return next_check

    async def _sleep(self, until: datetime | None) -> None:
        waits: list[asyncio.Task[Any]] = [asyncio.create_task(self._wakeup.wait())]
        if until is not None:
            waits.append(asyncio.create_task(self.clock.sleep_until(until)))
        try:
            await asyncio.wait(
                waits, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in waits:
                task.cancel()
