"""Conversions shared by every servicer: timestamps and enums between protobuf and domain."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

E = TypeVar("E", bound=Enum)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp message, or None so the field stays unset."""
    if value is None:
        return None
    message = Timestamp()
    message.FromDatetime(value.astimezone(UTC))
    return message


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

    def to_proto(self, value: E) -> int:
        return int(self.proto.Value(self.prefix + value.name))

    def to_domain(self, number: int) -> E | None:
        """The domain value, or None for UNSPECIFIED and numbers the proto does not define."""
        if number == 0 or number not in self.proto.values():
            return None
        return self.domain[str(self.proto.Name(number)).removeprefix(self.prefix)]

    def choices(self) -> list[str]:
        return [self.prefix + member.name for member in self.domain]
