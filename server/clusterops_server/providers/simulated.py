"""The built-in provider: a simulated fleet that takes configurable time and injects faults.

Faults live in the database (table sim_faults), so a test, an operator or another
process can inject one into a running server: "fail `action` for `target` the next
N times". Targets are resource ids (a node, its pool or its cluster) or "*".

Add-ons behave as on a real cluster: their deployments become ready only if the add-on
can run as configured (the catalogue's `needs` of each configuration key: replicas,
resource limits) and its pods can be scheduled (a cluster whose node pools have no
ACTIVE node cannot run them; a cluster without node pools stands for one whose system
nodes the simulator does not model, and runs them). This is judged each time the
add-on is looked at, so a new configuration or new nodes change the answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select

from clusterops_server.clock import Clock
from clusterops_server.domain.addon_catalogue import CatalogueFile
from clusterops_server.domain.addon_health import AddonSpec, AddonStatus
from clusterops_server.domain.inventory import Cluster, Node, NodePool, NodeState
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType
from clusterops_server.providers.base import ProviderError
from clusterops_server.store.tables import SimulatedAddonRow, SimulatedFaultRow
from clusterops_server.store.uow import Store, UnitOfWork

ANY_TARGET = "*"
# Every action the simulator spends time on and can be made to fail.
ACTIONS: tuple[str, ...] = (
    "create_cluster",
    "delete_cluster",
    "provision_node",
    "delete_node",
    *(f"upgrade:{task.value}" for task in UpgradeTaskType),
    "inspect_addon",
    "apply_addon",
    "repair_addon",
    "remove_addon",
    "release_addon",
)


@dataclass(frozen=True)
class SimulationSettings:
    """Seconds each action takes on the clock (`default_seconds` unless overridden)."""

    default_seconds: float = 0.0
    seconds: Mapping[str, float] = field(default_factory=dict)

    def duration(self, action: str) -> float:
        return self.seconds.get(action, self.default_seconds)


class SimulatedProvider:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: SimulationSettings | None = None,
        catalogue: CatalogueFile | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or SimulationSettings()
        # What each add-on needs to run; without one, any configuration runs.
        self.catalogue = catalogue

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
            message = await self._take_fault_in(uow, action, targets)
            if message is not None:
                await uow.commit()
            return message

    @staticmethod
    async def _take_fault_in(uow: UnitOfWork, action: str, targets: Sequence[str]) -> str | None:
        """Use up one matching fault inside the caller's transaction; its message, if any."""
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
        return row.message

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
    # ---- add-ons (issue 7) ----
    # What is really on each cluster lives in table sim_addons, so a test or an operator
    # can change it behind the service's back: delete or change resources by hand
    # (drift), make some of them impossible to restore for a while (a partial repair),
    # or make the pods unhealthy until some time (or for good).

    @asynccontextmanager
    async def _acting(self, action: str, cluster_id: str, name: str) -> AsyncIterator[UnitOfWork]:
        """Spend the action's time, then one transaction to do it in, unless a fault
        matches (then that fault is used up and raised)."""
        seconds = self.settings.duration(action)
        if seconds > 0:
            await self.clock.sleep(seconds)
        async with self.store.write() as uow:
            message = await self._take_fault_in(uow, action, [f"{cluster_id}/{name}", cluster_id])
            if message is not None:
                await uow.commit()
                raise ProviderError(f"Simulated{_camel(action)}Failure", message)
            yield uow

    async def inspect_addon(self, cluster: Cluster, name: str) -> AddonStatus | None:
        async with self._acting("inspect_addon", cluster.id, name) as uow:
            row = await uow.session.get(SimulatedAddonRow, (cluster.id, name))
            return await self._status(uow, row) if row else None

    async def apply_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        async with self._acting("apply_addon", cluster.id, spec.name) as uow:
            return await self._converge(uow, cluster.id, spec)

    async def repair_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        async with self._acting("repair_addon", cluster.id, spec.name) as uow:
            return await self._converge(uow, cluster.id, spec)

    async def remove_addon(self, cluster: Cluster, name: str) -> None:
        async with self._acting("remove_addon", cluster.id, name) as uow:
            await uow.session.execute(
                delete(SimulatedAddonRow).where(
                    SimulatedAddonRow.cluster_id == cluster.id, SimulatedAddonRow.name == name
                )
            )
            await uow.commit()

    async def release_addon(self, cluster: Cluster, name: str) -> None:
        async with self._acting("release_addon", cluster.id, name) as uow:
            row = await uow.session.get(SimulatedAddonRow, (cluster.id, name))
            if row is not None:
                row.managed = False
                row.updated_at = self.clock.now()
            await uow.commit()

    async def _converge(self, uow: UnitOfWork, cluster_id: str, spec: AddonSpec) -> AddonStatus:
        """Make the add-on match `spec`, except resources stuck for now."""
        now = self.clock.now()
        row = await uow.session.get(SimulatedAddonRow, (cluster_id, spec.name))
        if row is None:
            row = SimulatedAddonRow(
                cluster_id=cluster_id,
                name=spec.name,
                resources={r: {"state": "ok"} for r in addon_resources(spec.name)},
                unhealthy=None,
            )
            uow.session.add(row)
        resources = {}
        for resource, info in row.resources.items():
            resources[resource] = info if _stuck(info, now) else {"state": "ok"}
        row.resources = resources
        row.version = spec.version
        row.configurations = dict(spec.configurations)
        row.managed = True
        row.updated_at = now
        status = await self._status(uow, row)
        await uow.commit()
        return status

    async def _unavailable(self, uow: UnitOfWork, row: SimulatedAddonRow) -> tuple[str, ...]:
        """Why the add-on's deployments cannot become ready on this cluster as configured."""
        found: list[str] = []
        option = self.catalogue.current().get(row.name) if self.catalogue else None
        version = option.version(row.version) if option else None
        if version is not None:
            found.extend(version.shortfalls(row.configurations))
        pools = await uow.inventory.live_node_pools(row.cluster_id)
        if pools:
            for pool in pools:
                if any(
                    n.lifecycle_state is NodeState.ACTIVE
                    for n in await uow.inventory.nodes_of(pool.id)
                ):
                    break
            else:
                found.append(
                    f"its pods cannot be scheduled: none of the cluster's {len(pools)} node "
                    "pool(s) has an ACTIVE node"
                )
        return tuple(found)

    async def _status(self, uow: UnitOfWork, row: SimulatedAddonRow) -> AddonStatus:
        now = self.clock.now()
        drift = tuple(
            f"{resource} {info['state']}"
            for resource, info in sorted(row.resources.items())
            if info["state"] != "ok"
        )
        not_ready: tuple[str, ...] = ()
        unhealthy = row.unhealthy
        if unhealthy and (
            unhealthy["until"] is None or datetime.fromisoformat(unhealthy["until"]) > now
        ):
            not_ready = (str(unhealthy["message"]),)
        return AddonStatus(
            version=row.version,
            configurations=dict(row.configurations),
            managed=row.managed,
            drift=drift,
            not_ready=not_ready,
            unavailable=await self._unavailable(uow, row),
        )

    async def install_addon_by_hand(
        self,
        cluster_id: str,
        name: str,
        version: str,
        configurations: Mapping[str, str] | None = None,
    ) -> None:
        """Put an add-on on a cluster the way a person with kubectl would."""
        async with self.store.write() as uow:
            await uow.session.merge(
                SimulatedAddonRow(
                    cluster_id=cluster_id,
                    name=name,
                    version=version,
                    configurations=dict(configurations or {}),
                    managed=False,
                    resources={r: {"state": "ok"} for r in addon_resources(name)},
                    unhealthy=None,
                    updated_at=self.clock.now(),
                )
            )
            await uow.commit()

    async def tamper_addon(
        self,
        cluster_id: str,
        name: str,
        *,
        delete: Sequence[str] = (),
        change: Sequence[str] = (),
        stuck: Sequence[str] = (),
        stuck_until: datetime | None = None,
    ) -> None:
        """Delete or change resources by hand; those in `stuck` cannot be restored until
        `stuck_until` (never, if None)."""
        async with self.store.write() as uow:
            row = await uow.session.get(SimulatedAddonRow, (cluster_id, name))
            assert row is not None, f"{name} is not on cluster {cluster_id}"
            resources: dict[str, Any] = {k: dict(v) for k, v in row.resources.items()}
            for resource, state in [(r, "deleted") for r in delete] + [
                (r, "changed") for r in change
            ]:
                assert resource in resources, f"{name} has no {resource}: {sorted(resources)}"
                resources[resource] = {"state": state}
                if resource in stuck:
                    resources[resource].update(
                        stuck=True, stuck_until=stuck_until.isoformat() if stuck_until else None
                    )
            row.resources = resources
            row.updated_at = self.clock.now()
            await uow.commit()

    async def make_addon_unhealthy(
        self, cluster_id: str, name: str, message: str, *, until: datetime | None = None
    ) -> None:
        """Its pods stay unhealthy until `until` (for good, if None)."""
        async with self.store.write() as uow:
            row = await uow.session.get(SimulatedAddonRow, (cluster_id, name))
            assert row is not None, f"{name} is not on cluster {cluster_id}"
            row.unhealthy = {"message": message, "until": until.isoformat() if until else None}
            await uow.commit()

    async def addon_on_cluster(self, cluster_id: str, name: str) -> AddonStatus | None:
        """What is on the cluster, without spending simulated time or taking faults."""
        async with self.store.read() as uow:
            row = await uow.session.get(SimulatedAddonRow, (cluster_id, name))
            return await self._status(uow, row) if row else None


def addon_resources(name: str) -> list[str]:
    """The Kubernetes objects the simulator pretends an add-on is made of."""
    slug = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    return [f"deployment/{slug}", f"service/{slug}", f"configmap/{slug}-config"]


def _stuck(info: Mapping[str, Any], now: datetime) -> bool:
    if info["state"] == "ok" or not info.get("stuck"):
        return False
    until = info.get("stuck_until")
    return until is None or datetime.fromisoformat(until) > now


def _camel(action: str) -> str:
    return "".join(part.capitalize() for part in action.split("_"))
