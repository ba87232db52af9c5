"""Which upgrades a cluster may take, as plain Python (domain/versions.py)."""

from __future__ import annotations

import grpc
import pytest
from clusterops_server.domain.errors import FailedPrecondition, InvalidArgument
from clusterops_server.domain.versions import KubernetesVersion, VersionCatalogue

CATALOGUE = VersionCatalogue(["v1.28.5", "v1.29.8", "v1.30.4", "v1.31.1"], max_minor_step=1)


def version(text: str) -> KubernetesVersion:
    parsed = KubernetesVersion.parse(text)
    assert parsed is not None
    return parsed


def test_upgrades_go_one_minor_step_at_a_time() -> None:
    assert CATALOGUE.upgrade_targets(version("v1.28.5")) == [version("v1.29.8")]
    assert CATALOGUE.check_upgrade("cls-1", "v1.28.5", "v1.29.8") == version("v1.29.8")
    with pytest.raises(InvalidArgument) as refused:
        CATALOGUE.check_upgrade("cls-1", "v1.28.5", "v1.30.4")
    (violation,) = refused.value.violations
    assert violation.field == "target_version"
    assert "allowed now: v1.29.8" in violation.description


def test_a_downgrade_is_an_invalid_argument_and_the_same_version_a_failed_precondition() -> None:
    with pytest.raises(InvalidArgument, match="downgrades are not supported"):
        CATALOGUE.check_upgrade("cls-1", "v1.30.4", "v1.29.8")
    with pytest.raises(FailedPrecondition) as same:
        CATALOGUE.check_upgrade("cls-1", "v1.30.4", "v1.30.4")
    assert same.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert same.value.reason == "ALREADY_AT_VERSION"


def test_an_unsupported_or_malformed_target_names_the_field_and_the_choices() -> None:
    with pytest.raises(InvalidArgument) as unsupported:
        CATALOGUE.check_upgrade("cls-1", "v1.30.4", "v1.32.0")
    assert "supported: v1.28.5, v1.29.8, v1.30.4, v1.31.1" in unsupported.value.message
    with pytest.raises(InvalidArgument) as malformed:
        CATALOGUE.check_upgrade("cls-1", "v1.30.4", "1.31")
    assert [v.field for v in malformed.value.violations] == ["target_version"]


def test_a_cluster_on_an_unknown_version_cannot_be_upgraded() -> None:
    with pytest.raises(FailedPrecondition) as refused:
        CATALOGUE.check_upgrade("cls-1", "weird", "v1.31.1")
    assert refused.value.reason == "UNKNOWN_CURRENT_VERSION"


@pytest.mark.parametrize(
    "text", ["v1.029.8", "v01.29.8", "v1.29.08", "v1.19.16-r080", "1.29.8", "v1.29", "v1.29.8-r"]
)
def test_a_version_has_one_spelling_only(text: str) -> None:
    assert KubernetesVersion.parse(text) is None


@pytest.mark.parametrize(
    "text", ["v1.29.8", "v1.0.0", "v1.19.16-r80", "v1.19.16-r0", "v10.100.1000"]
)
def test_canonical_versions_parse_and_print_as_given(text: str) -> None:
    assert str(KubernetesVersion.parse(text)) == text
