"""`clusterops orc` for rollouts under control (issue 16): stages, budgets, pause, resume,
approve, and `orc get` with a table of stages and a progress bar each."""

from __future__ import annotations

import argparse

import pytest
from clusterops.cli._commands import budget, duration, stage_spec
from clusterops_server.app import App
from clusterops_server.clock import FakeClock

from tests.conftest import seed_cluster
from tests.test_cli import Run
from tests.test_orchestration_scheduling import at


@pytest.fixture
def run(app: App, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(app, capsys)


def test_a_stage_is_a_name_and_its_settings() -> None:
    canary = stage_spec("canary:count=1,soak=30m")
    assert (canary.name, canary.count, canary.soak) == ("canary", 1, duration("30m"))
    rest = stage_spec("rest:workers=5,approval,budget=10%")
    assert (rest.workers, rest.requires_approval, rest.failure_budget) == (5, True, "10%")
    assert stage_spec("all").name == "all"
    assert duration("1h30m").total_seconds() == 5400
    assert budget("2") == 2
    for bad in ("Canary:count=1", "x:count=one", "x:soak=soon", "x:approval=yes", "x:color=red"):
        with pytest.raises(argparse.ArgumentTypeError):
            stage_spec(bad)


async def test_orc_create_with_stages_then_get_pause_resume_and_approve(
    app: App, run: Run, clock: FakeClock
) -> None:
    for _ in range(3):
        await seed_cluster(app, window=None)
    code = await run(
        "orc",
        "create",
        "--compartment",
        "dev",
        "--target",
        "all",
        "--version",
        "v1.30.4",
        "--stage",
        "canary:count=1,soak=30m",
        "--stage",
        "rest:workers=5,approval",
        "--failure-budget",
        "2",
        "--reason",
        "monthly patch",
        "-o",
        "json",
    )
    assert code == 0
    created = run.json()
    assert isinstance(created, dict)
    orchestration_id = created["orchestration"]["id"]
    strategy = created["orchestration"]["parameters"]["strategy"]
    assert [s["name"] for s in strategy["stages"]] == ["canary", "rest"]
    assert strategy["failure_budget"]["max_failures"] == 2
    assert created["work_request"]["reason"] == "monthly patch"
    await app.engine.wait_idle()

    assert await run("orc", "get", orchestration_id) == 0
    lines = run.out.splitlines()
    table = lines[lines.index("progress by stage:") + 1 :]
    assert table[0].split() == [
        "STAGE", "STATE", "PROGRESS", "DONE", "FAILED", "STARTED", "ENDED", "NOTE"
    ]  # fmt: skip
    canary, rest = (row.split() for row in table[1:3])
    assert canary[:5] == ["canary", "SOAKING", "[" + "#" * 20 + "]", "1/1", "0"]
    assert " ".join(canary[7:]) == "soak ends 2026-01-05T09:30:00Z"
    assert rest[:5] == ["rest", "PENDING", "[" + "." * 20 + "]", "0/2", "0"]

    assert await run("orc", "pause", orchestration_id, "--reason", "incident") == 0
    assert "PAUSED" in run.out
    clock.advance_to(at(10))
    await app.engine.wait_idle()
    assert await run("orc", "operations", orchestration_id, "--stage", "rest") == 0
    rows = run.out.splitlines()[1:]
    assert [row.split()[2:4] for row in rows] == [["PENDING", "PAUSE"]] * 2
    assert await run("orc", "resume", orchestration_id) == 0
    await app.engine.wait_idle()
    assert await run("orc", "operations", orchestration_id, "--stage", "rest") == 0
    assert [row.split()[2:4] for row in run.out.splitlines()[1:]] == [["PENDING", "APPROVAL"]] * 2
    assert await run("orc", "approve", orchestration_id, "rest", "--reason", "ok") == 0
    await app.engine.wait_idle()
    assert await run("orc", "get", orchestration_id, "-o", "json") == 0
    done = run.json()
    assert isinstance(done, dict)
    assert done["state"] == "ORCHESTRATION_STATE_SUCCEEDED"
    assert [s["state"] for s in done["stages"]] == ["STAGE_STATE_COMPLETED"] * 2
    assert done["stages"][1]["approved_by"] == "system"
