"""The `clusterops` command against an in-process server: tables, JSON, watch exit codes, errors."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys

import pytest
from clusterops.cli._output import Output
from clusterops.cli._progress import Progress
from clusterops.cli._table import LiveTable
from clusterops.cli.main import _without_server, check_server, main
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import App
from clusterops_server.clock import FakeClock
from clusterops_server.providers.simulated import SimulationSettings

from tests.conftest import AppFactory, seed_cluster, simulator
from tests.sdk_support import sdk_client, target


class Run:
    """`clusterops ...` in a worker thread (the server keeps serving), output captured."""

    def __init__(self, app: App, capsys: pytest.CaptureFixture[str]) -> None:
        self.app = app
        self.capsys = capsys
        self.out = ""
        self.err = ""

    async def __call__(self, *argv: str) -> int:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, [*argv, "--server", target(self.app)])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        assert "Traceback" not in self.out + self.err
        return code

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def run(app: App, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(app, capsys)


async def finished_pool(app: App, *, fail: bool = False, nodes: int = 2) -> str:
    cluster = await seed_cluster(app)
    if fail:
        await simulator(app).inject_fault("provision_node", cluster.id, message="no capacity")
    async with sdk_client(app) as client:
        operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=nodes)
        await operation.wait(timeout=20)
    return operation.id


async def test_work_requests_list_prints_a_table_and_json(app: App, run: Run) -> None:
    ok = await finished_pool(app)
    failed = await finished_pool(app, fail=True)

    assert await run("work-requests", "list") == 0
    header, *rows = run.out.splitlines()
    assert header.split()[:4] == ["ID", "OPERATION", "STATUS", "%"]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id[ok][1:4] == ["NODEPOOL_CREATE", "SUCCEEDED", "100"]
    assert by_id[failed][2] == "FAILED"
    # The failure reason is on the row (the newest error), no second call needed.
    assert header.split()[-2:] == ["LAST", "ERROR"]
    assert by_id[failed][-1] == "NodePoolCreationFailed"
    assert by_id[ok][-1] == "-"

    assert await run("wr", "list", "--status", "failed", "-o", "json") == 0
    listed = run.json()
    assert isinstance(listed, list)
    assert [item["id"] for item in listed] == [failed]
    assert listed[0]["status"] == "WORK_REQUEST_STATUS_FAILED"
    assert listed[0]["last_error"]["code"] == "NodePoolCreationFailed"


async def test_get_describes_one_resource_and_options_may_come_first(
    app: App, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    wr_id = await finished_pool(app, nodes=1)
    assert await run("work-requests", "get", wr_id) == 0
    assert f"id: {wr_id}" in run.out
    assert "status: SUCCEEDED" in run.out
    assert "entity_type: nodepool" in run.out

    assert await run("--output", "json", "work-requests", "errors", wr_id) == 0
    assert run.json() == []
    assert await run("-o", "json", "work-requests", "logs", wr_id) == 0
    logs = run.json()
    assert isinstance(logs, list)
    assert any("ACTIVE with 1 nodes" in entry["message"] for entry in logs)

    # The server can also come from the environment.
    monkeypatch.setenv("CLUSTEROPS_SERVER", target(app))
    code = await asyncio.to_thread(main, ["work-requests", "get", wr_id, "-o", "json"])
    assert code == 0


async def test_clusters_and_node_pools_create_get_and_list(app: App, run: Run) -> None:
    created = await run(
        "clusters", "create", "--compartment", "dev", "--name", "cli-1",
        "--kubernetes-version", "v1.30.4", "--region", "eu-frankfurt-1", "--plan", "aws",
        "--maintenance-window", "22:00-02:00", "--label", "team=edge", "--watch",
    )  # fmt: skip
    assert created == 0
    assert "name: cli-1" in run.out
    assert "SUCCEEDED" in run.out.splitlines()[-1]

    assert await run("clusters", "list", "--compartment", "dev", "-o", "json") == 0
    clusters = run.json()
    assert isinstance(clusters, list)
    (cluster,) = clusters
    assert cluster["labels"] == {"team": "edge"}
    assert cluster["lifecycle_state"] == "CLUSTER_LIFECYCLE_STATE_ACTIVE"

    assert await run("clusters", "get", cluster["id"]) == 0
    assert "maintenance_window:" in run.out
    assert "start_time: 22:00" in run.out

    created = await run(
        "node-pools", "create", "--cluster", cluster["id"], "--name", "w", "--nodes", "2", "-o",
        "json",
    )  # fmt: skip
    assert created == 0
    started = run.json()
    assert isinstance(started, dict)
    pool_id = started["node_pool"]["id"]
    assert (
        started["work_request"]["operation_type"] == "WORK_REQUEST_OPERATION_TYPE_NODEPOOL_CREATE"
    )
    assert await run("work-requests", "watch", started["work_request"]["id"]) == 0

    assert await run("node-pools", "list", "--cluster", cluster["id"]) == 0
    header, row = run.out.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "NODES", "STATE"]
    assert row.split()[:4] == [pool_id, "w", "2", "ACTIVE"]
    assert await run("node-pools", "get", pool_id, "-o", "json") == 0
    assert run.json()["node_count"] == 2  # type: ignore[index]
    assert await run("nodes", "list", "--node-pool", pool_id) == 0
    assert len(run.out.splitlines()) == 3


async def test_watch_exit_codes_tell_succeeded_failed_and_canceled_apart(
    make_app: AppFactory, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await make_app(simulation=SimulationSettings(seconds={"provision_node": 60}))
    run = Run(app, capsys)
    cluster = await seed_cluster(app)
    async with sdk_client(app) as client:
        canceled = await client.clusters.create_node_pool(cluster.id, name="c", node_count=1)
        await clock.wait_for_sleepers(1)
        await canceled.cancel()
        clock.advance(60)
        await canceled.wait(timeout=20)
        await simulator(app).inject_fault("provision_node", cluster.id, message="no capacity")
        failed = await client.clusters.create_node_pool(cluster.id, name="f", node_count=1)
        await clock.wait_for_sleepers(1)
        clock.advance(60)
        await failed.wait(timeout=20)
        succeeded = await client.clusters.create_node_pool(cluster.id, name="s", node_count=1)
        watching = asyncio.create_task(run("work-requests", "watch", succeeded.id))
        await clock.wait_for_sleepers(1)
        clock.advance(60)
        assert await watching == 0
    assert f"{succeeded.id} SUCCEEDED" in run.out

    assert await run("work-requests", "watch", failed.id) == 4
    assert "error NodeRegistrationFailed" in run.out
    assert "no capacity" in run.out
    assert await run("work-requests", "watch", canceled.id) == 5
    assert f"{canceled.id} CANCELED" in run.out


async def test_watch_with_json_output_streams_one_object_per_event(app: App, run: Run) -> None:
    wr_id = await finished_pool(app)
    assert await run("-o", "json", "work-requests", "watch", wr_id) == 0
    events = [json.loads(line) for line in run.out.splitlines()]
    assert events[0]["event_type"] == "WATCH_EVENT_TYPE_SNAPSHOT"
    assert events[-1]["work_request"]["status"] == "WORK_REQUEST_STATUS_SUCCEEDED"


def test_watch_on_a_terminal_draws_a_live_bar_with_the_latest_log_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(Output("table", screen))
    work_request = wr_pb.WorkRequest(
        id="wr-0123456789abcdef0123", status=wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS
    )
    for percent, log in [(0.0, "Work request started"), (50.0, "Node w-1 is ACTIVE")]:
        work_request.percent_complete = percent
        progress(
            wr_pb.WatchWorkRequestResponse(
                work_request=work_request, log_entries=[wr_pb.WorkRequestLogEntry(message=log)]
            )
        )
    work_request.status = wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
    assert progress.finish(work_request) == 0
    frames = screen.getvalue().split("\r\x1b[2K")
    assert frames[1].startswith("[........................]   0% IN_PROGRESS Work request started")
    assert frames[2].startswith("[############............]  50% IN_PROGRESS Node w-1 is ACTIVE")
    assert screen.getvalue().endswith("wr-0123456789abcdef0123 SUCCEEDED (0.0s watched)\n")


async def test_a_bad_argument_prints_one_line_and_the_field_violations(app: App, run: Run) -> None:
    assert await run("work-requests", "get", "not-an-id") == 1
    lines = run.err.splitlines()
    assert lines[0] == "clusterops: INVALID_ARGUMENT: the request has invalid fields:"
    assert lines[1].startswith("  work_request_id: 'not-an-id' is not an id of this kind")

    assert await run("work-requests", "list", "--status", "DONE") == 2
    assert run.err.startswith("clusterops: error: statuses: 'DONE' is not one of ACCEPTED")

    assert await run("clusters", "get", "cls-00000000000000000000") == 1
    assert run.err.strip() == (
        "clusterops: NOT_FOUND: cluster 'cls-00000000000000000000' was not found"
    )


async def test_a_malformed_command_line_is_a_usage_error(run: Run) -> None:
    with pytest.raises(SystemExit) as usage:
        await run("node-pools", "create", "--cluster", "cls-1", "--name", "w", "--nodes", "many")
    assert usage.value.code == 2


async def test_an_unreachable_server_gets_a_clear_message_and_exit_code_3() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clusterops.cli.main", "work-requests", "list",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CLUSTEROPS_SERVER": f"127.0.0.1:{port}"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 3
    assert out == b""
    message = err.decode()
    assert message.startswith(f"clusterops: cannot reach the server at 127.0.0.1:{port}")
    assert "CLUSTEROPS_SERVER" in message
    assert "Traceback" not in message
    assert len(message.splitlines()) == 1


async def test_orchestrations_create_list_show_operations_and_cancel(app: App, run: Run) -> None:
    cluster = await seed_cluster(app)
    assert (
        await run(
            "orc",
            "create",
            "--compartment",
            "dev",
            "--target",
            "all",
            "--version",
            "v1.30.4",
            "--dry-run",
            "--watch",
        )
        == 0
    )
    assert await run("orc", "list", "-o", "json") == 0
    listed = run.json()
    assert isinstance(listed, list)
    [orchestration] = listed
    assert orchestration["state"] == "ORCHESTRATION_STATE_SUCCEEDED"
    assert await run("orc", "operations", orchestration["id"]) == 0
    header, row = run.out.splitlines()
    assert header.split() == ["ID", "RUNTIME", "STATE", "WAIT", "UNTIL", "STAGE", "DESCRIPTION"]
    operation_id, runtime, state = row.split()[:3]
    assert (runtime, state) == (cluster.id, "SUCCEEDED")
    assert await run("orc", "operation", orchestration["id"], operation_id, "-o", "json") == 0
    detail = run.json()
    assert isinstance(detail, dict)
    assert detail["cluster_config"]["target_version"] == "v1.30.4"

    assert (
        await run(
            "orc",
            "create",
            "--compartment",
            "dev",
            "--target",
            f"runtime_id={cluster.id}",
            "--version",
            "v1.30.4",
            "--schedule-time",
            "2026-01-05T22:00:00Z",
            "-o",
            "json",
        )
        == 0
    )
    created = run.json()
    assert isinstance(created, dict)
    scheduled = created["orchestration"]
    assert scheduled["parameters"]["strategy"]["schedule"] == "SCHEDULE_TYPE_TIME"
    assert scheduled["description"] == "Scheduled 1 operation to start at 2026-01-05T22:00:00Z"
    assert await run("orc", "cancel", scheduled["id"], "-o", "json") == 0
    canceled = run.json()
    assert isinstance(canceled, dict)
    assert canceled["state"] == "ORCHESTRATION_STATE_CANCELING"
    await app.engine.wait_idle()  # it ends CANCELED at once: nothing had started
    with pytest.raises(SystemExit) as usage:
        await run(
            "orc", "create", "--compartment", "dev", "--target", "all", "--schedule-time", "x"
        )
    assert usage.value.code == 2


async def test_watch_with_json_output_is_json_lines_from_the_first_line(app: App, run: Run) -> None:
    cluster = await seed_cluster(app)
    created = await run(
        "node-pools", "create", "--cluster", cluster.id, "--name", "w", "--nodes", "1",
        "--watch", "-o", "json",
    )  # fmt: skip
    assert created == 0
    started, *events = [json.loads(line) for line in run.out.splitlines()]
    assert started["node_pool"]["name"] == "w"
    assert started["work_request"]["status"] == "WORK_REQUEST_STATUS_ACCEPTED"
    assert events[0]["event_type"] == "WATCH_EVENT_TYPE_SNAPSHOT"
    assert events[-1]["work_request"]["status"] == "WORK_REQUEST_STATUS_SUCCEEDED"

    upgraded = await run(
        "upgrades", "create", "--cluster", cluster.id, "--target-version", "v1.30.4",
        "--watch", "-o", "json",
    )  # fmt: skip
    assert upgraded == 0
    started, *events = [json.loads(line) for line in run.out.splitlines()]
    assert started["upgrade_workflow"]["spec"]["target_version"] == "v1.30.4"
    assert events[-1]["work_request"]["status"] == "WORK_REQUEST_STATUS_SUCCEEDED"

    assert await run("clusters", "get", cluster.id, "-o", "json") == 0
    assert len(run.out.splitlines()) > 1  # a single object is still indented for people


async def test_a_key_given_twice_is_a_usage_error_naming_it(
    app: App, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = await seed_cluster(app)
    for argv in (
        ["addons", "install", cluster.id, "CertManager", "--config", "numOfReplicas=1",
         "--config", "numOfReplicas=2"],
        ["upgrades", "create", "--cluster", cluster.id, "--target-version", "v1.30.4",
         "--label", "team=a", "--label", "team=b"],
        ["orc", "create", "--compartment", "dev", "--target", "region=a,region=b"],
    ):  # fmt: skip
        with pytest.raises(SystemExit) as usage:
            await run(*argv)
        assert usage.value.code == 2
        assert "given twice" in capsys.readouterr().err
    async with sdk_client(app) as client:
        assert [a async for a in client.addons.list(cluster.id)] == []
        assert [w async for w in client.upgrade_workflows.list()] == []

    installed = await run(
        "addons", "install", cluster.id, "CertManager", "--config", "numOfReplicas=2",
        "--config", "cert-manager.ContainerResources={}",
    )  # fmt: skip
    assert installed == 0


async def test_a_list_cut_short_by_limit_says_so_on_stderr_in_tables_only(
    app: App, run: Run
) -> None:
    await finished_pool(app, nodes=1)
    await finished_pool(app, nodes=1)

    assert await run("work-requests", "list", "--limit", "1") == 0
    assert len(run.out.splitlines()) == 2
    assert run.err == "clusterops: there are more results; raise --limit (now 1) to see them\n"
    assert await run("work-requests", "list", "--limit", "2") == 0
    assert len(run.out.splitlines()) == 3
    assert run.err == ""
    assert await run("work-requests", "list", "--limit", "1", "-o", "json") == 0
    assert len(run.json()) == 1  # type: ignore[arg-type]
    assert run.err == ""


async def test_watch_says_on_stderr_when_it_resumes_after_a_lost_connection(
    make_app: AppFactory, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    paced = SimulationSettings(seconds={"provision_node": 60})
    first = await make_app(simulation=paced, database="restart.db")
    cluster = await seed_cluster(first)
    async with sdk_client(first) as client:
        operation = await client.clusters.create_node_pool(cluster.id, name="w", node_count=1)
    await clock.wait_for_sleepers(1)
    run = Run(first, capsys)
    watching = asyncio.create_task(run("work-requests", "watch", operation.id))
    early = ""
    for _ in range(500):  # the CLI has printed its snapshot (bounded: 10 seconds)
        await asyncio.sleep(0.02)
        early += capsys.readouterr().out
        if f"{operation.id} is" in early:
            break
    async with sdk_client(first) as client:  # the revision its snapshot carried
        seen = client.work_requests.watch(operation.id)
        revision = (await anext(seen)).revision
        await seen.aclose()
    await first.stop(grace=0)

    second = await make_app(simulation=paced, database="restart.db", port=first.port)
    await clock.wait_for_sleepers(1)  # the node is provisioned again
    clock.advance(60)
    assert await asyncio.wait_for(watching, 60) == 0
    assert second.port == first.port
    assert f"{operation.id} SUCCEEDED" in run.out
    notices = run.err.splitlines()
    # The snapshot's revision: the CLI had it before the server went away.
    assert notices[0] == f"clusterops: connection lost; resuming from revision {revision}"
    assert all(n.startswith("clusterops: still reconnecting (attempt ") for n in notices[1:])


def cli_process(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The `clusterops` command as installed (its entry point), in a process of its own."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("GRPC_", "CLUSTEROPS_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "clusterops_cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **env},
    )


async def test_grpc_log_lines_stay_off_the_users_terminal_unless_asked_for(app: App) -> None:
    # TLS to a plaintext server: gRPC core logs the failed handshake itself.
    argv = ["work-requests", "list", "--tls", "--server", target(app), "--timeout", "5"]
    quiet = await asyncio.to_thread(cli_process, *argv)
    assert quiet.returncode == 3
    assert quiet.stdout == ""
    (line,) = quiet.stderr.splitlines()
    assert line.startswith(f"clusterops: TLS with the server at {target(app)} failed: ")
    assert "does it serve TLS?" in line

    asked = await asyncio.to_thread(cli_process, *argv, GRPC_VERBOSITY="INFO")
    assert asked.returncode == 3
    assert "ssl_transport_security" in asked.stderr  # what the CLI keeps quiet by default


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ("", "expected HOST:PORT such as localhost:50051, got ''"),
        ("localhost", "expected HOST:PORT such as localhost:50051, got 'localhost'"),
        ("foo:bar:baz", "([::1]:50051 for IPv6), got 'foo:bar:baz'"),
        ("localhost:99999", "(a port from 1 to 65535), got 'localhost:99999'"),
        ("http://localhost:50051", "got 'http://localhost:50051'"),
        ("unix:", "'unix:' names no address"),
    ],
)
def test_a_malformed_server_address_is_a_one_line_usage_error(server: str, problem: str) -> None:
    result = cli_process("work-requests", "list", "--server", server)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("clusterops: error: --server: ")
    assert line.endswith(problem)


def test_server_addresses_grpc_understands_are_accepted() -> None:
    for server in ("localhost:50051", "127.0.0.1:1", "[::1]:50051", "dns:///localhost:50051",
                   "unix:///run/clusterops.sock", "ipv4:127.0.0.1:50051"):  # fmt: skip
        check_server(server)


def test_serve_without_a_loadable_server_says_why_in_one_line() -> None:
    missing = ModuleNotFoundError("No module named 'clusterops_server'", name="clusterops_server")
    assert _without_server(missing) == (
        "serve needs the server, which is not installed: install clusterops-server "
        "(pip install ./server in a clusterops checkout)"
    )
    # Installed but broken (a dependency missing): the import error itself, not "install it".
    broken = ModuleNotFoundError("No module named 'sqlalchemy'", name="sqlalchemy")
    assert _without_server(broken) == (
        "serve needs the server, whose clusterops-server package cannot load: "
        "No module named 'sqlalchemy'"
    )


async def test_watch_with_filters_shows_the_set_until_it_is_done(app: App, run: Run) -> None:
    ok = await finished_pool(app)
    failed = await finished_pool(app, fail=True)
    args = ("wr", "watch", "--compartment", "dev", "--until-done")

    assert await run(*args) == 4  # one of them FAILED
    header, *rows = run.out.splitlines()
    assert header.split() == ["ID", "OPERATION", "STATUS", "%", "LAST"]
    by_id = {row.split()[0]: row for row in rows}
    assert by_id[ok].split()[1:4] == ["NODEPOOL_CREATE", "SUCCEEDED", "100"]
    assert "error NodePoolCreationFailed" in by_id[failed]

    assert await run(*args, "--filter", "status = SUCCEEDED", "-o", "json") == 0
    events = [json.loads(line) for line in run.out.splitlines()]
    assert [e["event_type"] for e in events] == [
        "WATCH_EVENT_TYPE_SNAPSHOT",
        "WATCH_EVENT_TYPE_SYNCED",
    ]
    assert events[0]["work_request"]["id"] == ok

    assert await run("wr", "watch", ok, "--filter", "status = FAILED") == 2


def test_the_live_table_redraws_in_place_and_drops_what_leaves_the_set() -> None:
    stream = io.StringIO()
    table = LiveTable(Output("table", stream=stream), live=True)
    wr = wr_pb.WorkRequest(
        id="wr-1", status=wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS, percent_complete=50
    )
    table(
        wr_pb.WatchWorkRequestsResponse(event_type=wr_pb.WATCH_EVENT_TYPE_SNAPSHOT, work_request=wr)
    )
    table(wr_pb.WatchWorkRequestsResponse(revision=7, event_type=wr_pb.WATCH_EVENT_TYPE_SYNCED))
    first = stream.getvalue()
    assert first.startswith("\x1b[J")
    assert "IN_PROGRESS" in first
    assert first.count("\n") == 2  # header and one row

    done = wr_pb.WorkRequest(id="wr-1", status=wr_pb.WORK_REQUEST_STATUS_SUCCEEDED)
    table(
        wr_pb.WatchWorkRequestsResponse(
            revision=8,
            event_type=wr_pb.WATCH_EVENT_TYPE_CHANGE,
            work_request=done,
            left_filter=True,
        )
    )
    redrawn = stream.getvalue()[len(first) :]
    assert redrawn.startswith("\x1b[2F\x1b[J")  # back up over the two lines drawn
    assert "wr-1" not in redrawn
    assert table.done


async def test_subscriptions_create_list_get_and_delete_with_their_delivery_state(
    app: App, run: Run
) -> None:
    created = await run(
        "subscriptions", "create", "--compartment", "dev", "--url", "http://127.0.0.1:9/hook",
        "--secret", "0123456789abcdef", "--filter", "status = FAILED", "-o", "json",
    )  # fmt: skip
    assert created == 0
    subscription = run.json()
    assert isinstance(subscription, dict)
    assert subscription["state"] == "SUBSCRIPTION_STATE_ACTIVE"
    assert "secret" not in subscription

    assert await run("sub", "list", "--compartment", "dev") == 0
    header, row = run.out.splitlines()
    assert header.split()[:5] == ["ID", "STATE", "CURSOR", "LAST", "STATUS"]
    assert row.split()[:2] == [subscription["id"], "ACTIVE"]
    assert await run("sub", "get", subscription["id"]) == 0
    assert "state: ACTIVE" in run.out
    assert "delivery:" in run.out
    assert await run("sub", "delete", subscription["id"]) == 0
    assert await run("sub", "get", subscription["id"]) == 1
    bad = await run(
        "sub", "create", "--compartment", "dev", "--url", "http://example.com/", "--secret", "x"
    )  # fmt: skip
    assert bad == 1  # the server refused it
    assert "url" in run.err
    assert "secret" in run.err


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--timeout", "-1"), "--timeout: must be a number of seconds above 0, not -1"),
        (("--timeout", "nan"), "--timeout: must be a number of seconds above 0, not nan"),
        (("--timeout", "soon"), "--timeout: not a number of seconds: 'soon'"),
    ],
)
def test_a_timeout_that_is_not_a_positive_number_is_a_usage_error(
    args: tuple[str, ...], problem: str
) -> None:
    result = cli_process("work-requests", "list", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].endswith(problem)
