"""What an add-on configuration value may be, and which valid values keep it from working.

Each configuration key of the catalogue has a type and constraints (an integer with
bounds, a boolean, one of some values, a Kubernetes resource quantity, a JSON object
matching a schema). A value that breaks them is the caller's mistake, refused before any
work starts. Some valid values still leave the add-on unable to become ready, as OKE's
own example shows (an operator with zero replicas, whose custom resources then stay in
an incorrect state): the catalogue lists those as `needs` of the key, and a cluster
(the simulated one here) judges readiness by them.

The schema language is a small subset of JSON Schema (type, properties,
additionalProperties, required, enum, minimum, maximum, format "quantity"), enough for
resource blocks; the loader refuses any other keyword so a catalogue author is never
silently ignored.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

# A value longer than this is refused before it is parsed.
MAX_VALUE_LENGTH = 4096

_QUANTITY = re.compile(
    r"(?P<number>\+?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d{1,3})?"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_SCHEMA_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "enum",
        "minimum",
        "maximum",
        "format",
        "description",
    }
)
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
}


def parse_quantity(text: str) -> Decimal | None:
    """A Kubernetes resource quantity ("500m", "200Mi", "2", "1e3") as a number, or None."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        return None
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * (Decimal(1024) ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    if suffix:
        return number.scaleb(int(suffix[1:]))
    return number


def parse_object(text: str) -> Any:
    """A JSON value; or, as OKE's examples write ContainerResources, a Python-style literal
    with single quotes ("{'limits': {'cpu': '500m'}}"). ValueError when it is neither."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        value = ast.literal_eval(text)
        # Only what JSON can say: tuples, sets, bytes and the like are refused here.
        return json.loads(json.dumps(value))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError("is not a JSON object") from None


def _schema_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    where = path or "the value"
    expected = schema.get("type")
    if expected is not None:
        kind = _JSON_TYPES[expected]
        # bool is an int to Python, never to JSON.
        if not isinstance(value, kind) or (isinstance(value, bool) and expected != "boolean"):
            return [f"{where} must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where} must be one of {', '.join(map(str, schema['enum']))}"]
    if schema.get("format") == "quantity":
        quantity = parse_quantity(value) if isinstance(value, str) else None
        if quantity is None:
            return [f"{where} {value!r} is not a Kubernetes quantity such as 500m, 2 or 200Mi"]
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return [f"{where} must be at least {schema['minimum']}"]
        if "maximum" in schema and value > schema["maximum"]:
            return [f"{where} must be at most {schema['maximum']}"]
    errors: list[str] = []
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path + '.' if path else ''}{name} is required")
        for name, item in value.items():
            inner = f"{path}.{name}" if path else str(name)
            if name in properties:
                errors.extend(_schema_errors(properties[name], item, inner))
            elif schema.get("additionalProperties", True) is False:
                known = ", ".join(properties) or "none"
                errors.append(f"{inner} is not allowed (allowed: {known})")
    return errors


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise ValueError(f"{where}: a schema is a JSON object")
    unknown = set(schema) - _SCHEMA_KEYWORDS
    if unknown:
        raise ValueError(f"{where}: unsupported schema keywords {sorted(unknown)}")
    if "type" in schema and schema["type"] not in _JSON_TYPES:
        raise ValueError(f"{where}: unknown type {schema['type']!r}")
    for name, inner in schema.get("properties", {}).items():
        _check_schema(inner, f"{where}.{name}")


class ValueType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"
    QUANTITY = "quantity"
    JSON = "json"


@dataclass(frozen=True)
class Need:
    """What the add-on needs of a value to become ready: the number at `path` (inside a
    JSON value; empty for the value itself) at least `minimum`. A path the value does not
    set needs nothing (no limit is no shortage)."""

    path: tuple[str, ...]
    minimum: Decimal
    shown: str
    reason: str

    def describe(self) -> str:
        at = f"{'.'.join(self.path)} " if self.path else ""
        return f"{at}at least {self.shown}: {self.reason}"


@dataclass(frozen=True)
class ValueSpec:
    type: ValueType = ValueType.STRING
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()
    pattern: str = ""
    schema: Mapping[str, Any] | None = None
    needs: tuple[Need, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], schemas: Mapping[str, Any], where: str
    ) -> ValueSpec:
        kind = ValueType(data.get("type", "string"))
        schema = data.get("schema")
        if isinstance(schema, str):
            if schema not in schemas:
                raise ValueError(f"{where}: no schema named {schema!r}")
            schema = schemas[schema]
        if schema is not None:
            _check_schema(schema, where)
        if kind is ValueType.JSON and schema is None:
            raise ValueError(f"{where}: a json key needs a schema")
        if kind is ValueType.ENUM and not data.get("values"):
            raise ValueError(f"{where}: an enum key needs values")
        spec = cls(
            type=kind,
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            values=tuple(str(v) for v in data.get("values", ())),
            pattern=str(data.get("pattern", "")),
            schema=schema,
            needs=tuple(
                Need(
                    tuple(p for p in str(n.get("path", "")).split(".") if p),
                    cls._number(str(n["minimum"]), where),
                    str(n["minimum"]),
                    str(n["reason"]),
                )
                for n in data.get("needs", ())
            ),
        )
        if spec.pattern:
            re.compile(spec.pattern)
        default = str(data.get("default", ""))
        problem = spec.problem(default)
        if problem is not None:
            raise ValueError(f"{where}: its default {default!r} {problem}")
        return spec

    @staticmethod
    def _number(text: str, where: str) -> Decimal:
        number = parse_quantity(text)
        if number is None:
            raise ValueError(f"{where}: {text!r} is not a number or quantity")
        return number

    def describe(self) -> str:
        """The constraint for a person, e.g. "an integer from 0 to 10"."""
        if self.type is ValueType.INTEGER:
            low = "" if self.minimum is None else f" from {self.minimum}"
            high = "" if self.maximum is None else f" to {self.maximum}"
            return f"an integer{low}{high}"
        if self.type is ValueType.BOOLEAN:
            return "true or false"
        if self.type is ValueType.ENUM:
            return f"one of {', '.join(self.values)}"
        if self.type is ValueType.QUANTITY:
            return "a Kubernetes quantity such as 500m, 2 or 200Mi"
        if self.type is ValueType.JSON:
            return "a JSON object"
        return f"text matching {self.pattern}" if self.pattern else "text"

    def problem(self, value: str) -> str | None:
        """Why `value` is not allowed (a phrase to follow the key's name), or None."""
        if len(value) > MAX_VALUE_LENGTH:
            return f"must be at most {MAX_VALUE_LENGTH} characters"
        if value == "" and self.type in (ValueType.STRING, ValueType.JSON):
            # Unset: the add-on's own default applies.
            return None
        if self.type is ValueType.INTEGER:
            if re.fullmatch(r"[+-]?\d{1,18}", value) is None:
                return f"must be {self.describe()}, not {value!r}"
            number = int(value)
            if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum
            ):
                return f"must be {self.describe()}, not {value}"
        elif self.type is ValueType.BOOLEAN:
            if value not in ("true", "false"):
                return f"must be true or false, not {value!r}"
        elif self.type is ValueType.ENUM:
            if value not in self.values:
                return f"must be {self.describe()}, not {value!r}"
        elif self.type is ValueType.QUANTITY:
            if parse_quantity(value) is None:
                return f"must be {self.describe()}, not {value!r}"
        elif self.type is ValueType.JSON:
            try:
                parsed = parse_object(value)
            except ValueError:
                return f"is not a JSON object: {value[:60]!r}"
            assert self.schema is not None
            errors = _schema_errors(self.schema, parsed, "")
            if errors:
                return "; ".join(errors)
        elif self.pattern and re.fullmatch(self.pattern, value) is None:
            return f"must be {self.describe()}, not {value!r}"
        return None

    def shortfalls(self, key: str, value: str) -> list[str]:
        """Why the add-on cannot become ready with `value` (empty when it can)."""
        if self.problem(value) is not None:
            return [f"{key} {value!r} is rejected by the add-on"]
        if value == "":
            return []
        found = []
        for need in self.needs:
            actual = self._at(value, need.path)
            if actual is not None and actual < need.minimum:
                at = f"{key} {'.'.join(need.path)}" if need.path else key
                found.append(f"{at} is below {need.shown}: {need.reason}")
        return found

    def _at(self, value: str, path: Sequence[str]) -> Decimal | None:
        if not path:
            return parse_number(value)
        item: Any = parse_object(value)
        for part in path:
            if not isinstance(item, dict) or part not in item:
                return None
            item = item[part]
        if isinstance(item, bool):
            return None
        if isinstance(item, int | float):
            return Decimal(str(item))
        return parse_quantity(item) if isinstance(item, str) else None


def parse_number(text: str) -> Decimal | None:
    """An integer or a quantity; None if neither."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return parse_quantity(text)
