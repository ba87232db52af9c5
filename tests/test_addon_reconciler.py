"""The add-on reconciler, as OKE documents it, driven on the fake clock.

ACTIVE add-ons are checked every 12 hours and drift is repaired; an add-on that cannot
be fully repaired, or whose pods are not ready, is NEEDS_ATTENTION and is checked every
few minutes, a little later each time, for about 12.5 hours; the reconciliation's work
request FAILS after about 30 minutes. Hours of this run in well under a second.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
from clusterops.v1 import addons_pb2 as ad_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App, ServerConfig
from clusterops_server.clock import FakeClock
from clusterops_server.domain.addons import Addon, AddonState
from clusterops_server.domain.listing import PageRequest
from clusterops_server.domain.work_requests import OperationType, WorkRequestQuery
from clusterops_server.providers.simulated import addon_resources
from clusterops_server.store.database import default_sqlite_url

from tests.addon_helpers import (
    get_addon,
    get_work_request,
    install,
    logs_of,
    next_wakeup,
    run_next_check,
    until,
)
from tests.conftest import AppFactory, Stubs, seed_cluster, simulator
from tests.helpers import watch_to_end

HOURS_12 = timedelta(hours=12)
DEPLOYMENT, SERVICE, _ = addon_resources("CertManager")


def packaged_catalogue() -> dict[str, Any]:
    text = (resources.files("clusterops_server") / "data" / "addons.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


async def active_addon(app: App, stubs: Stubs, *, version: str = "v1.29.8") -> str:
    cluster = await seed_cluster(app, version=version)
    await install(stubs, cluster.id)
    assert (
        await get_addon(stubs, cluster.id)
    ).lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    return cluster.id


async def reconciliations(stubs: Stubs, cluster_id: str) -> list[wr_pb.WorkRequest]:
    """The add-on's RECONCILE_ADDON work requests, oldest first."""
    listed = await stubs.work_requests.ListWorkRequests(
        wr_pb.ListWorkRequestsRequest(
            resource_id=f"{cluster_id}/CertManager",
            filter="operation_type = RECONCILE_ADDON",
            page_size=1000,
        )
    )
    return list(reversed(listed.work_requests))


