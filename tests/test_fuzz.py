"""Arbitrary and malformed requests to every RPC: never UNKNOWN or INTERNAL, the server keeps
serving, and a rejected call writes nothing."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops_server.app import SERVICE_NAMES, App
from clusterops_server.store.tables import Base
from clusterops_server.wire.guard import MAX_REQUEST_BYTES
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import Stubs, seed_cluster
from tests.fuzzing import build, field_values
from tests.helpers import details_of, watch_to_end
from tests.paging_helpers import b64, build_world, lists, payload_of, signed

# RESOURCE_EXHAUSTED: an error too large for the client to receive (or a request the
# server would not read; no test here sends one).
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED}
METHODS: list[MethodDescriptor] = [
    method
    for name in SERVICE_NAMES
    for method in descriptor_pool.Default().FindServiceByName(name).methods
]


async def row_counts(app: App) -> dict[str, int]:
    async with app.store.read() as uow:
        return {
            table.name: int(await uow.session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def _raw(data: bytes) -> bytes:
    return data


# Each fuzzed call's deadline: its only bound. On a loaded machine a call may outlive it,
# and DEADLINE_EXCEEDED is then an answer like any other (not UNKNOWN, not a crash); no
# local timer races the deadline to turn a slow answer into a failed test.
DEADLINE_SECONDS = 5.0


async def invoke(
    channel: grpc.aio.Channel, method: MethodDescriptor, payload: bytes
) -> grpc.StatusCode:
    """Call a method with raw request bytes; the status it answered (a stream: once its
    first message arrived, or the status it ended with before any)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            stream: Any = channel.unary_stream(
                path, request_serializer=_raw, response_deserializer=_raw
            )(payload, timeout=DEADLINE_SECONDS)
            async for _ in stream:
                break
            stream.cancel()
        else:
            unary: Any = channel.unary_unary(
                path, request_serializer=_raw, response_deserializer=_raw
            )
            await unary(payload, timeout=DEADLINE_SECONDS)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def known_ids(app: App, stubs: Any) -> list[str]:
    """Real ids, so fuzzed requests also reach the code behind validation."""
    cluster = await seed_cluster(app)
    created = await stubs.clusters.CreateNodePool(
        cl_pb.CreateNodePoolRequest(cluster_id=cluster.id, name="w", node_count=1)
    )
    await watch_to_end(stubs, created.work_request.id)
    return [cluster.id, created.node_pool.id, created.work_request.id, "dev", "v1.29.8"]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@settings(
    max_examples=20,  # 20 per RPC: some 700 fuzzed requests a run, a few seconds
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_arbitrary_messages_never_answer_unknown_or_internal(
    app: App, stubs: Any, known_ids: list[str], method: MethodDescriptor, data: st.DataObject
) -> None:
    strings = st.one_of(
        st.sampled_from(known_ids), st.text(max_size=40), st.from_regex(r"[a-z]{2,4}-[0-9a-f]{20}")
    )
    values = data.draw(field_values(method.input_type, strings))
    payload = build(method.input_type, values).SerializeToString()
    await app.engine.wait_idle()  # earlier examples' operations have finished
    before = await row_counts(app)
    code = await invoke(stubs.channel, method, payload)
    assert code not in FORBIDDEN, f"{method.name}({values}) answered {code}"
    if code not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert await row_counts(app) == before, f"{method.name} wrote although it answered {code}"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=64))
async def test_arbitrary_bytes_are_rejected_cleanly_and_the_server_keeps_serving(
    app: App, stubs: Any, method: MethodDescriptor, payload: bytes
) -> None:
    code = await invoke(stubs.channel, method, payload)
    assert code not in FORBIDDEN
    health = health_pb2_grpc.HealthStub(stubs.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_request_above_the_size_limit_is_invalid_argument_and_the_server_keeps_serving(
    app: App, stubs: Any
) -> None:
    create = stubs.channel.unary_unary(
        "/clusterops.v1.ClusterService/CreateCluster",
        request_serializer=_raw,
        response_deserializer=_raw,
    )
    payload = cl_pb.CreateClusterRequest(
        compartment_id="dev", name="x" * (MAX_REQUEST_BYTES + 1)
    ).SerializeToString()
    before = await row_counts(app)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create(payload, timeout=10)
    details = details_of(refused.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.error_info is not None
    assert details.error_info.reason == "REQUEST_TOO_LARGE"
    assert details.bad_request is not None
    assert await row_counts(app) == before
    health = health_pb2_grpc.HealthStub(stubs.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# Every JSON type, nested a little: what an edited token's cursor fields may hold.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(
        ["2026-01-05T09:00:00", "2026-01-05T09:00:00+00:00", "9999-12-31T23:59:59-23:59"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture
async def tokens(app: App, stubs: Stubs) -> dict[str, tuple[Any, str]]:
    """Each paged List that issues a token on this data, with a real token of its own."""
    world = await build_world(app, stubs)
    found: dict[str, tuple[Any, str]] = {}
    for name, call in lists(world).items():
        token = (await call(stubs, "")).next_page_token
        if token:
            found[name] = (call, token)
    return found


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_edited_page_tokens_never_answer_internal(
    app: App, stubs: Stubs, tokens: dict[str, tuple[Any, str]], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(tokens)))
    call, token = tokens[name]
    payload: Any = payload_of(token)
    where = data.draw(st.sampled_from(["cursor field", "cursor", "query", "extra", "whole"]))
    if where == "cursor field":
        position = data.draw(st.integers(0, len(payload["k"])))
        value = data.draw(JSON_VALUES)
        payload["k"] = [*payload["k"][:position], value, *payload["k"][position + 1 :]]
    elif where == "whole":
        payload = data.draw(JSON_VALUES)
    else:
        payload[{"cursor": "k", "query": "q", "extra": "x"}[where]] = data.draw(JSON_VALUES)
    raw = json.dumps(payload).encode()
    if data.draw(st.booleans()):
        edited = await signed(app, raw)  # past the signature: the strict decoding decides
    else:
        generation, _, mac = token.split(".")
        edited = f"{generation}.{b64(raw)}.{mac}"
    code = grpc.StatusCode.OK
    try:
        await call(stubs, edited)
    except grpc.aio.AioRpcError as error:
        code = error.code()
    assert code not in FORBIDDEN, f"{name} with {payload!r}: {code}"
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), f"{name}: {code}"


def _repeated_fields(method: MethodDescriptor) -> list[str]:
    return [
        f.name
        for f in method.input_type.fields
        if f.is_repeated
        and f.message_type is None
        and f.type in (FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_STRING)
    ]


REPEATED = [(m, f) for m in METHODS for f in _repeated_fields(m)]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_repeated_fields_of_any_length_never_answer_internal_or_too_large(
    app: App, stubs: Stubs, known_ids: list[str], data: st.DataObject
) -> None:
    method, field_name = data.draw(st.sampled_from(REPEATED))
    field = method.input_type.fields_by_name[field_name]
    length = data.draw(st.integers(1, 1000))
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        highest = max(v.number for v in field.enum_type.values)
        choices = st.integers(-3, highest + 3)
    else:
        choices = st.one_of(st.sampled_from(known_ids), st.text(max_size=80))
    pattern = data.draw(st.lists(choices, min_size=1, max_size=5))
    values = data.draw(field_values(method.input_type, st.sampled_from(known_ids)))
    values[field_name] = (pattern * length)[:length]
    payload = build(method.input_type, values).SerializeToString()
    await app.engine.wait_idle()
    code = await invoke(stubs.channel, method, payload)
    assert code not in FORBIDDEN, f"{method.name}.{field_name} x{length}: {code}"
