"""What each operation type is given to work on: a frozen dataclass per type, and the one
place that turns them into the JSON a work request keeps, and back.

The JSON carries `params_version`. Version 1 is today's shape. Work requests journaled
before the field existed (version 0) hold the same keys without it, some optional ones
absent; the reader below accepts both, so an upgrade with operations in flight resumes
them. A version newer than this code knows is refused rather than half-read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clusterops_server.domain.addons import AddonState
from clusterops_server.domain.work_requests import OperationType

PARAMS_VERSION = 1
VERSION_KEY = "params_version"


@dataclass(frozen=True)
class ClusterParams:
    """CLUSTER_CREATE, CLUSTER_DELETE."""

    cluster_id: str


@dataclass(frozen=True)
class NodePoolParams:
    """NODEPOOL_CREATE, NODEPOOL_DELETE."""

    node_pool_id: str
    cluster_id: str


@dataclass(frozen=True)
class UpgradeParams:
    """CLUSTER_UPGRADE: runs one upgrade workflow; a parent (an orchestration's run) is
    made due whenever it finishes."""

    upgrade_workflow_id: str
    cluster_id: str
    target_version: str
    parent_work_request_id: str = ""


@dataclass(frozen=True)
class AddonParams:
    """RECONCILE_ADDON, and what every add-on operation names."""

    cluster_id: str
    name: str


@dataclass(frozen=True)
class EnableAddonParams(AddonParams):
    override_existing: bool = False


@dataclass(frozen=True)
class PreviousAddon:
    """What an update replaces, restored if it is canceled before it begins."""

    version: str
    configurations: Mapping[str, str]
    state: AddonState


@dataclass(frozen=True)
class UpdateAddonParams(AddonParams):
    previous: PreviousAddon = field(
        default_factory=lambda: PreviousAddon("", {}, AddonState.ACTIVE)
    )


@dataclass(frozen=True)
class DisableAddonParams(AddonParams):
    remove_existing: bool = False
    previous_state: AddonState = AddonState.ACTIVE


@dataclass(frozen=True)
class OrchestrationRunParams:
    orchestration_id: str


OperationParams = (
    ClusterParams | NodePoolParams | UpgradeParams | AddonParams | OrchestrationRunParams
)
P = TypeVar("P", bound=OperationParams)

PARAMS_OF: dict[OperationType, type[OperationParams]] = {
    OperationType.CLUSTER_CREATE: ClusterParams,
    OperationType.CLUSTER_DELETE: ClusterParams,
    OperationType.NODEPOOL_CREATE: NodePoolParams,
    OperationType.NODEPOOL_DELETE: NodePoolParams,
    OperationType.CLUSTER_UPGRADE: UpgradeParams,
    OperationType.ENABLE_ADDON: EnableAddonParams,
    OperationType.UPDATE_ADDON: UpdateAddonParams,
    OperationType.DISABLE_ADDON: DisableAddonParams,
    OperationType.RECONCILE_ADDON: AddonParams,
    OperationType.ORCHESTRATION_RUN: OrchestrationRunParams,
}


class UnreadableParams(ValueError):
    """A work request's params are not what its operation type takes."""


def encode_params(operation_type: OperationType, params: OperationParams) -> dict[str, Any]:
    """The JSON a work request keeps for `params`."""
    if type(params) is not PARAMS_OF[operation_type]:
        raise UnreadableParams(f"{operation_type.value} takes {PARAMS_OF[operation_type]}")
    out: dict[str, Any] = {VERSION_KEY: PARAMS_VERSION}
    for name, value in vars(params).items():
        if isinstance(value, PreviousAddon):
            value = {
                "version": value.version,
                "configurations": dict(value.configurations),
                "state": value.state.value,
            }
        elif isinstance(value, AddonState):
            value = value.value
        out[name] = value
    return out


def decode_params(operation_type: OperationType, raw: Mapping[str, Any]) -> OperationParams:
    """Read params written by this version or the one before (no version key)."""
    version = raw.get(VERSION_KEY, 0)
    if not isinstance(version, int) or not 0 <= version <= PARAMS_VERSION:
        raise UnreadableParams(
            f"{operation_type.value} params of version {version!r}; this server reads "
            f"up to {PARAMS_VERSION}"
        )
    try:
        return _READERS[PARAMS_OF[operation_type]](raw)
    except (KeyError, TypeError, ValueError) as error:
        raise UnreadableParams(f"{operation_type.value} params {dict(raw)!r}: {error}") from error


def _str(raw: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise KeyError(key)
    return value


def _previous(raw: Mapping[str, Any]) -> PreviousAddon:
    previous = raw["previous"]
    return PreviousAddon(
        str(previous["version"]),
        {str(k): str(v) for k, v in dict(previous["configurations"]).items()},
        AddonState(previous["state"]),
    )


_READERS: dict[type[OperationParams], Callable[[Mapping[str, Any]], OperationParams]] = {
    ClusterParams: lambda r: ClusterParams(_str(r, "cluster_id")),
    NodePoolParams: lambda r: NodePoolParams(_str(r, "node_pool_id"), _str(r, "cluster_id")),
    UpgradeParams: lambda r: UpgradeParams(
        _str(r, "upgrade_workflow_id"),
        _str(r, "cluster_id"),
        _str(r, "target_version"),
        _str(r, "parent_work_request_id", ""),
    ),
    AddonParams: lambda r: AddonParams(_str(r, "cluster_id"), _str(r, "name")),
    EnableAddonParams: lambda r: EnableAddonParams(
        _str(r, "cluster_id"), _str(r, "name"), bool(r.get("override_existing", False))
    ),
    UpdateAddonParams: lambda r: UpdateAddonParams(
        _str(r, "cluster_id"), _str(r, "name"), _previous(r)
    ),
    DisableAddonParams: lambda r: DisableAddonParams(
        _str(r, "cluster_id"),
        _str(r, "name"),
        bool(r["remove_existing"]),
        AddonState(r["previous_state"]),
    ),
    OrchestrationRunParams: lambda r: OrchestrationRunParams(_str(r, "orchestration_id")),
}
