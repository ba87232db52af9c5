"""Watch fan-out: the cost of opening one WatchWorkRequest stream, memory per idle watch,
and the latency of one change to N watchers, for clusterops and for a bare grpc.aio
streaming server measured in the same run.

    .venv/bin/python -m bench.watch_fanout [--watchers 2000] [--rounds 20]
                                           [--store sqlite|postgresql]

The baseline server keeps one asyncio.Queue per stream and publishes by putting a message
in every queue: the least a gRPC server can do to push one event to N streams. Each
server runs in a fresh process of its own, driven by this one over a pipe (read your
memory, make one change), so its memory is the server's alone and neither side
inherits memory the other freed; the watchers are this process's streams on one channel.

- open one: streams opened one after another, each timed until its first message (the
  snapshot); the median.
- memory per idle watch: the server's RSS (after a collection and malloc_trim, so memory
  freed but kept by the allocator is not counted) with every watcher open, minus before
  any, divided by the watchers.
- one change to all: each round makes one change (clusterops: a fake-clock step that
  finishes one node of a node pool being created, one node at a time, so one committed
  change of the watched work request; the baseline: one message to every queue), and
  every watcher's wait from the change until it has the event is a sample; the p99 of
  all rounds' samples.
Streams are opened in batches of 100 (BATCH) once the timed ones are open: a burst of
thousands of stream starts on one channel gets calls CANCELLED (grpc core), which is
what made this benchmark crash at its default of 2,000 watchers.
clusterops runs on a temporary SQLite file or PostgreSQL database (bench/stores.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import multiprocessing
import resource
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import grpc
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import clusters_pb2_grpc as cl_grpc
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc
from clusterops_server.app import App, ServerConfig
from clusterops_server.clock import FakeClock
from clusterops_server.domain.inventory import Cluster, ClusterState
from clusterops_server.engine.operations import node_pools
from clusterops_server.ids import IdKind, new_id
from clusterops_server.providers.simulated import SimulationSettings
from sqlalchemy import event

from bench.results import Row, failed
from bench.stores import STORES, temporary_database

FAMILY = "watch_fanout"
BATCH = 100
# A node pool has at most 100 nodes, and each round finishes one.
MAX_ROUNDS = 99
STREAM_TIMEOUT = 120.0


@dataclass(frozen=True)
class Sizes:
    watchers: int = 1000
    rounds: int = 20
    timed_opens: int = 200


QUICK = Sizes(watchers=20, rounds=2, timed_opens=5)


def rss_kib() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def retained_kib() -> int:
    """RSS once memory freed but kept in glibc's arenas is handed back."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_kib()


