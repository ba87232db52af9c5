"""Webhook subscriptions delivering to a real HTTP receiver on the loopback interface.

The receiver is a plain http.server in a thread: it can fail requests with 500, or be
down (its socket closed) for a while. Time moves on the FakeClock, so retries with
backoff, and suspension after hours of failures, take milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import notifications_pb2 as nt_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.domain.notifications import WebhookSettings

from tests.conftest import AppFactory, connect, seed_cluster
from tests.helpers import details_of, watch_to_end

SECRET = "a-secret-of-some-length"
SETTINGS = WebhookSettings(
    initial_backoff=timedelta(seconds=2),
    max_backoff=timedelta(seconds=20),
    suspend_after=timedelta(hours=1),
)
HOOKS = {"webhooks": SETTINGS, "webhook_poll_seconds": 0.05}


class Receiver:
    """A loopback HTTP server that records deliveries; it can fail some or be down."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.fail_next = 0
        self.bad_signatures = 0
        # While set, every request waits for it to clear (a receiver that hangs).
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.held = threading.Event()  # a request is waiting
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.stalled.is_set():
                    receiver.held.set()
                    receiver.released.wait(10)
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                with receiver.lock:
                    if not hmac.compare_digest(
                        self.headers.get("X-Clusterops-Signature", ""), expected
                    ):
                        receiver.bad_signatures += 1
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        receiver.refused += 1
                        status = 500
                    else:
                        receiver.accepted.append(
                            {"event": json.loads(body), "type": self.headers["Content-Type"]}
                        )
                        status = 204
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def revisions(self) -> list[int]:
        with self.lock:
            return [int(d["event"]["id"]) for d in self.accepted]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    if found.server is not None:
        found.down()


async def drive(clock: FakeClock, until: Callable[[], bool], *, step: float = 5.0) -> None:
    """Move the clock on (retries come due) until `until()` holds; 20 s of real time at most."""
    async with asyncio.timeout(20):
        while not until():
            clock.advance(step)
            await asyncio.sleep(0.02)


async def create(app: App, **fields: Any) -> nt_pb.Subscription:
    async with connect(app) as stubs:
        notifications = stubs.notifications
        reply = await notifications.CreateSubscription(
            nt_pb.CreateSubscriptionRequest(compartment_id="dev", secret=SECRET, **fields)
        )
    return reply.subscription


async def get(app: App, subscription_id: str) -> nt_pb.Subscription:
    async with connect(app) as stubs:
        notifications = stubs.notifications
        reply = await notifications.GetSubscription(
            nt_pb.GetSubscriptionRequest(subscription_id=subscription_id)
        )
    return reply.subscription


async def dev_history(app: App, after: int) -> list[int]:
    """The stored revisions the subscription must deliver: every change in dev after it."""
    async with app.store.read() as uow:
        events = await uow.events.after(after, limit=100_000)
    return [e.revision for e in events if e.work_request.compartment_id == "dev"]


async def node_pools(app: App, compartment: str, count: int) -> list[str]:
    made = []
    async with connect(app) as stubs:
        for _ in range(count):
            cluster = await seed_cluster(app, compartment=compartment)
            created = await stubs.clusters.CreateNodePool(
                cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=2)
            )
            await watch_to_end(stubs, created.work_request.id)
            made.append(created.work_request.id)
    return made


async def test_every_event_arrives_in_order_signed_through_failures_an_outage_and_a_restart(
    make_app: AppFactory, clock: FakeClock, receiver: Receiver
) -> None:
    app = await make_app(database="hooks.db", **HOOKS)
    receiver.fail_next = 3
    sub = await create(app, url=receiver.url)
    start = sub.delivery.cursor_revision
    await node_pools(app, "prod", 1)  # not the subscription's compartment
    await node_pools(app, "dev", 2)
    expected = await dev_history(app, start)
    await drive(clock, lambda: len(receiver.revisions()) >= 4)
    assert receiver.refused == 3

    receiver.down()  # the receiver is down for a while: attempts fail, none is lost
    await node_pools(app, "dev", 1)
    clock.advance(60)
    await asyncio.sleep(0.2)
    during = await get(app, sub.id)
    assert during.delivery.failures_in_a_row > 0
    assert during.delivery.last_status_code == 0
    assert "could not be reached" in during.delivery.last_error
    assert during.state == nt_pb.SUBSCRIPTION_STATE_ACTIVE

    # The server restarts while deliveries are owed; the cursor is durable.
    await app.stop(grace=0)
    receiver.up()
    app = await make_app(database="hooks.db", **HOOKS)
    await node_pools(app, "dev", 1)
    expected = await dev_history(app, start)
    await drive(clock, lambda: expected[-1] in receiver.revisions())

    seen = receiver.revisions()
    # At least once, in order: repeats only of what came just before (a delivery whose
    # acknowledgement was lost), never a gap, never out of order.
    assert [r for i, r in enumerate(seen) if i == 0 or r != seen[i - 1]] == expected
    assert receiver.bad_signatures == 0
    first = receiver.accepted[0]
    assert first["type"] == "application/cloudevents+json"
    event = first["event"]
    assert (event["specversion"], event["id"]) == ("1.0", str(expected[0]))
    assert event["subject"] == event["data"]["work_request"]["id"]
    # The receiver answers before the cursor commits: wait for the acknowledgement to land.
    final = await get(app, sub.id)
    async with asyncio.timeout(20):
        while final.delivery.cursor_revision < expected[-1]:
            await asyncio.sleep(0.02)
            final = await get(app, sub.id)
    assert final.delivery.cursor_revision == expected[-1]
    assert final.delivery.failures_in_a_row == 0
    assert final.delivery.last_status_code == 204


