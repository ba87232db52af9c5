"""Add-ons on clusters and the rules of their reconciliation, as OKE on Compute Cloud@Customer.

ACTIVE add-ons are checked every `active_interval`; one that drifted and could not be
fully repaired, or whose pods are not ready, is NEEDS_ATTENTION and is checked again
after a short interval that grows a little each time, until it recovers or
`attention_window` has passed since it entered NEEDS_ATTENTION. After that the checks
stop and the state stays until a person updates, or disables and reinstalls, the add-on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from clusterops_server.domain.inventory import cluster_uri, etag_of
from clusterops_server.domain.work_requests import ActionType, EntityType, WorkRequestResource


class AddonState(StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    UPDATING = "UPDATING"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    DELETING = "DELETING"
    DELETED = "DELETED"
    FAILED = "FAILED"


# States in which the reconciler looks after an add-on.
RECONCILED_STATES = frozenset({AddonState.ACTIVE, AddonState.NEEDS_ATTENTION})
# States a person may update or disable from (the others have an operation in flight).
SETTLED_STATES = frozenset({AddonState.ACTIVE, AddonState.NEEDS_ATTENTION, AddonState.FAILED})


@dataclass(frozen=True)
class AddonError:
    """Why an add-on is not healthy: `code`, `message` and `status` exactly as OKE shows
    them in `addon-error`. `detail` says what exactly is wrong (which resources); it is
    kept with the add-on but never part of `addon_error` on the wire: it goes into the
    work request's log lines and error entries instead. Two errors that differ only in
    detail are the same error to a client, so detail takes no part in equality."""

    code: str
    message: str
    status: str
    detail: str = field(default="", compare=False)

    def to_json(self) -> dict[str, str]:
        found = {"code": self.code, "message": self.message, "status": self.status}
        if self.detail:
            found["detail"] = self.detail
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AddonError | None:
        if not data:
            return None
        return cls(
            str(data["code"]),
            str(data["message"]),
            str(data["status"]),
            str(data.get("detail", "")),
        )

    def work_request_error(self) -> tuple[str, str]:
        """The (code, message) of a work request error entry: OKE's error and the detail."""
        detail = f": {self.detail}" if self.detail else ""
        return self.status, f"{self.message}{detail} (code {self.code})"


def incorrect_state(detail: str = "") -> AddonError:
    """What OKE reports when an add-on's resources are not as installed (its message is
    always exactly "Incorrect state for CR"; which resources goes into `detail`)."""
    return AddonError("409", "Incorrect state for CR", "IncorrectState", detail)


def not_ready(detail: str) -> AddonError:
    return AddonError("503", detail, "DeploymentNotReady")


def provider_failure(code: str, message: str) -> AddonError:
    return AddonError("500", message, code)


@dataclass(frozen=True)
class ReconcileSettings:
    """Every interval of the reconciler; the defaults are the ones OKE documents."""

    active_interval: timedelta = timedelta(hours=12)
    attention_first_interval: timedelta = timedelta(minutes=2)
    # Each NEEDS_ATTENTION interval is this much longer than the one before, up to the cap.
    attention_growth: float = 1.25
    attention_max_interval: timedelta = timedelta(hours=2)
    attention_window: timedelta = timedelta(hours=12, minutes=30)
    # A reconciliation's work request that has not seen the add-on recover by then FAILS.
    work_request_timeout: timedelta = timedelta(minutes=30)
    # A due add-on whose lock is held by an operation is looked at again after this.
    busy_retry: timedelta = timedelta(minutes=1)
    # Due add-ons opened per transaction.
    batch_size: int = 100

    def attention_interval(self, checks_done: int) -> timedelta:
        seconds = self.attention_first_interval.total_seconds() * self.attention_growth ** min(
            checks_done, 200
        )
        return min(timedelta(seconds=seconds), self.attention_max_interval)


def addon_resource_id(cluster_id: str, name: str) -> str:
    """The add-on's identifier in work requests and resource locks."""
    return f"{cluster_id}/{name}"


def addon_uri(cluster_id: str, name: str) -> str:
    return f"{cluster_uri(cluster_id)}/addons/{name}"


