"""The simulated provider's controls (SimulatorService): faults, step times, broken add-ons.

Served only where the simulated provider runs; every call needs `manage all-resources
in tenancy`, since a fault or a broken add-on changes what every tenant sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from clusterops_server.auth.caller import require_tenancy_manager
from clusterops_server.domain.addon_health import AddonStatus
from clusterops_server.domain.errors import NotFound
from clusterops_server.providers.simulated import (
    ACTIONS,
    ANY_TARGET,
    SimulatedProvider,
    addon_resources,
)
from clusterops_server.providers.simulated_store import Fault


class AddonBreakage(StrEnum):
    DEPLOYMENT_DELETED = "DEPLOYMENT_DELETED"
    DEPLOYMENT_STUCK = "DEPLOYMENT_STUCK"
    PODS_NOT_READY = "PODS_NOT_READY"


@dataclass(frozen=True)
class StepTime:
    action: str
    seconds: float
    overridden: bool


@dataclass(frozen=True)
class StepTimes:
    default_seconds: float
    # Every action, in ACTIONS order.
    step_times: tuple[StepTime, ...]


class SimulatorControls:
    def __init__(self, simulator: SimulatedProvider) -> None:
        self.simulator = simulator

    async def add_fault(self, action: str, target: str, times: int, message: str) -> Fault:
        require_tenancy_manager("inject simulated faults")
        return await self.simulator.inject_fault(
            action, target or ANY_TARGET, times=times, message=message
        )

    async def faults(self) -> list[Fault]:
        require_tenancy_manager("list simulated faults")
        return await self.simulator.faults()

    async def clear_faults(self) -> int:
        require_tenancy_manager("clear simulated faults")
        return await self.simulator.clear_faults()

    def step_times(self) -> StepTimes:
        require_tenancy_manager("read the simulator's step times")
        return self._step_times()

    def set_step_time(self, action: str, seconds: float | None) -> StepTimes:
        """`action` ("" for the default) takes `seconds`; None: the default again."""
        require_tenancy_manager("change the simulator's step times")
        self.simulator.set_step_time(action, seconds)
        return self._step_times()

    def _step_times(self) -> StepTimes:
        settings = self.simulator.settings
        return StepTimes(
            settings.default_seconds,
            tuple(
                StepTime(action, settings.duration(action), action in settings.seconds)
                for action in ACTIONS
            ),
        )

    async def break_addon(
        self,
        cluster_id: str,
        name: str,
        breakage: AddonBreakage,
        *,
        message: str = "",
        until: datetime | None = None,
    ) -> AddonStatus:
        """Break the add-on on its cluster; what a look at it finds afterwards."""
        require_tenancy_manager("break add-ons")
        if await self.simulator.addon_on_cluster(cluster_id, name) is None:
            raise NotFound("add-on on cluster", f"{cluster_id}/{name}")
        deployment = addon_resources(name)[0]
        if breakage is AddonBreakage.PODS_NOT_READY:
            await self.simulator.make_addon_unhealthy(cluster_id, name, message, until=until)
        else:
            stuck = [deployment] if breakage is AddonBreakage.DEPLOYMENT_STUCK else []
            await self.simulator.tamper_addon(
                cluster_id, name, delete=[deployment], stuck=stuck, stuck_until=until
            )
        status = await self.simulator.addon_on_cluster(cluster_id, name)
        assert status is not None
        return status
