"""Who is calling, and what their policies let them do.

The auth interceptor puts the authenticated Caller in a context variable for the
duration of each RPC; the service layer asks it questions. Code that runs outside an
RPC (the engine, the reconciler, tests that call services directly) runs as SYSTEM,
which may do everything.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from clusterops_server.auth.policy import Family, Grant, Verb
from clusterops_server.domain.errors import NotFound, PermissionDenied
from clusterops_server.domain.work_requests import OperationType, WorkRequestVisibility

# Work requests inherit the permission of the operation that spawned them (OKE).
OPERATION_FAMILY: dict[OperationType, Family] = {
    OperationType.CLUSTER_CREATE: Family.CLUSTERS,
    OperationType.CLUSTER_DELETE: Family.CLUSTERS,
    OperationType.NODEPOOL_CREATE: Family.CLUSTERS,
    OperationType.NODEPOOL_DELETE: Family.CLUSTERS,
    OperationType.CLUSTER_UPGRADE: Family.UPGRADE_WORKFLOWS,
    OperationType.ORCHESTRATION_RUN: Family.ORCHESTRATIONS,
    OperationType.ENABLE_ADDON: Family.ADDONS,
    OperationType.UPDATE_ADDON: Family.ADDONS,
    OperationType.DISABLE_ADDON: Family.ADDONS,
    OperationType.RECONCILE_ADDON: Family.ADDONS,
}


@dataclass(frozen=True)
class Caller:
    name: str
    groups: frozenset[str] = frozenset()
    grants: tuple[Grant, ...] = ()
    unrestricted: bool = False
    # Anything else the token file says about the principal (never the token).
    attributes: dict[str, str] = field(default_factory=dict)

    def can(self, verb: Verb, family: Family, compartment: str) -> bool:
        if self.unrestricted:
            return True
        return any(
            g.group in self.groups and g.covers(verb, family, compartment) for g in self.grants
        )

    def manages_tenancy(self) -> bool:
        """`manage all-resources in tenancy`: what the server's own controls need."""
        if self.unrestricted:
            return True
        return any(
            g.group in self.groups
            and g.verb >= Verb.MANAGE
            and g.family is None
            and g.compartment is None
            for g in self.grants
        )

    def compartments(self, verb: Verb, family: Family) -> frozenset[str] | None:
        """Compartments where `verb` on `family` is allowed; None means all of them."""
        if self.unrestricted:
            return None
        found: set[str] = set()
        for grant in self.grants:
            if grant.group not in self.groups or grant.verb < verb:
                continue
            if grant.family not in (None, family):
                continue
            if grant.compartment is None:
                return None
            found.add(grant.compartment)
        return frozenset(found)

    def can_see_work_request(self, verb: Verb, operation: OperationType, compartment: str) -> bool:
        return self.can(verb, Family.WORK_REQUESTS, compartment) or self.can(
            verb, OPERATION_FAMILY[operation], compartment
        )

    def work_request_visibility(self, verb: Verb) -> WorkRequestVisibility | None:
        """Which work requests a list may return; None means all of them."""
        direct = self.compartments(verb, Family.WORK_REQUESTS)
        if direct is None:
            return None
        inherited: dict[Family, frozenset[str] | None] = {
            family: self.compartments(verb, family) for family in set(OPERATION_FAMILY.values())
        }
        return WorkRequestVisibility(
            direct,
            tuple(
                (frozenset(op for op, f in OPERATION_FAMILY.items() if f is family), comps)
                for family, comps in sorted(inherited.items())
            ),
        )


SYSTEM = Caller("system", unrestricted=True)
_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller", default=SYSTEM)


def current_caller() -> Caller:
    return _current.get()


def become(caller: Caller) -> None:
    """Act as `caller` for the rest of the current task.

    For streaming handlers: grpc may close an async generator from another task (a
    finalizer), where a context manager's reset would fail; each RPC runs in its own
    task, so setting without resetting reaches no one else."""
    _current.set(caller)


@contextmanager
def acting_as(caller: Caller) -> Iterator[None]:
    token = _current.set(caller)
    try:
        yield
    finally:
        _current.reset(token)


def require(verb: Verb, family: Family, compartment: str) -> None:
    """PERMISSION_DENIED unless the caller may do `verb` on `family` in `compartment`.

    For mutations where the caller names the compartment: saying no reveals nothing.
    """
    caller = current_caller()
    if not caller.can(verb, family, compartment):
        raise PermissionDenied(
            f"{caller.name} may not {verb.name.lower()} {family.value} in compartment "
            f"{compartment}; ask an administrator for a policy that allows it",
            metadata={"verb": verb.name.lower(), "resource_type": family.value},
        )


def require_tenancy_manager(doing: str) -> None:
    """PERMISSION_DENIED unless the caller may manage all resources in the tenancy."""
    caller = current_caller()
    if not caller.manages_tenancy():
        raise PermissionDenied(
            f"{caller.name} may not {doing}: it needs the policy "
            '"allow group <G> to manage all-resources in tenancy"',
            metadata={"verb": "manage", "resource_type": "all-resources", "scope": "tenancy"},
        )


def require_visible(
    verb: Verb, family: Family, compartment: str, resource_type: str, resource_id: str
) -> None:
    """NOT_FOUND, as if it did not exist, unless the caller may at least list the
    resource; PERMISSION_DENIED if it may list it (so knows it exists) but not `verb` it."""
    caller = current_caller()
    if not caller.can(Verb.INSPECT, family, compartment):
        raise NotFound(resource_type, resource_id)
    if not caller.can(verb, family, compartment):
        raise PermissionDenied(
            f"{caller.name} may not {verb.name.lower()} {resource_type} {resource_id}; "
            "ask an administrator for a policy that allows it",
            metadata={"verb": verb.name.lower(), "resource_type": family.value},
        )


def visible_compartments(verb: Verb, family: Family) -> frozenset[str] | None:
    return current_caller().compartments(verb, family)


# The scope column holds 64 characters: a longer principal name is stored as a digest
# (names up to this length keep their readable, already stored form).
_READABLE_NAME = 36


def request_scope(method: str) -> str:
    """Idempotency scope: request_ids are per caller, so two callers never collide."""
    name = current_caller().name
    if len(name) > _READABLE_NAME:
        name = "sha256:" + hashlib.sha256(name.encode()).hexdigest()[:24]
    return f"{name}:{method}"
