"""A task cancelled in the middle of a write transaction must not leave the SQLite write lock
behind (found when stopping the engine or the reconciler mid-transaction froze every writer
for the 30-second busy timeout)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from clusterops_server.clock import FakeClock
from clusterops_server.store.database import Database, default_sqlite_url
from clusterops_server.store.migrate import upgrade_to_head
from clusterops_server.store.uow import Store
from sqlalchemy import text


async def test_cancelling_a_writer_at_any_point_never_keeps_the_write_lock(
    tmp_path: Path,
) -> None:
    database = Database(default_sqlite_url(tmp_path / "cancel.db"))
    await upgrade_to_head(database)
    store = Store(database, FakeClock())
    chance = random.Random(7)

    async def writer() -> None:
        while True:
            async with store.write() as uow:
                await uow.session.execute(text("SELECT revision FROM store_state"))
                await uow.session.execute(text("UPDATE store_state SET revision = revision + 1"))
                await uow.commit()

    try:
        # Cancelling after a varying number of loop turns lands on every await in turn:
        # checkout, BEGIN, each statement, COMMIT, close.
        for _ in range(150):
            task = asyncio.create_task(writer())
            for _ in range(chance.randint(1, 60)):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            async with asyncio.timeout(5), store.write() as uow:
                await uow.session.execute(text("SELECT 1"))
                await uow.commit()
    finally:
        await database.dispose()
