"""What actually happens to a cluster sits behind this interface.

The engine calls a provider inside durable steps; a step may run again after a crash,
so every method must be safe to repeat (creating what exists, or deleting what is
gone, succeeds).
"""

from __future__ import annotations

from typing import Protocol

from clusterops_server.domain.inventory import Cluster, Node, NodePool
from clusterops_server.domain.upgrade_workflows import UpgradeTaskType


class ProviderError(Exception):
    """The provider could not do what was asked; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
