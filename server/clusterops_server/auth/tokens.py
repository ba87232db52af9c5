"""Bearer tokens: who they belong to, loaded from a JSON file the operator keeps.

    {
      "principals": [
        {"name": "alice", "groups": ["Admins"], "token_sha256": "<hex digest of the token>"},
        {"name": "ci", "groups": ["SupportTeam"], "token": "<the token itself>"}
      ],
      "policies": [
        "allow group Admins to manage all-resources in tenancy",
        "allow group SupportTeam to inspect work-requests in compartment dev"
      ]
    }

Prefer token_sha256 so the file holds no usable secret. Lookups hash the presented
token and compare against every principal's digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterops_server.auth.caller import Caller
from clusterops_server.auth.policy import Grant, PolicyError, parse_policies


@dataclass(frozen=True)
class _Principal:
    name: str
    groups: frozenset[str]
    digest: bytes


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, principals: list[_Principal], grants: list[Grant]) -> None:
        self._principals = principals
        self._grants = tuple(grants)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenStore:
        principals: list[_Principal] = []
        for entry in data.get("principals", []):
            name = str(entry["name"])
            if "token_sha256" in entry:
                digest = bytes.fromhex(str(entry["token_sha256"]))
            elif "token" in entry:
                digest = bytes.fromhex(token_digest(str(entry["token"])))
            else:
                raise PolicyError(f"principal {name!r} has neither token nor token_sha256")
            principals.append(_Principal(name, frozenset(entry.get("groups", [])), digest))
        return cls(principals, parse_policies(data.get("policies", [])))

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        return cls.from_json(json.loads(path.read_text()))

    def authenticate(self, token: str) -> Caller | None:
        presented = hashlib.sha256(token.encode()).digest()
        found: _Principal | None = None
        # Compare with every entry, so timing does not reveal which (if any) matched.
        for principal in self._principals:
            if hmac.compare_digest(presented, principal.digest):
                found = principal
        if found is None:
            return None
        return Caller(found.name, found.groups, self._grants)
