"""ListWorkRequests over 1,000,000 stored work requests: the latency of a page of 100 for
every filter the API documents, against the unfiltered page measured in the same run.

    .venv/bin/python -m bench --only list_scale [--store sqlite|postgresql]

The work requests are seeded straight into the tables (Core executemany in batches, not
the API: a million CreateCluster calls would take hours) as ended work (SUCCEEDED 94 %,
FAILED 5 %, CANCELED 1 %) so the engine has nothing to run: 100 compartments, ten
operation types of uneven frequency (ORCHESTRATION_RUN is one in a thousand), one
resource each (a cluster, or a node pool for node pool operations; 100,000 clusters),
accepted every 30 s over most of a year. The seeded database is cached, keyed by the
Alembic head and a digest of the migrations (a new index means a new seed): a SQLite
file under bench/.cache/, copied for each run, and a PostgreSQL template database that
each run copies with CREATE DATABASE ... TEMPLATE. PostgreSQL's copy is VACUUM ANALYZEd
as autovacuum would leave it; SQLite gets no ANALYZE, as the server never runs one.

Each query's first page (the default order, newest first) is fetched one call at a time
through a `clusterops serve` process: one warm-up call, then up to CALLS calls or
QUERY_SECONDS, whichever comes first; p50 and p99 of those.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import grpc
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc
from clusterops_server.store.database import Database, default_sqlite_url
from clusterops_server.store.migrate import MIGRATIONS, head_revision, upgrade_to_head
from clusterops_server.store.tables import WorkRequestResourceRow, WorkRequestRow
from sqlalchemy import Table, insert
from sqlalchemy.engine import make_url

from bench.floor import describe
from bench.results import Row, failed
from bench.server import serve
from tests import postgres

FAMILY = "list_scale"
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
# Bump when the seeded data changes shape, so old caches are not reused.
SEED_VERSION = 1
BATCH = 10_000
COMPARTMENTS = 100
CLUSTERS = 100_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EVERY = timedelta(seconds=30)
PAGE = 100
CALLS = 100
MIN_CALLS = 20
QUERY_SECONDS = 10.0
TEMPLATE_PREFIX = "clusterops_bench_list_"

STATUSES = (("SUCCEEDED", 94), ("FAILED", 5), ("CANCELED", 1))
OPERATIONS = (
    ("CLUSTER_UPGRADE", 300),
    ("NODEPOOL_CREATE", 200),
    ("CLUSTER_CREATE", 150),
    ("NODEPOOL_DELETE", 100),
    ("CLUSTER_DELETE", 100),
    ("RECONCILE_ADDON", 80),
    ("ENABLE_ADDON", 30),
    ("UPDATE_ADDON", 20),
    ("DISABLE_ADDON", 19),
    ("ORCHESTRATION_RUN", 1),
)


@dataclass(frozen=True)
class Sizes:
    work_requests: int = 1_000_000
    calls: int = CALLS
    seconds: float = QUERY_SECONDS


QUICK = Sizes(work_requests=2_000, calls=3, seconds=2.0)


def cluster_id(index: int) -> str:
    return f"cls-{index:020x}"


def accepted_at(index: int) -> datetime:
    return EPOCH + index * EVERY


# -- seeding -----------------------------------------------------------------------------


def _weighted(choices: Sequence[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [name for name, _ in choices], [weight for _, weight in choices]


def batches(count: int) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Rows of work_requests and work_request_resources, BATCH at a time, the same every
    time (a seeded generator)."""
    draw = random.Random(SEED_VERSION)
    statuses, status_weights = _weighted(STATUSES)
    operations, operation_weights = _weighted(OPERATIONS)
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        status_draws = draw.choices(statuses, status_weights, k=size)
        operation_draws = draw.choices(operations, operation_weights, k=size)
        work_requests, resources = [], []
        for offset in range(size):
            i = start + offset
            status, operation = status_draws[offset], operation_draws[offset]
            accepted = accepted_at(i)
            wr_id = f"wr-{uuid.UUID(int=draw.getrandbits(128)).hex[:20]}"
            work_requests.append(
                {
                    "id": wr_id,
                    "compartment_id": f"c{i % COMPARTMENTS:03d}",
                    "operation_type": operation,
                    "status": status,
                    "percent_complete": 100.0 if status == "SUCCEEDED" else float(i % 90),
                    "accepted_at": accepted,
                    "started_at": accepted + timedelta(seconds=1),
                    "finished_at": accepted + timedelta(seconds=20),
                    "revision": 0,
                    "params": {},
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "run_after": accepted,
                    "attempts": 1,
                    "last_error_code": "INTERNAL" if status == "FAILED" else None,
                    "last_error_message": "seeded failure" if status == "FAILED" else None,
                    "last_error_at": accepted + timedelta(seconds=20)
                    if status == "FAILED"
                    else None,
                }
            )
            node_pool = operation.startswith("NODEPOOL_")
            identifier = cluster_id(i % CLUSTERS)
            if node_pool:
                identifier = f"np-{i % CLUSTERS:020x}"
            resources.append(
                {
                    "work_request_id": wr_id,
                    "entity_type": "nodepool" if node_pool else "cluster",
                    "identifier": identifier,
                    "action_type": "CREATED" if operation.endswith("CREATE") else "UPDATED",
                    "entity_uri": f"/{'nodepools' if node_pool else 'clusters'}/{identifier}",
                    "position": 0,
                }
            )
        yield work_requests, resources


