"""The SDK's choke point against a scripted server: retries, deadlines, metadata, TLS, errors."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from clusterops import (
    NO_RETRY,
    Aborted,
    AsyncClient,
    ClusteropsError,
    Conflict,
    DeadlineExceeded,
    NotFound,
    RetryPolicy,
    TLSConfig,
    Unavailable,
)
from clusterops._errors import error_from_rpc
from clusterops._options import CallOptions
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc

WR_ID = "wr-0123456789abcdef0123"
QUICK = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)


@dataclass
class Scripted(wr_grpc.WorkRequestServiceServicer):
    """Fails the next calls with the scripted codes, then answers; remembers what it got."""

    failures: list[grpc.StatusCode] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)

    async def _answer(self, request: Any, context: Any) -> wr_pb.WorkRequest:
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        if self.failures:
            await context.abort(self.failures.pop(0), "scripted failure")
        return wr_pb.WorkRequest(id=request.work_request_id)

    async def GetWorkRequest(  # noqa: N802
        self, request: wr_pb.GetWorkRequestRequest, context: Any
    ) -> wr_pb.GetWorkRequestResponse:
        return wr_pb.GetWorkRequestResponse(work_request=await self._answer(request, context))

    async def CancelWorkRequest(  # noqa: N802
        self, request: wr_pb.CancelWorkRequestRequest, context: Any
    ) -> wr_pb.CancelWorkRequestResponse:
        return wr_pb.CancelWorkRequestResponse(work_request=await self._answer(request, context))


@dataclass
class FakeServer:
    servicer: Scripted
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def serve(
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, Scripted, int]:
    server = grpc.aio.server()
    servicer = Scripted()  # type: ignore[abstract]  # only the RPCs these tests call
    wr_grpc.add_WorkRequestServiceServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, servicer, port


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server, servicer, port = await serve()
    try:
        yield FakeServer(servicer, port)
    finally:
        await server.stop(0)


@pytest.fixture
async def client(fake: FakeServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(fake.target, retry=QUICK) as connected:
        yield connected


async def test_reads_are_retried_on_unavailable_until_they_succeed(
    fake: FakeServer, client: AsyncClient
) -> None:
    fake.servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 2
    work_request = await client.work_requests.get(WR_ID)
    assert work_request.id == WR_ID
    assert len(fake.servicer.requests) == 3


async def test_reads_give_up_after_max_attempts_with_the_typed_error(
    fake: FakeServer, client: AsyncClient
) -> None:
    fake.servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 10
    with pytest.raises(Unavailable) as gave_up:
        await client.work_requests.get(WR_ID)
    assert len(fake.servicer.requests) == QUICK.max_attempts
    assert isinstance(gave_up.value.__cause__, grpc.aio.AioRpcError)
    assert gave_up.value.message == "scripted failure"


async def test_reads_are_retried_on_deadline_exceeded_but_not_on_a_callers_mistake(
    fake: FakeServer, client: AsyncClient
) -> None:
    fake.servicer.failures = [grpc.StatusCode.DEADLINE_EXCEEDED]
    await client.work_requests.get(WR_ID)
    assert len(fake.servicer.requests) == 2

    fake.servicer.failures = [grpc.StatusCode.NOT_FOUND]
    with pytest.raises(NotFound):
        await client.work_requests.get(WR_ID)
    assert len(fake.servicer.requests) == 3


async def test_a_mutation_is_retried_with_the_same_generated_request_id(
    fake: FakeServer, client: AsyncClient
) -> None:
    fake.servicer.failures = [grpc.StatusCode.UNAVAILABLE]
    await client.work_requests.cancel(WR_ID)
    first, second = fake.servicer.requests
    assert first.request_id
    assert second.request_id == first.request_id

    await client.work_requests.cancel(WR_ID, request_id="mine-1")
    assert fake.servicer.requests[-1].request_id == "mine-1"
    assert fake.servicer.requests[-1].request_id != first.request_id


async def test_a_mutation_is_not_retried_on_deadline_exceeded(
    fake: FakeServer, client: AsyncClient
) -> None:
    fake.servicer.failures = [grpc.StatusCode.DEADLINE_EXCEEDED]
    with pytest.raises(DeadlineExceeded):
        await client.work_requests.cancel(WR_ID)
    assert len(fake.servicer.requests) == 1


async def test_a_mutation_without_a_request_id_is_never_retried(
    fake: FakeServer, client: AsyncClient
) -> None:
    fake.servicer.failures = [grpc.StatusCode.UNAVAILABLE]
    stub = wr_grpc.WorkRequestServiceStub(client._transport.channel)
    with pytest.raises(Unavailable):
        await client._transport.unary(
            stub.CancelWorkRequest,
            wr_pb.CancelWorkRequestRequest(work_request_id=WR_ID),
            CallOptions(),
            read=False,
        )
    assert len(fake.servicer.requests) == 1


async def test_the_call_timeout_bounds_all_attempts_together(fake: FakeServer) -> None:
    patient = RetryPolicy(max_attempts=None, initial_backoff=0.05, max_backoff=0.05, jitter=0)
    fake.servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 1000
    async with AsyncClient(fake.target, retry=patient) as client:
        started = time.monotonic()
        # The last failure, or the deadline itself when it passes during an attempt (as it
        # may on a busy machine).
        with pytest.raises((Unavailable, DeadlineExceeded)):
            await client.work_requests.get(WR_ID, timeout=0.5)
        elapsed = time.monotonic() - started
    # No attempt starts once less than a backoff is left, so the call took most of its
    # 0.5 s; without that bound the 1000 failures would take 50 s of backoff. The upper
    # limit is loose on purpose: a loaded machine stretches every attempt.
    assert 0.4 <= elapsed < 10
    assert len(fake.servicer.requests) <= 11  # never more attempts than 0.5 s of backoff allows


async def test_retry_none_or_no_retry_makes_a_single_attempt(
    fake: FakeServer, client: AsyncClient
) -> None:
    for policy in (None, NO_RETRY):
        fake.servicer.failures = [grpc.StatusCode.UNAVAILABLE]
        before = len(fake.servicer.requests)
        with pytest.raises(Unavailable):
            await client.work_requests.get(WR_ID, retry=policy)
        assert len(fake.servicer.requests) == before + 1


async def test_token_and_metadata_are_sent_on_every_call(fake: FakeServer) -> None:
    async with AsyncClient(fake.target, token="s3cret", metadata=[("x-team", "edge")]) as client:
        await client.work_requests.get(WR_ID, metadata=[("x-trace", "t-1")])
    sent = fake.servicer.metadata[-1]
    assert sent["authorization"] == "Bearer s3cret"
    assert sent["x-team"] == "edge"
    assert sent["x-trace"] == "t-1"
    assert sent["user-agent"].startswith("clusterops-python/")


def test_backoff_grows_with_jitter_and_stays_under_its_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.5)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert policy.retryable(grpc.StatusCode.DEADLINE_EXCEEDED, read=True)
    assert not policy.retryable(grpc.StatusCode.DEADLINE_EXCEEDED, read=False)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)


def test_aborted_errors_are_refined_by_their_reason() -> None:
    busy = grpc.aio.AioRpcError(grpc.StatusCode.ABORTED, grpc.aio.Metadata(), grpc.aio.Metadata())
    assert type(error_from_rpc(busy)) is Aborted  # no ErrorInfo: plain Aborted
    assert not isinstance(error_from_rpc(busy), Conflict)
    unknown = error_from_rpc(grpc.RpcError())
    assert type(unknown) is ClusteropsError
    assert unknown.code == grpc.StatusCode.UNKNOWN


# --- TLS -----------------------------------------------------------------------------


@dataclass
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=clusterops test CA")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-out", f"{name}.pem",
                "-extfile", "san.ext")  # fmt: skip
    return Certificates(
        d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key"
    )


async def test_mutual_tls_connects_with_a_client_certificate_and_fails_without(
    certificates: Certificates,
) -> None:
    credentials = grpc.ssl_server_credentials(
        [(certificates.server_key.read_bytes(), certificates.server_cert.read_bytes())],
        root_certificates=certificates.ca.read_bytes(),
        require_client_auth=True,
    )
    server, _, port = await serve(credentials)
    try:
        tls = TLSConfig.from_files(
            ca_cert=certificates.ca,
            client_cert=certificates.client_cert,
            client_key=certificates.client_key,
        )
        async with AsyncClient(f"127.0.0.1:{port}", tls=tls, token="t") as client:
            assert (await client.work_requests.get(WR_ID)).id == WR_ID

        server_only = TLSConfig.from_files(ca_cert=certificates.ca)
        async with AsyncClient(f"127.0.0.1:{port}", tls=server_only, retry=NO_RETRY) as client:
            with pytest.raises(Unavailable):
                await client.work_requests.get(WR_ID, timeout=5)
    finally:
        await server.stop(0)


def test_tls_config_needs_both_halves_of_a_client_key_pair() -> None:
    with pytest.raises(ValueError, match="both"):
        TLSConfig(client_certificate=b"cert")


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), float("inf"), -0.001])
async def test_a_timeout_that_is_not_a_positive_finite_number_is_refused_at_once(
    fake: FakeServer, client: AsyncClient, bad: float
) -> None:
    with pytest.raises(ValueError, match="finite number of seconds above 0"):
        await client.work_requests.get(WR_ID, timeout=bad)
    with pytest.raises(ValueError, match="finite number of seconds above 0"):
        AsyncClient(fake.target, timeout=bad)
    with pytest.raises(TypeError, match="number of seconds or None"):
        await client.work_requests.get(WR_ID, timeout="5")  # type: ignore[arg-type]
    assert fake.servicer.requests == []
