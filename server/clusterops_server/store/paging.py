"""Keyset pagination over SQLAlchemy selects, shared by every repository's list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from clusterops_server.domain.listing import (
    Cursor,
    KeyValue,
    Page,
    PageRequest,
    decode_page_token,
    encode_page_token,
)
from clusterops_server.store.tables import UTCDateTime

T = TypeVar("T")
R = TypeVar("R")


def _to_key(value: Any) -> KeyValue:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot page on {type(value).__name__}")


def _from_key(column: InstrumentedAttribute[Any], value: KeyValue) -> Any:
    if isinstance(value, str) and isinstance(column.type, UTCDateTime):
        return datetime.fromisoformat(value)
    return value


@dataclass(frozen=True)
class Keyset:
    """The columns a list is ordered by; the last must be unique (the id)."""

    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool = False

    def order(self) -> list[ColumnElement[Any]]:
        return [c.desc() if self.descending else c.asc() for c in self.columns]

    def after(self, cursor: Cursor) -> ColumnElement[bool]:
        values = [_from_key(c, v) for c, v in zip(self.columns, cursor.key, strict=True)]
        left = tuple_(*self.columns)
        # Bind with each column's type, so datetimes are stored-format on every backend.
        right = tuple_(*(literal(v, c.type) for c, v in zip(self.columns, values, strict=True)))
        return left < right if self.descending else left > right


async def paginate(
    session: AsyncSession,
    stmt: Select[R],
    keyset: Keyset,
    page: PageRequest,
    query_fingerprint: str,
    convert: Callable[[R], T],
    *,
    key_of: Callable[[R], Sequence[Any]],
    with_total: bool = False,
) -> Page[T]:
    """Run `stmt` for one page: items after the token's cursor, in keyset order."""
    cursor = decode_page_token(page.token, query_fingerprint, len(keyset.columns))
    total: int | None = None
    if with_total:
        total = await session.scalar(
            select(func.count()).select_from(stmt.order_by(None).subquery())
        )
    if cursor is not None:
        stmt = stmt.where(keyset.after(cursor))
    rows = list((await session.scalars(stmt.order_by(*keyset.order()).limit(page.size + 1))).all())
    more = len(rows) > page.size
    rows = rows[: page.size]
    token = ""
    if more and rows:
        last = Cursor(tuple(_to_key(v) for v in key_of(rows[-1])))
        token = encode_page_token(last, query_fingerprint)
    return Page([convert(r) for r in rows], token, total)
