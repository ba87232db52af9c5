"""The failure reason inline: a work request carries the newest entry of its error list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.store.database import Database
from clusterops_server.store.migrate import alembic_config
from sqlalchemy import Connection, text

from tests.conftest import Databases, Stubs, seed_cluster, simulator
from tests.helpers import watch_to_end

pytestmark = pytest.mark.both_backends


async def test_a_failed_work_request_carries_its_newest_error_in_get_list_and_watch(
    app: App, stubs: Stubs
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("provision_node", cluster.id, times=1, message="no capacity")
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=2)
    )
    wr_id = created.work_request.id
    assert not created.work_request.HasField("last_error")

    events = await watch_to_end(stubs, wr_id)
    errors = (
        await stubs.work_requests.ListWorkRequestErrors(
            wr_pb.ListWorkRequestErrorsRequest(work_request_id=wr_id)
        )
    ).errors
    assert [e.code for e in errors] == ["NodeRegistrationFailed", "NodePoolCreationFailed"]
    newest = errors[-1]

    final = events[-1].work_request
    assert final.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    assert final.last_error == newest
    # The node's failure is the last error while the pool is still running.
    first_failure = next(e for e in events if e.errors)
    assert first_failure.work_request.last_error == errors[0]

    got = (
        await stubs.work_requests.GetWorkRequest(wr_pb.GetWorkRequestRequest(work_request_id=wr_id))
    ).work_request
    assert got.last_error == newest
    listed = (
        await stubs.work_requests.ListWorkRequests(
            wr_pb.ListWorkRequestsRequest(resource_id=created.node_pool.id)
        )
    ).work_requests
    assert [w.last_error for w in listed] == [newest]
    # A fresh watch's snapshot has it too.
    snapshot = (await watch_to_end(stubs, wr_id))[0]
    assert snapshot.work_request.last_error == newest


async def test_the_migration_backfills_the_newest_error_of_existing_work_requests(
    databases: Databases,
) -> None:
    url = await databases.url("old.db", migrated=False)
    database = Database(url)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def migrate(connection: Connection, target: str) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, target)

    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(migrate, "0004")
            for wr_id in ("wr-a", "wr-b"):
                await connection.execute(
                    text(
                        "INSERT INTO work_requests (id, compartment_id, operation_type, status, "
                        "percent_complete, accepted_at, revision, params, run_after, attempts) "
                        "VALUES (:id, 'dev', 'CLUSTER_CREATE', 'FAILED', 0, :at, 1, '{}', :at, 0)"
                    ),
                    {"id": wr_id, "at": at.replace(tzinfo=None)},
                )
            for code in ("First", "Second"):
                await connection.execute(
                    text(
                        "INSERT INTO work_request_errors (work_request_id, code, message, "
                        "logged_at) VALUES ('wr-a', :code, :message, :at)"
                    ),
                    {"code": code, "message": f"{code} went wrong", "at": at.replace(tzinfo=None)},
                )
            await connection.run_sync(migrate, "head")
        async with database.engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT id, last_error_code, last_error_message FROM work_requests "
                        "ORDER BY id"
                    )
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ("wr-a", "Second", "Second went wrong"),
            ("wr-b", None, None),
        ]
    finally:
        await database.dispose()
