"""Engine throughput with zero-time steps: how many operations, and committed work request
changes, one server drives per second on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.engine_throughput [--operations 100] [--nodes 3] [--store ...]

Every operation creates a node pool on its own cluster, so none waits for another's
resource lock; the simulated provider takes no time, so what is measured is the engine,
the durable steps and the store. Each store is measured in a fresh process on a fresh
database. Absolute numbers depend on the machine; compare the stores within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

from clusterops_server.app import App, ServerConfig
from clusterops_server.domain.inventory import Cluster, ClusterState
from clusterops_server.ids import IdKind, new_id
from clusterops_server.services.inventory import CreateNodePoolCommand
from sqlalchemy import event, text

from bench.results import Row, failed
from bench.stores import STORES, temporary_database
from bench.watch_fanout import in_fresh_process

FAMILY = "engine_throughput"
OPERATIONS_FIGURE = "node pool of 3, zero-time steps: operations/s"
STATEMENTS_FIGURE = "node pool of 3, zero-time steps: SQL statements per operation"


async def measure(database_url: str, operations: int, nodes: int) -> dict[str, float]:
    app = App(ServerConfig(database_url=database_url, port=0))
    await app.start()
    try:
        now = app.clock.now()
        clusters = [
            Cluster(
                new_id(IdKind.CLUSTER),
                "bench",
                f"bench-{i}",
                "v1.29.8",
                "r",
                "p",
                "",
                "",
                f"s-{i}",
                ClusterState.ACTIVE,
                now,
                now,
            )
            for i in range(operations)
        ]
        async with app.store.write() as uow:
            for cluster in clusters:
                await uow.inventory.add_cluster(cluster)
            await uow.commit()
        async with app.store.read() as uow:
            first = (await uow.events.revision_range()).head

        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(app.database.engine.sync_engine, "before_cursor_execute", count)
        began = time.perf_counter()
        await asyncio.gather(
            *(
                app.inventory.create_node_pool(
                    CreateNodePoolCommand(cluster_id=c.id, name="w", node_count=nodes)
                )
                for c in clusters
            )
        )
        await app.engine.wait_idle()
        elapsed = time.perf_counter() - began
        event.remove(app.database.engine.sync_engine, "before_cursor_execute", count)

        async with app.store.read() as uow:
            last = (await uow.events.revision_range()).head
            succeeded = await uow.session.scalar(
                text("SELECT count(*) FROM work_requests WHERE status = 'SUCCEEDED'")
            )
        if succeeded != operations:
            raise RuntimeError(f"only {succeeded} of {operations} operations succeeded")
    finally:
        await app.stop(0)
    return {
        "operations_per_s": operations / elapsed,
        "changes_per_s": (last - first) / elapsed,
        "statements_per_operation": statements / operations,
        "seconds": elapsed,
    }


def _measure(database_url: str, operations: int, nodes: int) -> dict[str, float]:
    return asyncio.run(measure(database_url, operations, nodes))


def rows(quick: bool, stores: Sequence[str]) -> Iterator[Row]:
    """The table's figures: operations/s (target >= 100) and SQL statements per operation
    (target <= 30), on each store, each in a fresh process on a fresh database."""
    operations = 5 if quick else 100
    for store in stores:
        try:
            with temporary_database(store) as url:
                result = in_fresh_process(_measure, url, operations, 3)
        except Exception as error:
            yield failed(FAMILY, OPERATIONS_FIGURE, "ops/s", error, store=store)
            yield failed(FAMILY, STATEMENTS_FIGURE, "statements", error, store=store)
            continue
        details = {"operations": operations} | {k: round(v, 3) for k, v in result.items()}
        yield Row(
            FAMILY,
            OPERATIONS_FIGURE,
            result["operations_per_s"],
            "ops/s",
            store=store,
            target=">= 100",
            met=result["operations_per_s"] >= 100,
            details=details,
        )
        yield Row(
            FAMILY,
            STATEMENTS_FIGURE,
            result["statements_per_operation"],
            "statements",
            store=store,
            target="<= 30",
            met=result["statements_per_operation"] <= 30,
            details=details,
        )


def main(operations: int, nodes: int, stores: list[str]) -> None:
    results: dict[str, dict[str, float]] = {}
    for store in stores:
        with temporary_database(store) as url:
            results[store] = in_fresh_process(_measure, url, operations, nodes)
    print(f"operations: {operations} node pools of {nodes} nodes, zero-time steps")
    print(f"{'':28}" + "".join(f"{store:>12}" for store in stores))
    for key, label in (
        ("operations_per_s", "operations per second"),
        ("changes_per_s", "changes per second"),
        ("statements_per_operation", "statements per operation"),
        ("seconds", "total seconds"),
    ):
        print(f"{label:28}" + "".join(f"{results[store][key]:12.1f}" for store in stores))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--operations", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--store", choices=STORES, action="append", dest="stores")
    arguments = parser.parse_args()
    main(arguments.operations, arguments.nodes, arguments.stores or list(STORES))