class Baseline:
    """A bare grpc.aio server-streaming method fanned out through per-stream queues."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.server = grpc.aio.server()
        handler = grpc.unary_stream_rpc_method_handler(
            self.stream, request_deserializer=lambda b: b, response_serializer=lambda b: b
        )
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("bench.Echo", {"Stream": handler})]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.add(queue)
        try:
            yield b"snapshot"
            while True:
                yield await queue.get()
        finally:
            self.queues.discard(queue)

    def publish(self, message: bytes) -> None:
        for queue in self.queues:
            queue.put_nowait(message)


# -- the server side: a process that answers commands over a pipe ------------------------

Handlers = dict[str, Callable[[], Any]]


async def answer(conn: Connection, handlers: Handlers) -> None:
    """Run commands from the driving process until it says "stop"."""
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "stop":
            return
        try:
            result = handlers[command]()
            if isinstance(result, Awaitable):
                result = await result
        except Exception as error:
            conn.send(("error", f"{command}: {type(error).__name__}: {error}"))
            continue
        conn.send(("ok", result))


async def baseline_server(conn: Connection) -> None:
    bench = Baseline()
    await bench.server.start()
    conn.send(("ok", {"address": f"127.0.0.1:{bench.port}"}))
    await answer(
        conn,
        {
            "rss": retained_kib,
            "streams": lambda: len(bench.queues),
            "prepare": lambda: None,
            "change": lambda: bench.publish(b"change"),
            "idle_queries": lambda: None,
        },
    )
    await bench.server.stop(0)


async def clusterops_server(conn: Connection, database_url: str, rounds: int) -> None:
    # One node at a time, so one clock step is one change.
    node_pools.PARALLEL_NODES = 1
    clock = FakeClock()
    app = App(
        ServerConfig(
            database_url=database_url,
            port=0,
            simulation=SimulationSettings(seconds={"provision_node": 10}),
        ),
        clock=clock,
    )
    await app.start()
    try:
        now = clock.now()
        cluster = Cluster(
            new_id(IdKind.CLUSTER),
            "bench",
            "bench-1",
            "v1.29.8",
            "r",
            "p",
            "",
            "",
            "s",
            ClusterState.ACTIVE,
            now,
            now,
        )
        async with app.store.write() as uow:
            await uow.inventory.add_cluster(cluster)
            await uow.commit()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            created = await cl_grpc.ClusterServiceStub(channel).CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=rounds + 1)
            )
        # The operation runs until the clock moves: its first node is provisioning.
        await clock.wait_for_sleepers(1)

        async def idle_queries() -> float:
            statements = 0

            def count(*_: Any) -> None:
                nonlocal statements
                statements += 1

            window = 2.0
            event.listen(app.database.engine.sync_engine, "before_cursor_execute", count)
            await asyncio.sleep(window)
            event.remove(app.database.engine.sync_engine, "before_cursor_execute", count)
            return statements / window

        conn.send(
            ("ok", {"address": f"127.0.0.1:{app.port}", "work_request_id": created.work_request.id})
        )
        await answer(
            conn,
            {
                "rss": retained_kib,
                "streams": lambda: app.hub.watchers,
                "prepare": lambda: clock.wait_for_sleepers(1),
                "change": lambda: clock.advance(10),
                "idle_queries": idle_queries,
            },
        )
    finally:
        await app.stop(0)


def _run_baseline(conn: Connection) -> None:
    asyncio.run(baseline_server(conn))


def _run_clusterops(conn: Connection, database_url: str, rounds: int) -> None:
    asyncio.run(clusterops_server(conn, database_url, rounds))


class ServerProcess:
    """A server in a fresh (spawned) process, and the pipe that drives it."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args), daemon=True)
        self.process.start()
        child.close()

    def _receive(self) -> Any:
        if not self.conn.poll(STREAM_TIMEOUT):
            raise TimeoutError("the server process did not answer")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"server process: {value}")
        return value

    def started(self) -> dict[str, str]:
        info: dict[str, str] = self._receive()
        return info

    async def ask(self, command: str) -> Any:
        self.conn.send(command)
        return await asyncio.get_running_loop().run_in_executor(None, self._receive)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


