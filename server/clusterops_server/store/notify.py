"""Commit notifications between the replicas of one PostgreSQL database (LISTEN/NOTIFY).

A transaction that records work request events also sends NOTIFY on CHANNEL with its
newest revision. PostgreSQL delivers it when, and only if, the transaction commits, to
every session listening on the channel. Each server keeps ONE listening connection and
turns each notification into the wake-up a local commit gives (`Store.notify_committed`),
so its watch hub reads the new events once for all of its watchers, whichever replica
made the change. Notifications only wake readers; the event log stays the truth, so a
notification lost with a broken connection delays a watch (the hub's slow poll, and a
catch-up wake-up after reconnecting) but never loses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from clusterops_server.store.database import Database

log = logging.getLogger(__name__)

CHANNEL = "clusterops_work_request_events"


async def announce(session: AsyncSession, revision: int) -> None:
    """Queue a notification of `revision`; PostgreSQL sends it at commit."""
    await session.execute(select(func.pg_notify(CHANNEL, str(revision))))


class CommitListener:
    """Listens on CHANNEL over one dedicated connection and reports each revision."""

    def __init__(
        self,
        database: Database,
        on_commit: Callable[[int], None],
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self.database = database
        self.on_commit = on_commit
        self.retry_seconds = retry_seconds
        self._connection: AsyncConnection | None = None
        self._driver: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen before serving, so a broken setup fails at start rather than quietly."""
        await self._listen()
        self._task = asyncio.create_task(self._keep_listening(), name="commit-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._release()

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL process serving the listening connection (for diagnostics)."""
        return None if self._driver is None else int(self._driver.get_server_pid())

    async def _listen(self) -> None:
        self._lost.clear()
        connection = await self.database.engine.connect()
        try:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            driver.add_termination_listener(self._on_terminated)
            await driver.add_listener(CHANNEL, self._on_notification)
        except BaseException:
            await connection.invalidate()
            await connection.close()
            raise
        self._connection, self._driver = connection, driver

    async def _release(self) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            # A connection that listened (or broke) is not handed to anyone else.
            await connection.invalidate()
        with contextlib.suppress(Exception):
            await connection.close()

    async def _keep_listening(self) -> None:
        while True:
            await self._lost.wait()
            log.warning("lost the connection listening for commits; reconnecting")
            await self._release()
            while True:
                await asyncio.sleep(self.retry_seconds)
                try:
                    await self._listen()
                    break
                except Exception as error:
                    log.warning("cannot listen for commits yet: %s", error)
            # Whatever was committed while nobody listened is read now.
            self.on_commit(0)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            revision = int(payload)
        except ValueError:
            revision = 0
        self.on_commit(revision)

    def _on_terminated(self, _connection: Any) -> None:
        self._lost.set()
