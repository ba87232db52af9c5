"""When an add-on is healthy, as plain Python (domain/addon_health.py): no store, no server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from clusterops_server.domain.addon_catalogue import AddonCatalogue
from clusterops_server.domain.addon_health import (
    AddonSpec,
    AddonStatus,
    desired_spec,
    differences,
    judge,
)
from clusterops_server.domain.addons import Addon, AddonState

# One add-on with an old line, a current ACTIVE line, a newer PREVIEW, and a version whose
# required key a follower may not have.
CATALOGUE = AddonCatalogue.from_json(
    {
        "addons": [
            {
                "name": "CertManager",
                "configurations": [
                    {"key": "replicas", "default": "1"},
                    {"key": "logLevel", "default": "info"},
                ],
                "versions": [
                    {"version": "1.0.0", "status": "ACTIVE", "kubernetes_versions": ["v1.28"]},
                    {
                        "version": "1.1.0",
                        "status": "ACTIVE",
                        "kubernetes_versions": ["v1.28", "v1.29"],
                    },
                    {
                        "version": "1.2.0",
                        "status": "ACTIVE",
                        "kubernetes_versions": ["v1.29"],
                        "configurations": [
                            {"key": "replicas", "default": "1"},
                            {"key": "issuer", "required": True},
                        ],
                    },
                    {"version": "2.0.0", "status": "PREVIEW", "kubernetes_versions": ["v1.29"]},
                ],
            }
        ]
    }
)
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def addon(
    name: str = "CertManager",
    *,
    version: str = "",
    configurations: dict[str, str] | None = None,
    installed: str = "",
) -> Addon:
    return Addon(
        cluster_id="cls-1",
        compartment_id="dev",
        name=name,
        version=version,
        configurations=dict(configurations or {}),
        lifecycle_state=AddonState.ACTIVE,
        create_time=NOW,
        update_time=NOW,
        current_installed_version=installed,
    )


def healthy(spec: AddonSpec, **changes: Any) -> AddonStatus:
    """What the provider reports of an add-on that is exactly `spec`, with `changes`."""
    return replace(AddonStatus(spec.version, dict(spec.configurations), managed=True), **changes)


# ---- desired_spec ----


def test_a_pinned_version_is_desired_with_the_catalogues_defaults_under_its_values() -> None:
    spec = desired_spec(
        addon(version="1.1.0", configurations={"replicas": "3"}), "v1.29.8", CATALOGUE
    )
    assert spec == AddonSpec("CertManager", "1.1.0", {"replicas": "3", "logLevel": "info"})


def test_keys_the_version_does_not_know_are_left_out_of_the_desired_configuration() -> None:
    spec = desired_spec(
        addon(version="1.1.0", configurations={"stale": "x", "logLevel": "debug"}),
        "v1.29.8",
        CATALOGUE,
    )
    assert spec is not None
    assert dict(spec.configurations) == {"replicas": "1", "logLevel": "debug"}


def test_a_follower_wants_the_newest_active_version_of_its_clusters_minor_line() -> None:
    # 1.2.0 needs "issuer", which this follower lacks; 2.0.0 is only a PREVIEW.
    assert desired_spec(addon(), "v1.29.8", CATALOGUE) == AddonSpec(
        "CertManager", "1.1.0", {"replicas": "1", "logLevel": "info"}
    )
    with_issuer = desired_spec(addon(configurations={"issuer": "acme"}), "v1.29.8", CATALOGUE)
    assert with_issuer == AddonSpec("CertManager", "1.2.0", {"replicas": "1", "issuer": "acme"})
    # The minor line alone is enough, and decides: on v1.28 the newest is 1.1.0 too.
    assert desired_spec(addon(), "v1.28", CATALOGUE) == desired_spec(addon(), "v1.28.5", CATALOGUE)


def test_a_follower_whose_line_has_no_active_version_stays_on_what_is_installed() -> None:
    spec = desired_spec(addon(installed="1.0.0"), "v1.31.1", CATALOGUE)
    assert spec is not None
    assert spec.version == "1.0.0"


def test_no_version_can_be_chosen_for_a_follower_on_an_unsupported_line_or_a_bad_version() -> None:
    assert desired_spec(addon(), "v1.31.1", CATALOGUE) is None
    assert desired_spec(addon(), "not-a-version", CATALOGUE) is None
    assert desired_spec(addon(version="9.9.9"), "v1.29.8", CATALOGUE) is None


def test_an_addon_the_catalogue_dropped_keeps_its_own_version_and_values_as_they_are() -> None:
    gone = addon("Retired", version="0.3.0", configurations={"a": "1"})
    assert desired_spec(gone, "v1.29.8", CATALOGUE) == AddonSpec("Retired", "0.3.0", {"a": "1"})
    assert desired_spec(addon("Retired", installed="0.2.0"), "v1.29.8", CATALOGUE) == AddonSpec(
        "Retired", "0.2.0", {}
    )
    assert desired_spec(addon("Retired"), "v1.29.8", CATALOGUE) is None


# ---- differences ----

SPEC = AddonSpec("CertManager", "1.1.0", {"replicas": "1"})


def test_an_addon_exactly_as_specified_has_no_differences_even_when_not_ready() -> None:
    # Readiness is judged apart: a repair cannot make pods ready.
    status = healthy(SPEC, not_ready=("deployment/cert-manager 0/1 ready",))
    assert differences(status, SPEC, follows_latest=False) == []


def test_a_missing_addon_is_one_difference() -> None:
    assert differences(None, SPEC, follows_latest=False) == [
        "the add-on is missing from the cluster"
    ]


def test_every_difference_is_told_in_order_with_the_providers_drift_last() -> None:
    status = healthy(
        SPEC,
        version="1.0.0",
        configurations={"replicas": "5"},
        managed=False,
        drift=("deployment/cert-manager deleted", "service/cert-manager changed"),
    )
    assert differences(status, SPEC, follows_latest=False) == [
        "version 1.0.0 instead of 1.1.0",
        "configuration changed by hand",
        "not managed by clusterops",
        "deployment/cert-manager deleted",
        "service/cert-manager changed",
    ]


def test_a_follower_behind_is_told_there_is_a_newer_version_to_follow() -> None:
    status = healthy(SPEC, version="1.0.0")
    assert differences(status, SPEC, follows_latest=True) == [
        "newer ACTIVE version 1.1.0 to follow (installed 1.0.0)"
    ]


def test_configurations_compare_as_mappings_whatever_their_order_or_type() -> None:
    reordered = AddonSpec("CertManager", "1.1.0", {"b": "2", "a": "1"})
    status = healthy(reordered, configurations={"a": "1", "b": "2"})
    assert differences(status, reordered, follows_latest=False) == []


# ---- judge ----


def test_an_addon_as_specified_and_ready_is_healthy_at_its_version() -> None:
    report = judge(healthy(SPEC), SPEC, follows_latest=False)
    assert report.healthy
    assert report.version == "1.1.0"
    assert report.summary == "CertManager 1.1.0 is healthy"
    assert report.error is None


def test_a_repair_that_worked_says_what_it_found_and_that_it_repaired_it() -> None:
    report = judge(
        healthy(SPEC), SPEC, follows_latest=False, repaired=["deployment/cert-manager deleted"]
    )
    assert report.healthy
    assert report.summary == (
        "Drift found (deployment/cert-manager deleted); repaired; CertManager 1.1.0 is healthy"
    )


def test_an_apply_that_left_differences_is_incorrect_state_at_the_version_found() -> None:
    report = judge(healthy(SPEC, version="1.0.0"), SPEC, follows_latest=False)
    assert not report.healthy
    assert report.version == "1.0.0"
    assert report.summary == (
        "CertManager 1.1.0 was applied only in part, still: version 1.0.0 instead of 1.1.0"
    )
    assert report.error is not None
    assert report.error.status == "IncorrectState"
    assert report.error.detail == "version 1.0.0 instead of 1.1.0"


def test_a_partial_repair_says_so_and_what_is_still_wrong() -> None:
    after = healthy(SPEC, drift=("deployment/cert-manager deleted",))
    report = judge(
        after,
        SPEC,
        follows_latest=False,
        repaired=["deployment/cert-manager deleted", "configuration changed by hand"],
    )
    assert not report.healthy
    assert report.summary == (
        "Drift found (deployment/cert-manager deleted; configuration changed by hand); "
        "repair was partial, still: deployment/cert-manager deleted"
    )


def test_an_addon_gone_after_the_apply_counts_no_version_as_installed() -> None:
    report = judge(None, SPEC, follows_latest=False)
    assert not report.healthy
    assert report.version == ""
    assert "missing from the cluster" in report.summary


def test_deployments_that_can_never_become_ready_leave_no_version_installed() -> None:
    after = healthy(
        SPEC,
        unavailable=("replicas is 0, it needs at least 1",),
        not_ready=("pods crash-looping",),
    )
    report = judge(after, SPEC, follows_latest=False)
    assert not report.healthy
    # OKE: the CRs are in an incorrect state, and nothing counts as installed.
    assert report.version == ""
    assert (
        report.summary
        == "CertManager 1.1.0 cannot become ready: replicas is 0, it needs at least 1"
    )
    assert report.error is not None
    assert report.error.status == "IncorrectState"
    assert report.error.detail == "replicas is 0, it needs at least 1"


def test_deployments_not_ready_yet_keep_the_installed_version_and_say_why() -> None:
    after = healthy(SPEC, not_ready=("deployment/cert-manager 0/1 ready", "pod pending"))
    report = judge(after, SPEC, follows_latest=False)
    assert not report.healthy
    assert report.version == "1.1.0"
    assert report.summary == (
        "CertManager 1.1.0 is not ready: deployment/cert-manager 0/1 ready; pod pending"
    )
    assert report.error is not None
    assert report.error.status == "DeploymentNotReady"
    assert report.error.message == "deployment/cert-manager 0/1 ready; pod pending"


def test_differences_are_told_before_readiness() -> None:
    after = healthy(SPEC, managed=False, unavailable=("no node",), not_ready=("pending",))
    report = judge(after, SPEC, follows_latest=False)
    assert report.summary.endswith("still: not managed by clusterops")


@pytest.mark.parametrize("follows_latest", [False, True])
def test_a_verdict_survives_its_journal_round_trip(follows_latest: bool) -> None:
    # Steps journal the report as JSON; a resumed operation reads back the same verdict.
    for after in (healthy(SPEC), healthy(SPEC, version="1.0.0"), None):
        report = judge(after, SPEC, follows_latest=follows_latest, repaired=["x"])
        assert type(report).from_json(report.to_json()) == report
