"""Throwaway databases for benchmarks: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterops_server.store.database import default_sqlite_url

from tests import postgres

STORES = ("sqlite", "postgresql")


@contextmanager
def temporary_database(store: str) -> Iterator[str]:
    """The URL of an empty database that is removed afterwards (PostgreSQL: see tests/postgres.py
    for the server and CLUSTEROPS_TEST_POSTGRES_URL)."""
    if store == "postgresql":
        url = asyncio.run(postgres.create_database(migrated=False))
        try:
            yield url
        finally:
            asyncio.run(postgres.drop_database(url))
    else:
        with tempfile.TemporaryDirectory() as directory:
            yield default_sqlite_url(Path(directory) / "bench.db")
