"""SDK against a real in-process server: every verb of client.work_requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from clusterops import (
    AsyncClient,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    WatchEvent,
    is_terminal,
)
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, seed_cluster, simulator
from tests.sdk_support import CallCounter, sdk_client

# Also on PostgreSQL: the same behaviour whatever the store.
pytestmark = pytest.mark.both_backends

STEP = 10


@pytest.fixture
async def client(app: App) -> AsyncIterator[AsyncClient]:
    async with sdk_client(app) as connected:
        yield connected


@pytest.fixture
async def paced(make_app: AppFactory) -> App:
    """Each node takes STEP seconds of fake time to provision."""
    return await make_app(simulation=SimulationSettings(seconds={"provision_node": STEP}))


async def start_pool(
    app: App, client: AsyncClient, nodes: int = 1, compartment: str = "dev"
) -> str:
    cluster = await seed_cluster(app, compartment=compartment)
    operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=nodes)
    return operation.id


async def test_get_returns_the_work_request_a_mutation_started(
    app: App, client: AsyncClient
) -> None:
    wr_id = await start_pool(app, client)
    work_request = await client.work_requests.get(wr_id)
    assert work_request.id == wr_id
    assert work_request.compartment_id == "dev"
    assert work_request.operation_type == wr_pb.WORK_REQUEST_OPERATION_TYPE_NODEPOOL_CREATE


async def test_get_of_an_unknown_id_raises_not_found_with_the_resource(client: AsyncClient) -> None:
    with pytest.raises(NotFound) as missing:
        await client.work_requests.get("wr-00000000000000000000")
    error = missing.value
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert error.reason == "RESOURCE_NOT_FOUND"
    assert error.resource_type == "work request"
    assert error.resource_name == "wr-00000000000000000000"
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)


async def test_get_of_a_malformed_id_raises_invalid_argument_naming_the_field(
    client: AsyncClient,
) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await client.work_requests.get("not-an-id")
    assert [v.field for v in bad.value.field_violations] == ["work_request_id"]
    assert "wr-" in bad.value.field_violations[0].description


async def test_list_follows_page_tokens_lazily_across_pages(app: App, clock: FakeClock) -> None:
    counter = CallCounter()
    async with sdk_client(app, interceptors=[counter]) as client:
        made = []
        for compartment in ["dev"] * 5 + ["prod"]:
            clock.advance(60)  # distinct acceptance times give a stable order
            made.append(await start_pool(app, client, compartment=compartment))
        made.pop()  # the prod one is filtered out below
        for wr_id in made:
            await client.work_requests.wait(wr_id, timeout=20)

        pager = client.work_requests.list(
            compartment_id="dev", order_by="time_accepted", page_size=2
        )
        assert counter.calls["ListWorkRequests"] == 0  # nothing is fetched until iterated
        items = aiter(pager)
        first = await anext(items)
        assert counter.calls["ListWorkRequests"] == 1
        rest = [wr async for wr in items]
        assert [first.id, *(wr.id for wr in rest)] == made
        assert counter.calls["ListWorkRequests"] == 3  # pages of 2, 2 and 1

        pages = [page async for page in pager.pages()]
        assert [len(page.items) for page in pages] == [2, 2, 1]
        assert pages[-1].next_page_token == ""
        # A page token resumes from where it was handed out.
        resumed = client.work_requests.list(
            compartment_id="dev",
            order_by="time_accepted",
            page_size=2,
            page_token=pages[0].next_page_token,
        )
        assert [wr.id async for wr in resumed] == made[2:]


async def test_list_filters_by_status_names_and_aip160(app: App, client: AsyncClient) -> None:
    ok = await start_pool(app, client)
    failing = await seed_cluster(app)
    await simulator(app).inject_fault("provision_node", failing.id, times=1)
    failed = (await client.clusters.create_node_pool(failing.id, name="w", node_count=1)).id
    for wr_id in (ok, failed):
        await client.work_requests.wait(wr_id, timeout=20)

    by_status = client.work_requests.list(statuses=["failed"])
    assert [wr.id async for wr in by_status] == [failed]
    by_filter = client.work_requests.list(filter="status = SUCCEEDED")
    assert [wr.id async for wr in by_filter] == [ok]
    by_resource = client.work_requests.list(resource_id=failing.id, resource_type="cluster")
    assert [wr.id async for wr in by_resource] == [failed]


async def test_list_with_an_unknown_status_name_fails_before_any_call(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="statuses: 'DONE' is not one of ACCEPTED, IN_PROGRESS"):
        client.work_requests.list(statuses=["DONE"])


async def test_list_with_a_bad_filter_raises_invalid_argument_on_iteration(
    client: AsyncClient,
) -> None:
    with pytest.raises(InvalidArgument) as bad:
        [wr async for wr in client.work_requests.list(filter="colour = red", page_size=-1)]
    assert {v.field for v in bad.value.field_violations} == {"filter", "page_size"}


async def test_list_logs_and_list_errors_page_through_everything_recorded(
    app: App, client: AsyncClient
) -> None:
    cluster = await seed_cluster(app)
    await simulator(app).inject_fault("provision_node", cluster.id, times=2, message="no capacity")
    operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=3)
    snapshot: list[WatchEvent] = []
    final = await operation.wait(timeout=20)
    assert final.status == wr_pb.WORK_REQUEST_STATUS_FAILED
    async for event in client.work_requests.watch(operation.id):
        snapshot.append(event)

    logs = [
        entry.message async for entry in client.work_requests.list_logs(operation.id, page_size=2)
    ]
    errors = [e async for e in client.work_requests.list_errors(operation.id, page_size=1)]
    assert logs == [entry.message for entry in snapshot[0].log_entries]
    assert len(logs) > 2
    assert [e.code for e in errors] == [e.code for e in snapshot[0].errors]
    assert sum(e.code == "NodeRegistrationFailed" for e in errors) == 2
    assert any("no capacity" in e.message for e in errors)


async def test_cancel_stops_a_running_work_request_and_a_second_cancel_is_refused(
    paced: App, clock: FakeClock
) -> None:
    async with sdk_client(paced) as client:
        wr_id = await start_pool(paced, client, nodes=2)
        await clock.wait_for_sleepers(2)  # both nodes are provisioning
        canceling = await client.work_requests.cancel(wr_id)
        assert canceling.status == wr_pb.WORK_REQUEST_STATUS_CANCELING
        clock.advance(STEP)
        final = await client.work_requests.wait(wr_id, timeout=20)
        assert final.status == wr_pb.WORK_REQUEST_STATUS_CANCELED

        with pytest.raises(FailedPrecondition) as refused:
            await client.work_requests.cancel(wr_id)
    violation = refused.value.precondition_violations[0]
    assert (violation.type, violation.subject) == ("WORK_REQUEST_STATE", wr_id)
    assert refused.value.metadata["status"] == "CANCELED"


async def test_watch_yields_a_snapshot_then_each_change_until_the_terminal_one(
    paced: App, clock: FakeClock
) -> None:
    async with sdk_client(paced) as client:
        wr_id = await start_pool(paced, client, nodes=2)
        events = client.work_requests.watch(wr_id, timeout=20)
        first = await anext(events)
        assert first.event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT
        await clock.wait_for_sleepers(2)
        clock.advance(STEP)
        rest = [event async for event in events]
    assert all(e.event_type == wr_pb.WATCH_EVENT_TYPE_CHANGE for e in rest)
    revisions = [first.revision, *(e.revision for e in rest)]
    assert revisions == sorted(set(revisions))
    assert [is_terminal(e.work_request) for e in rest] == [False] * (len(rest) - 1) + [True]
    assert rest[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED


async def test_watch_resumes_after_a_revision_with_only_the_later_events(
    app: App, client: AsyncClient
) -> None:
    wr_id = await start_pool(app, client, nodes=3)
    await client.work_requests.wait(wr_id, timeout=20)
    everything = [event async for event in client.work_requests.watch(wr_id)]
    # A fresh watch of a finished work request is one SNAPSHOT; resuming gives the history.
    assert len(everything) == 1
    history = [e async for e in client.work_requests.watch(wr_id, after_revision=1)]
    assert history[0].revision > 1
    assert history[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    later = [e async for e in client.work_requests.watch(wr_id, after_revision=history[1].revision)]
    assert [e.revision for e in later] == [e.revision for e in history[2:]]


async def test_wait_returns_the_whole_terminal_work_request_and_reports_each_event_once(
    paced: App, clock: FakeClock
) -> None:
    async with sdk_client(paced) as client:
        wr_id = await start_pool(paced, client, nodes=3)
        seen: list[WatchEvent] = []

        async def on_event(event: WatchEvent) -> None:  # coroutine callbacks are awaited
            seen.append(event)
            if len(seen) == 1:  # let the three nodes finish while the watch is open
                await clock.wait_for_sleepers(3)
                clock.advance(STEP)

        final = await client.work_requests.wait(wr_id, timeout=20, on_event=on_event)
    assert final.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert len(final.resources) == 5  # the cluster, the pool and 3 nodes: the whole record
    revisions = [e.revision for e in seen]
    assert revisions == sorted(set(revisions))
    assert [e.work_request.percent_complete for e in seen][-1] == 100
    logs = [entry.message for e in seen for entry in e.log_entries]
    assert len(logs) == len(set(logs))
    assert any("is ACTIVE with 3 nodes" in message for message in logs)


async def test_wait_gives_up_at_its_deadline(paced: App) -> None:
    async with sdk_client(paced) as client:
        wr_id = await start_pool(paced, client)  # never finishes: nobody advances the clock
        with pytest.raises(DeadlineExceeded) as late:
            await client.work_requests.wait(wr_id, timeout=0.5)
    assert late.value.reason == "WAIT_TIMEOUT"
    assert late.value.metadata["work_request_id"] == wr_id
    assert isinstance(late.value.__cause__, DeadlineExceeded)
