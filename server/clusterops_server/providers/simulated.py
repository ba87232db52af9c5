"""The built-in provider: a simulated fleet that takes configurable time and injects faults.

Its state is its own (providers/simulated_store.py: tables of its own, made by its own
migrations, reached through its own repository), in the service's database so that a
test, an operator or another process can inject a fault into a running server: "fail
`action` for `target` the next N times". Targets are resource ids (a node, its pool or
its cluster) or "*". The service's store is only read, for what the simulated cluster
is made of (its node pools and nodes).

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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from clusterops_server.clock import Clock
from clusterops_server.domain.addon_catalogue import CatalogueFile
from clusterops_server.domain.addon_health import AddonSpec, AddonStatus
from clusterops_server.domain.inventory import Cluster, Node, NodePool, NodeState
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType
from clusterops_server.providers.base import ProviderError
from clusterops_server.providers.simulated_store import (
    ANY_TARGET,
    Fault,
    SimulatedAddon,
    SimulatorStore,
    SimulatorTransaction,
)
from clusterops_server.store.uow import Store

__all__ = ["ACTIONS", "ANY_TARGET", "SimulatedProvider", "SimulationSettings", "addon_resources"]
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

    def with_time(self, action: str, seconds: float | None) -> SimulationSettings:
        """These settings with `action` taking `seconds` ("" sets the default; None gives
        the action the default time again)."""
        if not action:
            assert seconds is not None
            return replace(self, default_seconds=seconds)
        times = {k: v for k, v in self.seconds.items() if k != action}
        if seconds is not None:
            times[action] = seconds
        return replace(self, seconds=times)


class SimulatedProvider:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: SimulationSettings | None = None,
        catalogue: CatalogueFile | None = None,
    ) -> None:
        # The service's store, read for the clusters' node pools and nodes only.
        self.store = store
        self.simulator_store = SimulatorStore(store.database)
        self.clock = clock
        self.settings = settings or SimulationSettings()
        # What each add-on needs to run; without one, any configuration runs.
        self.catalogue = catalogue

    def set_step_time(self, action: str, seconds: float | None) -> None:
        """From the next time it runs, `action` takes `seconds` (see with_time). Kept in
        this process only: a restart goes back to the server's flags."""
        self.settings = self.settings.with_time(action, seconds)

    async def migrate(self) -> None:
        """Create or upgrade the simulator's own tables (before the service's migrations)."""
        await self.simulator_store.migrate()

    async def inject_fault(
        self, action: str, target: str = ANY_TARGET, *, times: int = 1, message: str = ""
    ) -> Fault:
        """Make `action` fail for `target` the next `times` times (-1: every time)."""
        async with self.simulator_store.write() as tx:
            fault = await tx.add_fault(
                action, target, times, message or f"simulated failure of {action}", self.clock.now()
            )
            await tx.commit()
        return fault

    async def faults(self) -> list[Fault]:
        """Every fault injected and not cleared, used up or not, oldest first."""
        async with self.simulator_store.read() as repo:
            return await repo.faults()

    async def clear_faults(self) -> int:
        """Forget every fault; how many there were."""
        async with self.simulator_store.write() as tx:
            cleared = await tx.clear_faults()
            await tx.commit()
        return cleared

    async def act(self, action: str, targets: Sequence[str]) -> None:
        """Spend the action's time, then fail if a fault matches."""
        seconds = self.settings.duration(action)
        if seconds > 0:
            await self.clock.sleep(seconds)
        async with self.simulator_store.write() as tx:
            message = await tx.take_fault(action, targets)
            if message is not None:
                await tx.commit()
        if message is not None:
            raise ProviderError(f"Simulated{_camel(action)}Failure", message)

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
    # What is really on each cluster lives in the simulator's table, so a test or an
    # operator can change it behind the service's back: delete or change resources by hand
    # (drift), make some of them impossible to restore for a while (a partial repair),
    # or make the pods unhealthy until some time (or for good).

    @asynccontextmanager
    async def _acting(
        self, action: str, cluster_id: str, name: str
    ) -> AsyncIterator[SimulatorTransaction]:
        """Spend the action's time, then one transaction to do it in, unless a fault
        matches (then that fault is used up and raised)."""
        seconds = self.settings.duration(action)
        if seconds > 0:
            await self.clock.sleep(seconds)
        async with self.simulator_store.write() as tx:
            message = await tx.take_fault(action, [f"{cluster_id}/{name}", cluster_id])
            if message is not None:
                await tx.commit()
                raise ProviderError(f"Simulated{_camel(action)}Failure", message)
            yield tx

    async def inspect_addon(self, cluster: Cluster, name: str) -> AddonStatus | None:
        async with self._acting("inspect_addon", cluster.id, name) as tx:
            found = await tx.addon(cluster.id, name)
        return await self._status(found) if found else None

    async def apply_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        async with self._acting("apply_addon", cluster.id, spec.name) as tx:
            return await self._converge(tx, cluster.id, spec)

    async def repair_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        async with self._acting("repair_addon", cluster.id, spec.name) as tx:
            return await self._converge(tx, cluster.id, spec)

    async def remove_addon(self, cluster: Cluster, name: str) -> None:
        async with self._acting("remove_addon", cluster.id, name) as tx:
            await tx.delete_addon(cluster.id, name)
            await tx.commit()

    async def release_addon(self, cluster: Cluster, name: str) -> None:
        async with self._acting("release_addon", cluster.id, name) as tx:
            found = await tx.addon(cluster.id, name)
            if found is not None:
                found.managed = False
                found.updated_at = self.clock.now()
                await tx.save_addon(found)
            await tx.commit()

    async def _converge(
        self, tx: SimulatorTransaction, cluster_id: str, spec: AddonSpec
    ) -> AddonStatus:
        """Make the add-on match `spec`, except resources stuck for now."""
        now = self.clock.now()
        found = await tx.addon(cluster_id, spec.name)
        if found is None:
            found = SimulatedAddon(
                cluster_id=cluster_id,
                name=spec.name,
                version=spec.version,
                configurations={},
                managed=True,
                updated_at=now,
                resources={r: {"state": "ok"} for r in addon_resources(spec.name)},
            )
        found.resources = {
            resource: info if _stuck(info, now) else {"state": "ok"}
            for resource, info in found.resources.items()
        }
        found.version = spec.version
        found.configurations = dict(spec.configurations)
        found.managed = True
        found.updated_at = now
        await tx.save_addon(found)
        await tx.commit()
        return await self._status(found)

    async def _unavailable(self, addon: SimulatedAddon) -> tuple[str, ...]:
        """Why the add-on's deployments cannot become ready on this cluster as configured."""
        found: list[str] = []
        option = self.catalogue.current().get(addon.name) if self.catalogue else None
        version = option.version(addon.version) if option else None
        if version is not None:
            found.extend(version.shortfalls(addon.configurations))
        async with self.store.read() as uow:
            pools = await uow.inventory.live_node_pools(addon.cluster_id)
            for pool in pools:
                if any(
                    n.lifecycle_state is NodeState.ACTIVE
                    for n in await uow.inventory.nodes_of(pool.id)
                ):
                    break
            else:
                if pools:
                    found.append(
                        f"its pods cannot be scheduled: none of the cluster's {len(pools)} "
                        "node pool(s) has an ACTIVE node"
                    )
        return tuple(found)

    async def _status(self, addon: SimulatedAddon) -> AddonStatus:
        now = self.clock.now()
        drift = tuple(
            f"{resource} {info['state']}"
            for resource, info in sorted(addon.resources.items())
            if info["state"] != "ok"
        )
        not_ready: tuple[str, ...] = ()
        unhealthy = addon.unhealthy
        if unhealthy and (
            unhealthy["until"] is None or datetime.fromisoformat(unhealthy["until"]) > now
        ):
            not_ready = (str(unhealthy["message"]),)
        return AddonStatus(
            version=addon.version,
            configurations=dict(addon.configurations),
            managed=addon.managed,
            drift=drift,
            not_ready=not_ready,
            unavailable=await self._unavailable(addon),
        )

    async def install_addon_by_hand(
        self,
        cluster_id: str,
        name: str,
        version: str,
        configurations: Mapping[str, str] | None = None,
    ) -> None:
        """Put an add-on on a cluster the way a person with kubectl would."""
        async with self.simulator_store.write() as tx:
            await tx.save_addon(
                SimulatedAddon(
                    cluster_id=cluster_id,
                    name=name,
                    version=version,
                    configurations=dict(configurations or {}),
                    managed=False,
                    updated_at=self.clock.now(),
                    resources={r: {"state": "ok"} for r in addon_resources(name)},
                )
            )
            await tx.commit()

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
        async with self.simulator_store.write() as tx:
            found = await tx.addon(cluster_id, name)
            assert found is not None, f"{name} is not on cluster {cluster_id}"
            resources: dict[str, Any] = {k: dict(v) for k, v in found.resources.items()}
            for resource, state in [(r, "deleted") for r in delete] + [
                (r, "changed") for r in change
            ]:
                assert resource in resources, f"{name} has no {resource}: {sorted(resources)}"
                resources[resource] = {"state": state}
                if resource in stuck:
                    resources[resource].update(
                        stuck=True, stuck_until=stuck_until.isoformat() if stuck_until else None
                    )
            found.resources = resources
            found.updated_at = self.clock.now()
            await tx.save_addon(found)
            await tx.commit()

    async def make_addon_unhealthy(
        self, cluster_id: str, name: str, message: str, *, until: datetime | None = None
    ) -> None:
        """Its pods stay unhealthy until `until` (for good, if None)."""
        async with self.simulator_store.write() as tx:
            found = await tx.addon(cluster_id, name)
            assert found is not None, f"{name} is not on cluster {cluster_id}"
            found.unhealthy = {"message": message, "until": until.isoformat() if until else None}
            await tx.save_addon(found)
            await tx.commit()

    async def addon_on_cluster(self, cluster_id: str, name: str) -> AddonStatus | None:
        """What is on the cluster, without spending simulated time or taking faults."""
        async with self.simulator_store.read() as repo:
            found = await repo.addon(cluster_id, name)
        return await self._status(found) if found else None


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
