"""Rendering messages for people (tables, described resources) and for scripts (JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from clusterops import (
    Addon,
    AddonOption,
    Cluster,
    KubernetesVersion,
    Node,
    NodePool,
    Orchestration,
    OrchestrationOperation,
    Subscription,
    UpgradeWorkflow,
    WorkRequest,
    WorkRequestError,
    WorkRequestLogEntry,
)
from clusterops.v1.addons_pb2 import AddonVersionStatus
from clusterops.v1.simulator_pb2 import Fault, StepTime

_VERSION_STATUS = AddonVersionStatus.DESCRIPTOR

# Columns of each kind of resource in a table: (header, dotted field path).
COLUMNS: dict[type[Message], Sequence[tuple[str, str]]] = {
    WorkRequest: (
        ("ID", "id"),
        ("OPERATION", "operation_type"),
        ("STATUS", "status"),
        ("%", "percent_complete"),
        ("ACCEPTED", "time_accepted"),
        ("FINISHED", "time_finished"),
        ("COMPARTMENT", "compartment_id"),
        ("LAST ERROR", "last_error.code"),
    ),
    Fault: (
        ("ID", "id"),
        ("ACTION", "action"),
        ("TARGET", "target"),
        ("REMAINING", "remaining"),
        ("MESSAGE", "message"),
    ),
    StepTime: (
        ("ACTION", "action"),
        ("SECONDS", "seconds"),
        ("OWN", "overridden"),
    ),
    Subscription: (
        ("ID", "id"),
        ("STATE", "state"),
        ("CURSOR", "delivery.cursor_revision"),
        ("LAST STATUS", "delivery.last_status_code"),
        ("FAILURES", "delivery.failures_in_a_row"),
        ("LAST ATTEMPT", "delivery.last_attempt_time"),
        ("URL", "url"),
    ),
    WorkRequestLogEntry: (("TIME", "timestamp"), ("MESSAGE", "message")),
    WorkRequestError: (("TIME", "timestamp"), ("CODE", "code"), ("MESSAGE", "message")),
    Cluster: (
        ("ID", "id"),
        ("NAME", "name"),
        ("VERSION", "kubernetes_version"),
        ("STATE", "lifecycle_state"),
        ("REGION", "region"),
        ("PLAN", "plan"),
        ("COMPARTMENT", "compartment_id"),
    ),
    NodePool: (
        ("ID", "id"),
        ("NAME", "name"),
        ("NODES", "node_count"),
        ("STATE", "lifecycle_state"),
        ("VERSION", "kubernetes_version"),
        ("SHAPE", "node_shape"),
        ("CLUSTER", "cluster_id"),
    ),
    Node: (
        ("ID", "id"),
        ("NAME", "name"),
        ("STATE", "lifecycle_state"),
        ("DETAILS", "lifecycle_details"),
    ),
    UpgradeWorkflow: (
        ("ID", "metadata.uid"),
        ("NAME", "metadata.name"),
        ("CLUSTER", "spec.cluster_id"),
        ("FROM", "spec.cluster_version"),
        ("TO", "spec.target_version"),
        ("PHASE", "status.phase"),
        ("WORK REQUEST", "work_request_id"),
    ),
    KubernetesVersion: (("VERSION", "version"), ("UPGRADE TARGETS", "upgrade_targets")),
    Addon: (
        ("NAME", "name"),
        ("VERSION", "version"),
        ("INSTALLED", "current_installed_version"),
        ("STATE", "lifecycle_state"),
        ("ERROR", "addon_error.status"),
        ("CLUSTER", "cluster_id"),
    ),
    Orchestration: (
        ("ID", "id"),
        ("STATE", "state"),
        ("DESCRIPTION", "description"),
        ("TOTAL", "operation_counts.total"),
        ("SUCCEEDED", "operation_counts.succeeded"),
        ("FAILED", "operation_counts.failed"),
    ),
    OrchestrationOperation: (
        ("ID", "id"),
        ("RUNTIME", "runtime_id"),
        ("STATE", "state"),
        ("WAIT", "wait_reason"),
        ("UNTIL", "wait_until"),
        ("STAGE", "stage"),
        ("DESCRIPTION", "description"),
    ),
}


def enum_label(enum: EnumDescriptor, number: int) -> str:
    """SUCCEEDED for WORK_REQUEST_STATUS_SUCCEEDED: the enum's prefix is noise in a table."""
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = enum.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return value.name.removeprefix(prefix)


def timestamp_label(value: Timestamp) -> str:
    if value.seconds == 0 and value.nanos == 0:
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def scalar_label(descriptor: FieldDescriptor, value: Any) -> str:
    if descriptor.type == FieldDescriptor.TYPE_ENUM:
        assert descriptor.enum_type is not None
        return enum_label(descriptor.enum_type, value)
    if isinstance(value, Timestamp):
        return timestamp_label(value)
    if isinstance(value, float):
        return f"{value:.0f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value) if value != "" else "-"


