"""Helpers for add-on tests: install over gRPC, and step the fake clock check by check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock

from tests.conftest import Stubs
from tests.helpers import watch_to_end


async def install(
    stubs: Stubs,
    cluster_id: str,
    name: str = "CertManager",
    *,
    version: str = "",
    configurations: dict[str, str] | None = None,
    override_existing: bool = False,
) -> ad_pb.InstallAddonResponse:
    """Install an add-on and wait for its ENABLE_ADDON work request to end."""
    response = await stubs.addons.InstallAddon(
        ad_pb.InstallAddonRequest(
            cluster_id=cluster_id,
            name=name,
            version=version,
            configurations=[
                ad_pb.AddonConfiguration(key=k, value=v) for k, v in (configurations or {}).items()
            ],
            override_existing=override_existing,
        )
    )
    await watch_to_end(stubs, response.work_request.id)
    return response


async def get_addon(stubs: Stubs, cluster_id: str, name: str = "CertManager") -> ad_pb.Addon:
    return (
        await stubs.addons.GetAddon(ad_pb.GetAddonRequest(cluster_id=cluster_id, name=name))
    ).addon


async def get_work_request(stubs: Stubs, work_request_id: str) -> wr_pb.WorkRequest:
    return (
        await stubs.work_requests.GetWorkRequest(
            wr_pb.GetWorkRequestRequest(work_request_id=work_request_id)
        )
    ).work_request


async def logs_of(stubs: Stubs, work_request_id: str) -> list[wr_pb.WorkRequestLogEntry]:
    return list(
        (
            await stubs.work_requests.ListWorkRequestLogs(
                wr_pb.ListWorkRequestLogsRequest(work_request_id=work_request_id, page_size=1000)
            )
        ).log_entries
    )


async def next_wakeup(clock: FakeClock) -> datetime:
    """The next time something in the server sleeps until, once it has parked on the clock.

    With one add-on and nothing else scheduled, that is its next check: the engine
    (a reconciliation waiting between checks) or the reconciler (the next scheduled
    check) parks on it after the previous pass has been recorded.
    """
    while True:
        await clock.wait_for_sleepers(1)
        # The engine renews its timer now and then; a renewed one has the same deadline.
        pending = clock.pending()
        if pending:
            return pending[0]


async def run_next_check(clock: FakeClock) -> datetime:
    """Advance the clock to the next check and return its time."""
    when = await next_wakeup(clock)
    clock.advance_to(when)
    return when


async def until(app: App, condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until `condition` holds, re-checking after each commit of a work request change."""
    changed = asyncio.Event()
    app.store.on_commit(lambda _: changed.set())

    async def wait() -> None:
        while True:
            changed.clear()
            if await condition():
                return
            await changed.wait()

    await asyncio.wait_for(wait(), within)
