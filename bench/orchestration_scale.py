"""Orchestration scale: one orchestration over N targets with zero-time steps, against the
same N upgrade workflows started directly (no orchestration), measured in the same run.

    .venv/bin/python -m bench.orchestration_scale [--targets 10000] [--workers 64]
                                                  [--upgrades instant|real]

Both runs use a fresh SQLite file, the same fleet and the same engine (64 operations at
once by default), so the difference between them is what the orchestration adds: target
resolution, one operation row per cluster, and the scheduler's passes. The scheduler's
overhead per operation is (orchestration wall time - baseline wall time) / N. It also
prints the passes the scheduler made and the most asyncio tasks alive at once, which stays
near the worker count however many targets there are: waiting operations are rows.

`--upgrades instant` (the default) runs each upgrade's zero-time steps as one transaction
(the workflow succeeds and the cluster gets its version), so ten thousand of them take
minutes rather than the better part of an hour and the scheduler's share stands out;
`--upgrades real` runs the whole CCE task graph, each task a durable step, in both runs.
Absolute numbers depend on the machine; compare the two columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from clusterops_server.app import App, ServerConfig
from clusterops_server.domain.inventory import ClusterState
from clusterops_server.domain.orchestrations import (
    OrchestrationParameters,
    Strategy,
)
from clusterops_server.domain.targets import RuntimeTarget, TargetSpec
from clusterops_server.domain.upgrade_workflows import UpgradePhase
from clusterops_server.domain.work_requests import (
    ACTIVE_STATUSES,
    OperationType,
    WorkRequest,
    WorkRequestStatus,
)
from clusterops_server.engine.context import EngineSettings, OperationContext
from clusterops_server.engine.operations.orchestrations import RunOrchestration
from clusterops_server.ids import IdKind, new_id
from clusterops_server.operations.params import UpgradeParams
from clusterops_server.operations.upgrades import start_upgrade
from clusterops_server.services.orchestrations import CreateOrchestrationCommand
from clusterops_server.store.database import default_sqlite_url
from clusterops_server.store.migrate import upgrade_to_head
from clusterops_server.store.tables import ClusterRow, WorkRequestRow
from clusterops_server.store.uow import UnitOfWork
from sqlalchemy import event, func, insert, select

from bench.results import Row, failed
from bench.watch_fanout import in_fresh_process

FAMILY = "orchestration_scale"
COMPARTMENT = "bench"
FROM, TO = "v1.29.8", "v1.30.4"
BATCH = 100


class InstantUpgrade:
    """CLUSTER_UPGRADE with its zero-time steps in one transaction."""

    operation_type = OperationType.CLUSTER_UPGRADE

    async def check_cancel(self, uow: UnitOfWork, wr: WorkRequest) -> None:
        return

    async def run(self, ctx: OperationContext) -> None:
        async def apply(uow: UnitOfWork, wr: WorkRequest) -> None:
            now = ctx.clock.now()
            params = ctx.params_as(UpgradeParams)
            workflow = await uow.upgrade_workflows.get(params.upgrade_workflow_id, for_update=True)
            cluster = await uow.inventory.get_cluster(params.cluster_id, for_update=True)
            assert workflow is not None
            assert cluster is not None
            workflow.phase = UpgradePhase.SUCCESS
            workflow.touch(now)
            await uow.upgrade_workflows.save(workflow)
            cluster.kubernetes_version = workflow.target_version
            cluster.lifecycle_state = ClusterState.ACTIVE
            cluster.touch(now)
            await uow.inventory.save_cluster(cluster)

        await ctx.finish(WorkRequestStatus.SUCCEEDED, apply=apply, log="upgraded")

    async def undo(self, ctx: OperationContext) -> None:
        await ctx.finish(WorkRequestStatus.CANCELED)

    async def abandon(self, ctx: OperationContext, uow: UnitOfWork, wr: WorkRequest) -> None:
        return


def build(directory: Path, name: str, concurrency: int, upgrades: str) -> App:
    app = App(
        ServerConfig(
            database_url=default_sqlite_url(directory / f"{name}.db"),
            port=0,
            engine=EngineSettings(concurrency=concurrency),
        )
    )
    if upgrades == "instant":
        app.engine.handlers[OperationType.CLUSTER_UPGRADE] = InstantUpgrade()
    return app


async def seed(app: App, count: int) -> list[str]:
    now = app.clock.now()
    ids = [new_id(IdKind.CLUSTER) for _ in range(count)]
    rows: list[dict[str, Any]] = [
        {
            "id": cluster_id,
            "compartment_id": COMPARTMENT,
            "name": f"c-{i}",
            "kubernetes_version": FROM,
            "region": "eu-frankfurt-1",
            "plan": "aws",
            "global_account_id": "ga-bench",
            "sub_account_id": "sa-bench",
            "shoot_name": f"shoot-{i}",
            "maintenance_start": None,
            "maintenance_end": None,
            "labels": {},
            "lifecycle_state": "ACTIVE",
            "created_at": now,
            "updated_at": now,
            "version": 1,
        }
        for i, cluster_id in enumerate(ids)
    ]
    async with app.store.write() as uow:
        for start in range(0, count, 1000):
            await uow.session.execute(insert(ClusterRow), rows[start : start + 1000])
        await uow.commit()
    return ids


async def unfinished_upgrades(app: App) -> int:
    async with app.store.read() as uow:
        return int(
            await uow.session.scalar(
                select(func.count())
                .select_from(WorkRequestRow)
                .where(
                    WorkRequestRow.operation_type == OperationType.CLUSTER_UPGRADE.value,
                    WorkRequestRow.status.in_([s.value for s in ACTIVE_STATUSES]),
                )
            )
            or 0
        )


class Probe:
    """Counts SQL statements and samples how many asyncio tasks are alive."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.statements = 0
        self.max_tasks = 0
        self._sampler: asyncio.Task[None] | None = None

    def _count(self, *_: Any) -> None:
        self.statements += 1

    async def _sample(self) -> None:
        while True:
            self.max_tasks = max(self.max_tasks, len(asyncio.all_tasks()))
            await asyncio.sleep(0.05)

    def __enter__(self) -> Probe:
        event.listen(self.app.database.engine.sync_engine, "before_cursor_execute", self._count)
        self._sampler = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.app.database.engine.sync_engine, "before_cursor_execute", self._count)
        if self._sampler is not None:
            self._sampler.cancel()


