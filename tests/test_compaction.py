"""Watch history older than the retention is compacted at start and then on the
configured interval, without anyone calling compact."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock

from tests.conftest import AppFactory, Stubs, connect, seed_cluster
from tests.helpers import details_of, watch_to_end

pytestmark = pytest.mark.both_backends

RETENTION = timedelta(hours=1)


async def make_history(app: App, stubs: Stubs) -> tuple[str, int]:
    cluster = await seed_cluster(app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    events = await watch_to_end(stubs, created.work_request.id)
    return created.work_request.id, events[0].revision


async def compacted(app: App) -> int:
    async with app.store.read() as uow:
        return (await uow.events.revision_range()).compacted


async def test_history_beyond_the_retention_is_compacted_when_the_server_starts(
    make_app: AppFactory, clock: FakeClock
) -> None:
    first = await make_app(event_retention=RETENTION)
    async with connect(first) as stubs:
        wr_id, revision = await make_history(first, stubs)
    await first.stop(grace=0)
    clock.advance((RETENTION + timedelta(minutes=1)).total_seconds())
    second = await make_app(event_retention=RETENTION)
    assert await compacted(second) >= revision
    async with connect(second) as stubs:
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await watch_to_end(stubs, wr_id, after_revision=revision)
    assert details_of(gone.value).code == grpc.StatusCode.OUT_OF_RANGE


async def test_history_is_compacted_on_the_configured_interval(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(event_retention=RETENTION, maintenance_interval_seconds=0.05)
    async with connect(app) as stubs:
        _, revision = await make_history(app, stubs)
    assert await compacted(app) < revision
    clock.advance((RETENTION + timedelta(minutes=1)).total_seconds())
    for _ in range(2):  # a run that began before the clock moved does not count
        app.maintained.clear()
        await asyncio.wait_for(app.maintained.wait(), 10)
    assert await compacted(app) >= revision
