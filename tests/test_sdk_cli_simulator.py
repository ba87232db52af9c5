"""`client.simulator` and `clusterops sim ...` against an in-process simulated server, and
what they say against a server with another provider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from clusterops import Fault, Unimplemented
from clusterops_server.app import App
from clusterops_server.clock import FakeClock

from tests.addon_helpers import install
from tests.conftest import AppFactory, Stubs, seed_cluster
from tests.sdk_support import sdk_client
from tests.test_cli import Run
from tests.test_simulator_store import NothingProvider


@pytest.fixture
def run(app: App, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(app, capsys)


async def test_the_sdk_adds_lists_and_clears_faults_and_sets_step_times(app: App) -> None:
    async with sdk_client(app) as client:
        fault = await client.simulator.add_fault("delete_node", "cls-x", times=3, message="m")
        assert isinstance(fault, Fault)
        assert (fault.action, fault.target, fault.remaining, fault.message) == (
            "delete_node",
            "cls-x",
            3,
            "m",
        )
        assert [f.id for f in await client.simulator.list_faults()] == [fault.id]
        assert await client.simulator.clear_faults() == 1
        times = await client.simulator.set_step_time(4, "upgrade:Cluster")
        assert {t.action: t.seconds for t in times.step_times}["upgrade:Cluster"] == 4
        times = await client.simulator.set_step_time(None, "upgrade:Cluster")
        assert not any(t.overridden for t in times.step_times)
        assert (await client.simulator.set_step_time(1.5)).default_seconds == 1.5
        assert (await client.simulator.step_times()).default_seconds == 1.5


async def test_the_sdk_breaks_an_addon_and_refuses_a_naive_until(
    app: App, stubs: Stubs, clock: FakeClock
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    async with sdk_client(app) as client:
        found = await client.simulator.break_addon(
            cluster.id,
            "CertManager",
            "pods_not_ready",
            message="OOMKilled",
            until=clock.now() + timedelta(minutes=5),
        )
        assert list(found.not_ready) == ["OOMKilled"]
        with pytest.raises(ValueError, match="aware datetime"):
            await client.simulator.break_addon(
                cluster.id,
                "CertManager",
                "DEPLOYMENT_STUCK",
                until=clock.now().replace(tzinfo=None),
            )
        with pytest.raises(ValueError, match="breakage"):
            await client.simulator.break_addon(cluster.id, "CertManager", "EXPLODED")


async def test_the_sdk_raises_unimplemented_against_another_provider(
    make_app: AppFactory,
) -> None:
    app = await make_app(provider_factory=NothingProvider)
    async with sdk_client(app) as client:
        with pytest.raises(Unimplemented):
            await client.simulator.list_faults()


async def test_sim_faults_add_list_clear_in_tables_and_json(app: App, run: Run) -> None:
    assert await run("sim", "faults", "add", "provision_node", "--always", "--message", "full") == 0
    assert "action: provision_node" in run.out
    assert "remaining: -1" in run.out
    assert await run("sim", "faults", "add", "upgrade:PostCheck", "--target", "cls-1") == 0
    assert await run("sim", "faults", "list") == 0
    header, *rows = run.out.splitlines()
    assert header.split() == ["ID", "ACTION", "TARGET", "REMAINING", "MESSAGE"]
    assert [row.split()[1:4] for row in rows] == [
        ["provision_node", "*", "-1"],
        ["upgrade:PostCheck", "cls-1", "1"],
    ]
    assert await run("sim", "faults", "list", "-o", "json") == 0
    listed = run.json()
    assert isinstance(listed, list)
    assert [f["action"] for f in listed] == ["provision_node", "upgrade:PostCheck"]
    assert await run("sim", "faults", "clear") == 0
    assert run.out.strip() == "2 fault(s) cleared"
    assert await run("sim", "faults", "list") == 0
    assert run.out.strip() == "(none)"


async def test_sim_step_time_shows_sets_and_resets(app: App, run: Run) -> None:
    assert await run("sim", "step-time") == 0
    assert run.out.splitlines()[0] == "default: 0 seconds"
    assert await run("sim", "step-time", "12", "--action", "provision_node") == 0
    line = next(row for row in run.out.splitlines() if row.startswith("provision_node"))
    assert line.split() == ["provision_node", "12", "yes"]
    assert await run("sim", "step-time", "3") == 0
    assert run.out.splitlines()[0] == "default: 3 seconds"
    assert await run("sim", "step-time", "--reset", "--action", "provision_node", "-o", "json") == 0
    shown = run.json()
    assert isinstance(shown, dict)
    own = {t["action"]: t.get("overridden", False) for t in shown["step_times"]}
    assert not any(own.values())
    with pytest.raises(SystemExit) as usage:
        await run("sim", "step-time", "nan")
    assert usage.value.code == 2
    assert "must be a number of seconds from 0" in run.capsys.readouterr().err


async def test_sim_break_addon_prints_what_is_wrong_and_names_bad_input(
    app: App, stubs: Stubs, run: Run
) -> None:
    cluster = await seed_cluster(app)
    await install(stubs, cluster.id)
    assert await run("sim", "break-addon", cluster.id, "CertManager") == 0
    assert run.out.strip() == "deployment/cert-manager deleted"
    assert await run(
        "sim", "break-addon", cluster.id, "CertManager", "--not-ready", "CrashLoopBackOff",
        "--until", "2099-01-01T00:00:00Z",
    ) == 0  # fmt: skip
    assert run.out.splitlines() == ["deployment/cert-manager deleted", "CrashLoopBackOff"]
    assert await run("sim", "break-addon", cluster.id, "Nope") != 0
    assert "not found" in run.err.lower()
    assert await run("sim", "break-addon", "cls-bad", "CertManager", "--stuck") != 0
    assert "cluster_id" in run.err
    assert await run("sim", "faults", "add", "nap_time") != 0
    assert "action" in run.err