def work_request_resources(cluster_id: str, name: str) -> list[WorkRequestResource]:
    """What an add-on's work request affects: the add-on, on its cluster."""
    return [
        WorkRequestResource(
            EntityType.ADDON,
            ActionType.IN_PROGRESS,
            addon_resource_id(cluster_id, name),
            addon_uri(cluster_id, name),
        ),
        WorkRequestResource(
            EntityType.CLUSTER, ActionType.RELATED, cluster_id, cluster_uri(cluster_id)
        ),
    ]


@dataclass
class Addon:
    cluster_id: str
    compartment_id: str
    name: str
    # The requested version; "" follows the newest ACTIVE version.
    version: str
    configurations: dict[str, str]
    lifecycle_state: AddonState
    create_time: datetime
    update_time: datetime
    current_installed_version: str = ""
    error: AddonError | None = None
    work_request_id: str = ""
    row_version: int = 1
    # The durable reconciliation schedule.
    next_check_at: datetime | None = None
    # The open RECONCILE_ADDON work request, while one runs or waits for its next check.
    reconciliation_id: str = ""
    attention_since: datetime | None = None
    attention_checks: int = 0

    @property
    def resource_id(self) -> str:
        return addon_resource_id(self.cluster_id, self.name)

    @property
    def uri(self) -> str:
        return addon_uri(self.cluster_id, self.name)

    @property
    def etag(self) -> str:
        return etag_of(self.cluster_id, self.name, self.row_version)

    @property
    def follows_latest(self) -> bool:
        return not self.version

    def touch(self, now: datetime) -> None:
        self.update_time = now
        self.row_version += 1

    def reset_attention(self) -> None:
        self.attention_since = None
        self.attention_checks = 0

    def record_healthy(self, now: datetime, settings: ReconcileSettings, version: str) -> None:
        """A check found the add-on as installed and ready: ACTIVE, next check in 12 hours."""
        self.lifecycle_state = AddonState.ACTIVE
        self.current_installed_version = version
        self.error = None
        self.reset_attention()
        self.next_check_at = now + settings.active_interval

    def record_unhealthy(
        self, now: datetime, settings: ReconcileSettings, error: AddonError
    ) -> None:
        """NEEDS_ATTENTION: checked again soon, a little later each time, until the window ends."""
        if self.lifecycle_state is not AddonState.NEEDS_ATTENTION or self.attention_since is None:
            self.attention_since = now
            self.attention_checks = 0
        self.lifecycle_state = AddonState.NEEDS_ATTENTION
        self.error = error
        end = self.attention_since + settings.attention_window
        if now >= end:
            self.next_check_at = None
            return
        self.next_check_at = min(now + settings.attention_interval(self.attention_checks), end)
        self.attention_checks += 1

    def gone_with_cluster(self) -> None:
        """Its cluster was deleted: DELETED, nothing left anywhere, never checked again."""
        self.lifecycle_state = AddonState.DELETED
        self.error = None
        self.next_check_at = None
        self.reconciliation_id = ""
        self.current_installed_version = ""
        self.reset_attention()

    @property
    def left_on_cluster(self) -> str:
        """The version of a disabled add-on that was left running on its cluster (disabled
        without remove_existing: its current_installed_version stays), "" if none. The
        service installed that software, so installing the add-on again adopts it
        without override_existing."""
        if self.lifecycle_state is AddonState.DELETED:
            return self.current_installed_version
        return ""

    @property
    def checks_stopped(self) -> bool:
        return self.lifecycle_state is AddonState.NEEDS_ATTENTION and self.next_check_at is None


@dataclass(frozen=True)
class PassReport:
    """What one reconciliation pass found and did, journaled with its step."""

    healthy: bool
    version: str
    summary: str
    error: AddonError | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "version": self.version,
            "summary": self.summary,
            "error": self.error.to_json() if self.error else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PassReport:
        return cls(
            bool(data["healthy"]),
            str(data["version"]),
            str(data["summary"]),
            AddonError.from_json(data.get("error")),
        )
