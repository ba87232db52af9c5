"""Pagination and ordering shared by every List call.

Page tokens are opaque to callers: base64url JSON holding the sort key of the last
item returned (keyset pagination, so concurrent inserts never shift a page) and a
fingerprint of the query, signed with HMAC under a server key together with the
caller's name, so a token can be neither forged nor replayed against a different filter
or by a different caller. A verified cursor is still checked against the sort key's
type before it reaches a query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Generic, TypeVar

from clusterops_server.domain.errors import InvalidArgument, one_of

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")
KeyValue = str | int | float | None


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool


@dataclass(frozen=True)
class PageRequest:
    size: int = DEFAULT_PAGE_SIZE
    token: str = ""

    @classmethod
    def of(
        cls,
        size: int,
        token: str,
        *,
        default: int = DEFAULT_PAGE_SIZE,
        maximum: int = MAX_PAGE_SIZE,
    ) -> PageRequest:
        """Validate a page size: negative is an error, 0 the default, above the cap capped."""
        if size < 0:
            raise InvalidArgument.one("page_size", "must not be negative")
        if size == 0:
            size = default
        return cls(min(size, maximum), token)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""
    total_count: int | None = None


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended."""

    key: tuple[KeyValue, ...] = field(default_factory=tuple)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class KeyKind(Enum):
    """What a sort key column holds, so a cursor value is checked before it reaches SQL."""

    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    TIME = "time"


@dataclass(frozen=True)
class KeySpec:
    kind: KeyKind
    max_length: int | None = None
    nullable: bool = False


@dataclass(frozen=True)
class SigningKey:
    """A secret page tokens are signed with; `generation` names it inside the token."""

    generation: int
    secret: bytes


MAX_PAGE_TOKEN_LENGTH = 2048
_TOKEN = re.compile(
    r"(?P<generation>[0-9]{1,9})\.(?P<payload>[A-Za-z0-9_-]+)\.(?P<mac>[A-Za-z0-9_-]{43})"
)
_INT64 = 2**63
NOT_A_PAGE_TOKEN = "is not a page token from this list; start again without one"


def not_a_page_token() -> InvalidArgument:
    return InvalidArgument.one("page_token", NOT_A_PAGE_TOKEN)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: SigningKey, payload: str, scope: str) -> bytes:
    message = f"{key.generation}.{payload}.{scope}".encode()
    return hmac.new(key.secret, message, hashlib.sha256).digest()


def encode_page_token(cursor: Cursor, query_fingerprint: str, key: SigningKey, scope: str) -> str:
    """`generation.payload.mac`: the mac binds the cursor, the query and the caller (`scope`)."""
    raw = json.dumps({"k": list(cursor.key), "q": query_fingerprint}, separators=(",", ":"))
    return sign_page_token(raw.encode(), key, scope)


def sign_page_token(raw: bytes, key: SigningKey, scope: str) -> str:
    """A token carrying `raw` as its payload, signed for `scope`."""
    payload = _b64(raw)
    return f"{key.generation}.{payload}.{_b64(_mac(key, payload, scope))}"


@dataclass(frozen=True)
class SignedToken:
    """A page token split into its parts, not yet verified."""

    generation: int
    payload: str
    mac: bytes

    @classmethod
    def parse(cls, token: str) -> SignedToken:
        match = _TOKEN.fullmatch(token) if len(token) <= MAX_PAGE_TOKEN_LENGTH else None
        if match is None:
            raise not_a_page_token()
        try:
            mac = _unb64(match["mac"])
        except (binascii.Error, ValueError):
            raise not_a_page_token() from None
        return cls(int(match["generation"]), match["payload"], mac)

    def verify(self, key: SigningKey, scope: str) -> bool:
        return hmac.compare_digest(self.mac, _mac(key, self.payload, scope))

    def cursor(self, query_fingerprint: str, keys: Sequence[KeySpec]) -> Cursor:
        """The verified token's cursor, each value checked against its sort key."""
        try:
            data = json.loads(_unb64(self.payload))
        except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
            raise not_a_page_token() from None
        if not isinstance(data, dict) or not isinstance(data.get("k"), list):
            raise not_a_page_token()
        if data.get("q") != query_fingerprint:
            raise InvalidArgument.one(
                "page_token", "was issued for a different filter or order; start again without one"
            )
        values = data["k"]
        if len(values) != len(keys) or not all(
            _fits(v, spec) for v, spec in zip(values, keys, strict=True)
        ):
            raise not_a_page_token()
        return Cursor(tuple(values))


def _fits(value: object, spec: KeySpec) -> bool:
    if value is None:
        return spec.nullable
    if spec.kind is KeyKind.INTEGER:
        return type(value) is int and -_INT64 <= value < _INT64
    if spec.kind is KeyKind.NUMBER:
        return type(value) in (int, float) and math.isfinite(float(value))  # type: ignore[arg-type]
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")  # a lone surrogate is no text any database stores
    except UnicodeEncodeError:
        return False
    if spec.kind is KeyKind.TEXT:
        return spec.max_length is None or len(value) <= spec.max_length
    return parse_key_time(value) is not None


def parse_key_time(value: str) -> datetime | None:
    """A cursor's time: ISO 8601 with a UTC offset (a naive time is ambiguous)."""
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return None
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_order_by(text: str, allowed: Sequence[str], default: OrderBy) -> OrderBy:
    """Parse "field" / "field asc" / "field desc" against the fields a list can sort by."""
    words = text.split()
    if not words:
        return default
    if (
        len(words) > 2
        or words[0] not in allowed
        or (len(words) == 2 and words[1].lower() not in {"asc", "desc"})
    ):
        choices = one_of([f'"{f}", "{f} desc"' for f in allowed])
        raise InvalidArgument.one("order_by", f"use one of {choices}")
    return OrderBy(words[0], len(words) == 2 and words[1].lower() == "desc")