def cell(message: Message, path: str) -> str:
    """The value at a dotted path; a repeated field on the way collects from each item
    ("versions.version_number" lists every version's number)."""
    *steps, last = path.split(".")
    targets: list[Any] = [message]
    listed = False
    for step in steps:
        found: list[Any] = []
        for target in targets:
            value = getattr(target, step)
            if target.DESCRIPTOR.fields_by_name[step].is_repeated:
                found.extend(value)
                listed = True
            else:
                found.append(value)
        targets = found
    if not targets:
        return "-"
    descriptor = targets[0].DESCRIPTOR.fields_by_name[last]
    if not (listed or descriptor.is_repeated):
        return scalar_label(descriptor, getattr(targets[0], last))
    values: list[Any] = []
    for target in targets:
        value = getattr(target, last)
        if descriptor.is_repeated:
            values.extend(value)
        else:
            values.append(value)
    return ", ".join(scalar_label(descriptor, v) for v in values) or "-"


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass
class Output:
    """Where and how a command prints: "table" for people, "json" for scripts."""

    mode: str = "table"
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    # JSON Lines: every object on one line, for commands that stream (--watch) so that a
    # script can read stdout line by line.
    lines: bool = False
    status: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def json(self) -> bool:
        return self.mode == "json"

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def json_line(self, value: Any) -> None:
        self.line(json.dumps(value, separators=(",", ":")))

    def json_value(self, value: Any) -> None:
        """Indented for people reading scripts' output, or one line when streaming."""
        if self.lines:
            self.json_line(value)
        else:
            self.line(json.dumps(value, indent=2))

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (on stderr: stdout stays parseable)."""
        print(f"clusterops: {text}", file=self.status, flush=True)

    def table(self, kind: type[Message], items: Iterable[Message]) -> None:
        """A list: a JSON array, or a table with a header row."""
        if self.json:
            self.json_value([to_json(item) for item in items])
            return
        columns = COLUMNS[kind]
        self.grid(
            [header for header, _ in columns],
            [[cell(item, path) for _, path in columns] for item in items],
        )

    def grid(self, header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> None:
        """Rows of cells under a header, each column as wide as its widest cell."""
        if not rows:
            self.line(f"{indent}(none)")
            return
        table = [header, *rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            cells = (text.ljust(width) for text, width in zip(row, widths, strict=True))
            self.line(indent + "  ".join(cells).rstrip())

    def resource(self, message: Message, **extra: Message) -> None:
        """One resource: JSON, or its fields one per line (with `extra` messages after)."""
        if self.json:
            if extra:
                self.json_value(
                    {
                        _json_key(message): to_json(message),
                        **{k: to_json(v) for k, v in extra.items()},
                    }
                )
            else:
                self.json_value(to_json(message))
            return
        for text in describe(message):
            self.line(text)
        for name, value in extra.items():
            self.line(f"{name}:")
            for text in describe(value, indent=1):
                self.line(text)


ADDON_VERSIONS_HEADER = ("NAME", "VERSION", "STATUS", "KUBERNETES", "ESSENTIAL")


def addon_version_rows(options: Iterable[AddonOption]) -> list[list[str]]:
    """One row per version of each add-on: a RECALLED version must not look installable."""
    rows: list[list[str]] = []
    for option in options:
        essential = "yes" if option.is_essential else "no"
        for version in option.versions:
            rows.append(
                [
                    option.name,
                    version.version_number,
                    enum_label(_VERSION_STATUS, version.status),
                    ", ".join(version.kubernetes_versions) or "-",
                    essential,
                ]
            )
        if not option.versions:
            rows.append([option.name, "-", "-", "-", essential])
    return rows


def addon_option_details(option: AddonOption, out: Output) -> None:
    """An add-on with each version's status, Kubernetes versions and description, and the
    configuration keys it accepts (grouped when versions accept the same keys)."""
    out.line(f"name: {option.name}")
    out.line(f"description: {option.description or '-'}")
    out.line(f"essential: {'yes' if option.is_essential else 'no'}")
    out.line("versions:")
    out.grid(
        ("VERSION", "STATUS", "KUBERNETES", "DESCRIPTION"),
        [
            [
                version.version_number,
                enum_label(_VERSION_STATUS, version.status),
                ", ".join(version.kubernetes_versions) or "-",
                version.description or "-",
            ]
            for version in option.versions
        ],
        indent="  ",
    )
    groups: dict[tuple[tuple[str, str, str, bool, str], ...], list[str]] = {}
    for version in option.versions:
        keys = tuple(
            (c.key, c.default_value, c.description, c.is_required, c.constraint)
            for c in version.configurations
        )
        groups.setdefault(keys, []).append(version.version_number)
    for keys, versions in groups.items():
        which = "every version" if len(groups) == 1 else ", ".join(versions)
        out.line(f"configuration keys ({which}):")
        out.grid(
            ("KEY", "DEFAULT", "REQUIRED", "VALUES", "DESCRIPTION"),
            [
                [
                    key,
                    default or "-",
                    "yes" if required else "no",
                    constraint or "-",
                    description or "-",
                ]
                for key, default, description, required, constraint in keys
            ],
            indent="  ",
        )


def _json_key(message: Message) -> str:
    name = message.DESCRIPTOR.name
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def describe(message: Message, indent: int = 0) -> list[str]:
    """The set fields of a message as `name: value` lines, nested messages indented."""
    pad = "  " * indent
    lines: list[str] = []
    for descriptor, value in message.ListFields():
        name = descriptor.name
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            pairs = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
            lines.append(f"{pad}{name}: {pairs}")
        elif descriptor.is_repeated:
            if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
                lines.append(f"{pad}{name}:")
                for item in value:
                    nested = describe(item, indent + 2)
                    if nested:
                        nested[0] = f"{pad}  - {nested[0].lstrip()}"
                    lines.extend(nested)
            else:
                joined = ", ".join(scalar_label(descriptor, v) for v in value)
                lines.append(f"{pad}{name}: {joined}")
        elif isinstance(value, Timestamp):
            lines.append(f"{pad}{name}: {timestamp_label(value)}")
        elif descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            lines.append(f"{pad}{name}:")
            lines.extend(describe(value, indent + 1))
        else:
            lines.append(f"{pad}{name}: {scalar_label(descriptor, value)}")
    return lines
