"""The built-in provider: a simulated fleet that takes configurable time and injects faults.

Faults live in the database (table sim_faults), so a test, an operator or another
process can inject one into a running server: "fail `action` for `target` the next
N times". Targets are resource ids (a node, its pool or its cluster) or "*".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select

from clusterops_server.clock import Clock
from clusterops_server.domain.inventory import Cluster, Node, NodePool
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType
from clusterops_server.providers.base import ProviderError
from clusterops_server.store.tables import SimulatedFaultRow
from clusterops_server.store.uow import Store

ANY_TARGET = "*"


@dataclass(frozen=True)
class SimulationSettings:
    """Seconds each action takes on the clock (`default_seconds` unless overridden)."""

    default_seconds: float = 0.0
    seconds: Mapping[str, float] = field(default_factory=dict)

    def duration(self, action: str) -> float:
        return self.seconds.get(action, self.default_seconds)


class SimulatedProvider:
    def __init__(
        self, store: Store, clock: Clock, settings: SimulationSettings | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or SimulationSettings()

    async def inject_fault(
        self, action: str, target: str = ANY_TARGET, *, times: int = 1, message: str = ""
    ) -> None:
        """Make `action` fail for `target` the next `times` times (-1: every time)."""
        async with self.store.write() as uow:
            uow.session.add(
                SimulatedFaultRow(
                    target=target,
                    action=action,
                    remaining=times,
                    message=message or f"simulated failure of {action}",
                    created_at=self.clock.now(),
                )
            )
            await uow.commit()

    async def clear_faults(self) -> None:
        async with self.store.write() as uow:
            await uow.session.execute(delete(SimulatedFaultRow))
            await uow.commit()

    async def act(self, action: str, targets: Sequence[str]) -> None:
        """Spend the action's time, then fail if a fault matches."""
        seconds = self.settings.duration(action)
        if seconds > 0:
            await self.clock.sleep(seconds)
        message = await self._take_fault(action, targets)
        if message is not None:
            raise ProviderError(f"Simulated{_camel(action)}Failure", message)

    async def _take_fault(self, action: str, targets: Sequence[str]) -> str | None:
        async with self.store.write() as uow:
            row = await uow.session.scalar(
                select(SimulatedFaultRow)
                .where(
                    SimulatedFaultRow.action == action,
                    SimulatedFaultRow.target.in_([*targets, ANY_TARGET]),
                    or_(SimulatedFaultRow.remaining > 0, SimulatedFaultRow.remaining == -1),
                )
                .order_by(SimulatedFaultRow.id)
                .limit(1)
                # Concurrent actions must not both spend the last remaining failure.
                .with_for_update()
            )
            if row is None:
                return None
            if row.remaining > 0:
                row.remaining -= 1
            message = row.message
            await uow.commit()
            return message

    async def create_cluster(self, cluster: Cluster) -> None:
        await self.act("create_cluster", [cluster.id])

    async def delete_cluster(self, cluster: Cluster) -> None:
        await self.act("delete_cluster", [cluster.id])

    async def provision_node(self, cluster: Cluster, pool: NodePool, node: Node) -> None:
        await self.act("provision_node", [node.id, pool.id, cluster.id])

    async def delete_node(self, cluster: Cluster, pool: NodePool, node: Node) -> None:
        await self.act("delete_node", [node.id, pool.id, cluster.id])

    # --- upgrade workflows ---------------------------------------------------------

    async def run_upgrade_task(
        self, cluster: Cluster, task_type: UpgradeTaskType, target_version: str
    ) -> None:
        """Action "upgrade:<TaskType>" (e.g. "upgrade:PostCheck") on the cluster's id: its
        time is `seconds["upgrade:PostCheck"]` and a fault row for that action fails it."""
        try:
            await self.act(f"upgrade:{task_type.value}", [cluster.id])
        except ProviderError as error:
            raise ProviderError(
                f"SimulatedUpgrade{task_type.value}Failure", error.message
            ) from None

    # --- end upgrade workflows -----------------------------------------------------


def _camel(action: str) -> str:
    return "".join(part.capitalize() for part in action.split("_"))
