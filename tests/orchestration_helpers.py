"""Helpers shared by the orchestration tests."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from clusterops.v1 import orchestrations_pb2 as orc_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import Clock
from clusterops_server.domain.inventory import Cluster
from clusterops_server.domain.orchestrations import OperationCounts, OrchestrationState
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType
from clusterops_server.domain.work_requests import ACTIVE_STATUSES, OperationType
from clusterops_server.providers.simulated import SimulatedProvider
from clusterops_server.store.tables import OrchestrationOperationRow, WorkRequestRow
from clusterops_server.store.uow import Store
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select

from tests.conftest import Stubs
from tests.helpers import watch_to_end

ALL = ({"target": "all"},)
STATE = orc_pb.OrchestrationState


def targets(*selectors: Mapping[str, str]) -> list[orc_pb.RuntimeTarget]:
    return [orc_pb.RuntimeTarget(**s) for s in selectors]


def parameters(
    *,
    include: Sequence[Mapping[str, str]] = ALL,
    exclude: Sequence[Mapping[str, str]] = (),
    version: str = "v1.30.4",
    workers: int = 1,
    schedule: orc_pb.ScheduleType.ValueType = orc_pb.SCHEDULE_TYPE_IMMEDIATE,
    schedule_time: datetime | None = None,
    maintenance_window: bool = False,
    dry_run: bool = False,
) -> orc_pb.OrchestrationParameters:
    strategy = orc_pb.StrategySpec(
        type=orc_pb.STRATEGY_TYPE_PARALLEL,
        schedule=schedule,
        maintenance_window=maintenance_window,
        parallel=orc_pb.ParallelStrategy(workers=workers),
    )
    if schedule_time is not None:
        moment = Timestamp()
        moment.FromDatetime(schedule_time)
        strategy.schedule_time.CopyFrom(moment)
    return orc_pb.OrchestrationParameters(
        targets=orc_pb.TargetSpec(include=targets(*include), exclude=targets(*exclude)),
        strategy=strategy,
        kubernetes_version=version,
        dry_run=dry_run,
    )


async def create(
    stubs: Stubs, *, compartment: str = "dev", request_id: str = "", **options: object
) -> orc_pb.CreateOrchestrationResponse:
    """Create an orchestration; a dry run, which ends at once, is waited for, so that a test
    never stops the server in the middle of its run."""
    created = await stubs.orchestrations.CreateOrchestration(
        orc_pb.CreateOrchestrationRequest(
            compartment_id=compartment,
            parameters=parameters(**options),  # type: ignore[arg-type]
            request_id=request_id,
        )
    )
    if options.get("dry_run"):
        await watch_to_end(stubs, created.work_request.id)
    return created


async def get(stubs: Stubs, orchestration_id: str) -> orc_pb.Orchestration:
    response = await stubs.orchestrations.GetOrchestration(
        orc_pb.GetOrchestrationRequest(orchestration_id=orchestration_id)
    )
    return response.orchestration


async def operations(
    stubs: Stubs,
    orchestration_id: str,
    *,
    states: Sequence[orc_pb.OrchestrationState.ValueType] = (),
) -> list[orc_pb.OrchestrationOperation]:
    """Every operation, page by page."""
    found: list[orc_pb.OrchestrationOperation] = []
    token = ""
    while True:
        page = await stubs.orchestrations.ListOrchestrationOperations(
            orc_pb.ListOrchestrationOperationsRequest(
                orchestration_id=orchestration_id, states=states, page_token=token
            )
        )
        found.extend(page.data)
        token = page.next_page_token
        if not token:
            return found


async def by_runtime(
    stubs: Stubs, orchestration_id: str
) -> dict[str, orc_pb.OrchestrationOperation]:
    return {op.runtime_id: op for op in await operations(stubs, orchestration_id)}


async def stored_counts(app: App, orchestration_id: str) -> OperationCounts:
    """Counted from the operation rows, to check the counts the orchestration keeps."""
    async with app.store.read() as uow:
        return await uow.orchestrations.count_by_state(orchestration_id)


def counts(orchestration: orc_pb.Orchestration) -> dict[str, int]:
    c = orchestration.operation_counts
    return {
        name: getattr(c, name)
        for name in (
            "pending",
            "in_progress",
            "succeeded",
            "failed",
            "canceled",
            "retrying",
            "total",
        )
        if getattr(c, name)
    }


async def running_in_store(store: Store) -> tuple[int, int]:
    """(operations in progress, upgrade work requests not yet finished), as the store says."""
    async with store.read() as uow:
        operations_running = await uow.session.scalar(
            select(func.count())
            .select_from(OrchestrationOperationRow)
            .where(OrchestrationOperationRow.state == OrchestrationState.IN_PROGRESS.value)
        )
        upgrades_running = await uow.session.scalar(
            select(func.count())
            .select_from(WorkRequestRow)
            .where(
                WorkRequestRow.operation_type == OperationType.CLUSTER_UPGRADE.value,
                WorkRequestRow.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        )
    return int(operations_running or 0), int(upgrades_running or 0)


class GatedProvider(SimulatedProvider):
    """The simulator, holding each upgrade's Cluster task until the test opens its gate.

    Whenever a Cluster task begins it records what the store says is running, so a test
    sees the worker limit from the store at the moments it matters.
    """

    def __init__(self, store: Store, clock: Clock) -> None:
        super().__init__(store, clock)
        self.entered: asyncio.Queue[str] = asyncio.Queue()
        self.gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.seen_running: list[tuple[int, int]] = []

    async def run_upgrade_task(
        self, cluster: Cluster, task_type: UpgradeTaskType, target_version: str
    ) -> None:
        if task_type is UpgradeTaskType.CLUSTER:
            self.seen_running.append(await running_in_store(self.store))
            self.entered.put_nowait(cluster.id)
            await self.gates[cluster.id].wait()
        await super().run_upgrade_task(cluster, task_type, target_version)

    async def next_entered(self, within: float = 10.0) -> str:
        return await asyncio.wait_for(self.entered.get(), within)

    def release(self, cluster_id: str) -> None:
        self.gates[cluster_id].set()


def gated(app: App) -> GatedProvider:
    assert isinstance(app.provider, GatedProvider)
    return app.provider


async def watch_until(
    stubs: Stubs,
    work_request_id: str,
    predicate: Callable[[wr_pb.WatchWorkRequestResponse], bool],
    *,
    within: float = 10.0,
) -> wr_pb.WatchWorkRequestResponse:
    """Follow a work request's events until one satisfies `predicate`."""

    async def follow() -> wr_pb.WatchWorkRequestResponse:
        call = stubs.work_requests.WatchWorkRequest(
            wr_pb.WatchWorkRequestRequest(work_request_id=work_request_id)
        )
        async for event in call:
            if predicate(event):
                call.cancel()
                return event
        raise AssertionError(f"work request {work_request_id} ended before the event came")

    return await asyncio.wait_for(follow(), within)


def logged(text: str) -> Callable[[wr_pb.WatchWorkRequestResponse], bool]:
    return lambda event: any(text in entry.message for entry in event.log_entries)


async def assert_counts_match_the_operations(app: App, orchestration_id: str) -> None:
    """The counts an orchestration keeps agree with its operation rows."""
    kept = (await app.orchestrations.get(orchestration_id)).counts.by_state
    assert (await stored_counts(app, orchestration_id)).by_state == {
        state: n for state, n in kept.items() if n
    }
