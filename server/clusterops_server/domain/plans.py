"""The service plan and region catalogue, after the Kyma Environment Broker's plans.

KEB operations carry a plan's id (servicePlanID) next to its name (servicePlanName);
clusters and orchestration operations here do the same. The catalogue is data
(data/plans.json) that operators extend, read once at start like the version catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from clusterops_server.domain.errors import FieldViolation, InvalidArgument


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    provider: str


@dataclass(frozen=True)
class Region:
    name: str
    provider: str


class PlanCatalogue:
    def __init__(self, plans: tuple[Plan, ...], regions: tuple[Region, ...]) -> None:
        for kind, keys in (
            ("plan names", [p.name for p in plans]),
            ("plan ids", [p.id for p in plans]),
            ("regions", [r.name for r in regions]),
        ):
            if len(set(keys)) != len(keys) or not all(keys):
                raise ValueError(f"{kind} are empty or repeat in the plan catalogue: {keys}")
        self.plans = plans
        self.regions = regions
        self._by_name = {p.name: p for p in plans}
        self._regions = {r.name: r for r in regions}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanCatalogue:
        return cls(
            tuple(Plan(str(p["id"]), str(p["name"]), str(p["provider"])) for p in data["plans"]),
            tuple(Region(str(r["name"]), str(r["provider"])) for r in data["regions"]),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> PlanCatalogue:
        text = (
            path.read_text()
            if path is not None
            else (resources.files("clusterops_server") / "data" / "plans.json").read_text()
        )
        return cls.from_json(json.loads(text))

    def plan(self, name: str) -> Plan | None:
        return self._by_name.get(name)

    def plan_id(self, name: str) -> str:
        """The id of the plan named `name`; "" for a name the catalogue does not know."""
        found = self._by_name.get(name)
        return found.id if found else ""

    def resolve(self, *, plan: str, region: str) -> Plan:
        """The plan named `plan`, after checking both it and `region` against the
        catalogue: INVALID_ARGUMENT naming each one it does not know."""
        violations = []
        found = self._by_name.get(plan)
        if found is None:
            choices = ", ".join(p.name for p in self.plans)
            violations.append(
                FieldViolation("plan", f"{plan!r} is not a plan; choose one of {choices}")
            )
        if region not in self._regions:
            choices = ", ".join(r.name for r in self.regions)
            violations.append(
                FieldViolation("region", f"{region!r} is not a region; choose one of {choices}")
            )
        if violations or found is None:
            raise InvalidArgument(violations)
        return found
