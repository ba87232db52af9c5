"""The add-on catalogue: which add-ons the service offers, their versions and configuration keys.

It is data (data/addons.json, or a file the operator names) so operators extend it
without a release. Versions are listed oldest first; "the newest ACTIVE version" is the
last ACTIVE one that supports the cluster's Kubernetes minor version.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from clusterops_server.domain.addon_config import ValueSpec
from clusterops_server.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from clusterops_server.domain.versions import KubernetesVersion

log = logging.getLogger(__name__)

_MINOR = re.compile(r"v\d+\.\d+")
# The lock id "<cluster id>/<name>" must fit the 64 characters of a resource lock.
MAX_NAME_LENGTH = 39


class AddonVersionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DEPRECATED = "DEPRECATED"
    PREVIEW = "PREVIEW"
    RECALLED = "RECALLED"


@dataclass(frozen=True)
class ConfigurationKey:
    key: str
    description: str = ""
    default_value: str = ""
    is_required: bool = False
    # The value's type and constraints, and what the add-on needs of it to become ready.
    spec: ValueSpec = field(default_factory=ValueSpec)


@dataclass(frozen=True)
class AddonVersion:
    version_number: str
    status: AddonVersionStatus
    description: str
    # Kubernetes minor versions, e.g. "v1.29".
    kubernetes_versions: tuple[str, ...]
    configurations: tuple[ConfigurationKey, ...]

    def supports(self, minor: str) -> bool:
        return minor in self.kubernetes_versions

    def key(self, name: str) -> ConfigurationKey | None:
        return next((c for c in self.configurations if c.key == name), None)

    @property
    def required_keys(self) -> list[str]:
        return [c.key for c in self.configurations if c.is_required]

    def effective(self, configurations: Mapping[str, str]) -> dict[str, str]:
        """Defaults overlaid with the given values, keeping only keys this version knows."""
        values = {c.key: c.default_value for c in self.configurations}
        values.update({k: v for k, v in configurations.items() if k in values})
        return values

    def shortfalls(self, configurations: Mapping[str, str]) -> list[str]:
        """Why this version, configured so, cannot become ready (empty when it can): the
        catalogue's `needs` of each key, judged on the effective configuration."""
        values = self.effective(configurations)
        return [
            problem
            for c in self.configurations
            for problem in c.spec.shortfalls(c.key, values[c.key])
        ]


@dataclass(frozen=True)
class AddonOption:
    name: str
    description: str
    is_essential: bool
    versions: tuple[AddonVersion, ...]

    def version(self, number: str) -> AddonVersion | None:
        return next((v for v in self.versions if v.version_number == number), None)

    def newest_active(
        self, minor: str, have_keys: Collection[str] | None = None
    ) -> AddonVersion | None:
        """The newest ACTIVE version for `minor` (whose required keys are all in `have_keys`)."""
        for candidate in reversed(self.versions):
            if candidate.status is not AddonVersionStatus.ACTIVE or not candidate.supports(minor):
                continue
            if have_keys is not None and not set(candidate.required_keys) <= set(have_keys):
                continue
            return candidate
        return None


def minor_line(kubernetes_version: str) -> str | None:
    """ "v1.29" for "v1.29.8" or "v1.29"; None when it is neither."""
    if _MINOR.fullmatch(kubernetes_version):
        return kubernetes_version
    parsed = KubernetesVersion.parse(kubernetes_version)
    return parsed.minor_line if parsed else None


