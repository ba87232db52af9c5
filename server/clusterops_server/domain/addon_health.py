"""When an add-on is healthy: the rules installs, updates and reconciliations share.

An add-on should be a version (the one requested, or the newest ACTIVE one it follows)
with the catalogue's defaults under its configuration (`desired_spec`). What a provider
finds on the cluster differs from that in ways a repair can undo (`differences`), and
after an apply or a repair it is healthy only when nothing differs and every deployment
is ready (`judge`). Plain values in, plain values out: no store, no provider, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from clusterops_server.domain.addon_catalogue import AddonCatalogue, minor_line
from clusterops_server.domain.addons import Addon, PassReport, incorrect_state, not_ready


@dataclass(frozen=True)
class AddonSpec:
    """What an add-on should be on a cluster: a version and its whole configuration."""

    name: str
    version: str
    configurations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AddonStatus:
    """What the provider finds of an add-on on a cluster."""

    version: str
    configurations: Mapping[str, str]
    # False when it was installed by hand (or released by a disable that kept it).
    managed: bool
    # Its resources that were deleted or changed by hand, e.g. "deployment/cert-manager deleted".
    drift: tuple[str, ...] = ()
    # Deployments that are not ready or pods that are not healthy, with the reason.
    not_ready: tuple[str, ...] = ()
    # Why the add-on's deployments can never become ready as it is configured, or on
    # this cluster as it is (zero replicas of an operator, limits below what it needs,
    # no node to schedule its pods on): its custom resources stay in an incorrect state
    # until the configuration or the cluster changes. Such an add-on was never installed.
    unavailable: tuple[str, ...] = ()


def desired_spec(
    addon: Addon, kubernetes_version: str, catalogue: AddonCatalogue
) -> AddonSpec | None:
    """What the add-on should be now on a cluster at `kubernetes_version`: its version (or
    the newest ACTIVE one it follows) with the catalogue's defaults under its
    configuration. None when no version can be chosen.

    An add-on the catalogue no longer lists keeps what it asked for (or what is
    installed), as it is: there are no defaults to add."""
    option = catalogue.get(addon.name)
    if option is None:
        version = addon.version or addon.current_installed_version
        return AddonSpec(addon.name, version, dict(addon.configurations)) if version else None
    minor = minor_line(kubernetes_version) or ""
    chosen = (
        option.version(addon.version)
        if addon.version
        else option.newest_active(minor, have_keys=addon.configurations)
        # A followed add-on whose line has no ACTIVE version left stays where it is.
        or option.version(addon.current_installed_version)
    )
    if chosen is None:
        return None
    return AddonSpec(addon.name, chosen.version_number, chosen.effective(addon.configurations))


def differences(status: AddonStatus | None, spec: AddonSpec, *, follows_latest: bool) -> list[str]:
    """How the add-on on the cluster differs from `spec`, one phrase per difference (empty
    when it matches). Readiness is not a difference: a repair cannot make pods ready."""
    if status is None:
        return ["the add-on is missing from the cluster"]
    found: list[str] = []
    if status.version != spec.version:
        found.append(
            f"newer ACTIVE version {spec.version} to follow (installed {status.version})"
            if follows_latest
            else f"version {status.version} instead of {spec.version}"
        )
    if dict(status.configurations) != dict(spec.configurations):
        found.append("configuration changed by hand")
    if not status.managed:
        found.append("not managed by clusterops")
    found.extend(status.drift)
    return found


def judge(
    after: AddonStatus | None,
    spec: AddonSpec,
    *,
    follows_latest: bool,
    repaired: Sequence[str] = (),
) -> PassReport:
    """Whether the add-on the provider reports after applying `spec` (or after repairing
    the drift in `repaired`) is healthy: nothing left to differ from `spec`, and every
    deployment ready. The one rule for installs, updates and reconciliations.

    What is wrong is told in this order, the first that applies: something still differs
    (the apply or repair was partial), the deployments can never become ready (no
    version counts as installed), they are not ready yet."""
    subject = f"{spec.name} {spec.version}"
    installed = after.version if after else ""
    found = f"Drift found ({'; '.join(repaired)}); " if repaired else ""
    remaining = differences(after, spec, follows_latest=follows_latest)
    if remaining:
        detail = "; ".join(remaining)
        partial = "repair was partial" if repaired else f"{subject} was applied only in part"
        return PassReport(
            False, installed, f"{found}{partial}, still: {detail}", incorrect_state(detail)
        )
    if after is not None and after.unavailable:
        # OKE's answer for an add-on whose deployments never became ready: its CRs are in
        # an incorrect state, and no version counts as installed.
        detail = "; ".join(after.unavailable)
        return PassReport(
            False, "", f"{found}{subject} cannot become ready: {detail}", incorrect_state(detail)
        )
    if after is not None and after.not_ready:
        detail = "; ".join(after.not_ready)
        return PassReport(
            False, installed, f"{found}{subject} is not ready: {detail}", not_ready(detail)
        )
    fixed = "repaired; " if repaired else ""
    return PassReport(True, installed, f"{found}{fixed}{subject} is healthy")
