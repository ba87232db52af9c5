"""The watch hub's own lifecycle."""

from __future__ import annotations

import asyncio

from clusterops_server.app import App
from clusterops_server.watch import WatchHub


async def test_closing_the_hub_as_a_wake_up_lands_still_stops_it(app: App) -> None:
    # Whichever loop iteration the close lands in, relative to the wake-up.
    for ticks in range(6):
        hub = WatchHub(app.store, poll_seconds=60)
        await hub.start()
        await asyncio.sleep(0)
        hub.notify()
        for _ in range(ticks):
            await asyncio.sleep(0)
        closing = asyncio.create_task(hub.close())
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert done, f"close() hung when it landed {ticks} iterations after a wake-up"
