"""The benchmark runner works: `python -m bench --quick` of the cheap families measures every
row, prints the table and writes JSON lines; a failing figure becomes an error in its row
without stopping the others. No timing is asserted: figures are bench/'s business."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import report, runner
from bench.floor import QUICK, drive
from bench.results import Row, print_table

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_of_rpc_and_engine_families_writes_every_row(tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "rpc_qps",
            "--only",
            "engine_throughput",
            "--store",
            "sqlite",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(row["family"], row["figure"]) for row in rows] == [
        ("rpc_qps", "GetWorkRequest QPS / floor"),
        ("rpc_qps", "GetCluster QPS / floor"),
        ("rpc_qps", "ListWorkRequests (page of 50) QPS / floor"),
        ("rpc_qps", "CreateCluster (unique names) QPS / floor"),
        ("engine_throughput", "node pool of 3, zero-time steps: operations/s"),
        ("engine_throughput", "node pool of 3, zero-time steps: SQL statements per operation"),
    ]
    for row in rows:
        assert row["error"] is None, row
        assert row["value"] > 0, row
        assert row["store"] == "sqlite"
        assert len(row["load_avg"]) == 3
        assert row["run"]["quick"] is True
    for row in rows[:4]:
        # QPS against the floor measured in the same run: the ratio is the figure.
        assert row["baseline"] > 0
        assert row["ratio"] == pytest.approx(row["value"] / row["baseline"])
        assert row["details"]["errors"] == 0
    for row in rows:
        assert row["figure"] in done.stdout

    readme = tmp_path / "README.md"
    readme.write_text(f"# Performance\n\n{report.BEGIN}\nstale\n{report.END}\n\n## Next\n")
    report.into_readme(output, readme)
    text = readme.read_text()
    assert "stale" not in text
    assert text.endswith(f"{report.END}\n\n## Next\n")
    for row in rows:
        assert f"| {row['figure']} | sqlite |" in text


def test_a_family_that_breaks_is_an_error_row_and_the_next_family_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def breaks_after_one_row(options: runner.Options) -> Iterator[Row]:
        yield Row("first", "measured", 1.0, "x")
        raise RuntimeError("server went away")

    def fine(options: runner.Options) -> Iterator[Row]:
        yield Row("second", "also measured", 2.0, "x")

    monkeypatch.setattr(runner, "FAMILIES", {"first": breaks_after_one_row, "second": fine})
    options = runner.Options(quick=True, stores=("sqlite",), protocol=QUICK)
    rows = list(runner.measure(["first", "second"], options))
    assert [(row.figure, row.error) for row in rows] == [
        ("measured", None),
        ("first (family)", "RuntimeError: server went away"),
        ("also measured", None),
    ]
    table = io.StringIO()
    print_table(rows, table)
    assert "ERROR" in table.getvalue()
    assert "server went away" in table.getvalue()


def test_failed_calls_are_counted_with_the_first_error_and_the_load_goes_on() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls % 2:
            raise ConnectionError(f"call {calls} failed")

    load = asyncio.run(drive(flaky, seconds=0.05, concurrency=2))
    assert load.errors >= 1
    assert load.first_error == "ConnectionError: call 1 failed"
    assert load.calls + load.errors == calls
