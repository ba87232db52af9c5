"""The README's Performance tables, in Markdown, from a run's JSON lines.

    .venv/bin/python -m bench.report [bench/results.jsonl] [--readme README.md]

With --readme, the tables replace what README.md holds between its BEGIN and END marks
(HTML comments in the Performance section) instead of being printed.

One table of every figure but list_scale's (figure, store, measured, baseline from the
same run, ratio, target, met), then list_scale's queries with p50 and p99 per store.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from bench.results import Row, number
from bench.runner import DEFAULT_OUTPUT

LIST_FAMILY = "list_scale"
BEGIN = "<!-- bench results: begin (python -m bench.report --readme README.md) -->"
END = "<!-- bench results: end -->"


def load(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        raise SystemExit(f"{path}: no rows")
    return records[0]["run"], records


def _cell(value: float | None, unit: str) -> str:
    return f"{number(value)} {unit}".strip() if value is not None else "-"


def summary(run: dict[str, Any], records: list[dict[str, Any]]) -> str:
    start = " ".join(f"{v:.2f}" for v in run["load_avg_at_start"])
    end = " ".join(f"{v:.2f}" for v in run["load_avg_at_end"])
    return (
        f"Measured {run['run_at'].replace('T', ' ').replace('+00:00', ' UTC')} on "
        f"`{run['host']}` ({run['cpus']} CPUs, shared with other work), commit "
        f"{run['commit']}{' plus uncommitted changes' if run['dirty'] else ''}; "
        f"load average {start} at the start, {end} at the end."
    )


def main_table(records: list[dict[str, Any]], out: TextIO) -> None:
    print("| figure | store | measured | baseline (same run) | ratio | target | met |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for record in records:
        if record["family"] == LIST_FAMILY:
            continue
        row = Row(
            record["family"],
            record["figure"],
            record["value"],
            record["unit"],
            record["baseline"],
            record["baseline_label"],
        )
        measured = _cell(row.value, row.unit)
        if record["error"]:
            error = record["error"][:160].replace("|", "\\|")
            measured = f"error: {error}" if row.value is None else f"{measured}, {error}"
        baseline = _cell(row.baseline, row.baseline_label) if row.baseline is not None else "-"
        ratio = f"{row.ratio:.3f}" if row.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[record["met"]]
        figure = record["figure"].replace("|", "\\|")
        print(
            f"| {figure} | {record['store'] or '-'} | {measured} | {baseline} | {ratio} "
            f"| {record['target'] or '-'} | {met} |",
            file=out,
        )


def list_table(records: list[dict[str, Any]], out: TextIO) -> None:
    rows = [r for r in records if r["family"] == LIST_FAMILY]
    if not rows:
        return
    stores = list(dict.fromkeys(r["store"] for r in rows))
    queries: dict[str, dict[str, dict[str, Any]]] = {}
    for record in rows:
        query = record["figure"].split(") ", 1)[-1].removesuffix(", p99")
        queries.setdefault(query, {})[record["store"]] = record
    heading = " | ".join(f"{store} p50 | {store} p99" for store in stores)
    print(f"| query (page of 100, target p99 <= 20 ms) | {heading} |", file=out)
    print("|---" * (1 + 2 * len(stores)) + "|", file=out)
    for query, by_store in queries.items():
        cells = []
        for store in stores:
            found = by_store.get(store)
            if found is None or found["error"]:
                cells += ["error", "error"]
                continue
            p99 = _cell(found["details"]["p99_ms"], "ms")
            if found["met"] is False:
                p99 = f"**{p99}**"
            cells += [_cell(found["details"]["p50_ms"], "ms"), p99]
        print(f"| {query} | " + " | ".join(cells) + " |", file=out)


def render(path: Path, out: TextIO) -> None:
    run, records = load(path)
    print(summary(run, records), file=out)
    print(file=out)
    main_table(records, out)
    print(file=out)
    list_table(records, out)


def into_readme(results: Path, readme: Path) -> None:
    text = readme.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{readme}: expected one {BEGIN!r} and one {END!r}")
    tables = io.StringIO()
    render(results, tables)
    before, rest = text.split(BEGIN)
    _, after = rest.split(END)
    readme.write_text(f"{before}{BEGIN}\n{tables.getvalue()}{END}{after}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--readme", type=Path)
    arguments = parser.parse_args()
    if arguments.readme is not None:
        into_readme(arguments.path, arguments.readme)
    else:
        render(arguments.path, sys.stdout)