async def test_a_failing_receiver_suspends_the_subscription_and_resuming_replays_from_its_cursor(
    make_app: AppFactory, clock: FakeClock, receiver: Receiver
) -> None:
    app = await make_app(**HOOKS)
    sub = await create(app, url=receiver.url)
    receiver.down()
    await node_pools(app, "dev", 1)
    expected = await dev_history(app, sub.delivery.cursor_revision)
    suspended = nt_pb.SUBSCRIPTION_STATE_SUSPENDED
    state = {"now": sub}

    async def poll() -> None:
        state["now"] = await get(app, sub.id)

    async def until_suspended() -> None:
        async with asyncio.timeout(20):
            while state["now"].state != suspended:
                clock.advance(600)
                await asyncio.sleep(0.02)
                await poll()

    await until_suspended()
    assert "deliveries have failed since" in state["now"].suspended_reason
    assert receiver.revisions() == []

    receiver.up()
    async with connect(app) as stubs:
        notifications = stubs.notifications
        resumed = await notifications.ResumeSubscription(
            nt_pb.ResumeSubscriptionRequest(subscription_id=sub.id)
        )
    assert resumed.subscription.state == nt_pb.SUBSCRIPTION_STATE_ACTIVE
    await drive(clock, lambda: len(receiver.revisions()) >= len(expected))
    assert receiver.revisions() == expected


async def test_resuming_after_the_history_was_compacted_says_so(
    make_app: AppFactory, clock: FakeClock, receiver: Receiver
) -> None:
    app = await make_app(**HOOKS)
    sub = await create(app, url=receiver.url)
    receiver.down()
    await node_pools(app, "dev", 1)
    async with asyncio.timeout(20):
        while (await get(app, sub.id)).state != nt_pb.SUBSCRIPTION_STATE_SUSPENDED:
            clock.advance(3600)
            await asyncio.sleep(0.02)
    clock.advance(48 * 3600)
    await app.compact()
    async with connect(app) as stubs:
        notifications = stubs.notifications
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await notifications.ResumeSubscription(
                nt_pb.ResumeSubscriptionRequest(subscription_id=sub.id)
            )
        assert gone.value.code() == grpc.StatusCode.OUT_OF_RANGE
        info = details_of(gone.value).error_info
        assert info is not None
        assert info.reason == "REVISION_COMPACTED"
        resumed = await notifications.ResumeSubscription(
            nt_pb.ResumeSubscriptionRequest(subscription_id=sub.id, from_head=True)
        )
    assert resumed.subscription.state == nt_pb.SUBSCRIPTION_STATE_ACTIVE


