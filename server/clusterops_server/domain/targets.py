"""Orchestration targets: which clusters of a compartment an orchestration selects.

As in KEB, a target is "all" or a combination of fields that must all match; global
account, sub account and region are regular expressions that match anywhere in the
value, as in KEB (anchor them with ^ and $ to match the whole value).
Exclude wins over include.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from clusterops_server.domain.errors import FailedPrecondition
from clusterops_server.domain.inventory import Cluster
from clusterops_server.domain.patterns import Pattern, PatternError

TARGET_ALL = "all"

_PATTERN_FIELDS = ("global_account", "sub_account", "region")
_EXACT_FIELDS = ("runtime_id", "plan_name", "shoot_name")


@dataclass(frozen=True)
class RuntimeTarget:
    """Selects clusters: "all", or every field that is set must match (the first three are
    regular expressions that match anywhere in the value, as in KEB)."""

    target: str = ""
    global_account: str = ""
    sub_account: str = ""
    region: str = ""
    runtime_id: str = ""
    plan_name: str = ""
    shoot_name: str = ""

    def problems(self) -> list[tuple[str, str]]:
        """(field, description) for each thing wrong with this target."""
        found: list[tuple[str, str]] = []
        if self.target not in ("", TARGET_ALL):
            found.append(("target", f'must be "{TARGET_ALL}" or empty'))
        elif self.target != TARGET_ALL and not any(
            getattr(self, name) for name in (*_PATTERN_FIELDS, *_EXACT_FIELDS)
        ):
            found.append(
                (
                    "",
                    f'set target "{TARGET_ALL}" or at least one of global_account, '
                    "sub_account, region, runtime_id, plan_name, shoot_name",
                )
            )
        for name in _PATTERN_FIELDS:
            text = getattr(self, name)
            if text:
                try:
                    Pattern(text)
                except PatternError as error:
                    found.append((name, str(error)))
        return found


@dataclass(frozen=True)
class TargetSpec:
    include: tuple[RuntimeTarget, ...]
    exclude: tuple[RuntimeTarget, ...] = ()


class _Selector:
    def __init__(self, target: RuntimeTarget) -> None:
        self.all = target.target == TARGET_ALL
        self.patterns = [
            (name, Pattern(getattr(target, name)))
            for name in _PATTERN_FIELDS
            if getattr(target, name)
        ]
        self.exact = [
            (name, getattr(target, name)) for name in _EXACT_FIELDS if getattr(target, name)
        ]

    def matches(self, cluster: Cluster) -> bool:
        values = _target_values(cluster)
        return all(p.matches(values[name]) for name, p in self.patterns) and all(
            values[name] == wanted for name, wanted in self.exact
        )


def _target_values(cluster: Cluster) -> dict[str, str]:
    return {
        "global_account": cluster.global_account_id,
        "sub_account": cluster.sub_account_id,
        "region": cluster.region,
        "runtime_id": cluster.id,
        "plan_name": cluster.plan,
        "shoot_name": cluster.shoot_name,
    }


def resolve_targets(spec: TargetSpec, clusters: Iterable[Cluster]) -> list[Cluster]:
    """The clusters some include target selects and no exclude target does (exclude wins)."""
    include = [_Selector(t) for t in spec.include]
    exclude = [_Selector(t) for t in spec.exclude]
    return [
        c
        for c in clusters
        if any(s.matches(c) for s in include) and not any(s.matches(c) for s in exclude)
    ]


def no_targets(compartment_id: str, considered: int, included: int) -> FailedPrecondition:
    if included:
        why = f"the include targets select {included} of them and the exclude targets remove all"
    else:
        why = "no include target selects any of them"
    return FailedPrecondition(
        f"the targets select no cluster: compartment {compartment_id} has {considered} "
        f"cluster(s) an orchestration may upgrade, and {why}; check the targets, or list "
        "the compartment's clusters",
        violation_type="NO_TARGETS",
        subject=compartment_id,
        metadata={"clusters": str(considered), "included": str(included)},
    )
