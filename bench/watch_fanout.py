"""Watch fan-out: memory per idle watch, queries while idle, and latency of one change to N
watchers, for clusterops and for a bare grpc.aio streaming server measured in the same run.

    .venv/bin/python -m bench.watch_fanout [--watchers 2000] [--store sqlite|postgresql]

The baseline server keeps one asyncio.Queue per stream and publishes by putting a message
in every queue: the least a gRPC server can do to push one event to N streams. Each side
runs in a fresh process, so neither inherits memory the other freed. Absolute numbers
depend on the machine; the ratios are what to compare between runs. clusterops runs on a
temporary SQLite file, or a temporary PostgreSQL database (bench/stores.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import resource
import statistics
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

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

from bench.stores import STORES, temporary_database

ROUNDS = 5


def rss_kib() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


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


async def settle(done: Callable[[], bool]) -> None:
    """Let the server see the cancelled streams end before it stops (at most 10 s)."""
    for _ in range(1000):
        if done():
            return
        await asyncio.sleep(0.01)


async def open_streams(count: int, start: Callable[[], Any]) -> list[Any]:
    calls = [start() for _ in range(count)]
    await asyncio.gather(*(c.read() for c in calls))  # every stream has its first message
    return calls


async def fan_out_latency(calls: list[Any], trigger: Callable[[], Any]) -> float:
    began = time.perf_counter()
    result = trigger()
    if asyncio.iscoroutine(result):
        await result
    await asyncio.gather(*(c.read() for c in calls))
    return time.perf_counter() - began


async def measure_baseline(watchers: int) -> dict[str, float]:
    bench = Baseline()
    await bench.server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bench.port}") as channel:
        method = channel.unary_stream(
            "/bench.Echo/Stream", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        before = rss_kib()
        calls = await open_streams(watchers, lambda: method(b""))
        per_watch = (rss_kib() - before) / watchers
        latencies = [
            await fan_out_latency(calls, lambda: bench.publish(b"change")) for _ in range(ROUNDS)
        ]
        for call in calls:
            call.cancel()
        await settle(lambda: not bench.queues)
    await bench.server.stop(0)
    return {"kib_per_watch": per_watch, "fanout_ms": statistics.median(latencies) * 1000}


async def measure_clusterops(watchers: int, database_url: str) -> dict[str, float]:
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
        stub = wr_grpc.WorkRequestServiceStub(channel)
        created = await cl_grpc.ClusterServiceStub(channel).CreateNodePool(
            cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=ROUNDS + 1)
        )
        # The operation is running (wait_idle would wait for its end, which needs the clock
        # to move): start measuring once its first node is provisioning.
        await clock.wait_for_sleepers(1)
        request = wr_pb.WatchWorkRequestRequest(work_request_id=created.work_request.id)
        before = rss_kib()
        calls = await open_streams(watchers, lambda: stub.WatchWorkRequest(request))
        per_watch = (rss_kib() - before) / watchers

        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(app.database.engine.sync_engine, "before_cursor_execute", count)
        idle_window = 2.0
        await asyncio.sleep(idle_window)
        idle_per_second = statements / idle_window
        event.remove(app.database.engine.sync_engine, "before_cursor_execute", count)

        # Nodes provision one at a time here (see below), so each advance is exactly one
        # committed change (a node becoming ACTIVE) that every watcher must receive.
        latencies = []
        for _ in range(ROUNDS):
            await clock.wait_for_sleepers(1)
            latencies.append(await fan_out_latency(calls, lambda: clock.advance(10)))
        for call in calls:
            call.cancel()
        await settle(lambda: app.hub.watchers == 0)
    await app.stop(0)
    return {
        "kib_per_watch": per_watch,
        "fanout_ms": statistics.median(latencies) * 1000,
        "idle_queries_per_s": idle_per_second,
    }


def _baseline(watchers: int) -> dict[str, float]:
    return asyncio.run(measure_baseline(watchers))


def _clusterops(watchers: int, database_url: str) -> dict[str, float]:
    return asyncio.run(measure_clusterops(watchers, database_url))


def in_fresh_process(function: Callable[..., dict[str, float]], *args: Any) -> dict[str, float]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def main(watchers: int, store: str) -> None:
    base = in_fresh_process(_baseline, watchers)
    with temporary_database(store) as url:
        ours = in_fresh_process(_clusterops, watchers, url)
    print(f"watchers: {watchers}  store: {store}")
    print(f"{'':28}{'baseline':>12}{'clusterops':>12}{'ratio':>8}")
    for key, label in (
        ("kib_per_watch", "memory per idle watch (KiB)"),
        ("fanout_ms", "one change to all (ms)"),
    ):
        ratio = ours[key] / base[key] if base[key] else float("nan")
        print(f"{label:28}{base[key]:12.2f}{ours[key]:12.2f}{ratio:8.2f}")
    print(f"{'store queries/s while idle':28}{'-':>12}{ours['idle_queries_per_s']:12.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--store", choices=STORES, default="sqlite")
    arguments = parser.parse_args()
    main(arguments.watchers, arguments.store)
