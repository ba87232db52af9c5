"""`clusterops serve` refuses every bad setting at start: one line that names the setting
(and for a TLS file, the file and the problem), exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import grpc
import pytest
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops.v1 import work_requests_pb2_grpc as wr_grpc
from clusterops_server.auth.tokens import TokenStore
from clusterops_server.serve import add_arguments, serve

from tests.certs import Authority
from tests.conftest import AppFactory
from tests.helpers import details_of


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="clusterops serve")
    add_arguments(parser)
    return parser.parse_args(argv)


async def refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> str:
    """Start the server with `argv`; it must exit 2 with one line on stderr, which is returned."""
    database = f"sqlite:///{tmp_path / 'never.db'}"
    code = await serve(
        parse("--insecure-no-auth", "--database-url", database, "--port", "0", *argv)
    )
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "never.db").exists(), "it touched the database before refusing"
    return lines[0]


# Every setting with a value it must refuse, and what the line must say.
BAD_SETTINGS: list[tuple[list[str], str]] = [
    (["--port", "-1"], "--port must be a port from 0 to 65535"),
    (["--port", "70000"], "--port must be a port from 0 to 65535"),
    (["--metrics-port", "65536"], "--metrics-port must be a port"),
    (["--port", "50999", "--metrics-port", "50999"], "--metrics-port must differ from --port"),
    (["--sim-step-seconds", "-1"], "--sim-step-seconds must not be negative"),
    (["--sim-step-seconds", "nan"], "--sim-step-seconds must be a finite number"),
    (["--sim-action-seconds", "upgrade:Nope=1"], "'upgrade:Nope=1': expected ACTION=SECONDS"),
    (["--sim-action-seconds", "create_cluster"], "'create_cluster': expected ACTION=SECONDS"),
    (["--sim-action-seconds", "=5"], "'=5': expected ACTION=SECONDS with ACTION one of"),
    (["--sim-action-seconds", "create_cluster=-1"], "SECONDS must be a finite number, not neg"),
    (["--sim-action-seconds", "create_cluster=inf"], "SECONDS must be a finite number, not neg"),
    (["--sim-action-seconds", "create_cluster=soon"], "SECONDS must be a finite number, not neg"),
    (["--event-retention-hours", "-24"], "--event-retention-hours must be positive"),
    (["--event-retention-hours", "0"], "--event-retention-hours must be positive"),
    (["--compaction-interval-minutes", "0"], "--compaction-interval-minutes must be positive"),
    (["--compaction-interval-minutes", "inf"], "--compaction-interval-minutes must be a finite"),
    (["--pre-check-validity-minutes", "-5"], "--pre-check-validity-minutes must be positive"),
    (["--lease-seconds", "0"], "--lease-seconds must be positive"),
    (["--lease-seconds", "-30"], "--lease-seconds must be positive"),
    (["--grace-seconds", "-1"], "--grace-seconds must not be negative"),
    (["--addon-check-hours", "-1"], "--addon-check-hours must be positive"),
    (["--addon-attention-first-minutes", "0"], "--addon-attention-first-minutes must be positive"),
    (["--addon-attention-growth", "0.9"], "--addon-attention-growth must be at least 1"),
    (["--addon-attention-growth", "nan"], "--addon-attention-growth must be a finite number"),
    (["--addon-attention-max-minutes", "-2"], "--addon-attention-max-minutes must be positive"),
    (["--addon-attention-window-hours", "0"], "--addon-attention-window-hours must be positive"),
    (
        ["--addon-work-request-timeout-minutes", "-30"],
        "--addon-work-request-timeout-minutes must be positive",
    ),
    (["--database-url", "::not a url::"], "--database-url: cannot parse it"),
    (["--database-url", "mysql://db/clusterops"], "--database-url: 'mysql' databases"),
    (["--database-url", "sqlite://"], "--database-url: an in-memory SQLite database"),
    (["--database-url", "sqlite:///:memory:"], "--database-url: an in-memory SQLite database"),
    (
        ["--database-url", "sqlite:///file::memory:?cache=shared&uri=true"],
        "--database-url: an in-memory SQLite database",
    ),
    (["--host", ""], "--host must not be empty"),
    (["--host", "  "], "--host must not be empty"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: cannot resolve it"),
    (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
    (["--tls-cert", "cert.pem"], "TLS needs both --tls-cert and --tls-key"),
]


@pytest.mark.parametrize(
    ("argv", "expected"), BAD_SETTINGS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
async def test_every_bad_setting_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], expected: str
) -> None:
    line = await refused(capsys, tmp_path, *argv)
    assert line.startswith("clusterops serve: ")
    assert expected in line


async def test_unreadable_and_invalid_files_are_one_line_naming_the_setting_and_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    assert f"--addon-catalogue {missing}: cannot read it" in await refused(
        capsys, tmp_path, "--addon-catalogue", str(missing)
    )
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert f"--addon-catalogue {garbage}:" in await refused(
        capsys, tmp_path, "--addon-catalogue", str(garbage)
    )
    assert f"--auth-config {missing}: cannot read it" in await refused(
        capsys, tmp_path, "--auth-config", str(missing)
    )
    garbage.write_text(json.dumps({"principals": [{"name": "x"}]}))
    assert f"--auth-config {garbage}:" in await refused(
        capsys, tmp_path, "--auth-config", str(garbage)
    )


GOOD_DIGEST = "ab" * 32
BAD_AUTH_FILES: list[tuple[object, str]] = [
    ([], 'must be a JSON object with "principals" and "policies"'),
    ({}, '"principals" must be a non-empty list of objects'),
    ({"principles": [], "policies": []}, "the file: unknown key 'principles'"),
    ({"principals": 5}, '"principals" must be a non-empty list'),
    ({"principals": ["alice"]}, "principals[0] must be an object"),
    ({"principals": [{"token_sha256": GOOD_DIGEST}]}, "principals[0]: name must be"),
    ({"principals": [{"name": "a"}]}, "principals[0] (a) needs exactly one of token and"),
    (
        {"principals": [{"name": "a", "token": "t", "token_sha256": GOOD_DIGEST}]},
        "needs exactly one of token and token_sha256",
    ),
    ({"principals": [{"name": "a", "token_sha256": "abc"}]}, "token_sha256 must be the 64"),
    ({"principals": [{"name": "a", "token_sha256": "zz" * 32}]}, "token_sha256 must be the 64"),
    ({"principals": [{"name": "a", "token": 7}]}, "token must be a non-empty string"),
    ({"principals": [{"name": "a", "token": "t", "groups": "Admins"}]}, "groups must be a list"),
    ({"principals": [{"name": "a", "token": "t", "role": "x"}]}, "unknown key 'role'"),
    (
        {"principals": [{"name": "a", "token": "t"}, {"name": "a", "token": "u"}]},
        "principals[1]: the name 'a' is taken",
    ),
    (
        {"principals": [{"name": "a", "token": "t"}, {"name": "b", "token": "t"}]},
        "principals[1] (b) has the same token as a",
    ),
    ({"principals": [{"name": "a", "token": "t"}], "policies": "x"}, '"policies" must be a list'),
]


@pytest.mark.parametrize(("content", "expected"), BAD_AUTH_FILES, ids=str)
async def test_every_bad_auth_file_is_one_line_naming_the_entry_and_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: object, expected: str
) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps(content))
    line = await refused(capsys, tmp_path, "--auth-config", str(auth))
    assert line.startswith(f"clusterops serve: --auth-config {auth}: ")
    assert expected in line


@pytest.fixture
def pki(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "trusted")


async def test_every_bad_tls_file_is_one_line_naming_the_setting_the_file_and_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pki: Authority
) -> None:
    server = pki.issue("server", server=True)
    other = pki.issue("other", server=True)
    expired = pki.issue("old", server=True, expired=True)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    missing = tmp_path / "missing.pem"
    cases: list[tuple[list[str], str]] = [
        ([str(missing), str(server.key)], f"--tls-cert {missing}: no such file"),
        ([str(tmp_path), str(server.key)], f"--tls-cert {tmp_path}: is a directory"),
        ([str(not_pem), str(server.key)], f"--tls-cert {not_pem}: is not a PEM certificate"),
        (
            [str(server.key), str(server.key)],
            f"--tls-cert {server.key}: holds a private key, not a PEM certificate",
        ),
        ([str(server.cert), str(missing)], f"--tls-key {missing}: no such file"),
        ([str(server.cert), str(not_pem)], f"--tls-key {not_pem}: is not a PEM private key"),
        (
            [str(server.cert), str(server.cert)],
            f"--tls-key {server.cert}: holds a certificate, not a PEM private key",
        ),
        (
            [str(server.cert), str(other.key)],
            f"--tls-key {other.key}: does not match the certificate in --tls-cert {server.cert}",
        ),
        ([str(expired.cert), str(expired.key)], f"--tls-cert {expired.cert}: certificate"),
        (
            [str(server.cert), str(server.key), str(other.cert)],
            f"--tls-client-ca {other.cert}: certificate CN=other is not a CA",
        ),
        (
            [str(server.cert), str(server.key), str(missing)],
            f"--tls-client-ca {missing}: no such file",
        ),
    ]
    for files, expected in cases:
        argv = ["--tls-cert", files[0], "--tls-key", files[1]]
        if len(files) > 2:
            argv += ["--tls-client-ca", files[2]]
        line = await refused(capsys, tmp_path, *argv)
        assert expected in line, (files, line)
    assert "expired on" in await refused(
        capsys, tmp_path, "--tls-cert", str(expired.cert), "--tls-key", str(expired.key)
    )


async def test_two_authorization_headers_are_unauthenticated_whatever_they_hold(
    make_app: AppFactory,
) -> None:
    tokens = TokenStore.from_json(
        {
            "principals": [{"name": "alice", "groups": ["Admins"], "token": "alice-token"}],
            "policies": ["allow group Admins to manage all-resources in tenancy"],
        }
    )
    app = await make_app(tokens=tokens)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = wr_grpc.WorkRequestServiceStub(channel)
        one = (("authorization", "Bearer alice-token"),)
        assert await stub.ListWorkRequests(wr_pb.ListWorkRequestsRequest(), metadata=one)
        for second in ("Bearer alice-token", "Bearer nobody", "Basic x"):
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await stub.ListWorkRequests(
                    wr_pb.ListWorkRequestsRequest(),
                    metadata=(*one, ("authorization", second)),
                )
            details = details_of(failure.value)
            assert details.code == grpc.StatusCode.UNAUTHENTICATED
            assert "more than one authorization header" in details.message
