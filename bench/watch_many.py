"""WatchWorkRequests at scale: memory per watched work request, and store queries while idle.

    .venv/bin/python -m bench.watch_many [--work-requests 10000] [--streams 100]
        [--store sqlite|postgresql]

10,000 work requests in 100 compartments; 100 streams each watch one compartment (100
work requests each). The same 100 streams watching a compartment with no work requests
in it give the streams' own cost; the difference, divided by the work requests watched,
is what a watched work request costs. The server keeps no state per watched work
request (each event says what it changed from), so what remains is the allocator's
high-water mark from 100 snapshots sent at once (lower when the streams open one
after another, measured too); the count of Python objects the heap holds afterwards
shows it. A bare grpc.aio server-streaming method (one
queue per stream, as in bench/watch_fanout.py) measured in the same run shows what a
stream costs at the least. Each server runs in a fresh process of its own, so none
inherits memory another freed and the client's memory is not counted; the work
requests are stored once, before any of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import multiprocessing
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc
from clusterops_server.app import App, ServerConfig
from clusterops_server.clock import FakeClock
from clusterops_server.domain.work_requests import (
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.engine.context import EngineSettings
from clusterops_server.ids import IdKind, new_id
from clusterops_server.store.database import Database
from clusterops_server.store.migrate import upgrade_to_head
from clusterops_server.store.uow import Store
from sqlalchemy import event

from bench.stores import STORES, temporary_database
from bench.watch_fanout import Baseline, rss_kib

BATCH = 500


def retained_kib() -> int:
    """RSS once freed memory is handed back: glibc keeps what grpc core and Python freed
    in its arenas (malloc_trim returns it), which no watcher holds."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_kib()


def compartment(index: int) -> str:
    return f"c{index:03d}"


async def seed(database_url: str, work_requests: int, streams: int) -> None:
    """`work_requests` IN_PROGRESS work requests spread evenly over `streams` compartments."""
    database = Database(database_url)
    await upgrade_to_head(database)
    clock = FakeClock()
    store = Store(database, clock)
    for start in range(0, work_requests, BATCH):
        async with store.write() as uow:
            for i in range(start, min(start + BATCH, work_requests)):
                wr = WorkRequest(
                    id=new_id(IdKind.WORK_REQUEST),
                    compartment_id=compartment(i % streams),
                    operation_type=OperationType.CLUSTER_UPGRADE,
                    status=WorkRequestStatus.IN_PROGRESS,
                    time_accepted=clock.now() + timedelta(microseconds=i),
                    percent_complete=50.0,
                )
                await uow.work_requests.add(wr, params={})
            await uow.commit()
    await database.dispose()


async def open_streams(calls: list[Any]) -> None:
    """Read every stream up to its SYNCED marker (or a bare stream's first message)."""

    async def synced(call: Any) -> None:
        while True:
            message = await call.read()
            if getattr(message, "event_type", wr_pb.WATCH_EVENT_TYPE_SYNCED) == (
                wr_pb.WATCH_EVENT_TYPE_SYNCED
            ):
                return

    await asyncio.gather(*(synced(c) for c in calls))


