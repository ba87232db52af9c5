"""What actually happens to a cluster sits behind this interface.

The engine calls a provider inside durable steps; a step may run again after a crash,
so every method must be safe to repeat (creating what exists, or deleting what is
gone, succeeds).
"""

from __future__ import annotations

from typing import Protocol

from clusterops_server.domain.addon_health import AddonSpec, AddonStatus
from clusterops_server.domain.inventory import Cluster, Node, NodePool
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType


class ProviderError(Exception):
    """The provider could not do what was asked; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# An add-on's AddonSpec (what it should be) and AddonStatus (what a provider finds) are
# the domain's values (domain/addon_health.py), which judges one against the other.


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
