"""Conversions shared by every servicer: timestamps and enums between protobuf and domain."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

E = TypeVar("E", bound=Enum)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp message, or None so the field stays unset.

    Built from its two fields (what Timestamp.FromDatetime computes, without its
    Python-level detours: this runs several times for every message of every list)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.astimezone(UTC)
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def from_timestamp(message: Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


class EnumMap(Generic[E]):
    """Maps a proto enum (FOO_BAR_X) to a domain enum whose member names are the suffixes (X)."""

    # `proto` is a generated enum class; its Name/Value/values live on the metaclass,
    # whose stub signatures use per-enum NewTypes, hence Any.
    def __init__(self, proto: Any, domain: type[E], prefix: str) -> None:
        self.proto = proto
        self.domain = domain
        self.prefix = prefix
        # Both directions as dicts, built once (a lookup by name through the enum
        # wrapper costs several calls, for every field of every message).
        names = set(proto.keys())
        self._numbers: dict[E, int] = {
            member: int(proto.Value(prefix + member.name))
            for member in domain
            if prefix + member.name in names
        }
        self._members: dict[int, E] = {n: m for m, n in self._numbers.items() if n != 0}

    def to_proto(self, value: E) -> int:
        number = self._numbers.get(value)
        if number is None:  # a domain value the proto lacks: the wrapper's ValueError
            return int(self.proto.Value(self.prefix + value.name))
        return number

    def to_domain(self, number: int) -> E | None:
        """The domain value, or None for UNSPECIFIED and numbers the proto does not define."""
        return self._members.get(number)

    def choices(self) -> list[str]:
        return [self.prefix + member.name for member in self.domain]