async def seed(database_url: str, count: int) -> None:
    database = Database(database_url)
    try:
        await upgrade_to_head(database)
        work_requests = cast(Table, WorkRequestRow.__table__)
        resources = cast(Table, WorkRequestResourceRow.__table__)
        for rows, resource_rows in batches(count):
            async with database.engine.begin() as connection:
                await connection.execute(insert(work_requests), rows)
                await connection.execute(insert(resources), resource_rows)
        if database.is_sqlite:
            # Everything in the main file, so the cached file alone is the database.
            async with database.engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await database.dispose()


def cache_key(count: int) -> str:
    digest = hashlib.sha256(f"{SEED_VERSION}:{count}".encode())
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f"{head_revision()}_{digest.hexdigest()[:10]}_{count}"


@contextmanager
def sqlite_copy(count: int) -> Iterator[str]:
    """A SQLite file of `count` seeded work requests (a copy of the cached one)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / f"list_scale_{cache_key(count)}.db"
    if not cached.exists():
        for old in CACHE.glob(f"list_scale_*_{count}.db"):
            old.unlink()
        building = cached.with_suffix(f".building-{os.getpid()}")
        try:
            asyncio.run(seed(default_sqlite_url(building), count))
            building.rename(cached)
        finally:
            for leftover in (building, *building.parent.glob(f"{building.name}-*")):
                leftover.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-list-") as directory:
        copy = Path(directory) / "list.db"
        shutil.copyfile(cached, copy)
        yield default_sqlite_url(copy)


def _url_of(name: str) -> str:
    return make_url(postgres.ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def _admin() -> asyncpg.Connection:
    dsn = make_url(postgres.ADMIN_URL).set(drivername="postgresql")
    return await asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=10)


async def _postgres_template(count: int) -> str:
    """The template database of `count` seeded work requests, made once per cache key:
    seeded under a temporary name and renamed when done, so an interrupted seeding
    leaves no half-filled template behind."""
    name = f"{TEMPLATE_PREFIX}{cache_key(count)}"
    admin = await _admin()
    try:
        existing = {r["datname"] for r in await admin.fetch("SELECT datname FROM pg_database")}
        if name in existing:
            return name
        for old in existing:
            if old.startswith(TEMPLATE_PREFIX) and old.endswith(f"_{count}"):
                await admin.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
        building = f"{TEMPLATE_PREFIX}building_{os.getpid()}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{building}"')
        try:
            await seed(_url_of(building), count)
            seeded = await asyncpg.connect(
                make_url(_url_of(building))
                .set(drivername="postgresql")
                .render_as_string(hide_password=False)
            )
            try:
                await seeded.execute("VACUUM ANALYZE")
            finally:
                await seeded.close()
            await admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        except BaseException:
            await admin.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
            raise
        return name
    finally:
        await admin.close()


async def _copy_of(template: str) -> str:
    # Named like the tests' databases, so a killed run's copy is dropped as an orphan.
    name = f"{postgres.PREFIX}{os.getpid()}_list{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return _url_of(name)


@contextmanager
def postgres_copy(count: int) -> Iterator[str]:
    template = asyncio.run(_postgres_template(count))
    url = asyncio.run(_copy_of(template))
    try:
        yield url
    finally:
        asyncio.run(postgres.drop_database(url))


# -- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    name: str
    request: dict[str, Any] = field(default_factory=dict)


def queries(count: int) -> list[Query]:
    """The unfiltered page first (the baseline), then every documented filter: the
    request's compartment_id, resource_id, resource_type and statuses, and each field of
    the AIP-160 filter, with values from common to absent, and the oldest work requests
    (last in the default order) by time."""
    early = accepted_at(count // 100).strftime("%Y-%m-%dT%H:%M:%SZ")
    late = accepted_at(count - count // 100).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        Query("unfiltered"),
        Query("compartment_id", {"compartment_id": "c042"}),
        Query("resource_id (a cluster)", {"resource_id": cluster_id(4242 % max(1, count))}),
        Query("resource_type = nodepool", {"resource_type": "nodepool"}),
        Query("statuses = [FAILED]", {"statuses": [wr_pb.WORK_REQUEST_STATUS_FAILED]}),
        Query("filter status = FAILED", {"filter": "status = FAILED"}),
        Query("filter status = CANCELED", {"filter": "status = CANCELED"}),
        Query("filter status = IN_PROGRESS (none)", {"filter": "status = IN_PROGRESS"}),
        Query(
            "filter operation_type = CLUSTER_DELETE", {"filter": "operation_type = CLUSTER_DELETE"}
        ),
        Query(
            "filter operation_type = ORCHESTRATION_RUN (rare)",
            {"filter": "operation_type = ORCHESTRATION_RUN"},
        ),
        Query("filter compartment_id", {"filter": 'compartment_id = "c042"'}),
        Query("filter time_accepted > (newest 1 %)", {"filter": f'time_accepted > "{late}"'}),
        Query("filter time_accepted < (oldest 1 %)", {"filter": f'time_accepted < "{early}"'}),
        Query("filter percent_complete < 50", {"filter": "percent_complete < 50"}),
        Query(
            "compartment_id and filter status = FAILED",
            {"compartment_id": "c042", "filter": "status = FAILED"},
        ),
    ]


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def time_query(address: str, query: Query, sizes: Sizes) -> dict[str, Any]:
    request = wr_pb.ListWorkRequestsRequest(page_size=PAGE, **query.request)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = wr_grpc.WorkRequestServiceStub(channel)
        first = await stub.ListWorkRequests(request, timeout=120)  # warm-up, not counted
        samples: list[float] = []
        stop = time.perf_counter() + sizes.seconds
        while len(samples) < sizes.calls and (
            len(samples) < MIN_CALLS or time.perf_counter() < stop
        ):
            began = time.perf_counter()
            await stub.ListWorkRequests(request, timeout=120)
            samples.append(time.perf_counter() - began)
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "max_ms": max(samples) * 1000,
        "calls": len(samples),
        "page_items": len(first.work_requests),
        "next_page_token": bool(first.next_page_token),
    }


def figure(count: int, query: Query) -> str:
    return f"ListWorkRequests ({count:,} stored, page of {PAGE}) {query.name}, p99"


def measure(url: str, store: str, sizes: Sizes) -> Iterator[Row]:
    count = sizes.work_requests
    with serve(url, f"list-{store}") as server:
        baseline: float | None = None
        for query in queries(count):
            name = figure(count, query)
            try:
                result = asyncio.run(time_query(server.address, query, sizes))
            except grpc.aio.AioRpcError as error:
                row = failed(FAMILY, name, "ms", describe(error), store=store)
                row.details["server_log"] = str(server.log)
                row.details["server_problems"] = server.problems()[:20]
                yield row
                continue
            except Exception as error:
                yield failed(FAMILY, name, "ms", error, store=store)
                continue
            is_baseline = query.name == "unfiltered"
            yield Row(
                FAMILY,
                name,
                result["p99_ms"],
                "ms",
                baseline=None if is_baseline else baseline,
                baseline_label="ms unfiltered",
                store=store,
                target="<= 20 ms",
                met=result["p99_ms"] <= 20,
                details=result | {"request": query.request},
            )
            if is_baseline:
                baseline = result["p99_ms"]


def rows(quick: bool, stores: Sequence[str], sizes: Sizes | None = None) -> Iterator[Row]:
    sizes = sizes or (QUICK if quick else Sizes())
    for store in stores:
        copy = postgres_copy if store == "postgresql" else sqlite_copy
        try:
            with copy(sizes.work_requests) as url:
                yield from measure(url, store, sizes)
        except Exception as error:
            yield failed(
                FAMILY,
                f"ListWorkRequests, {sizes.work_requests:,} stored (seeding or server)",
                "ms",
                error,
                store=store,
            )
