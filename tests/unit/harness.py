"""The service layer without gRPC and without a running engine.

`Services` builds the same services the composition root does (clusterops_server.app) over
a real store, a migrated SQLite file copied from a template (or a PostgreSQL database
under `both_backends`), and the fake clock. `IdleEngine` stands in for the engine: it
hears every commit that adds work (the store tells its work listeners) and never runs
anything, so a test sees exactly what a service decided and committed. A test here takes
milliseconds; the end-to-end tests keep proving the wire.
"""

from __future__ import annotations

from clusterops_server.clock import Clock, FakeClock
from clusterops_server.domain.plans import PlanCatalogue
from clusterops_server.domain.versions import VersionCatalogue
from clusterops_server.engine.engine import Engine
from clusterops_server.services.inventory import InventoryService
from clusterops_server.services.upgrade_workflows import UpgradeWorkflowService
from clusterops_server.store.database import Database
from clusterops_server.store.uow import Store


class IdleEngine(Engine):
    """An engine that is never started: work requests stay ACCEPTED. Counts its wake-ups."""

    def __init__(self, store: Store, clock: Clock) -> None:
        super().__init__(store, clock, handlers={})
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class Services:
    def __init__(self, database_url: str, clock: FakeClock) -> None:
        self.clock = clock
        self.database = Database(database_url)
        self.store = Store(self.database, clock)
        self.engine = IdleEngine(self.store, clock)
        self.versions = VersionCatalogue.load()
        self.plans = PlanCatalogue.load()
        self.inventory = InventoryService(self.store, clock, self.versions, self.plans)
        self.upgrade_workflows = UpgradeWorkflowService(self.store, clock, self.versions)

    async def close(self) -> None:
        await self.database.dispose()
