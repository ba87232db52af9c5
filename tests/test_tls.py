"""TLS and mutual TLS: the right certificates connect, wrong ones do not."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc
from clusterops_server.app import App, TlsConfig

from tests.certs import Authority, Issued
from tests.conftest import AppFactory


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Authority]:
    return {"trusted": Authority(tmp_path, "trusted"), "rogue": Authority(tmp_path, "rogue")}


async def call(
    app: App, root: Authority, client: Issued | None = None
) -> wr_pb.ListWorkRequestsResponse:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root.pem,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{app.port}", credentials) as channel:
        stub = wr_grpc.WorkRequestServiceStub(channel)
        return await stub.ListWorkRequests(wr_pb.ListWorkRequestsRequest(), timeout=10)


async def test_tls_connects_with_the_servers_ca_and_not_with_another(
    make_app: AppFactory, pki: dict[str, Authority]
) -> None:
    server_cert = pki["trusted"].issue("server", server=True)
    app = await make_app(tls=TlsConfig(server_cert.cert, server_cert.key))
    assert await call(app, pki["trusted"]) is not None
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(app, pki["rogue"])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_clients_cannot_talk_to_a_tls_server(
    make_app: AppFactory, pki: dict[str, Authority]
) -> None:
    server_cert = pki["trusted"].issue("server", server=True)
    app = await make_app(tls=TlsConfig(server_cert.cert, server_cert.key))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await wr_grpc.WorkRequestServiceStub(channel).ListWorkRequests(
                wr_pb.ListWorkRequestsRequest(), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(
    make_app: AppFactory, pki: dict[str, Authority]
) -> None:
    server_cert = pki["trusted"].issue("server", server=True)
    app = await make_app(
        tls=TlsConfig(server_cert.cert, server_cert.key, client_ca=pki["trusted"].path)
    )
    good_client = pki["trusted"].issue("automation", server=False)
    assert await call(app, pki["trusted"], good_client) is not None

    rogue_client = pki["rogue"].issue("intruder", server=False)
    for client in (None, rogue_client):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(app, pki["trusted"], client)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
