"""Pagination and ordering shared by every List call.

Page tokens are opaque to callers: base64url JSON holding the sort key of the last
item returned (keyset pagination, so concurrent inserts never shift a page) and a
fingerprint of the query, so a token cannot be replayed against a different filter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from clusterops_server.domain.errors import InvalidArgument

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


def encode_page_token(cursor: Cursor, query_fingerprint: str) -> str:
    raw = json.dumps({"k": list(cursor.key), "q": query_fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, query_fingerprint: str, key_length: int) -> Cursor | None:
    """The cursor a token carries; None for the first page."""
    if not token:
        return None
    bad = InvalidArgument.one(
        "page_token", "is not a page token from this list; start again without one"
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or not isinstance(data.get("k"), list):
        raise bad
    if data.get("q") != query_fingerprint:
        raise InvalidArgument.one(
            "page_token", "was issued for a different filter or order; start again without one"
        )
    key = data["k"]
    if len(key) != key_length or not all(
        v is None or isinstance(v, str | int | float) for v in key
    ):
        raise bad
    return Cursor(tuple(key))


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
        choices = ", ".join(f'"{f}", "{f} desc"' for f in allowed)
        raise InvalidArgument.one("order_by", f"use one of {choices}")
    return OrderBy(words[0], len(words) == 2 and words[1].lower() == "desc")
