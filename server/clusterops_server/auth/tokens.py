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
    def from_json(cls, data: Any) -> TokenStore:
        """The store the operator's file describes; PolicyError naming the entry and the
        problem for anything else (an unknown key is refused: a misspelt "principals"
        would otherwise start a server nobody can call)."""
        if not isinstance(data, dict):
            raise PolicyError('must be a JSON object with "principals" and "policies"')
        _known_keys(data, {"principals", "policies"}, "the file")
        entries = data.get("principals")
        if not isinstance(entries, list) or not entries:
            raise PolicyError('"principals" must be a non-empty list of objects')
        principals: list[_Principal] = []
        names: set[str] = set()
        digests: dict[bytes, str] = {}
        for index, entry in enumerate(entries):
            principal = _principal(entry, f"principals[{index}]")
            if principal.name in names:
                raise PolicyError(f"principals[{index}]: the name {principal.name!r} is taken")
            if principal.digest in digests:
                raise PolicyError(
                    f"principals[{index}] ({principal.name}) has the same token as "
                    f"{digests[principal.digest]}: a token must name one principal"
                )
            names.add(principal.name)
            digests[principal.digest] = principal.name
            principals.append(principal)
        policies = data.get("policies", [])
        if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
            raise PolicyError('"policies" must be a list of policy statements (strings)')
        return cls(principals, parse_policies(policies))

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


def _principal(entry: Any, where: str) -> _Principal:
    if not isinstance(entry, dict):
        raise PolicyError(f"{where} must be an object with name, groups and token_sha256")
    _known_keys(entry, {"name", "groups", "token", "token_sha256"}, where)
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{where}: name must be a non-empty string")
    groups = entry.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise PolicyError(f"{where} ({name}): groups must be a list of group names")
    if ("token" in entry) == ("token_sha256" in entry):
        raise PolicyError(f"{where} ({name}) needs exactly one of token and token_sha256")
    if "token" in entry:
        token = entry["token"]
        if not isinstance(token, str) or not token:
            raise PolicyError(f"{where} ({name}): token must be a non-empty string")
        digest = hashlib.sha256(token.encode()).digest()
    else:
        hexdigest = entry["token_sha256"]
        if not isinstance(hexdigest, str) or len(hexdigest) != 64:
            raise PolicyError(
                f"{where} ({name}): token_sha256 must be the 64 hex characters of a SHA-256"
            )
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            raise PolicyError(
                f"{where} ({name}): token_sha256 must be the 64 hex characters of a SHA-256"
            ) from None
    return _Principal(name, frozenset(groups), digest)


def _known_keys(entry: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(known))}"
        )
