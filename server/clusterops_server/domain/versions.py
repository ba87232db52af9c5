"""The Kubernetes version catalogue: which versions exist and which upgrades are allowed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from clusterops_server.domain.errors import FailedPrecondition, InvalidArgument

# "v1.29.8", or with a platform revision as CCE numbers its builds: "v1.19.16-r80".
# No leading zeros: "v1.029.08" would be a second spelling of v1.29.8, stored as given.
_NUMBER = r"(0|[1-9]\d{0,3})"
_VERSION = re.compile(rf"v{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:-r(0|[1-9]\d{{0,5}}))?")
# The revision of a version written without one: it sorts before "-r0".
NO_REVISION = -1


@dataclass(frozen=True, order=True)
class KubernetesVersion:
    """Compared by major, minor, patch, then platform revision."""

    major: int
    minor: int
    patch: int
    revision: int = NO_REVISION

    @classmethod
    def parse(cls, text: str) -> KubernetesVersion | None:
        match = _VERSION.fullmatch(text)
        if match is None:
            return None
        major, minor, patch = (int(g) for g in match.groups()[:3])
        revision = match.group(4)
        return cls(major, minor, patch, NO_REVISION if revision is None else int(revision))

    @property
    def minor_line(self) -> str:
        return f"v{self.major}.{self.minor}"

    def __str__(self) -> str:
        suffix = f"-r{self.revision}" if self.revision != NO_REVISION else ""
        return f"v{self.major}.{self.minor}.{self.patch}{suffix}"


class VersionCatalogue:
    def __init__(self, versions: list[str], max_minor_step: int) -> None:
        parsed = [KubernetesVersion.parse(v) for v in versions]
        if any(v is None for v in parsed):
            raise ValueError(f"malformed version in catalogue: {versions}")
        self.versions = sorted(v for v in parsed if v is not None)
        self.max_minor_step = max_minor_step

    @classmethod
    def load(cls, path: Path | None = None) -> VersionCatalogue:
        text = (
            path.read_text()
            if path is not None
            else (
                resources.files("clusterops_server") / "data" / "kubernetes_versions.json"
            ).read_text()
        )
        data = json.loads(text)
        return cls(list(data["versions"]), int(data["max_minor_step"]))

    def supported(self, version: KubernetesVersion) -> bool:
        return version in self.versions

    def require_supported(self, field: str, text: str) -> KubernetesVersion:
        """The parsed version, or INVALID_ARGUMENT naming the field and the choices."""
        version = KubernetesVersion.parse(text)
        if version is None:
            raise InvalidArgument.one(
                field, f'{text!r} is not a version like "v1.29.8" or "v1.19.16-r80"'
            )
        if not self.supported(version):
            choices = ", ".join(str(v) for v in self.versions)
            raise InvalidArgument.one(field, f"{text} is not supported; supported: {choices}")
        return version

    def upgrade_targets(self, current: KubernetesVersion) -> list[KubernetesVersion]:
        return [
            v
            for v in self.versions
            if v > current
            and v.major == current.major
            and v.minor - current.minor <= self.max_minor_step
        ]

    def check_upgrade(
        self, cluster_id: str, current_text: str, target_text: str
    ) -> KubernetesVersion:
        """Validate an upgrade path; the target version on success."""
        target = self.require_supported("target_version", target_text)
        current = KubernetesVersion.parse(current_text)
        if current is None:
            raise FailedPrecondition(
                f"cluster {cluster_id} runs {current_text!r}, which is not a known version",
                violation_type="UNKNOWN_CURRENT_VERSION",
                subject=cluster_id,
            )
        if target == current:
            raise FailedPrecondition(
                f"cluster {cluster_id} already runs {target}",
                violation_type="ALREADY_AT_VERSION",
                subject=cluster_id,
            )
        if target < current:
            raise InvalidArgument.one(
                "target_version",
                f"{target} is older than the cluster's {current}; downgrades are not supported",
            )
        if target not in self.upgrade_targets(current):
            allowed = ", ".join(str(v) for v in self.upgrade_targets(current)) or "none"
            raise InvalidArgument.one(
                "target_version",
                f"{target} is more than {self.max_minor_step} minor versions ahead of {current}; "
                f"upgrade in steps (allowed now: {allowed})",
            )
        return target
