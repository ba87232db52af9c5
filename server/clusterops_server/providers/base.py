"""What actually happens to a cluster sits behind this interface.

The engine calls a provider inside durable steps; a step may run again after a crash,
so every method must be safe to repeat (creating what exists, or deleting what is
gone, succeeds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from clusterops_server.domain.inventory import Cluster, Node, NodePool
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType


class ProviderError(Exception):
    """The provider could not do what was asked; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---- add-ons (issue 7) ----


@dataclass(frozen=True)
class AddonSpec:
    """What an add-on should be on a cluster: a version and its whole configuration."""

    name: str
    version: str
    configurations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AddonStatus:
    """What the provider finds of an add-on on a cluster."""

    version: str
    configurations: Mapping[str, str]
    # False when it was installed by hand (or released by a disable that kept it).
    managed: bool
    # Its resources that were deleted or changed by hand, e.g. "deployment/cert-manager deleted".
    drift: tuple[str, ...] = ()
    # Deployments that are not ready or pods that are not healthy, with the reason.
    not_ready: tuple[str, ...] = ()
    # Why the add-on's deployments can never become ready as it is configured, or on
    # this cluster as it is (zero replicas of an operator, limits below what it needs,
    # no node to schedule its pods on): its custom resources stay in an incorrect state
    # until the configuration or the cluster changes. Such an add-on was never installed.
    unavailable: tuple[str, ...] = ()


class Provider(Protocol):
    async def create_cluster(self, cluster: Cluster) -> None: ...

    async def delete_cluster(self, cluster: Cluster) -> None: ...

    async def provision_node(self, cluster: Cluster, pool: NodePool, node: Node) -> None:
        """Create the node and return once it is registered ACTIVE."""
        ...

    async def delete_node(self, cluster: Cluster, pool: NodePool, node: Node) -> None: ...

    # --- upgrade workflows ---------------------------------------------------------

    async def run_upgrade_task(
        self, cluster: Cluster, task_type: UpgradeTaskType, target_version: str
    ) -> None:
        """Run one task of upgrading `cluster` to `target_version` and return when it is done.

        PreCheck and PostCheck inspect, Snapshot backs up, Cluster upgrades the control
        plane, Rollback restores the snapshot; raise ProviderError when the task fails.
        """
        ...

    # --- end upgrade workflows -----------------------------------------------------
    # ---- add-ons (issue 7) ----

    async def inspect_addon(self, cluster: Cluster, name: str) -> AddonStatus | None:
        """The add-on as it is on the cluster (drift and readiness included); None if absent."""
        ...

    async def apply_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        """Install or change the add-on to `spec`, taking it over if it was installed by hand."""
        ...

    async def repair_addon(self, cluster: Cluster, spec: AddonSpec) -> AddonStatus:
        """Restore what drifted from `spec`; returns what is there afterwards (maybe still
        drifted: a repair can be partial)."""
        ...

    async def remove_addon(self, cluster: Cluster, name: str) -> None:
        """Delete everything the add-on installed."""
        ...

    async def release_addon(self, cluster: Cluster, name: str) -> None:
        """Stop managing the add-on and leave what it installed running."""
        ...
