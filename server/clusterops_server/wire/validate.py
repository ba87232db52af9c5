"""Request validation: collect every field violation, then answer INVALID_ARGUMENT once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from clusterops_server.domain.errors import FieldViolation, InvalidArgument, one_of
from clusterops_server.domain.filtering import Expression, FilterField, parse_filter
from clusterops_server.domain.listing import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    OrderBy,
    PageRequest,
    SignedToken,
    parse_order_by,
)
from clusterops_server.ids import IdKind, id_format, is_valid_id
from clusterops_server.wire.convert import EnumMap, from_timestamp

E = TypeVar("E", bound=Enum)

# The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_SECONDS = -62_135_596_800
_MAX_TIMESTAMP_SECONDS = 253_402_300_799

_NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_COMPARTMENT = re.compile(r"[a-z][a-z0-9-]{0,62}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_LABEL_KEY = re.compile(r"[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?")
_FREE_TEXT_MAX = 256
MAX_LABELS = 64
MAX_LABEL_VALUE = 63


class Validator:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def check(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)

    def _absorb(self, error: InvalidArgument) -> None:
        self.violations.extend(error.violations)

    def resource_id(self, field: str, value: str, kind: IdKind, *, required: bool = True) -> str:
        if not value:
            if required:
                self.fail(field, f"is required: {id_format(kind)}")
        elif not is_valid_id(kind, value):
            self.fail(field, f"{value[:80]!r} is not an id of this kind: {id_format(kind)}")
        return value

    def name(self, field: str, value: str) -> str:
        if not value:
            self.fail(field, "is required")
        elif _NAME.fullmatch(value) is None:
            self.fail(
                field,
                "must be 1 to 63 lowercase letters, digits or '-', starting with a letter "
                "and not ending with '-'",
            )
        return value

    def compartment(self, field: str, value: str, *, required: bool) -> str:
        if not value:
            if required:
                self.fail(field, "is required")
        elif _COMPARTMENT.fullmatch(value) is None:
            self.fail(
                field, "must be 1 to 63 lowercase letters, digits or '-', starting with a letter"
            )
        return value

    def text(
        self, field: str, value: str, *, required: bool = False, limit: int = _FREE_TEXT_MAX
    ) -> str:
        if not value and required:
            self.fail(field, "is required")
        elif len(value) > limit:
            self.fail(field, f"must be at most {limit} characters")
        elif any(ord(ch) < 32 for ch in value):
            self.fail(field, "must not contain control characters")
        return value

    def timestamp(self, field: str, value: Timestamp) -> datetime | None:
        if not (
            _MIN_TIMESTAMP_SECONDS <= value.seconds <= _MAX_TIMESTAMP_SECONDS
            and 0 <= value.nanos <= 999_999_999
        ):
            self.fail(field, "is not a valid time (RFC 3339, years 0001 to 9999)")
            return None
        return from_timestamp(value)

    def request_id(self, field: str, value: str) -> str:
        if value and _REQUEST_ID.fullmatch(value) is None:
            self.fail(field, "must be 1 to 128 characters of letters, digits and . _ : -")
        return value

    def labels(self, field: str, labels: Mapping[str, str]) -> dict[str, str]:
        if len(labels) > MAX_LABELS:
            self.fail(field, f"at most {MAX_LABELS} labels")
            return {}
        for key, value in labels.items():
            if _LABEL_KEY.fullmatch(key) is None:
                self.fail(
                    f"{field}[{key[:40]!r}]", "keys are 1 to 63 lowercase letters, digits, . _ / -"
                )
            if len(value) > MAX_LABEL_VALUE:
                self.fail(
                    f"{field}[{key[:40]!r}]", f"values are at most {MAX_LABEL_VALUE} characters"
                )
        return dict(labels)

    def int_range(self, field: str, value: int, low: int, high: int) -> int:
        if not low <= value <= high:
            self.fail(field, f"must be between {low} and {high}")
        return value

    def page(
        self,
        size: int,
        token: str,
        *,
        default: int = DEFAULT_PAGE_SIZE,
        maximum: int = MAX_PAGE_SIZE,
    ) -> PageRequest:
        if token:
            # The shape now, with the other fields; the signature and the cursor when the
            # list runs (they need the keys and the query).
            try:
                SignedToken.parse(token)
            except InvalidArgument as error:
                self._absorb(error)
                token = ""  # the size is still checked, so both problems are told at once
        try:
            return PageRequest.of(size, token, default=default, maximum=maximum)
        except InvalidArgument as error:
            self._absorb(error)
            return PageRequest()

    def enum(
        self, field: str, number: int, mapping: EnumMap[E], *, required: bool = True
    ) -> E | None:
        value = mapping.to_domain(number)
        if value is None and (required or number != 0):
            self.fail(field, f"{number} is not valid; use one of {one_of(mapping.choices())}")
        return value

    def enums(self, field: str, numbers: Iterable[int], mapping: EnumMap[E]) -> frozenset[E]:
        found: set[E] = set()
        for i, number in enumerate(numbers):
            value = self.enum(f"{field}[{i}]", number, mapping)
            if value is not None:
                found.add(value)
        return frozenset(found)

    def filter(self, text: str, fields: Mapping[str, FilterField]) -> Expression | None:
        try:
            return parse_filter(text, fields)
        except InvalidArgument as error:
            self._absorb(error)
            return None

    def order_by(self, text: str, allowed: list[str], default: OrderBy) -> OrderBy:
        try:
            return parse_order_by(text, allowed, default)
        except InvalidArgument as error:
            self._absorb(error)
            return default
