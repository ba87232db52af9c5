"""Throwaway PostgreSQL databases for tests: one fresh database per test, dropped afterwards.

The server is the one `make test` starts (scripts/ensure-postgres). When it cannot be
reached the tests fail and say why; they are never skipped, so a green run always means
PostgreSQL was exercised. Databases are copied from a template migrated once per test
run (CREATE DATABASE ... TEMPLATE), which is quicker than migrating each one; a test of
the migrations themselves asks for an empty database.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import asyncpg
from clusterops_server.providers.simulated_store import SimulatorStore
from clusterops_server.store.database import Database
from clusterops_server.store.migrate import upgrade_to_head
from sqlalchemy.engine import make_url

# The maintenance database on a server where this user may CREATE DATABASE.
ADMIN_URL = os.environ.get(
    "CLUSTEROPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PREFIX = "clusterops_test_"
# clusterops_test_<pid>_<suffix>: the pid tells whose database it is.
_OURS = re.compile(rf"^{PREFIX}(\d+)_\w+$")

_template: str | None = None


class PostgresUnavailable(RuntimeError):
    pass


def _url_of(name: str) -> str:
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def _admin() -> asyncpg.Connection:
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        raise PostgresUnavailable(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({error}); start it with "
            "scripts/ensure-postgres, or point CLUSTEROPS_TEST_POSTGRES_URL at a server "
            "where this user may create databases"
        ) from error


async def _create(name: str, template: str | None = None) -> None:
    admin = await _admin()
    try:
        if template is None:
            await admin.execute(f'CREATE DATABASE "{name}"')
        else:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()


async def _drop(name: str) -> None:
    assert _OURS.match(name), name
    admin = await _admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _new_name(kind: str = "") -> str:
    return f"{PREFIX}{os.getpid()}_{kind}{uuid.uuid4().hex[:12]}"


async def _drop_orphans() -> None:
    """Drop databases left by test runs that were killed (their process is gone)."""
    admin = await _admin()
    try:
        names = [r["datname"] for r in await admin.fetch("SELECT datname FROM pg_database")]
    finally:
        await admin.close()
    for name in names:
        found = _OURS.match(name)
        if found and not _alive(int(found.group(1))):
            await _drop(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _migrated_template() -> str:
    global _template
    if _template is None:
        await _drop_orphans()
        name = _new_name("template_")
        await _create(name)
        database = Database(_url_of(name))
        try:
            # As App.start does with the simulated provider: its tables first.
            await SimulatorStore(database).migrate()
            await upgrade_to_head(database)
        finally:
            await database.dispose()
        _template = name
    return _template


async def create_database(*, migrated: bool = True) -> str:
    """A new database with a unique name (migrated to head unless asked otherwise)."""
    name = _new_name()
    await _create(name, await _migrated_template() if migrated else None)
    return _url_of(name)


async def drop_database(url: str) -> None:
    """Drop a database made here, disconnecting whoever is still on it."""
    name = make_url(url).database
    assert name is not None
    await _drop(name)


_dropper: ThreadPoolExecutor | None = None
_dropping: list[Future[None]] = []


def drop_database_soon(url: str) -> None:
    """Drop a database made here on a thread of this process's own, while the next tests
    run: DROP DATABASE waits for the server to flush, up to seconds on a busy machine.
    `drop_template` waits for every such drop at the end of the run."""
    global _dropper
    if _dropper is None:
        _dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-database")
    _dropping.append(_dropper.submit(asyncio.run, drop_database(url)))


async def drop_template() -> None:
    """At the end of a test run: finish the drops still under way, then drop the template,
    if this run made one."""
    global _template
    pending = [asyncio.wrap_future(future) for future in _dropping]
    _dropping.clear()
    await asyncio.gather(*pending)
    if _template is not None:
        name, _template = _template, None
        await _drop(name)


async def terminate_backend(pid: int) -> None:
    """Cut one server connection, as a network failure or an administrator would."""
    admin = await _admin()
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def end_sessions(url: str) -> None:
    """End every session on the database at `url`, as the death of the process that held
    them would: their open transactions abort and their locks go."""
    admin = await _admin()
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            make_url(url).database,
        )
    finally:
        await admin.close()
