"""The database connection: SQLite (embedded default) or PostgreSQL, both through SQLAlchemy async.

SQLite runs in WAL mode. Write transactions start with BEGIN IMMEDIATE so that two
writers queue on the database lock (busy_timeout) instead of failing when a reader
tries to upgrade its lock; read transactions stay deferred and never block writers.

Hot reads (Get and List RPCs) bypass the ORM session: `ReadConnections` runs
SQLAlchemy Core statements, compiled once per dialect, as single autocommit
statements (one statement is one snapshot on both backends, so no BEGIN/ROLLBACK).
On SQLite they run on the event loop's own thread through a plain sqlite3
connection: a WAL reader never waits for a writer, and a point read costs
microseconds, less than one hop to a driver thread. On PostgreSQL they go through a
small raw asyncpg pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_WRITE_OPTION = "clusterops_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_sqlite_url(path: str | Path) -> str:
    return f"sqlite+aiosqlite:///{Path(path).expanduser().resolve()}"


def normalize_url(url: str) -> URL:
    """Accept plain driver names (sqlite://, postgresql://) and pick the async driver."""
    parsed = make_url(url)
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


class Database:
    """Owns the engine; hands out sessions for reading or writing."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        # Reads see one snapshot (a work request and its logs agree with each other).
        self._read_engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="REPEATABLE READ")
        )
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.reads = ReadConnections(self.url)

    def session(self, *, write: bool) -> AsyncSession:
        return AsyncSession(
            self._write_engine if write else self._read_engine,
            expire_on_commit=False,
            autoflush=True,
        )

    async def dispose(self) -> None:
        await self.reads.close()
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @event.listens_for(engine.sync_engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: Any, _error: Any) -> None:
        # A statement interrupted by a cancelled task invalidates its connection without a
        # rollback, and SQLite keeps a closed connection alive while a statement of it is
        # still open: its write lock would outlive it and block every writer. Roll back
        # first (queued after the interrupted statement on the driver's thread).
        with contextlib.suppress(Exception):
            dbapi_connection.rollback()


# ---- reads without the ORM ----

Row = tuple[Any, ...]
# How many connections reads may hold on PostgreSQL (besides the ORM engine's pool):
# a read is one short statement, so a few connections keep two cores busy.
READ_POOL_SIZE = 4
# How the read connections name themselves in pg_stat_activity.
APPLICATION_NAME = "clusterops-reads"
_SQLITE_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class ReadStatement:
    """A Core select, built once and compiled once per dialect.

    Parameters are `bindparam`s named in the statement; `names` is their order in
    the compiled SQL (positional on both drivers). `build` gets the dialect's name
    (for the few functions that differ, such as JSON aggregation). Build statements at
    import time and keep them: compiling is what costs, executing the compiled text
    is cheap.
    """

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...]]] = {}

    def compiled(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._build(dialect.name).compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            names = tuple(compiled.positiontup or ())
            found = self._compiled[dialect.name] = (compiled.string, names)
        return found


@dataclass(frozen=True)
class Prepared:
    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]


class ReadConnections:
    """Single-statement autocommit reads, outside any unit of work.

    Each call is its own snapshot: a read that must agree with itself (a work request
    and its resources) is one statement. Values come back as the driver gives them;
    `stored_time` and `stored_json` turn them into Python ones on either backend.
    """

    def __init__(self, url: URL) -> None:
        self.url = url
        self.is_sqlite = url.get_backend_name() == "sqlite"
        self.dialect: Dialect = (
            sqlite_dialect.dialect(paramstyle="qmark")
            if self.is_sqlite
            else asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
        )
        self._path = url.database or ""
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._busy_executor: ThreadPoolExecutor | None = None
        self._pool = _ReadPool(url, READ_POOL_SIZE) if not self.is_sqlite else None

    async def fetch_all(self, statement: ReadStatement, params: dict[str, Any]) -> list[Row]:
        sql, names = statement.compiled(self.dialect)
        args = [params[name] for name in names]
        if self.is_sqlite:
            return await self._sqlite(sql, args)
        assert self._pool is not None
        return await self._pool.fetch(sql, args)

    def prepare(self, stmt: ClauseElement) -> Prepared:
        """Compile a statement built for one shape of query (a List's plan depends on
        its filter), with its IN lists rendered and its bound values kept as defaults;
        callers keep the result for the next call of the same shape."""
        compiled = stmt.compile(dialect=self.dialect, compile_kwargs={"render_postcompile": True})
        assert isinstance(compiled, SQLCompiler)
        names = tuple(compiled.positiontup or ())
        return Prepared(compiled.string, names, dict(compiled.construct_params()))

    async def fetch_prepared(self, prepared: Prepared, values: dict[str, Any]) -> list[Row]:
        """Run `prepared` with `values` over its defaults; datetimes are bound as their
        columns store them."""
        merged = {**prepared.defaults, **values} if values else prepared.defaults
        args = [
            self.time_param(v) if isinstance(v, datetime) else v
            for v in (merged[name] for name in prepared.names)
        ]
        if self.is_sqlite:
            return await self._sqlite(prepared.sql, args)
        assert self._pool is not None
        return await self._pool.fetch(prepared.sql, args)

    async def fetch_one(self, statement: ReadStatement, params: dict[str, Any]) -> Row | None:
        rows = await self.fetch_all(statement, params)
        return rows[0] if rows else None

    # SQLite

    def _connect(self, *, busy_timeout_ms: int) -> sqlite3.Connection:
        if not self._path or self._path == ":memory:":
            raise RuntimeError("fast reads need a SQLite file, not an in-memory database")
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # Reads only: a bug here must not be able to write outside a unit of work.
        connection.execute("PRAGMA query_only=ON")
        with self._opened_lock:
            self._opened.append(connection)
        return connection

    async def _sqlite(self, sql: str, args: Sequence[Any]) -> list[Row]:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Never wait on the event loop's thread: busy answers at once and the read
            # retries on a worker thread, where waiting blocks no one.
            connection = self._local.connection = self._connect(busy_timeout_ms=0)
        try:
            return connection.execute(sql, args).fetchall()
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", None) not in _SQLITE_BUSY:
                raise
        if self._busy_executor is None:
            self._busy_executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-busy-read")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._busy_executor, self._sqlite_waiting, sql, args)

    def _sqlite_waiting(self, sql: str, args: Sequence[Any]) -> list[Row]:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect(
                busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS
            )
        return connection.execute(sql, args).fetchall()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._busy_executor is not None:
            self._busy_executor.shutdown(wait=True)
            self._busy_executor = None
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()
        self._local = threading.local()

    # values

    def time_param(self, value: datetime) -> Any:
        """A datetime as the column stores it (SQLite: naive UTC text, as SQLAlchemy writes it)."""
        value = value.astimezone(UTC)
        if self.is_sqlite:
            return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        return value


class _ReadPool:
    """At most `size` asyncpg connections for single read statements.

    Lighter than asyncpg's Pool, whose acquire and release (timeouts, a reset query
    per release) cost more than a point read: these connections hold no session
    state, so handing one over is a list operation. A connection whose statement
    failed for any reason but the statement's own error is closed, not reused.
    """

    def __init__(self, url: URL, size: int) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._opened = 0
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        self._closed = False

    async def fetch(self, sql: str, args: Sequence[Any]) -> list[Row]:
        # A connection the server closed (restart, idle timeout, terminated backend)
        # fails its next statement: a read is safe to run again on another one. Every
        # idle connection may have been lost at once, hence one attempt more than them.
        for attempt in range(self._size + 1):
            connection = await self._acquire()
            try:
                rows = await connection.fetch(sql, *args)
            except Exception as error:
                # A server error about the statement leaves the connection usable; a
                # closed one, or a client error (asyncpg's protocol state after the
                # server hung up on an idle connection), does not.
                broken = connection.is_closed() or not isinstance(error, asyncpg.PostgresError)
                broken = broken or isinstance(error, asyncpg.PostgresConnectionError)
                self._release(connection, healthy=not broken)
                if broken and attempt < self._size:
                    continue
                raise
            except BaseException:
                # Cancelled mid-statement: the protocol's state is unknown; start afresh.
                self._release(connection, healthy=False)
                raise
            self._release(connection, healthy=True)
            return [tuple(r) for r in rows]
        raise AssertionError("unreachable")

    async def _acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise RuntimeError("the database was disposed")
        if self._idle:
            return self._idle.pop()
        if self._opened < self._size:
            self._opened += 1
            try:
                return await asyncpg.connect(
                    self._dsn, server_settings={"application_name": APPLICATION_NAME}
                )
            except BaseException:
                self._opened -= 1
                self._wake_one(None)
                raise
        waiter: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        try:
            connection = await waiter
        except asyncio.CancelledError:
            handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
            if handed is not None:
                self._release(handed, healthy=True)  # handed over as this caller left
            elif waiter.done() and not waiter.cancelled():
                self._wake_one(None)  # pass the free slot on
            raise
        # None: a slot came free (a connection was dropped); take it.
        return connection if connection is not None else await self._acquire()

    def _release(self, connection: asyncpg.Connection, *, healthy: bool) -> None:
        if not healthy or self._closed:
            self._opened -= 1
            connection.terminate()
            self._wake_one(None)
            return
        if not self._wake_one(connection):
            self._idle.append(connection)

    def _wake_one(self, connection: asyncpg.Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._opened -= 1
            await connection.close()
        while self._wake_one(None):
            pass


def stored_time(value: Any) -> datetime:
    """A stored timestamp as an aware UTC datetime, from either driver."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def stored_time_or_none(value: Any) -> datetime | None:
    return None if value is None else stored_time(value)


def stored_json(value: Any) -> Any:
    """A JSON column's value (both drivers hand back its text when read raw)."""
    return json.loads(value) if isinstance(value, str | bytes) else value
