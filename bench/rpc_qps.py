"""RPC throughput against the floor: reads and CreateCluster on a running `clusterops serve`,
and mutating QPS with 1, 2 and 3 replicas on one PostgreSQL database.

    .venv/bin/python -m bench --only rpc_qps

Each figure is QPS / floor QPS measured in the same run by bench/floor.py (the protocol of
../shared/bench/ratio.py; CreateCluster that of ratio_unique.py: every call a fresh name,
so none is refused as a duplicate or answered from the idempotency cache). The server
runs in a process of its own with zero-time simulated steps; the reads find 60 clusters
and their finished CREATE work requests, seeded through the API before the clock starts.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import grpc
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import clusters_pb2_grpc as cl_grpc
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc

from bench.floor import Load, Protocol, Ratio, against_floor, drive
from bench.results import Row, failed
from bench.server import Server, serve
from bench.stores import temporary_database

FAMILY = "rpc_qps"
COMPARTMENT = "bench"
SEEDED = 60
TERMINAL = {
    wr_pb.WORK_REQUEST_STATUS_SUCCEEDED,
    wr_pb.WORK_REQUEST_STATUS_FAILED,
    wr_pb.WORK_REQUEST_STATUS_CANCELED,
}


def create_request(name: str) -> cl_pb.CreateClusterRequest:
    return cl_pb.CreateClusterRequest(
        compartment_id=COMPARTMENT,
        name=name,
        kubernetes_version="v1.30.4",
        region="eu-frankfurt-1",
        plan="aws",
    )


async def seed(address: str, count: int, wait: bool = True) -> tuple[str, str]:
    """`count` clusters created through the API, waited for until their CREATE work
    requests end (unless not `wait`: a quick run measures nothing); returns one cluster id
    and one work request id."""
    async with grpc.aio.insecure_channel(address) as channel:
        clusters = cl_grpc.ClusterServiceStub(channel)
        work_requests = wr_grpc.WorkRequestServiceStub(channel)
        created = [await clusters.CreateCluster(create_request(f"seed-{i}")) for i in range(count)]
        deadline = time.monotonic() + 120
        for response in created if wait else []:
            while True:
                got = await work_requests.GetWorkRequest(
                    wr_pb.GetWorkRequestRequest(work_request_id=response.work_request.id)
                )
                if got.work_request.status in TERMINAL:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the seeded clusters' CREATE work requests did not end")
                await asyncio.sleep(0.05)
        return created[0].cluster.id, created[0].work_request.id


TargetLoad = Callable[[float, int], Coroutine[Any, Any, Load]]
CallFactory = Callable[[grpc.aio.Channel], Callable[[], Awaitable[Any]]]


def unary_load(address: str, make_call: CallFactory) -> TargetLoad:
    async def load(seconds: float, concurrency: int) -> Load:
        async with grpc.aio.insecure_channel(address) as channel:
            return await drive(make_call(channel), seconds, concurrency)

    return load


def unique_create_load(addresses: Sequence[str], tag: str) -> TargetLoad:
    """CreateCluster with a fresh name per call, over one channel per replica
    (ratio_unique.py)."""
    counter = itertools.count(1)
    rounds = itertools.count()

    async def load(seconds: float, concurrency: int) -> Load:
        run = next(rounds)
        channels = [grpc.aio.insecure_channel(address) for address in addresses]
        try:
            stubs = [cl_grpc.ClusterServiceStub(channel) for channel in channels]
            # Calls go to the replicas in turn, which spreads the load as evenly as
            # ratio_unique.py's worker i -> replica i mod n.
            callers = itertools.cycle(stubs)

            def call() -> Awaitable[Any]:
                stub = next(callers)
                return stub.CreateCluster(create_request(f"u{tag}x{run}-{next(counter)}"))

            return await drive(call, seconds, concurrency)
        finally:
            for channel in channels:
                await channel.close()

    return load


def ratio_row(
    figure: str,
    store: str,
    ratio: Ratio,
    target: str,
    threshold: float,
    servers: Sequence[Server],
) -> Row:
    """The figure is the ratio QPS / floor QPS (Row.ratio), as ratio.py prints it."""
    details = ratio.details()
    row = Row(
        FAMILY,
        figure,
        ratio.qps,
        "QPS",
        baseline=ratio.floor_qps,
        baseline_label="floor QPS",
        store=store,
        target=target,
        met=ratio.ratio >= threshold,
        details=details,
    )
    if ratio.errors:
        # Figures with failed calls are kept (the QPS counts successes only) but flagged;
        # the servers' logs say what happened on their side.
        row.error = f"{ratio.errors} calls failed; first: {ratio.first_error}"
        row.met = False
        details["server_logs"] = [str(server.log) for server in servers]
        details["server_problems"] = [p for server in servers for p in server.problems()][:20]
    return row


READS = (
    ("GetWorkRequest QPS / floor", 0.50),
    ("GetCluster QPS / floor", 0.50),
    ("ListWorkRequests (page of 50) QPS / floor", 0.25),
)
CREATE = "CreateCluster (unique names) QPS / floor"


def read_calls(cluster_id: str, wr_id: str) -> list[CallFactory]:
    def get_work_request(channel: grpc.aio.Channel) -> Callable[[], Awaitable[Any]]:
        stub = wr_grpc.WorkRequestServiceStub(channel)
        request = wr_pb.GetWorkRequestRequest(work_request_id=wr_id)
        return lambda: stub.GetWorkRequest(request)

    def get_cluster(channel: grpc.aio.Channel) -> Callable[[], Awaitable[Any]]:
        stub = cl_grpc.ClusterServiceStub(channel)
        request = cl_pb.GetClusterRequest(cluster_id=cluster_id)
        return lambda: stub.GetCluster(request)

    def list_work_requests(channel: grpc.aio.Channel) -> Callable[[], Awaitable[Any]]:
        stub = wr_grpc.WorkRequestServiceStub(channel)
        request = wr_pb.ListWorkRequestsRequest(compartment_id=COMPARTMENT, page_size=50)
        return lambda: stub.ListWorkRequests(request)

    return [get_work_request, get_cluster, list_work_requests]


def one_store(floor: str, protocol: Protocol, quick: bool, store: str) -> Iterator[Row]:
    """On SQLite: the three reads, then CreateCluster on the same server; on PostgreSQL:
    CreateCluster (the table measures reads on SQLite only)."""
    figures = [figure for figure, _ in READS] if store == "sqlite" else []
    try:
        with temporary_database(store) as url, serve(url, f"rpc-{store}") as server:
            if figures:
                ids = asyncio.run(seed(server.address, 3 if quick else SEEDED, wait=not quick))
                for (figure, threshold), make_call in zip(READS, read_calls(*ids), strict=True):
                    try:
                        load = unary_load(server.address, make_call)
                        ratio = against_floor(floor, load, protocol)
                        yield ratio_row(
                            figure, store, ratio, f">= {threshold:.2f}", threshold, [server]
                        )
                    except Exception as error:
                        yield failed(FAMILY, figure, "QPS", error, store=store)
                    figures.remove(figure)
            figures.append(CREATE)
            load = unique_create_load([server.address], f"{os.getpid()}")
            ratio = against_floor(floor, load, protocol)
            yield ratio_row(CREATE, store, ratio, ">= 0.20", 0.20, [server])
    except Exception as error:
        # The server or the seeding failed: every figure it still owed is this error.
        for figure in figures:
            yield failed(FAMILY, figure, "QPS", error, store=store)


def replicas(floor: str, protocol: Protocol, counts: Sequence[int]) -> Iterator[Row]:
    """Mutating QPS (CreateCluster, unique names) through 1, 2, 3 replicas on one
    PostgreSQL database: the figure is the QPS itself; it must never fall as replicas
    are added (each row compares with the previous count's QPS)."""
    previous: float | None = None
    for count in counts:
        figure = f"mutating QPS, {count} replica{'s' if count > 1 else ''} on one PostgreSQL"
        try:
            with temporary_database("postgresql") as url, ExitStack() as stack:
                # One after another: the first migrates the database, the rest find it ready.
                servers = [
                    stack.enter_context(serve(url, f"replica-{count}-{i}")) for i in range(count)
                ]
                load = unique_create_load([s.address for s in servers], f"{os.getpid()}r{count}")
                ratio = against_floor(floor, load, protocol)
                row = ratio_row(figure, "postgresql", ratio, "", 0.0, servers)
                row.baseline, row.baseline_label = previous, "QPS with one replica fewer"
                row.details["qps_over_floor"] = round(ratio.ratio, 3)
                row.target = "never falls" if count > 1 else ""
                row.met = None if previous is None else ratio.qps >= previous
                if ratio.errors:
                    row.met = False
                previous = ratio.qps
                yield row
        except Exception as error:
            previous = None
            yield failed(FAMILY, figure, "QPS", error, store="postgresql")


def run(floor: str, protocol: Protocol, quick: bool, stores: Sequence[str]) -> Iterator[Row]:
    for store in stores:
        yield from one_store(floor, protocol, quick, store)
    if "postgresql" in stores:
        yield from replicas(floor, protocol, (1, 2) if quick else (1, 2, 3))