async def test_drift_on_an_active_addon_is_repaired_at_the_twelve_hour_check(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    installed_at = clock.now()
    await simulator(app).tamper_addon(cluster_id, "CertManager", delete=[DEPLOYMENT])
    # Nothing looks before the 12 hours are up.
    assert await next_wakeup(clock) == installed_at + HOURS_12

    checked_at = await run_next_check(clock)
    assert await next_wakeup(clock) == checked_at + HOURS_12
    (reconciliation,) = await reconciliations(stubs, cluster_id)
    assert reconciliation.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    messages = [e.message for e in await logs_of(stubs, reconciliation.id)]
    assert any(
        f"Drift found ({DEPLOYMENT} deleted); repaired; CertManager v1.14.5 is healthy" in m
        for m in messages
    )
    addon = await get_addon(stubs, cluster_id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    assert addon.work_request_id == reconciliation.id
    on_cluster = await simulator(app).addon_on_cluster(cluster_id, "CertManager")
    assert on_cluster is not None
    assert on_cluster.drift == ()


async def test_a_healthy_check_leaves_a_log_line_and_changes_nothing(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    before = await get_addon(stubs, cluster_id)
    await run_next_check(clock)
    await next_wakeup(clock)
    (reconciliation,) = await reconciliations(stubs, cluster_id)
    assert reconciliation.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    messages = [e.message for e in await logs_of(stubs, reconciliation.id)]
    assert any("Check: CertManager v1.14.5 is healthy; next check at" in m for m in messages)
    after = await get_addon(stubs, cluster_id)
    assert after.lifecycle_state == before.lifecycle_state
    assert after.current_installed_version == before.current_installed_version


async def test_a_partial_repair_moves_the_addon_to_needs_attention_with_the_oke_error(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    await simulator(app).tamper_addon(
        cluster_id, "CertManager", delete=[DEPLOYMENT, SERVICE], stuck=[SERVICE]
    )
    checked_at = await run_next_check(clock)
    # The next check comes within minutes, not hours.
    assert await next_wakeup(clock) == checked_at + timedelta(minutes=2)

    addon = await get_addon(stubs, cluster_id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    # Exactly OKE's addon-error; which resource is wrong is in the work request's log.
    assert (addon.addon_error.code, addon.addon_error.message, addon.addon_error.status) == (
        "409",
        "Incorrect state for CR",
        "IncorrectState",
    )
    reconciliation = await get_work_request(stubs, addon.work_request_id)
    assert reconciliation.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    messages = [e.message for e in await logs_of(stubs, reconciliation.id)]
    assert any(f"repair was partial, still: {SERVICE} deleted" in m for m in messages)
    on_cluster = await simulator(app).addon_on_cluster(cluster_id, "CertManager")
    assert on_cluster is not None
    # Restored what it could; the stuck service is still gone.
    assert on_cluster.drift == (f"{SERVICE} deleted",)


async def test_needs_attention_checks_grow_apart_and_recovery_returns_active(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    first_check = clock.now() + HOURS_12
    recovers_at = first_check + timedelta(minutes=20)
    await simulator(app).make_addon_unhealthy(
        cluster_id,
        "CertManager",
        "deployment/cert-manager: 0/1 pods ready (Unschedulable)",
        until=recovers_at,
    )
    assert await run_next_check(clock) == first_check
    await next_wakeup(clock)
    addon = await get_addon(stubs, cluster_id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    assert addon.addon_error.status == "DeploymentNotReady"
    assert "Unschedulable" in addon.addon_error.message
    reconciliation_id = addon.work_request_id

    checks = [first_check]
    while (
        await get_addon(stubs, cluster_id)
    ).lifecycle_state != ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE:
        checks.append(await run_next_check(clock))
        await next_wakeup(clock)
    gaps = [later - earlier for earlier, later in itertools.pairwise(checks)]
    assert gaps[0] == timedelta(minutes=2)
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
    assert all(gap < timedelta(minutes=10) for gap in gaps)
    # It recovered at the first check after the pods did.
    assert checks[-2] < recovers_at <= checks[-1]

    addon = await get_addon(stubs, cluster_id)
    assert not addon.HasField("addon_error")
    assert await next_wakeup(clock) == checks[-1] + HOURS_12
    # One reconciliation saw it all through (it recovered within 30 minutes).
    assert addon.work_request_id == reconciliation_id
    reconciliation = await get_work_request(stubs, reconciliation_id)
    assert reconciliation.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    logs = await logs_of(stubs, reconciliation_id)
    check_lines = [e for e in logs if e.message.startswith(("Check", "Recovered"))]
    assert [e.timestamp.ToDatetime(tzinfo=checks[0].tzinfo) for e in check_lines] == checks
    assert check_lines[-1].message.startswith("Recovered: ")


async def checks_until_they_stop(
    app: App, stubs: Stubs, clock: FakeClock, cluster_id: str
) -> list[datetime]:
    """Run check after check of an add-on that entered NEEDS_ATTENTION at the last check,
    until its checks stop and the last reconciliation has ended; the check times."""
    since = clock.now()
    checks = [since]
    while checks[-1] < since + timedelta(hours=12, minutes=30):
        checks.append(await run_next_check(clock))

    async def last_check_recorded() -> bool:
        addon = await get_addon(stubs, cluster_id)
        wr = await get_work_request(stubs, addon.work_request_id)
        return (
            wr.status == wr_pb.WORK_REQUEST_STATUS_FAILED
            and wr.time_finished.ToDatetime(tzinfo=since.tzinfo) == checks[-1]
        )

    await until(app, last_check_recorded)
    return checks


async def test_without_recovery_checks_stop_after_twelve_and_a_half_hours(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    started = time.monotonic()
    cluster_id = await active_addon(app, stubs)
    await simulator(app).tamper_addon(cluster_id, "CertManager", delete=[SERVICE], stuck=[SERVICE])
    since = await run_next_check(clock)
    await next_wakeup(clock)
    first_reconciliation = (await get_addon(stubs, cluster_id)).work_request_id

    checks = await checks_until_they_stop(app, stubs, clock, cluster_id)
    # The last check was at 12.5 hours; nothing more is scheduled.
    assert checks[0] == since
    assert checks[-1] == since + timedelta(hours=12, minutes=30)
    assert clock.pending() == []
    last = (await get_addon(stubs, cluster_id)).work_request_id
    gaps = [later - earlier for earlier, later in itertools.pairwise(checks)]
    assert gaps[0] == timedelta(minutes=2)
    # Growing, up to the cap, until the window's end cuts the last one short.
    assert all(a <= b for a, b in itertools.pairwise(gaps[:-1]))
    assert max(gaps) == app.config.reconcile.attention_max_interval

    # The first reconciliation's work request FAILED after about 30 minutes, with the reason.
    first = await get_work_request(stubs, first_reconciliation)
    assert first.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    lasted = first.time_finished.ToDatetime() - first.time_started.ToDatetime()
    assert timedelta(minutes=30) <= lasted < timedelta(minutes=40)
    errors = (
        await stubs.work_requests.ListWorkRequestErrors(
            wr_pb.ListWorkRequestErrorsRequest(work_request_id=first.id)
        )
    ).errors
    assert [(e.code, e.message) for e in errors] == [
        ("IncorrectState", f"Incorrect state for CR: {SERVICE} deleted (code 409)")
    ]
    assert any(
        "did not recover within 30 minutes; checks go on" in e.message
        for e in await logs_of(stubs, first.id)
    )

    # Every check left exactly one log line on a reconciliation's work request.
    lines = [
        e
        for wr in await reconciliations(stubs, cluster_id)
        for e in await logs_of(stubs, wr.id)
        if e.message.startswith("Check")
    ]
    assert len(lines) == len(checks)
    assert "checks stop" in lines[-1].message

    # The state stays NEEDS_ATTENTION, however long one waits.
    clock.advance(timedelta(days=3).total_seconds())
    addon = await get_addon(stubs, cluster_id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    assert addon.addon_error.message == "Incorrect state for CR"
    assert addon.work_request_id == last
    # About a second of real time for 12.5 hours on an idle machine; nothing waits on a
    # real-time poll (25 checks would take minutes if one did).
    assert time.monotonic() - started < 20


async def test_a_reconciliation_waiting_for_its_next_check_can_be_watched(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    await simulator(app).tamper_addon(cluster_id, "CertManager", delete=[SERVICE], stuck=[SERVICE])
    await run_next_check(clock)
    await next_wakeup(clock)
    reconciliation_id = (await get_addon(stubs, cluster_id)).work_request_id
    call = stubs.work_requests.WatchWorkRequest(
        wr_pb.WatchWorkRequestRequest(work_request_id=reconciliation_id)
    )
    snapshot = await call.read()
    assert isinstance(snapshot, wr_pb.WatchWorkRequestResponse)
    assert snapshot.event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT
    await run_next_check(clock)
    change = await call.read()
    assert isinstance(change, wr_pb.WatchWorkRequestResponse)
    assert change.event_type == wr_pb.WATCH_EVENT_TYPE_CHANGE
    assert [e.message.split(":")[0] for e in change.log_entries] == ["Check 1 in NEEDS_ATTENTION"]
    call.cancel()


async def test_canceling_a_waiting_reconciliation_keeps_the_schedule(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    await simulator(app).make_addon_unhealthy(cluster_id, "CertManager", "pods pending")
    checked_at = await run_next_check(clock)
    assert await next_wakeup(clock) == checked_at + timedelta(minutes=2)
    waiting = (await get_addon(stubs, cluster_id)).work_request_id
    await stubs.work_requests.CancelWorkRequest(
        wr_pb.CancelWorkRequestRequest(work_request_id=waiting)
    )
    events = await watch_to_end(stubs, waiting)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    # The next check stays where it was; it opens a new reconciliation.
    assert await run_next_check(clock) == checked_at + timedelta(minutes=2)
    await next_wakeup(clock)
    found = await reconciliations(stubs, cluster_id)
    assert [w.status for w in found] == [
        wr_pb.WORK_REQUEST_STATUS_CANCELED,
        wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS,
    ]
    addon = await get_addon(stubs, cluster_id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION


async def test_disable_and_reinstall_recovers_an_addon_stuck_in_needs_attention(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    await simulator(app).tamper_addon(cluster_id, "CertManager", delete=[SERVICE], stuck=[SERVICE])
    await run_next_check(clock)
    await next_wakeup(clock)
    stuck = await get_addon(stubs, cluster_id)
    assert stuck.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION

    disabled = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(
            cluster_id=cluster_id, name="CertManager", remove_existing=True, etag=stuck.etag
        )
    )
    await watch_to_end(stubs, disabled.work_request.id)
    # The waiting reconciliation gave way to the person's operation.
    superseded = await get_work_request(stubs, stuck.work_request_id)
    assert superseded.status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    assert any(
        f"Superseded by DISABLE_ADDON {disabled.work_request.id}" == e.message
        for e in await logs_of(stubs, superseded.id)
    )
    installed_at = clock.now()
    await install(stubs, cluster_id)
    addon = await get_addon(stubs, cluster_id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    assert not addon.HasField("addon_error")
    assert addon.etag != stuck.etag
    assert await next_wakeup(clock) == installed_at + HOURS_12
    await run_next_check(clock)
    await next_wakeup(clock)
    assert (
        await get_addon(stubs, cluster_id)
    ).lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE


async def test_disable_keeping_it_then_reinstall_recovers_an_essential_addon_in_needs_attention(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    """CoreDNS is essential: it cannot be disabled with remove_existing, so disabling
    leaves it on the cluster, and reinstalling adopts it without override_existing."""
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id, "CoreDNS")
    dns_service = addon_resources("CoreDNS")[1]
    await simulator(app).tamper_addon(
        cluster.id, "CoreDNS", delete=[dns_service], stuck=[dns_service]
    )
    await run_next_check(clock)
    await next_wakeup(clock)
    stuck = await get_addon(stubs, cluster.id, "CoreDNS")
    assert stuck.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    # The person fixes what kept the service from coming back, then disables and reinstalls.
    await simulator(app).tamper_addon(cluster.id, "CoreDNS", delete=[dns_service])
    disabled = await stubs.addons.DisableAddon(
        ad_pb.DisableAddonRequest(cluster_id=cluster.id, name="CoreDNS", etag=stuck.etag)
    )
    await watch_to_end(stubs, disabled.work_request.id)
    assert (await get_work_request(stubs, stuck.work_request_id)).status == (
        wr_pb.WORK_REQUEST_STATUS_CANCELED
    )
    kept = await simulator(app).addon_on_cluster(cluster.id, "CoreDNS")
    assert kept is not None
    assert not kept.managed

    installed_at = clock.now()
    response = await install(stubs, cluster.id, "CoreDNS")
    assert (await get_work_request(stubs, response.work_request.id)).status == (
        wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    )
    addon = await get_addon(stubs, cluster.id, "CoreDNS")
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    assert not addon.HasField("addon_error")
    assert await next_wakeup(clock) == installed_at + HOURS_12
    on_cluster = await simulator(app).addon_on_cluster(cluster.id, "CoreDNS")
    assert on_cluster is not None
    assert (on_cluster.managed, on_cluster.drift) == (True, ())


async def test_an_update_triggers_an_immediate_reconciliation(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    updated = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(
            cluster_id=cluster_id,
            name="CertManager",
            configurations=[ad_pb.AddonConfiguration(key="numOfReplicas", value="2")],
        )
    )
    await watch_to_end(stubs, updated.work_request.id)

    async def reconciled() -> bool:
        found = await reconciliations(stubs, cluster_id)
        return bool(found) and found[0].status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED

    await until(app, reconciled)
    (reconciliation,) = await reconciliations(stubs, cluster_id)
    # At once: the clock has not moved since the update.
    assert reconciliation.time_accepted.ToDatetime(tzinfo=clock.now().tzinfo) == clock.now()
    assert (await get_addon(stubs, cluster_id)).work_request_id == reconciliation.id
    assert await next_wakeup(clock) == clock.now() + HOURS_12


async def test_an_update_restarts_checks_that_had_stopped(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    await simulator(app).tamper_addon(cluster_id, "CertManager", delete=[SERVICE], stuck=[SERVICE])
    await run_next_check(clock)
    await next_wakeup(clock)
    await checks_until_they_stop(app, stubs, clock, cluster_id)
    assert clock.pending() == []
    clock.advance(timedelta(hours=5).total_seconds())
    # The person fixes the cause, then asks for a reconciliation by updating the add-on.
    await simulator(app).tamper_addon(cluster_id, "CertManager", delete=[SERVICE])
    response = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(cluster_id=cluster_id, name="CertManager")
    )
    assert response.work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_RECONCILE_ADDON
    events = await watch_to_end(stubs, response.work_request.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    addon = await get_addon(stubs, cluster_id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    assert await next_wakeup(clock) == clock.now() + HOURS_12


async def test_an_update_of_a_waiting_reconciliation_supersedes_it(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    await simulator(app).make_addon_unhealthy(cluster_id, "CertManager", "pods crash-looping")
    await run_next_check(clock)
    await next_wakeup(clock)
    waiting = (await get_addon(stubs, cluster_id)).work_request_id
    response = await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(cluster_id=cluster_id, name="CertManager", version="v1.13.3")
    )
    assert response.addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_UPDATING
    assert (await get_work_request(stubs, waiting)).status == wr_pb.WORK_REQUEST_STATUS_CANCELED
    updated_at = clock.now()

    # The update itself finds the pods still unhealthy, and follows the add-on from there.
    async def attention() -> bool:
        addon = await get_addon(stubs, cluster_id)
        return addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION

    await until(app, attention)
    assert await next_wakeup(clock) == updated_at + timedelta(minutes=2)
    addon = await get_addon(stubs, cluster_id)
    assert addon.current_installed_version == "v1.13.3"
    assert addon.addon_error.message == "pods crash-looping"
    assert addon.work_request_id == response.work_request.id
    update = await get_work_request(stubs, response.work_request.id)
    assert update.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    assert await reconciliations(stubs, cluster_id) == [await get_work_request(stubs, waiting)]


async def test_a_restart_keeps_the_schedule(tmp_path: Path, clock: FakeClock) -> None:
    def build() -> App:
        return App(
            ServerConfig(
                database_url=default_sqlite_url(tmp_path / "restart.db"),
                port=0,
                engine_poll_seconds=0.2,
                watch_poll_seconds=0.2,
            ),
            clock=clock,
        )

    first = build()
    await first.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            stubs = Stubs(channel)
            early = await active_addon(first, stubs)
            early_check = clock.now() + HOURS_12
            clock.advance(timedelta(hours=6).total_seconds())
            late = await active_addon(first, stubs)
            late_check = clock.now() + HOURS_12
            assert await next_wakeup(clock) == early_check
    finally:
        await first.stop(grace=0)

    # Down for a while: the first check comes due meanwhile, the second does not.
    clock.advance_to(early_check + timedelta(hours=1))
    second = build()
    await second.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            stubs = Stubs(channel)
            restarted_at = clock.now()
            # The due check runs at once; the future one keeps its time.
            assert await next_wakeup(clock) == late_check

            async def checked() -> bool:
                found = await reconciliations(stubs, early)
                return bool(found) and found[0].status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED

            await until(second, checked)
            (done,) = await reconciliations(stubs, early)
            assert done.time_accepted.ToDatetime(tzinfo=restarted_at.tzinfo) == restarted_at
            assert await reconciliations(stubs, late) == []
            assert await run_next_check(clock) == late_check
            await next_wakeup(clock)
            assert len(await reconciliations(stubs, late)) == 1
    finally:
        await second.stop(grace=0)


async def test_a_restart_resumes_a_reconciliation_waiting_between_checks(
    tmp_path: Path, clock: FakeClock
) -> None:
    def build() -> App:
        return App(
            ServerConfig(
                database_url=default_sqlite_url(tmp_path / "waiting.db"),
                port=0,
                engine_poll_seconds=0.2,
                watch_poll_seconds=0.2,
            ),
            clock=clock,
        )

    first = build()
    await first.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            stubs = Stubs(channel)
            cluster_id = await active_addon(first, stubs)
            await simulator(first).make_addon_unhealthy(
                cluster_id,
                "CertManager",
                "no nodes",
                until=clock.now() + HOURS_12 + timedelta(minutes=1),
            )
            checked_at = await run_next_check(clock)
            assert await next_wakeup(clock) == checked_at + timedelta(minutes=2)
            waiting = (await get_addon(stubs, cluster_id)).work_request_id
    finally:
        await first.stop(grace=0)

    second = build()
    await second.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            stubs = Stubs(channel)
            assert await run_next_check(clock) == checked_at + timedelta(minutes=2)
            events = await watch_to_end(stubs, waiting)
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            addon = await get_addon(stubs, cluster_id)
            assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    finally:
        await second.stop(grace=0)


async def test_an_addon_following_the_newest_version_moves_forward_when_the_catalogue_gains_one(
    make_app: AppFactory, tmp_path: Path, clock: FakeClock
) -> None:
    catalogue = packaged_catalogue()
    path = tmp_path / "addons.json"
    path.write_text(json.dumps(catalogue))
    app = await make_app(addon_catalogue_path=path)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stubs = Stubs(channel)
        cluster_id = await active_addon(app, stubs)
        pinned = await seed_cluster(app)
        await install(stubs, pinned.id, version="v1.14.5")
        assert (await get_addon(stubs, cluster_id)).current_installed_version == "v1.14.5"

        (certs,) = [a for a in catalogue["addons"] if a["name"] == "CertManager"]
        certs["versions"].append(
            {"version": "v1.16.0", "status": "ACTIVE", "kubernetes_versions": ["v1.29", "v1.30"]}
        )
        path.write_text(json.dumps(catalogue, indent=1))
        await run_next_check(clock)

        async def both_checked() -> bool:
            for cluster in (cluster_id, pinned.id):
                found = await reconciliations(stubs, cluster)
                if not found or found[0].status != wr_pb.WORK_REQUEST_STATUS_SUCCEEDED:
                    return False
            return True

        await until(app, both_checked)

        follower = await get_addon(stubs, cluster_id)
        assert follower.version == ""
        assert follower.current_installed_version == "v1.16.0"
        logs = await logs_of(stubs, follower.work_request_id)
        assert any(
            "newer ACTIVE version v1.16.0 to follow (installed v1.14.5)" in e.message for e in logs
        )
        # An add-on pinned to a version stays on it.
        assert (await get_addon(stubs, pinned.id)).current_installed_version == "v1.14.5"


async def test_due_checks_are_found_in_the_store_by_one_sleeping_task(
    app: App, clock: FakeClock
) -> None:
    """Thousands of scheduled add-ons cost one timer; a due batch larger than the
    reconciler's batch size is opened in full."""
    await app.engine.stop()  # look at the scheduler alone: opened work requests stay ACCEPTED
    cluster = await seed_cluster(app)
    now = clock.now()
    async with app.store.write() as uow:
        for i in range(2000):
            await uow.addons.add(
                Addon(
                    cluster_id=cluster.id,
                    compartment_id=cluster.compartment_id,
                    name=f"Addon{i:04d}",
                    version="v1",
                    configurations={},
                    lifecycle_state=AddonState.ACTIVE,
                    create_time=now,
                    update_time=now,
                    current_installed_version="v1",
                    next_check_at=now + timedelta(minutes=10 + i),
                )
            )
        await uow.commit()
    app.reconciler.wake()
    assert await next_wakeup(clock) == now + timedelta(minutes=10)
    assert len(clock.pending()) == 1

    clock.advance_to(now + timedelta(minutes=10 + 149))
    assert await next_wakeup(clock) == now + timedelta(minutes=10 + 150)
    async with app.store.read() as uow:
        opened = await uow.work_requests.list_work_requests(
            WorkRequestQuery(), PageRequest(size=1000)
        )
    assert [w.operation_type for w in opened.items] == [OperationType.RECONCILE_ADDON] * 150


async def test_a_check_that_comes_due_during_an_operation_waits_for_it(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster_id = await active_addon(app, stubs)
    check_at = await next_wakeup(clock)
    await app.engine.stop()  # the update below stays in flight
    await stubs.addons.UpdateAddon(
        ad_pb.UpdateAddonRequest(cluster_id=cluster_id, name="CertManager", version="v1.13.3")
    )
    clock.advance_to(check_at)
    await app.reconciler.open_due()
    assert await reconciliations(stubs, cluster_id) == []

    # When the update ends, it reconciles the add-on at once.
    await app.engine.start()

    async def reconciled() -> bool:
        found = await reconciliations(stubs, cluster_id)
        return bool(found) and found[0].status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED

    await until(app, reconciled)
    assert len(await reconciliations(stubs, cluster_id)) == 1
    assert (await get_addon(stubs, cluster_id)).current_installed_version == "v1.13.3"


# ---- installs and updates judge the add-on's health as a check does ----


async def start_install(
    app: App, stubs: Stubs, cluster_id: str, **request: Any
) -> wr_pb.WorkRequest:
    """InstallAddon, then wait until its apply has been judged (the add-on left CREATING)."""
    response = await stubs.addons.InstallAddon(
        ad_pb.InstallAddonRequest(cluster_id=cluster_id, name="CertManager", **request)
    )

    async def judged() -> bool:
        addon = await get_addon(stubs, cluster_id)
        return addon.lifecycle_state != ad_pb.ADDON_LIFECYCLE_STATE_CREATING

    await until(app, judged)
    return response.work_request


async def test_an_install_over_unready_pods_needs_attention_until_they_recover(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    installed_at = clock.now()
    await simulator(app).install_addon_by_hand(cluster.id, "CertManager", "v1.13.3")
    await simulator(app).make_addon_unhealthy(
        cluster.id,
        "CertManager",
        "deployment/cert-manager: 0/1 pods ready (CrashLoopBackOff)",
        until=installed_at + timedelta(minutes=3),
    )
    enable = await start_install(app, stubs, cluster.id, override_existing=True)

    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    assert (addon.addon_error.code, addon.addon_error.status) == ("503", "DeploymentNotReady")
    assert "CrashLoopBackOff" in addon.addon_error.message
    assert addon.current_installed_version == "v1.14.5"
    # Checked on the NEEDS_ATTENTION schedule, not in 12 hours; by the install's own
    # work request, which stays open as a reconciliation's would.
    assert await next_wakeup(clock) == installed_at + timedelta(minutes=2)
    assert (await get_work_request(stubs, enable.id)).status == (
        wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    )
    assert await reconciliations(stubs, cluster.id) == []
    messages = [e.message for e in await logs_of(stubs, enable.id)]
    assert any(
        m.startswith("Installed: CertManager v1.14.5 is not ready: deployment/cert-manager")
        and "next check at" in m
        for m in messages
    )

    checks = [await run_next_check(clock)]
    await next_wakeup(clock)
    assert (await get_addon(stubs, cluster.id)).lifecycle_state == (
        ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    )
    checks.append(await run_next_check(clock))
    events = await watch_to_end(stubs, enable.id)
    assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    actions = {r.identifier: r.action_type for r in events[-1].work_request.resources}
    assert actions[f"{cluster.id}/CertManager"] == wr_pb.WORK_REQUEST_RESOURCE_ACTION_TYPE_CREATED
    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_ACTIVE
    assert not addon.HasField("addon_error")
    assert await next_wakeup(clock) == checks[-1] + HOURS_12
    messages = [e.message for e in await logs_of(stubs, enable.id)]
    assert any(m.startswith("Recovered: CertManager v1.14.5 is healthy") for m in messages)


async def test_an_install_that_cannot_be_fully_applied_fails_its_work_request_after_30_minutes(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).install_addon_by_hand(cluster.id, "CertManager", "v1.13.3")
    await simulator(app).tamper_addon(cluster.id, "CertManager", delete=[SERVICE], stuck=[SERVICE])
    installed_at = clock.now()
    enable = await start_install(app, stubs, cluster.id, override_existing=True)

    addon = await get_addon(stubs, cluster.id)
    assert addon.lifecycle_state == ad_pb.ADDON_LIFECYCLE_STATE_NEEDS_ATTENTION
    # OKE's error exactly; the resource that is wrong is in the work request's log.
    assert (addon.addon_error.code, addon.addon_error.message, addon.addon_error.status) == (
        "409",
        "Incorrect state for CR",
        "IncorrectState",
    )
    messages = [e.message for e in await logs_of(stubs, enable.id)]
    assert any(
        f"CertManager v1.14.5 was applied only in part, still: {SERVICE} deleted" in m
        for m in messages
    )

    while (await get_work_request(stubs, enable.id)).status == (
        wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    ):
        await run_next_check(clock)
        await next_wakeup(clock)
    finished = await get_work_request(stubs, enable.id)
    assert finished.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    lasted = finished.time_finished.ToDatetime(tzinfo=installed_at.tzinfo) - installed_at
    assert timedelta(minutes=30) <= lasted < timedelta(minutes=40)
    errors = (
        await stubs.work_requests.ListWorkRequestErrors(
            wr_pb.ListWorkRequestErrorsRequest(work_request_id=enable.id)
        )
    ).errors
    assert [(e.code, e.message) for e in errors] == [
        ("IncorrectState", f"Incorrect state for CR: {SERVICE} deleted (code 409)")
    ]
    # The reconciler's own checks carry on.
    await run_next_check(clock)
    await next_wakeup(clock)
    (reconciliation,) = await reconciliations(stubs, cluster.id)
    assert reconciliation.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    assert (await get_addon(stubs, cluster.id)).work_request_id == reconciliation.id
