"""Keyset pagination over SQLAlchemy selects, shared by every repository's list, and the
keys that sign its page tokens.

Every replica signs with the newest key in `page_token_keys` and accepts the key before
it for PREVIOUS_KEY_ACCEPTED after the newest was made, so a rotation (by whichever
replica's maintenance finds the newest key older than KEY_LIFETIME) breaks no token a
caller received in the last hour. A token is verified, and its cursor checked against
the sort key's column types, before the list's query runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Numeric,
    Select,
    String,
    delete,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from clusterops_server.auth.caller import current_caller
from clusterops_server.clock import Clock
from clusterops_server.domain.listing import (
    Cursor,
    KeyKind,
    KeySpec,
    KeyValue,
    Page,
    PageRequest,
    SignedToken,
    SigningKey,
    encode_page_token,
    not_a_page_token,
    parse_key_time,
)
from clusterops_server.store.database import Database
from clusterops_server.store.tables import PageTokenKeyRow, UTCDateTime

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

KEY_LIFETIME = timedelta(days=1)
# Longer than the hour promised, by the time a replica may keep signing with a key it
# has cached after another replica rotated.
PREVIOUS_KEY_ACCEPTED = timedelta(hours=1, minutes=5)
_CACHE_SECONDS = 60.0
# A token naming a generation this replica has not seen makes it re-read the keys, at
# most this often (a forged generation must not cost a query per call).
_UNKNOWN_REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class _StoredKey:
    key: SigningKey
    created_at: datetime


class PageTokenKeys:
    """The signing keys, read from the store and cached; shared by every unit of work."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock
        self._keys: list[_StoredKey] = []  # oldest first
        self._loaded_at = float("-inf")
        self._unknown_refresh_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _load(self) -> None:
        asked = time.monotonic()
        async with self._lock:
            if self._loaded_at >= asked:
                return  # another caller read them while this one waited
            async with self.database.session(write=False) as session:
                rows = (
                    await session.scalars(
                        select(PageTokenKeyRow).order_by(PageTokenKeyRow.generation)
                    )
                ).all()
            self._keys = [
                _StoredKey(SigningKey(r.generation, bytes(r.secret)), r.created_at) for r in rows
            ]
            self._loaded_at = time.monotonic()

    async def _fresh(self) -> list[_StoredKey]:
        if not self._keys or time.monotonic() - self._loaded_at > _CACHE_SECONDS:
            await self._load()
        if not self._keys:
            await self.rotate()
        return self._keys

    async def signing_key(self) -> SigningKey:
        return (await self._fresh())[-1].key

    async def verifying_key(self, generation: int) -> SigningKey | None:
        """The key of `generation` if tokens signed with it are still accepted."""
        keys = await self._fresh()
        if generation > keys[-1].key.generation:
            now = time.monotonic()
            if now - self._unknown_refresh_at >= _UNKNOWN_REFRESH_SECONDS:
                self._unknown_refresh_at = now
                await self._load()
                keys = self._keys
        for stored, successor in zip(keys, [*keys[1:], None], strict=True):
            if stored.key.generation != generation:
                continue
            if successor is None or successor.created_at > self.clock.now() - PREVIOUS_KEY_ACCEPTED:
                return stored.key
        return None

    async def rotate(self, *, force: bool = False) -> bool:
        """Make a new key if the newest is older than KEY_LIFETIME (or none exists), and
        drop keys no token may use any more. Returns whether a key was made."""
        now = self.clock.now()
        made = False
        async with self.database.session(write=True) as session:
            rows = list(
                (
                    await session.scalars(
                        select(PageTokenKeyRow).order_by(PageTokenKeyRow.generation)
                    )
                ).all()
            )
            newest = rows[-1] if rows else None
            if force or newest is None or newest.created_at <= now - KEY_LIFETIME:
                generation = newest.generation + 1 if newest else 1
                session.add(
                    PageTokenKeyRow(
                        generation=generation, secret=secrets.token_bytes(32), created_at=now
                    )
                )
                made = True
                rows.append(PageTokenKeyRow(generation=generation, created_at=now))
            # Keep the newest and every key whose successor is recent enough.
            expired = [
                old.generation
                for old, new in itertools.pairwise(rows)
                if new.created_at <= now - PREVIOUS_KEY_ACCEPTED
            ]
            if expired:
                await session.execute(
                    delete(PageTokenKeyRow).where(PageTokenKeyRow.generation <= max(expired))
                )
            try:
                await session.commit()
            except IntegrityError:  # another replica made the same generation first
                await session.rollback()
                made = False
        if made:
            log.info("made a new page token key")
        await self._load()
        return made

    async def issue(self, cursor: Cursor, query_fingerprint: str) -> str:
        return encode_page_token(
            cursor, query_fingerprint, await self.signing_key(), current_caller().name
        )

    async def open(
        self, token: str, query_fingerprint: str, keys: Sequence[KeySpec]
    ) -> Cursor | None:
        """The cursor of a token this server issued to this caller for this query; None
        for the first page. INVALID_ARGUMENT on `page_token` for anything else."""
        if not token:
            return None
        signed = SignedToken.parse(token)
        key = await self.verifying_key(signed.generation)
        if key is None or not signed.verify(key, current_caller().name):
            raise not_a_page_token()
        return signed.cursor(query_fingerprint, keys)


def _to_key(value: Any) -> KeyValue:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"cannot page on {type(value).__name__}")


def _from_key(column: InstrumentedAttribute[Any], value: KeyValue) -> Any:
    if isinstance(value, str) and isinstance(column.type, UTCDateTime):
        return parse_key_time(value)
    return value


def _spec(column: InstrumentedAttribute[Any]) -> KeySpec:
    kind_of = column.type
    nullable = bool(getattr(column, "nullable", False))
    if isinstance(kind_of, UTCDateTime):
        return KeySpec(KeyKind.TIME, nullable=nullable)
    if isinstance(kind_of, Integer):
        return KeySpec(KeyKind.INTEGER, nullable=nullable)
    if isinstance(kind_of, Float | Numeric):
        return KeySpec(KeyKind.NUMBER, nullable=nullable)
    if isinstance(kind_of, String):
        return KeySpec(KeyKind.TEXT, kind_of.length, nullable=nullable)
    raise TypeError(f"cannot page on a column of type {kind_of}")


@dataclass(frozen=True)
class Keyset:
    """The columns a list is ordered by; the last must be unique (the id)."""

    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool = False

    @property
    def specs(self) -> tuple[KeySpec, ...]:
        return tuple(_spec(c) for c in self.columns)

    def order(self) -> list[ColumnElement[Any]]:
        return [c.desc() if self.descending else c.asc() for c in self.columns]

    def after(self, cursor: Cursor) -> ColumnElement[bool]:
        values = [_from_key(c, v) for c, v in zip(self.columns, cursor.key, strict=True)]
        left = tuple_(*self.columns)
        # Bind with each column's type, so datetimes are stored-format on every backend.
        right = tuple_(*(literal(v, c.type) for c, v in zip(self.columns, values, strict=True)))
        return left < right if self.descending else left > right


def page_token_keys(session: AsyncSession) -> PageTokenKeys:
    keys = session.info.get("page_token_keys")
    if not isinstance(keys, PageTokenKeys):
        raise RuntimeError("the session was not opened by a unit of work of a Store")
    return keys


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
    tokens = page_token_keys(session)
    cursor = await tokens.open(page.token, query_fingerprint, keyset.specs)
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
        token = await tokens.issue(last, query_fingerprint)
    return Page([convert(r) for r in rows], token, total)