@dataclass(frozen=True)
class AddonCatalogue:
    options: tuple[AddonOption, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AddonCatalogue:
        options = []
        schemas: Mapping[str, Any] = data.get("schemas", {})
        for item in data["addons"]:
            shared = item.get("configurations", [])
            versions = tuple(
                AddonVersion(
                    version_number=str(v["version"]),
                    status=AddonVersionStatus(v["status"]),
                    description=str(v.get("description", "")),
                    kubernetes_versions=tuple(str(k) for k in v["kubernetes_versions"]),
                    configurations=tuple(
                        ConfigurationKey(
                            key=str(c["key"]),
                            description=str(c.get("description", "")),
                            default_value=str(c.get("default", "")),
                            is_required=bool(c.get("required", False)),
                            spec=ValueSpec.from_json(
                                c, schemas, f"{item['name']} {v['version']} {c['key']}"
                            ),
                        )
                        for c in v.get("configurations", shared)
                    ),
                )
                for v in item["versions"]
            )
            options.append(
                AddonOption(
                    name=str(item["name"]),
                    description=str(item.get("description", "")),
                    is_essential=bool(item.get("is_essential", False)),
                    versions=versions,
                )
            )
        catalogue = cls(tuple(sorted(options, key=lambda o: o.name)))
        catalogue._check()
        return catalogue

    @classmethod
    def load(cls, path: Path | None = None) -> AddonCatalogue:
        text = (
            path.read_text()
            if path is not None
            else (resources.files("clusterops_server") / "data" / "addons.json").read_text()
        )
        return cls.from_json(json.loads(text))

    def _check(self) -> None:
        names = [o.name for o in self.options]
        if len(set(names)) != len(names):
            raise ValueError(f"add-on names repeat in the catalogue: {names}")
        for option in self.options:
            if not 0 < len(option.name) <= MAX_NAME_LENGTH:
                raise ValueError(f"add-on name {option.name!r} is empty or too long")
            numbers = [v.version_number for v in option.versions]
            if len(set(numbers)) != len(numbers):
                raise ValueError(f"{option.name}: versions repeat: {numbers}")
            for version in option.versions:
                bad = [k for k in version.kubernetes_versions if not _MINOR.fullmatch(k)]
                if bad:
                    raise ValueError(f"{option.name} {version.version_number}: not minors: {bad}")
                keys = [c.key for c in version.configurations]
                if len(set(keys)) != len(keys):
                    raise ValueError(f"{option.name} {version.version_number}: keys repeat")

    def get(self, name: str) -> AddonOption | None:
        return next((o for o in self.options if o.name == name), None)

    def kubernetes_minors(self) -> set[str]:
        return {k for o in self.options for v in o.versions for k in v.kubernetes_versions}

    def filtered(self, minor: str, name: str) -> list[AddonOption]:
        """The options named `name` (any if empty), with only the versions that support `minor`."""
        found = []
        for option in self.options:
            if name and option.name != name:
                continue
            versions = tuple(v for v in option.versions if not minor or v.supports(minor))
            if versions:
                found.append(
                    AddonOption(option.name, option.description, option.is_essential, versions)
                )
        return found

    def require(self, name: str) -> AddonOption:
        option = self.get(name)
        if option is None:
            choices = ", ".join(o.name for o in self.options)
            raise InvalidArgument.one(
                "name", f"{name!r} is not an add-on this service offers; choose one of {choices}"
            )
        return option

    def resolve(
        self,
        name: str,
        version: str,
        *,
        cluster_id: str,
        kubernetes_version: str,
        given_keys: Sequence[str],
        resulting_keys: Collection[str],
        given_values: Sequence[str] = (),
    ) -> AddonVersion:
        """The version to install, after checking it, and the configuration keys and
        values, against the catalogue and the cluster's Kubernetes version.

        `given_keys` are the request's keys (named by index in field violations), with
        their `given_values` in the same order; `resulting_keys` the add-on's whole
        configuration once the request applies.
        """
        option = self.require(name)
        minor = minor_line(kubernetes_version) or kubernetes_version
        violations: list[FieldViolation] = []
        chosen: AddonVersion | None
        if version:
            chosen = option.version(version)
            if chosen is None:
                numbers = ", ".join(v.version_number for v in option.versions)
                violations.append(
                    FieldViolation(
                        "version", f"{name} has no version {version!r}; it has {numbers}"
                    )
                )
            elif chosen.status is AddonVersionStatus.RECALLED:
                violations.append(
                    FieldViolation(
                        "version",
                        f"{name} {version} is RECALLED and cannot be installed: "
                        f"{chosen.description or 'withdrawn by its publisher'}",
                    )
                )
                chosen = None
        else:
            chosen = option.newest_active(minor)
        if chosen is not None:
            for i, key in enumerate(given_keys):
                known_key = chosen.key(key)
                if known_key is None:
                    known = ", ".join(c.key for c in chosen.configurations) or "none"
                    violations.append(
                        FieldViolation(
                            f"configurations[{i}].key",
                            f"{key!r} is not a configuration key of {name} "
                            f"{chosen.version_number}; keys: {known}",
                        )
                    )
                elif i < len(given_values):
                    problem = known_key.spec.problem(given_values[i])
                    if problem is not None:
                        violations.append(
                            FieldViolation(f"configurations[{i}].value", f"{key} {problem}")
                        )
            missing = [k for k in chosen.required_keys if k not in resulting_keys]
            if missing:
                violations.append(
                    FieldViolation(
                        "configurations",
                        f"{name} {chosen.version_number} requires {', '.join(missing)}",
                    )
                )
        if violations:
            raise InvalidArgument(violations)
        if chosen is None:
            raise FailedPrecondition(
                f"{name} has no ACTIVE version for Kubernetes {minor} (cluster {cluster_id} runs "
                f"{kubernetes_version}); name a version, or upgrade the cluster",
                violation_type="ADDON_VERSION_UNSUPPORTED",
                subject=cluster_id,
                metadata={"addon": name, "kubernetes_version": kubernetes_version},
            )
        if not chosen.supports(minor):
            supported = ", ".join(chosen.kubernetes_versions)
            raise FailedPrecondition(
                f"{name} {chosen.version_number} does not support Kubernetes {minor} (cluster "
                f"{cluster_id} runs {kubernetes_version}); it supports {supported}",
                violation_type="ADDON_VERSION_UNSUPPORTED",
                subject=cluster_id,
                metadata={
                    "addon": name,
                    "version": chosen.version_number,
                    "kubernetes_version": kubernetes_version,
                },
            )
        return chosen


class CatalogueFile:
    """The catalogue an operator keeps in a file: re-read when the file changes.

    Without a path it is the catalogue packaged with the server, read once. A file
    that stops parsing is logged and the last good catalogue stays in use.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._catalogue = AddonCatalogue.load(path)
        if path is not None:
            self._stamp = self._stat(path)

    @staticmethod
    def _stat(path: Path) -> tuple[int, int]:
        info = path.stat()
        return info.st_mtime_ns, info.st_size

    def current(self) -> AddonCatalogue:
        if self.path is None:
            return self._catalogue
        try:
            stamp = self._stat(self.path)
            if stamp != self._stamp:
                self._catalogue = AddonCatalogue.load(self.path)
                self._stamp = stamp
                log.info("add-on catalogue %s reloaded", self.path)
        except (OSError, ValueError, KeyError, TypeError):
            log.exception("add-on catalogue %s is unreadable; keeping the last good one", self.path)
        return self._catalogue
