"""The database connection: SQLite (embedded default) or PostgreSQL, both through SQLAlchemy async.

SQLite runs in WAL mode. Write transactions start with BEGIN IMMEDIATE so that two
writers queue on the database lock (busy_timeout) instead of failing when a reader
tries to upgrade its lock; read transactions stay deferred and never block writers.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

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

    def session(self, *, write: bool) -> AsyncSession:
        return AsyncSession(
            self._write_engine if write else self._read_engine,
            expire_on_commit=False,
            autoflush=True,
        )

    async def dispose(self) -> None:
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