async def timed(app: App, work: Callable[[], Awaitable[None]]) -> dict[str, float]:
    with Probe(app) as probe:
        began = time.perf_counter()
        await work()
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "statements": probe.statements, "max_tasks": probe.max_tasks}


async def baseline(
    directory: Path, targets: int, concurrency: int, upgrades: str
) -> dict[str, float]:
    """Start every upgrade directly, then let the engine run them all."""
    app = build(directory, "baseline", concurrency, upgrades)
    await upgrade_to_head(app.database)
    ids = await seed(app, targets)

    async def run() -> None:
        # Created before the engine starts, so the creating transactions do not compete
        # with the engine for SQLite's write lock (the orchestration creates its upgrades
        # itself, a few at a time, while the engine runs).
        for start in range(0, targets, BATCH):
            async with app.store.write() as uow:
                for cluster_id in ids[start : start + BATCH]:
                    cluster = await uow.inventory.get_cluster(cluster_id, for_update=True)
                    assert cluster is not None
                    await start_upgrade(uow, app.versions, cluster, TO)
                await uow.commit()
        await app.start()
        while await unfinished_upgrades(app):
            await app.engine.wait_idle()

    try:
        return await timed(app, run)
    finally:
        await app.stop(0)


async def orchestrated(
    directory: Path, targets: int, workers: int, concurrency: int, upgrades: str
) -> dict[str, float]:
    app = build(directory, "orchestration", concurrency, upgrades)
    await app.start()
    handler = app.engine.handlers[OperationType.ORCHESTRATION_RUN]
    assert isinstance(handler, RunOrchestration)
    passes = 0
    one_pass = handler._pass

    async def counted(*args: Any) -> None:
        nonlocal passes
        passes += 1
        await one_pass(*args)

    handler._pass = counted  # type: ignore[method-assign,assignment]
    try:
        await seed(app, targets)
        created = 0.0

        async def run() -> None:
            nonlocal created
            began = time.perf_counter()
            orchestration, wr = await app.orchestrations.create(
                CreateOrchestrationCommand(
                    COMPARTMENT,
                    OrchestrationParameters(
                        targets=TargetSpec((RuntimeTarget(target="all"),)),
                        strategy=Strategy(workers=workers),
                        kubernetes_version=TO,
                    ),
                )
            )
            created = time.perf_counter() - began
            while True:
                await app.engine.wait_idle()
                async with app.store.read() as uow:
                    current = await uow.work_requests.get(wr.id)
                assert current is not None
                if current.status.is_terminal:
                    break
            done = await app.orchestrations.get(orchestration.id)
            assert done.counts.total == targets, done.counts
            print(
                f"  orchestration {done.id}: {done.state.value}, {done.description}",
                file=sys.stderr,
            )

        result = await timed(app, run)
        return result | {"create_seconds": created, "passes": passes}
    finally:
        await app.stop(0)


