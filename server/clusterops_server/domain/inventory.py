"""The fleet inventory: clusters, node pools and nodes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum

from clusterops_server.domain.filtering import Expression
from clusterops_server.domain.listing import OrderBy, fingerprint


class ClusterState(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    UPDATING = "UPDATING"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"


class NodePoolState(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    UPDATING = "UPDATING"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


class NodeState(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class MaintenanceWindow:
    """A daily window in UTC; an end before the start crosses midnight."""

    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def contains(self, moment: time) -> bool:
        if self.crosses_midnight:
            return moment >= self.start or moment < self.end
        return self.start <= moment < self.end

    def next_opening(self, now: datetime) -> datetime:
        """`now` when the window is open, else when it next opens (tomorrow if today's passed)."""
        now = now.astimezone(UTC)
        if self.contains(now.time()):
            return now
        today = datetime.combine(now.date(), self.start, tzinfo=UTC)
        return today if today > now else today + timedelta(days=1)


def etag_of(*parts: object) -> str:
    """A short opaque etag derived from a resource's version counter and identity."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:16]


@dataclass
class Cluster:
    id: str
    compartment_id: str
    name: str
    kubernetes_version: str
    region: str
    plan: str
    global_account_id: str
    sub_account_id: str
    shoot_name: str
    lifecycle_state: ClusterState
    create_time: datetime
    update_time: datetime
    maintenance_window: MaintenanceWindow | None = None
    labels: dict[str, str] = field(default_factory=dict)
    version: int = 1
    # The id of `plan` in the plan catalogue (KEB's servicePlanID).
    plan_id: str = ""

    @property
    def etag(self) -> str:
        return etag_of(self.id, self.version)

    def touch(self, now: datetime) -> None:
        self.update_time = now
        self.version += 1


@dataclass
class NodePool:
    id: str
    cluster_id: str
    compartment_id: str
    name: str
    kubernetes_version: str
    node_shape: str
    node_count: int
    lifecycle_state: NodePoolState
    create_time: datetime
    update_time: datetime
    version: int = 1

    @property
    def etag(self) -> str:
        return etag_of(self.id, self.version)

    def touch(self, now: datetime) -> None:
        self.update_time = now
        self.version += 1


@dataclass
class Node:
    id: str
    node_pool_id: str
    cluster_id: str
    name: str
    lifecycle_state: NodeState
    create_time: datetime
    update_time: datetime
    lifecycle_details: str = ""


def cluster_uri(cluster_id: str) -> str:
    return f"/clusters/{cluster_id}"


def node_pool_uri(cluster_id: str, node_pool_id: str) -> str:
    return f"/clusters/{cluster_id}/nodePools/{node_pool_id}"


def node_uri(cluster_id: str, node_pool_id: str, node_id: str) -> str:
    return f"{node_pool_uri(cluster_id, node_pool_id)}/nodes/{node_id}"


@dataclass(frozen=True)
class ClusterQuery:
    compartment_id: str = ""
    filter: Expression | None = None
    order: OrderBy = field(default_factory=lambda: OrderBy("name", False))
    include_deleted: bool = False
    visible_compartments: frozenset[str] | None = None

    def fingerprint(self) -> str:
        return fingerprint("clusters", self.compartment_id, self.filter, self.order)
