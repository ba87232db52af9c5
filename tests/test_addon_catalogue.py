"""The add-on catalogue as data, and the reconciliation schedule rules, without a server."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from clusterops_server.domain.addon_catalogue import (
    AddonCatalogue,
    AddonVersionStatus,
    CatalogueFile,
)
from clusterops_server.domain.addon_config import parse_quantity
from clusterops_server.domain.addons import (
    Addon,
    AddonState,
    ReconcileSettings,
    incorrect_state,
)
from clusterops_server.domain.errors import FailedPrecondition, InvalidArgument
from clusterops_server.domain.versions import VersionCatalogue

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_catalogue_kubernetes_versions_are_the_minor_lines_of_the_version_catalogue() -> None:
    minors = {v.minor_line for v in VersionCatalogue.load().versions}
    assert AddonCatalogue.load().kubernetes_minors() == minors


def test_every_kubernetes_minor_has_an_active_version_of_each_essential_addon() -> None:
    catalogue = AddonCatalogue.load()
    essential = [o for o in catalogue.options if o.is_essential]
    assert essential
    for minor in catalogue.kubernetes_minors():
        for option in essential:
            assert option.newest_active(minor) is not None, (option.name, minor)


def test_following_the_newest_active_version_skips_preview_and_unsupported_ones() -> None:
    certs = AddonCatalogue.load().get("CertManager")
    assert certs is not None
    newest = certs.newest_active("v1.31")
    assert newest is not None
    assert newest.version_number == "v1.14.5"
    preview = certs.version("v1.15.1")
    assert preview is not None
    assert preview.status is AddonVersionStatus.PREVIEW


def test_resolve_collects_every_bad_key_and_missing_required_key() -> None:
    with pytest.raises(InvalidArgument) as failure:
        AddonCatalogue.load().resolve(
            "NativeIngressController",
            "",
            cluster_id="cls-1",
            kubernetes_version="v1.30.4",
            given_keys=["compartmentId", "colour", "size"],
            resulting_keys=["compartmentId", "colour", "size"],
        )
    assert [v.field for v in failure.value.violations] == [
        "configurations[1].key",
        "configurations[2].key",
        "configurations",
    ]
    assert "loadBalancerSubnetId" in failure.value.violations[-1].description


def test_no_active_version_for_the_cluster_is_a_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition) as failure:
        AddonCatalogue.load().resolve(
            "NativeIngressController",
            "",
            cluster_id="cls-1",
            kubernetes_version="v1.27.16",
            given_keys=[],
            resulting_keys=[],
        )
    assert failure.value.violations[0].type == "ADDON_VERSION_UNSUPPORTED"


def test_malformed_catalogues_are_refused() -> None:
    good = json.loads(
        (Path(__file__).parent.parent / "server/clusterops_server/data/addons.json").read_text()
    )
    twice = {**good, "addons": good["addons"] + good["addons"][:1]}
    with pytest.raises(ValueError, match="repeat"):
        AddonCatalogue.from_json(twice)
    bad_minor = json.loads(json.dumps(good))
    bad_minor["addons"][0]["versions"][0]["kubernetes_versions"] = ["1.29"]
    with pytest.raises(ValueError, match="not minors"):
        AddonCatalogue.from_json(bad_minor)


def test_a_catalogue_file_is_reloaded_when_it_changes_and_kept_when_it_breaks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "addons.json"
    data = {
        "addons": [
            {
                "name": "Thing",
                "versions": [
                    {"version": "1.0", "status": "ACTIVE", "kubernetes_versions": ["v1.29"]}
                ],
            }
        ]
    }
    path.write_text(json.dumps(data))
    source = CatalogueFile(path)
    assert [o.name for o in source.current().options] == ["Thing"]
    data["addons"][0]["name"] = "OtherThing"
    path.write_text(json.dumps(data, indent=2))
    assert [o.name for o in source.current().options] == ["OtherThing"]
    path.write_text("{ not json")
    assert [o.name for o in source.current().options] == ["OtherThing"]


def _addon(state: AddonState = AddonState.ACTIVE) -> Addon:
    return Addon("cls-1", "dev", "CertManager", "", {}, state, NOW, NOW)


def test_needs_attention_intervals_start_short_and_grow_up_to_the_cap() -> None:
    settings = ReconcileSettings()
    intervals = [settings.attention_interval(k) for k in range(40)]
    assert intervals[0] == timedelta(minutes=2)
    assert all(a < b for a, b in itertools.pairwise(intervals) if b < intervals[-1])
    assert intervals[-1] == settings.attention_max_interval


def test_checks_of_an_unhealthy_addon_stop_at_the_end_of_the_window() -> None:
    settings = ReconcileSettings()
    addon = _addon()
    now = NOW
    addon.record_unhealthy(now, settings, incorrect_state())
    assert addon.attention_since == NOW
    checks = 1
    while addon.next_check_at is not None:
        now = addon.next_check_at
        addon.record_unhealthy(now, settings, incorrect_state())
        checks += 1
    assert now == NOW + settings.attention_window
    assert addon.lifecycle_state is AddonState.NEEDS_ATTENTION
    assert addon.checks_stopped
    assert 15 <= checks <= 30


def test_recovery_returns_active_with_the_next_check_in_twelve_hours() -> None:
    settings = ReconcileSettings()
    addon = _addon()
    addon.record_unhealthy(NOW, settings, incorrect_state())
    addon.record_healthy(NOW + timedelta(minutes=5), settings, "v1.14.5")
    assert addon.lifecycle_state is AddonState.ACTIVE
    assert addon.error is None
    assert addon.attention_since is None
    assert addon.next_check_at == NOW + timedelta(minutes=5, hours=12)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("200Mi", Decimal(200 * 1024**2)),
        ("1.5Gi", Decimal("1.5") * 1024**3),
        ("1e3", Decimal(1000)),
        ("128k", Decimal(128000)),
    ],
)
def test_kubernetes_quantities_parse_to_their_value(text: str, number: Decimal) -> None:
    assert parse_quantity(text) == number


@pytest.mark.parametrize("text", ["", "m", "1.2.3", "-1", "5 cores", "1Mb", "0x10"])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    assert parse_quantity(text) is None


def test_a_json_value_too_deep_or_not_an_object_is_a_problem_not_a_crash() -> None:
    option = AddonCatalogue.load().get("CertManager")
    assert option is not None
    spec = option.versions[-1].configurations[1].spec
    assert spec.problem("[" * 3000) is not None
    assert spec.problem("{'limits': {'cpu': 1+2j}}") is not None
    assert spec.problem('{"limits": {"cpu": "100m"}}') is None
    assert spec.problem("{'requests': {'memory': '64Mi'}}") is None