async def measure(
    targets: int, workers: int, concurrency: int, upgrades: str
) -> tuple[dict[str, float], dict[str, float]]:
    with tempfile.TemporaryDirectory() as directory:
        base = await baseline(Path(directory), targets, concurrency, upgrades)
        ours = await orchestrated(Path(directory), targets, workers, concurrency, upgrades)
    return base, ours


def _measure(targets: int) -> tuple[dict[str, float], dict[str, float]]:
    return asyncio.run(measure(targets, 64, 64, "instant"))


def rows(quick: bool) -> Iterator[Row]:
    """The table's figure: the orchestration's wall time for 10,000 zero-time targets
    (instant upgrades, 64 workers), against the same upgrades started directly."""
    targets = 30 if quick else 10_000
    figure = f"orchestration of {targets:,} zero-time targets"
    try:
        base, ours = in_fresh_process(_measure, targets)
    except Exception as error:
        yield failed(FAMILY, figure, "s", error, store="sqlite")
        return
    yield Row(
        FAMILY,
        figure,
        ours["seconds"],
        "s",
        baseline=base["seconds"],
        baseline_label="s started directly",
        store="sqlite",
        target="<= 60 s",
        met=ours["seconds"] <= 60,
        details={
            "targets": targets,
            "ms_per_operation": round(ours["seconds"] / targets * 1000, 3),
            "baseline_ms_per_operation": round(base["seconds"] / targets * 1000, 3),
            "statements_per_operation": round(ours["statements"] / targets, 1),
            "baseline_statements_per_operation": round(base["statements"] / targets, 1),
            "scheduler_passes": ours["passes"],
            "create_seconds": round(ours["create_seconds"], 3),
            "most_tasks_alive": ours["max_tasks"],
        },
    )


async def main(targets: int, workers: int, concurrency: int, upgrades: str) -> None:
    print(
        f"targets {targets}, workers {workers}, engine concurrency {concurrency}, "
        f"{upgrades} upgrades"
    )
    base, ours = await measure(targets, workers, concurrency, upgrades)
    print(f"{'':34}{'baseline':>12}{'orchestration':>15}")
    print(f"{'wall time (s)':34}{base['seconds']:12.2f}{ours['seconds']:15.2f}")
    print(
        f"{'per operation (ms)':34}{base['seconds'] / targets * 1000:12.3f}"
        f"{ours['seconds'] / targets * 1000:15.3f}"
    )
    print(
        f"{'SQL statements per operation':34}{base['statements'] / targets:12.1f}"
        f"{ours['statements'] / targets:15.1f}"
    )
    print(f"{'most asyncio tasks alive':34}{base['max_tasks']:12.0f}{ours['max_tasks']:15.0f}")
    print(f"{'create + resolve targets (s)':34}{'-':>12}{ours['create_seconds']:15.2f}")
    print(f"{'scheduler passes':34}{'-':>12}{ours['passes']:15.0f}")
    overhead = (ours["seconds"] - base["seconds"]) / targets * 1000
    print(
        f"scheduler overhead per operation: {overhead:.3f} ms "
        f"({ours['seconds'] / base['seconds']:.2f}x the baseline's wall time)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument(
        "--concurrency", type=int, default=64, help="operations the engine runs at once"
    )
    parser.add_argument("--upgrades", choices=["instant", "real"], default="instant")
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.targets, arguments.workers, arguments.concurrency, arguments.upgrades)
    )