# -- the driving side: the watchers ------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + STREAM_TIMEOUT
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def drive(
    server: ServerProcess, start: Callable[[grpc.aio.Channel], Any], sizes: Sizes, address: str
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        before = await server.ask("rss")
        calls: list[Any] = []
        opens = []
        for _ in range(min(sizes.timed_opens, sizes.watchers)):
            began = time.perf_counter()
            call = start(channel)
            await call.read()  # the snapshot
            opens.append(time.perf_counter() - began)
            calls.append(call)
        while len(calls) < sizes.watchers:
            batch = [start(channel) for _ in range(min(BATCH, sizes.watchers - len(calls)))]
            await asyncio.gather(*(call.read() for call in batch))
            calls.extend(batch)

        async def all_open() -> bool:
            return bool(await server.ask("streams") == sizes.watchers)

        await until(all_open, "the server to count every stream")
        kib_per_watch = (await server.ask("rss") - before) / sizes.watchers
        idle_queries = await server.ask("idle_queries")

        async def received(call: Any) -> float:
            await call.read()
            return time.perf_counter()

        samples: list[float] = []
        for _ in range(sizes.rounds):
            await server.ask("prepare")
            readers = [asyncio.ensure_future(received(call)) for call in calls]
            began = time.perf_counter()
            await server.ask("change")
            done = await asyncio.wait_for(asyncio.gather(*readers), STREAM_TIMEOUT)
            samples.extend(at - began for at in done)
        for call in calls:
            call.cancel()

        async def all_closed() -> bool:
            return bool(await server.ask("streams") == 0)

        await until(all_closed, "the server to see every stream end")
    return {
        "open_ms": statistics.median(opens) * 1000,
        "open_p99_ms": percentile(opens, 0.99) * 1000,
        "kib_per_watch": kib_per_watch,
        "fanout_p50_ms": percentile(samples, 0.50) * 1000,
        "fanout_p99_ms": percentile(samples, 0.99) * 1000,
        "fanout_max_ms": max(samples) * 1000,
        "idle_queries_per_s": idle_queries,
        "watchers": sizes.watchers,
        "rounds": sizes.rounds,
        "timed_opens": len(opens),
    }


def measure_baseline(sizes: Sizes) -> dict[str, Any]:
    server = ServerProcess(_run_baseline)
    try:
        address = server.started()["address"]

        def start(channel: grpc.aio.Channel) -> Any:
            method = channel.unary_stream(
                "/bench.Echo/Stream",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            return method(b"")

        return asyncio.run(drive(server, start, sizes, address))
    finally:
        server.close()


def measure_clusterops(sizes: Sizes, database_url: str) -> dict[str, Any]:
    if sizes.rounds > MAX_ROUNDS:
        raise ValueError(f"at most {MAX_ROUNDS} rounds (one node of a pool each)")
    server = ServerProcess(_run_clusterops, database_url, sizes.rounds)
    try:
        info = server.started()
        request = wr_pb.WatchWorkRequestRequest(work_request_id=info["work_request_id"])

        def start(channel: grpc.aio.Channel) -> Any:
            return wr_grpc.WorkRequestServiceStub(channel).WatchWorkRequest(request)

        return asyncio.run(drive(server, start, sizes, info["address"]))
    finally:
        server.close()


Result = TypeVar("Result")


def in_fresh_process(function: Callable[..., Result], *args: Any) -> Result:
    """`function(*args)` in a spawned process: nothing this process imported, allocated or
    left running (event loops, grpc channels) weighs on the measurement."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def figures(watchers: int) -> tuple[str, str, str]:
    return (
        "WatchWorkRequest: open one (median)",
        "WatchWorkRequest: memory per idle watch",
        f"one change to {watchers:,} watchers, p99",
    )


def compare(base: dict[str, Any], ours: dict[str, Any], store: str) -> list[Row]:
    opened, memory, fanout = figures(ours["watchers"])
    details = {"clusterops": ours, "bare": base}
    memory_ratio = ours["kib_per_watch"] / base["kib_per_watch"] if base["kib_per_watch"] else None
    fanout_ratio = ours["fanout_p99_ms"] / base["fanout_p99_ms"] if base["fanout_p99_ms"] else None
    return [
        Row(
            FAMILY,
            opened,
            ours["open_ms"],
            "ms",
            baseline=base["open_ms"],
            baseline_label="ms bare",
            store=store,
            target="<= 1 ms",
            met=ours["open_ms"] <= 1.0,
            details=details,
        ),
        Row(
            FAMILY,
            memory,
            ours["kib_per_watch"],
            "KiB",
            baseline=base["kib_per_watch"],
            baseline_label="KiB bare",
            store=store,
            target="<= 1.2x bare",
            met=memory_ratio is not None and memory_ratio <= 1.2,
            details=details,
        ),
        Row(
            FAMILY,
            fanout,
            ours["fanout_p99_ms"],
            "ms",
            baseline=base["fanout_p99_ms"],
            baseline_label="ms bare",
            store=store,
            target="<= 50 ms and <= 1.3x bare",
            met=ours["fanout_p99_ms"] <= 50 and fanout_ratio is not None and fanout_ratio <= 1.3,
            details=details,
        ),
    ]


def rows(quick: bool, stores: Sequence[str], sizes: Sizes | None = None) -> Iterator[Row]:
    sizes = sizes or (QUICK if quick else Sizes())
    names = figures(sizes.watchers)
    try:
        base = measure_baseline(sizes)
    except Exception as error:
        for store in stores:
            for name in names:
                yield failed(FAMILY, name, "", f"the bare baseline failed: {error}", store=store)
        return
    for store in stores:
        try:
            with temporary_database(store) as url:
                ours = measure_clusterops(sizes, url)
        except Exception as error:
            for name in names:
                yield failed(FAMILY, name, "", error, store=store)
            continue
        yield from compare(base, ours, store)


def main(sizes: Sizes, store: str) -> None:
    base = measure_baseline(sizes)
    with temporary_database(store) as url:
        ours = measure_clusterops(sizes, url)
    print(f"watchers: {sizes.watchers}  rounds: {sizes.rounds}  store: {store}")
    print(f"{'':32}{'baseline':>12}{'clusterops':>12}{'ratio':>8}")
    for key, label in (
        ("open_ms", "open one, median (ms)"),
        ("open_p99_ms", "open one, p99 (ms)"),
        ("kib_per_watch", "memory per idle watch (KiB)"),
        ("fanout_p50_ms", "one change to all, p50 (ms)"),
        ("fanout_p99_ms", "one change to all, p99 (ms)"),
    ):
        ratio = ours[key] / base[key] if base[key] else float("nan")
        print(f"{label:32}{base[key]:12.2f}{ours[key]:12.2f}{ratio:8.2f}")
    print(f"{'store queries/s while idle':32}{'-':>12}{ours['idle_queries_per_s']:12.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timed-opens", type=int, default=200)
    parser.add_argument("--store", choices=STORES, default="sqlite")
    arguments = parser.parse_args()
    main(Sizes(arguments.watchers, arguments.rounds, arguments.timed_opens), arguments.store)
