"""The CLI over TLS and mutual TLS: --ca-cert, --client-cert, --client-key and their
environment variables connect with the right certificates, and the wrong ones get one
clear line and exit code 3 (2 for a command line that cannot work at all)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clusterops_server.app import TlsConfig

from tests.certs import Authority
from tests.conftest import AppFactory, seed_cluster
from tests.sdk_support import target
from tests.test_cli import Run


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Authority]:
    return {"trusted": Authority(tmp_path, "trusted"), "rogue": Authority(tmp_path, "rogue")}


class Cli(Run):
    """`clusterops clusters list` against the app, with the TLS flags a test gives."""

    async def __call__(self, *argv: str) -> int:
        return await super().__call__("clusters", "list", "--timeout", "5", *argv)

    def refused(self, line_starts: str) -> None:
        assert self.out == ""
        (line,) = self.err.splitlines()
        assert line.startswith(line_starts), line


async def test_tls_with_the_servers_ca_and_not_with_another(
    make_app: AppFactory, pki: dict[str, Authority], capsys: pytest.CaptureFixture[str]
) -> None:
    server = pki["trusted"].issue("server", server=True)
    app = await make_app(tls=TlsConfig(server.cert, server.key))
    cluster = await seed_cluster(app, name="over-tls")
    cli = Cli(app, capsys)

    assert await cli("--ca-cert", str(pki["trusted"].path)) == 0
    assert cluster.id in cli.out
    assert cli.err == ""

    assert await cli("--ca-cert", str(pki["rogue"].path)) == 3
    cli.refused(f"clusterops: TLS with the server at {target(app)} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in cli.err
    assert "check --ca-cert" in cli.err

    assert await cli() == 3  # plaintext to a TLS server
    cli.refused(f"clusterops: cannot reach the server at {target(app)}: ")


async def test_mutual_tls_with_the_right_client_certificate_and_not_without(
    make_app: AppFactory, pki: dict[str, Authority], capsys: pytest.CaptureFixture[str]
) -> None:
    trusted = pki["trusted"]
    server = trusted.issue("server", server=True)
    app = await make_app(tls=TlsConfig(server.cert, server.key, client_ca=trusted.path))
    cluster = await seed_cluster(app, name="over-mtls")
    cli = Cli(app, capsys)
    client = trusted.issue("automation", server=False)
    intruder = pki["rogue"].issue("intruder", server=False)
    ca = ("--ca-cert", str(trusted.path))

    assert await cli(*ca, "--client-cert", str(client.cert), "--client-key", str(client.key)) == 0
    assert cluster.id in cli.out

    tls_failed = f"clusterops: TLS with the server at {target(app)} failed: "
    assert await cli(*ca) == 3  # no client certificate
    cli.refused(tls_failed)
    assert "--client-cert" in cli.err
    assert (
        await cli(*ca, "--client-cert", str(intruder.cert), "--client-key", str(intruder.key)) == 3
    )
    cli.refused(tls_failed)
    # A key that does not belong to the certificate: gRPC cannot even start the handshake.
    assert await cli(*ca, "--client-cert", str(client.cert), "--client-key", str(intruder.key)) == 3
    cli.refused(tls_failed)

    assert await cli(*ca, "--client-cert", str(client.cert)) == 2
    cli.refused("clusterops: error: mutual TLS needs both client_certificate and client_key")
    assert await cli("--ca-cert", str(client.key.with_suffix(".missing"))) == 2
    cli.refused("clusterops: error: [Errno 2] No such file or directory: ")
    not_pem = client.cert.with_suffix(".txt")
    not_pem.write_text("not a certificate\n")
    assert await cli("--ca-cert", str(not_pem)) == 2
    cli.refused(f"clusterops: error: {not_pem} is not a PEM file")


async def test_mutual_tls_from_the_environment(
    make_app: AppFactory,
    pki: dict[str, Authority],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trusted = pki["trusted"]
    server = trusted.issue("server", server=True)
    app = await make_app(tls=TlsConfig(server.cert, server.key, client_ca=trusted.path))
    cluster = await seed_cluster(app, name="env-mtls")
    client = trusted.issue("automation", server=False)
    cli = Cli(app, capsys)

    monkeypatch.setenv("CLUSTEROPS_CA_CERT", str(trusted.path))
    assert await cli() == 3
    cli.refused(f"clusterops: TLS with the server at {target(app)} failed: ")

    monkeypatch.setenv("CLUSTEROPS_CLIENT_CERT", str(client.cert))
    monkeypatch.setenv("CLUSTEROPS_CLIENT_KEY", str(client.key))
    assert await cli() == 0
    assert cluster.id in cli.out
    # A flag still wins over its variable.
    assert await cli("--ca-cert", str(pki["rogue"].path)) == 3
    assert "CERTIFICATE_VERIFY_FAILED" in cli.err
