"""One benchmark figure as a row: what was measured, its baseline from the same run, the
issue's target, and whether it was met; printed as a table and written as JSON lines.

A row that could not be measured (a failed RPC, a crashed server) carries `error` and is
still written, so one failure never hides the other figures of a run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    family: str
    figure: str
    # The measured value and its unit ("QPS / floor", "ms", "ops/s", ...).
    value: float | None
    unit: str
    # What the value is compared with, measured in the same run (None: an absolute target).
    baseline: float | None = None
    baseline_label: str = ""
    store: str = ""
    # The target as written, and whether this run met it (None: no target).
    target: str = ""
    met: bool | None = None
    # Raw numbers behind the figure (both sides' QPS, sample counts, seconds, ...).
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # The machine's 1-, 5- and 15-minute load averages when the figure was taken: the
    # machine is shared, and a figure means little without them.
    load_avg: tuple[float, float, float] | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


def failed(family: str, figure: str, unit: str, error: BaseException | str, **kw: Any) -> Row:
    """A row for a figure that could not be measured: the error is its result."""
    if isinstance(error, BaseException):
        message = f"{type(error).__name__}: {error}".strip()
        kw.setdefault("details", {})["traceback"] = traceback.format_exception(error)[-3:]
    else:
        message = error
    return Row(family, figure, None, unit, error=message[:2000], **kw)


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def run_metadata(quick: bool) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "quick": quick,
    }


def number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def print_table(rows: Iterable[Row], out: TextIO) -> None:
    header = ("figure", "store", "measured", "baseline", "ratio", "target", "met")
    lines = [header]
    errors = []
    for row in rows:
        measured = f"{number(row.value)} {row.unit}".strip()
        if row.error is not None:
            # A figure with failed calls keeps its value (successes only), marked.
            measured = "ERROR" if row.value is None else f"{measured} (with errors)"
        baseline = (
            f"{number(row.baseline)} {row.baseline_label}".strip()
            if row.baseline is not None
            else "-"
        )
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[row.met]
        lines.append((row.figure, row.store or "-", measured, baseline, ratio, row.target, met))
        if row.error is not None:
            errors.append(f"  {row.figure} [{row.store or '-'}]: {row.error}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip(),
            file=out,
        )
        if n == 0:
            print("  ".join("-" * width for width in widths), file=out)
    if errors:
        print("errors:", file=out)
        for error in errors:
            print(error, file=out)


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def to_json(row: Row, run: dict[str, Any]) -> str:
    record = {"run": run} | asdict(row) | {"ratio": row.ratio}
    return json.dumps(_finite(record), default=str, allow_nan=False)


def write_jsonl(rows: Iterable[Row], run: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for row in rows:
            out.write(to_json(row, run) + "\n")
