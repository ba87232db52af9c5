"""Fixtures of the unit layer: services over a real store, no server, no running engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from clusterops_server.clock import FakeClock

from tests.conftest import Databases
from tests.unit.harness import Services


@pytest.fixture
async def services(databases: Databases, clock: FakeClock) -> AsyncIterator[Services]:
    built = Services(await databases.url(), clock)
    yield built
    await built.close()
