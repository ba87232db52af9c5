"""OCI-style policies: "allow group <G> to <verb> <resource-type> in compartment <C> | tenancy".

Verbs are cumulative, as in OCI: inspect (list) < read (get) < use (cancel, update)
< manage (create, delete). Resource types are families of the API's resources;
`all-resources` covers every family.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Verb(IntEnum):
    INSPECT = 1
    READ = 2
    USE = 3
    MANAGE = 4


class Family(StrEnum):
    WORK_REQUESTS = "work-requests"
    CLUSTERS = "clusters"
    UPGRADE_WORKFLOWS = "upgrade-workflows"
    ORCHESTRATIONS = "orchestrations"
    ADDONS = "addons"


ALL_RESOURCES = "all-resources"
TENANCY = None  # a grant "in tenancy" covers every compartment

_STATEMENT = re.compile(
    r"allow\s+group\s+(?P<group>[\w.-]+)\s+to\s+(?P<verb>\w+)\s+(?P<family>[\w-]+)\s+in\s+"
    r"(?:(?P<tenancy>tenancy)|compartment\s+(?P<compartment>[\w-]+))\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Grant:
    group: str
    verb: Verb
    family: Family | None  # None: all-resources
    compartment: str | None  # None: the whole tenancy

    def covers(self, verb: Verb, family: Family, compartment: str) -> bool:
        return (
            self.verb >= verb
            and self.family in (None, family)
            and self.compartment in (None, compartment)
        )


class PolicyError(ValueError):
    """A policy statement that does not parse; the server refuses to start with it."""


def parse_statement(text: str) -> Grant:
    match = _STATEMENT.fullmatch(text.strip())
    if match is None:
        raise PolicyError(
            f"cannot parse policy {text!r}; write e.g. "
            '"allow group SupportTeam to inspect work-requests in compartment dev"'
        )
    try:
        verb = Verb[match["verb"].upper()]
    except KeyError:
        raise PolicyError(f"unknown verb {match['verb']!r} in {text!r}") from None
    family_text = match["family"].lower()
    family: Family | None = None
    if family_text != ALL_RESOURCES:
        try:
            family = Family(family_text)
        except ValueError:
            choices = ", ".join([f.value for f in Family] + [ALL_RESOURCES])
            raise PolicyError(f"unknown resource type {family_text!r}; use {choices}") from None
    compartment = None if match["tenancy"] else match["compartment"]
    return Grant(match["group"], verb, family, compartment)


def parse_policies(statements: Iterable[str]) -> list[Grant]:
    return [parse_statement(s) for s in statements]
