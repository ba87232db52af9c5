"""Page tokens: signed by the server, bound to the query and the caller, decoded strictly.

Every paged List answers INVALID_ARGUMENT on `page_token` (never INTERNAL) for a token it
did not issue, for one issued to another query or caller, and for a genuine token whose
cursor was edited to a value that does not fit the sort key, before any query runs.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.domain.listing import Cursor, encode_page_token
from clusterops_server.ids import IdKind, new_id
from clusterops_server.store.paging import KEY_LIFETIME, PREVIOUS_KEY_ACCEPTED

from tests.conftest import AppFactory, Stubs, connect, seed_cluster
from tests.helpers import details_of
from tests.paging_helpers import b64, build_world, lists, payload_of, resigned

pytestmark = pytest.mark.both_backends


async def assert_bad_token(call: Awaitable[Any]) -> None:
    try:
        await call
    except grpc.aio.AioRpcError as refused:
        details = details_of(refused)
        assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.fields == ["page_token"]
    else:
        raise AssertionError("the token was accepted")


def is_time(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def fits_text(value: Any) -> bool:
    """A string an id or name column may hold: edited to it, the token is still a cursor."""
    return (
        isinstance(value, str)
        and len(value) <= 32
        and "\x00" not in value
        and value.encode("utf-8", "replace").decode() == value
    )


FORGED = {
    "deeply nested json": b64(b"[" * 1500),
    "unsigned json of the old format": b64(b'{"k":["x","y"],"q":"0123456789abcdef"}'),
    "signed shape, wrong mac": f"1.{b64(b'{}')}.{b64(bytes(32))}",
    "unknown key generation": f"999999.{b64(b'{}')}.{b64(bytes(32))}",
    "not base64": "1.!!!.???",
    "nul byte": "1.\x00.x",
    "too long": "A" * 5000,
}

# Values no sort key holds: wrong JSON types, huge numbers, malformed and naive times.
BAD_VALUES: list[Any] = [
    None,
    True,
    7,
    -(2**70),
    1e30,
    float("inf"),
    "not a date",
    "2026-01-05T09:00:00",
    "x\x00y",
    "\ud800",
    "z" * 5000,
    [],
    {},
]


async def test_every_paged_list_refuses_tokens_it_did_not_issue(app: App, stubs: Stubs) -> None:
    world = await build_world(app, stubs)
    for name, call in lists(world).items():
        for label, token in FORGED.items():
            try:
                await assert_bad_token(call(stubs, token))
            except AssertionError as failure:
                raise AssertionError(f"{name} with {label}") from failure


async def test_a_genuine_token_with_any_cursor_value_replaced_is_invalid_argument(
    app: App, stubs: Stubs
) -> None:
    world = await build_world(app, stubs)
    for name, call in lists(world).items():
        if name == "ListWorkRequestErrors":
            continue  # its work request has no errors, so it never issues a token
        first = await call(stubs, "")
        token = first.next_page_token
        assert token, f"{name} issued no token"
        assert (await call(stubs, token)) is not None  # the genuine token works
        key = payload_of(token)["k"]
        for position in range(len(key)):
            for value in BAD_VALUES:
                edited = [*key[:position], value, *key[position + 1 :]]
                text_key = isinstance(key[position], str) and not is_time(key[position])
                if text_key and fits_text(value):
                    continue  # a text sort key: any short string is a position
                if type(key[position]) is int and type(value) is int and abs(value) < 2**63:
                    continue  # an integer sort key: any int64 is a position
                try:
                    await assert_bad_token(call(stubs, await resigned(app, token, edited)))
                except AssertionError as failure:
                    raise AssertionError(f"{name} with k[{position}] = {value!r}") from failure
        await assert_bad_token(call(stubs, await resigned(app, token, [*key, "extra"])))


async def test_a_token_is_bound_to_its_query_and_its_caller(app: App, stubs: Stubs) -> None:
    await build_world(app, stubs)
    page = await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest(page_size=1))
    other_query = wr_pb.ListWorkRequestsRequest(
        page_size=1, order_by="time_accepted", page_token=page.next_page_token
    )
    await assert_bad_token(stubs.work_requests.ListWorkRequests(other_query))
    key = await app.store.page_tokens.signing_key()
    someone_else = encode_page_token(
        Cursor(tuple(payload_of(page.next_page_token)["k"])),
        payload_of(page.next_page_token)["q"],
        key,
        "mallory",
    )
    await assert_bad_token(
        stubs.work_requests.ListWorkRequests(
            wr_pb.ListWorkRequestsRequest(page_size=1, page_token=someone_else)
        )
    )


async def test_every_replica_accepts_tokens_and_rotation_keeps_the_previous_key_an_hour(
    make_app: AppFactory, clock: FakeClock
) -> None:
    first = await make_app()
    second = await make_app()
    async with connect(first) as a, connect(second) as b:
        await seed_cluster(first)
        await seed_cluster(first)
        request = cl_pb.ListClustersRequest(page_size=1)
        token = (await a.clusters.ListClusters(request)).next_page_token
        request.page_token = token
        assert len((await b.clusters.ListClusters(request)).clusters) == 1

        clock.advance(KEY_LIFETIME.total_seconds())
        assert await second.store.page_tokens.rotate()
        assert not await first.store.page_tokens.rotate()  # one rotation for all replicas
        newer = await b.clusters.ListClusters(cl_pb.ListClustersRequest(page_size=1))
        request.page_token = newer.next_page_token
        assert len((await a.clusters.ListClusters(request)).clusters) == 1  # A learns the key
        clock.advance(3600)
        request.page_token = token  # issued before the rotation, still accepted an hour on
        assert len((await a.clusters.ListClusters(request)).clusters) == 1
        assert len((await b.clusters.ListClusters(request)).clusters) == 1
        clock.advance((PREVIOUS_KEY_ACCEPTED - timedelta(hours=1)).total_seconds() + 1)
        await assert_bad_token(b.clusters.ListClusters(request))


async def test_a_malformed_token_is_refused_before_the_list_looks_anything_up(
    app: App, stubs: Stubs
) -> None:
    """With the other fields' checks: a cluster that does not exist is never looked for."""
    for token in (b64(b"[" * 1500), "x" * 3000):
        await assert_bad_token(
            stubs.clusters.ListNodePools(
                cl_pb.ListNodePoolsRequest(cluster_id=new_id(IdKind.CLUSTER), page_token=token)
            )
        )