async def test_subscriptions_are_listed_deleted_and_refuse_plain_http_to_other_hosts(
    app: App, receiver: Receiver
) -> None:
    sub = await create(app, url=receiver.url, filter="status = FAILED")
    async with connect(app) as stubs:
        notifications = stubs.notifications
        listed = await notifications.ListSubscriptions(
            nt_pb.ListSubscriptionsRequest(compartment_id="dev")
        )
        assert [s.id for s in listed.subscriptions] == [sub.id]
        assert listed.subscriptions[0].filter == "status = FAILED"
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await notifications.CreateSubscription(
                nt_pb.CreateSubscriptionRequest(
                    compartment_id="dev",
                    url="http://example.com/hook",
                    secret="short",
                    filter="colour = red",
                )
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(details_of(bad.value).fields) == {"url", "secret", "filter"}
        await notifications.DeleteSubscription(
            nt_pb.DeleteSubscriptionRequest(subscription_id=sub.id)
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await notifications.GetSubscription(
                nt_pb.GetSubscriptionRequest(subscription_id=sub.id)
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_receiver_that_hangs_slows_neither_watches_nor_operations(
    make_app: AppFactory, clock: FakeClock, receiver: Receiver
) -> None:
    app = await make_app(**HOOKS)
    sub = await create(app, url=receiver.url)
    receiver.stalled.set()
    started = asyncio.get_running_loop().time()
    # Operations run and their watches end while a delivery hangs on the receiver.
    await node_pools(app, "dev", 2)
    assert asyncio.get_running_loop().time() - started < 5
    assert await asyncio.to_thread(receiver.held.wait, 5)  # a delivery was hanging throughout
    assert receiver.revisions() == []
    receiver.released.set()
    expected = await dev_history(app, sub.delivery.cursor_revision)
    await drive(clock, lambda: receiver.revisions()[-1:] == expected[-1:])
    seen = receiver.revisions()
    assert [r for i, r in enumerate(seen) if i == 0 or r != seen[i - 1]] == expected


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_one_replica_delivers_a_subscription_and_another_takes_over_when_it_dies(
    make_app: AppFactory, clock: FakeClock, receiver: Receiver
) -> None:
    replicas = [await make_app(**HOOKS), await make_app(**HOOKS)]
    sub = await create(replicas[0], url=receiver.url)
    await node_pools(replicas[0], "dev", 1)
    first = await dev_history(replicas[0], sub.delivery.cursor_revision)
    await drive(clock, lambda: first[-1] in receiver.revisions())
    holder = await _lease_owner(replicas[0], sub.id)
    dying = next(r for r in replicas if r.engine.owner == holder)
    survivor = next(r for r in replicas if r is not dying)
    assert not survivor.webhooks.workers  # one replica at a time

    await dying.stop(grace=0)  # its lease is left to lapse, as a crash would
    await node_pools(survivor, "dev", 1)
    expected = await dev_history(survivor, sub.delivery.cursor_revision)
    await drive(clock, lambda: expected[-1] in receiver.revisions())
    seen = receiver.revisions()
    assert [r for i, r in enumerate(seen) if i == 0 or r != seen[i - 1]] == expected
    assert await _lease_owner(survivor, sub.id) == survivor.engine.owner


async def _lease_owner(app: App, subscription_id: str) -> str | None:
    async with app.store.read() as uow:
        sub = await uow.subscriptions.get(subscription_id)
    assert sub is not None
    return sub.owner


async def subscription_when(
    app: App, subscription_id: str, holds: Callable[[nt_pb.Subscription], bool]
) -> nt_pb.Subscription:
    """The subscription once `holds` is true of it (polled; 20 s of real time at most)."""
    async with asyncio.timeout(20):
        while True:
            found = await get(app, subscription_id)
            if holds(found):
                return found
            await asyncio.sleep(0.05)


class Trickler:
    """A raw TCP receiver that answers a byte at a time, forever: each byte comes well
    within any per-read timeout, the whole answer never. With `body`, it sends a whole
    status line and headers at once, then an endless body."""

    def __init__(self, *, body: bool) -> None:
        self.body = body
        self.requests = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.requests += 1
            try:
                if self.body:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
                    while not self.stop.wait(0.01):
                        conn.sendall(b"x" * 65536)
                else:
                    for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                        if self.stop.wait(0.05):
                            return
                        conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def test_a_receiver_that_trickles_its_answer_fails_the_attempt_at_the_deadline(
    make_app: AppFactory, clock: FakeClock
) -> None:
    trickler = Trickler(body=False)
    try:
        app = await make_app(
            webhooks=replace(SETTINGS, request_timeout=0.5), webhook_poll_seconds=0.05
        )
        sub = await create(app, url=trickler.url)
        await node_pools(app, "dev", 1)
        found = await subscription_when(app, sub.id, lambda s: bool(s.delivery.last_error))
        assert found.delivery.last_error == "the receiver did not answer within 0.5 s"
        assert found.delivery.last_status_code == 0
        assert found.delivery.cursor_revision == sub.delivery.cursor_revision
    finally:
        trickler.close()


async def test_a_receiver_whose_answer_never_ends_is_judged_by_its_status_alone(
    make_app: AppFactory, clock: FakeClock
) -> None:
    trickler = Trickler(body=True)
    try:
        app = await make_app(
            webhooks=replace(SETTINGS, request_timeout=2.0), webhook_poll_seconds=0.05
        )
        sub = await create(app, url=trickler.url)
        await node_pools(app, "dev", 1)
        expected = await dev_history(app, sub.delivery.cursor_revision)
        found = await subscription_when(
            app, sub.id, lambda s: s.delivery.cursor_revision >= expected[-1]
        )
        assert found.delivery.last_status_code == 200
        assert found.delivery.last_error == ""
    finally:
        trickler.close()
