"""Every figure of the performance table in one run: prints the table, writes JSON lines.

    .venv/bin/python -m bench [--quick] [--only FAMILY]... [--store sqlite|postgresql]...
                              [--output PATH]

Families, in the order they run:
  rpc_qps              GetWorkRequest, GetCluster, ListWorkRequests (page of 50) and
                       CreateCluster QPS against the bare grpc.aio floor; mutating QPS with
                       1, 2 and 3 replicas on one PostgreSQL database
  engine_throughput    node pools of 3 with zero-time steps: operations/s, SQL statements
                       per operation (SQLite and PostgreSQL)
  watch_fanout         WatchWorkRequest: open latency, memory per idle watch, one change to
                       1,000 watchers (p99), each against a bare grpc.aio stream
  list_scale           ListWorkRequests over 1,000,000 stored work requests: a page of 100
                       per documented filter, p50 and p99, against the unfiltered page
  orchestration_scale  one orchestration over 10,000 zero-time targets against the same
                       upgrades started directly

Each figure's baseline is measured in the same run, so a ratio holds on a busy machine;
absolute numbers are the machine's. Every row records the load average when it was taken.
`--quick` shrinks every family to seconds: it proves the runner works and its figures
mean nothing. A figure that fails (a failed RPC, a crashed server) is an error in its
row; the other rows are still measured. The exit status is 1 when any row has an error.
Server logs are kept in $BENCH_SERVER_LOGS when it names a directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.floor import QUICK, Protocol, floor_server
from bench.results import Row, failed, load_average, print_table, run_metadata, write_jsonl
from bench.stores import STORES

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results.jsonl"
QUICK_OUTPUT = HERE / ".cache" / "results-quick.jsonl"


@dataclass
class Options:
    quick: bool
    stores: tuple[str, ...]
    protocol: Protocol
    _stack: ExitStack = field(default_factory=ExitStack)
    _floor: str | None = None

    @property
    def floor(self) -> str:
        """The bare echo server's address, started on first use and kept for the run."""
        if self._floor is None:
            self._floor = self._stack.enter_context(floor_server())
        return self._floor

    def close(self) -> None:
        self._stack.close()


def _rpc_qps(options: Options) -> Iterator[Row]:
    from bench import rpc_qps

    return rpc_qps.run(options.floor, options.protocol, options.quick, options.stores)


def _engine(options: Options) -> Iterator[Row]:
    from bench import engine_throughput

    return engine_throughput.rows(options.quick, options.stores)


def _watch(options: Options) -> Iterator[Row]:
    from bench import watch_fanout

    return watch_fanout.rows(options.quick, options.stores)


def _list(options: Options) -> Iterator[Row]:
    from bench import list_scale

    return list_scale.rows(options.quick, options.stores)


def _orchestration(options: Options) -> Iterator[Row]:
    from bench import orchestration_scale

    return orchestration_scale.rows(options.quick)


FAMILIES: dict[str, Callable[[Options], Iterator[Row]]] = {
    "rpc_qps": _rpc_qps,
    "engine_throughput": _engine,
    "watch_fanout": _watch,
    "list_scale": _list,
    "orchestration_scale": _orchestration,
}


def measure(names: list[str], options: Options) -> Iterator[Row]:
    for name in names:
        print(f"== {name} (load average {_load()})", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            for row in FAMILIES[name](options):
                row.load_avg = load_average()
                print(
                    f"   {row.figure} [{row.store or '-'}]: "
                    + (f"ERROR {row.error}" if row.error else f"{row.value} {row.unit}"),
                    file=sys.stderr,
                    flush=True,
                )
                yield row
        except Exception as error:
            # A family that breaks before its rows: one row says so, the next family runs.
            yield failed(name, f"{name} (family)", "", error, load_avg=load_average())
        print(f"   {name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in load_average())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    parser.add_argument("--quick", action="store_true", help="seconds, not minutes: a smoke run")
    parser.add_argument(
        "--only", action="append", choices=list(FAMILIES), help="run this family (repeatable)"
    )
    parser.add_argument(
        "--store", action="append", choices=STORES, dest="stores", help="(repeatable)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"JSON lines (default {DEFAULT_OUTPUT.relative_to(HERE.parent)}; "
        f"with --quick {QUICK_OUTPUT.relative_to(HERE.parent)})",
    )
    arguments = parser.parse_args(argv)
    names = arguments.only or list(FAMILIES)
    options = Options(
        quick=arguments.quick,
        stores=tuple(arguments.stores or STORES),
        protocol=QUICK if arguments.quick else Protocol(),
    )
    output = arguments.output or (QUICK_OUTPUT if arguments.quick else DEFAULT_OUTPUT)
    run = run_metadata(arguments.quick) | {"load_avg_at_start": load_average()}
    try:
        rows = list(measure(names, options))
    finally:
        options.close()
    run["load_avg_at_end"] = load_average()
    write_jsonl(rows, run, output)
    print(
        f"\nclusterops benchmarks, {run['run_at']} on {run['host']} ({run['cpus']} CPUs), "
        f"commit {run['commit']}{' (dirty)' if run['dirty'] else ''}; load average "
        f"{' '.join(f'{v:.2f}' for v in run['load_avg_at_start'])} at start, "
        f"{' '.join(f'{v:.2f}' for v in run['load_avg_at_end'])} at end"
        + (" (--quick: the figures mean nothing)" if arguments.quick else "")
    )
    print_table(rows, sys.stdout)
    print(f"\nwritten to {output}")
    return 1 if any(row.error for row in rows) else 0