class _Server:
    """A server in a process of its own, so that its memory is counted without the
    client's: it reports its port, then its retained memory whenever asked."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, *args))
        self.process.start()
        self.port: int = self.pipe.recv()

    def ask(self, question: str) -> Any:
        self.pipe.send(question)
        return self.pipe.recv()

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join()


async def _answer(pipe: Any, idle: Callable[[], Awaitable[float]] | None) -> None:
    """Answer the client until it says stop (the pipe is read off the event loop)."""
    while True:
        question = await asyncio.to_thread(pipe.recv)
        if question == "stop":
            return
        if question == "rss":
            pipe.send(retained_kib())
        elif question == "objects":
            gc.collect()
            pipe.send(len(gc.get_objects()))
        elif question == "idle" and idle is not None:
            pipe.send(await idle())


def _serve_baseline(pipe: Any) -> None:
    async def run() -> None:
        bench = Baseline()
        await bench.server.start()
        pipe.send(bench.port)
        await _answer(pipe, None)
        await bench.server.stop(0)

    asyncio.run(run())


def _serve_clusterops(pipe: Any, database_url: str) -> None:
    async def run() -> None:
        app = App(
            ServerConfig(database_url=database_url, port=0, engine=EngineSettings(concurrency=0)),
            clock=FakeClock(),
        )
        await app.start()

        async def idle() -> float:
            statements = 0

            def count(*_: Any) -> None:
                nonlocal statements
                statements += 1

            event.listen(app.database.engine.sync_engine, "before_cursor_execute", count)
            await asyncio.sleep(2.0)
            event.remove(app.database.engine.sync_engine, "before_cursor_execute", count)
            return statements / 2.0

        pipe.send(app.port)
        await _answer(pipe, idle)
        await app.stop(0)

    asyncio.run(run())


async def measure(
    server: _Server, requests: list[Any], bare: bool, *, staggered: bool = False
) -> tuple[float, int]:
    """KiB the server retains for these streams once every one has synced (opened all at
    once, or `staggered`: each once the one before has synced), and how many more
    objects its Python heap then holds."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        method: Callable[[Any], Any]
        if bare:
            method = channel.unary_stream(
                "/bench.Echo/Stream",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
        else:
            method = wr_grpc.WorkRequestServiceStub(channel).WatchWorkRequests
        # Warm the server's code paths and caches with one stream first.
        warm = method(requests[0])
        await open_streams([warm])
        warm.cancel()
        before = await asyncio.to_thread(server.ask, "rss")
        objects = await asyncio.to_thread(server.ask, "objects")
        calls = []
        if staggered:
            for request in requests:
                calls.append(method(request))
                await open_streams(calls[-1:])
        else:
            calls = [method(r) for r in requests]
            await open_streams(calls)
        grown = await asyncio.to_thread(server.ask, "rss") - before
        objects = await asyncio.to_thread(server.ask, "objects") - objects
        for call in calls:
            call.cancel()
    return float(grown), objects


def main(work_requests: int, streams: int, store: str) -> None:
    with temporary_database(store) as url:
        asyncio.run(seed(url, work_requests, streams))
        bare = _Server(_serve_baseline)
        base, _ = asyncio.run(measure(bare, [b""] * streams, True))
        bare.stop()
        nobody = [wr_pb.WatchWorkRequestsRequest(compartment_id="nobody")] * streams
        server = _Server(_serve_clusterops, url)
        empty, empty_objects = asyncio.run(measure(server, nobody, False))
        server.stop()
        sets = [
            wr_pb.WatchWorkRequestsRequest(compartment_id=compartment(i)) for i in range(streams)
        ]
        server = _Server(_serve_clusterops, url)
        full, full_objects = asyncio.run(measure(server, sets, False))
        idle_queries = server.ask("idle")
        server.stop()
        server = _Server(_serve_clusterops, url)
        staggered, _ = asyncio.run(measure(server, sets, False, staggered=True))
        server.stop()
    each = work_requests // streams
    print(f"work requests watched: {work_requests} through {streams} streams  store: {store}")
    print("server memory retained (KiB per stream):")
    print(f"  bare grpc.aio stream                {base / streams:10.2f}")
    print(f"  WatchWorkRequests, empty set        {empty / streams:10.2f}")
    print(f"  WatchWorkRequests, {each} each         {full / streams:10.2f}")
    per_wr = (full - empty) * 1024 / work_requests
    print(f"per watched work request              {per_wr:10.0f} bytes above the streams' own cost")
    per_wr_staggered = (staggered - empty) * 1024 / work_requests
    print(f"  with streams opened one after another {per_wr_staggered:8.0f} bytes")
    objects = (full_objects - empty_objects) / work_requests
    print(f"  Python objects held per work request  {objects:10.2f}")
    print(f"store queries/s while idle            {idle_queries:10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work-requests", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--store", choices=STORES, default="sqlite")
    arguments = parser.parse_args()
    main(arguments.work_requests, arguments.streams, arguments.store)
