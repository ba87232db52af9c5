"""The real `clusterops serve` process: clean SIGTERM shutdown, and SIGKILL loses no work."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from clusterops.v1 import clusters_pb2 as cl_pb
from clusterops.v1 import work_requests_pb2 as wr_pb
from clusterops_server.app import ServerConfig
from clusterops_server.domain.addons import ReconcileSettings
from clusterops_server.domain.notifications import WebhookSettings
from clusterops_server.providers.simulated import SimulationSettings
from clusterops_server.serve import ConfigError, add_arguments, config_from

from tests.conftest import Stubs


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port


@asynccontextmanager
async def running_server(database: Path | str, *extra: str) -> AsyncIterator[ServerProcess]:
    """`clusterops serve` on a SQLite file (a Path) or a database URL."""
    url = f"sqlite:///{database}" if isinstance(database, Path) else database
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clusterops.cli.main",
        "serve",
        "--port",
        "0",
        "--database-url",
        url,
        "--grace-seconds",
        "2",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "CLUSTEROPS_LOG_LEVEL": "WARNING"},
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    assert "listening on" in line, line
    server = ServerProcess(process, int(line.rsplit(":", 1)[1]))
    try:
        yield server
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def drain(call: Any) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


@pytest.mark.slow  # seconds of real time: started first
async def test_sigterm_ends_watches_with_a_resume_point_and_exits_zero(tmp_path: Path) -> None:
    async with running_server(tmp_path / "s.db", "--demo", "--sim-step-seconds", "30") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            listed = await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest())
            wr_id = listed.work_requests[0].id
            call = stubs.work_requests.WatchWorkRequest(
                wr_pb.WatchWorkRequestRequest(work_request_id=wr_id)
            )
            snapshot: Any = await call.read()
            assert snapshot.event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT

            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await drain(call)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "after_revision=" in (ended.value.details() or "")
        assert await asyncio.wait_for(server.process.wait(), 30) == 0


@pytest.mark.slow  # seconds of real time: started first
async def test_sigkill_mid_operation_resumes_after_restart(tmp_path: Path) -> None:
    database = tmp_path / "k.db"
    async with running_server(database, "--demo", "--sim-step-seconds", "1") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            listed = await stubs.work_requests.ListWorkRequests(wr_pb.ListWorkRequestsRequest())
            demo_wr = listed.work_requests[0].id
            cluster_id = next(
                r.identifier
                for r in listed.work_requests[0].resources
                if r.entity_type == "cluster"
            )
            call = stubs.work_requests.WatchWorkRequest(
                wr_pb.WatchWorkRequestRequest(work_request_id=demo_wr)
            )
            async for event in call:
                if event.work_request.status == wr_pb.WORK_REQUEST_STATUS_IN_PROGRESS:
                    break
            call.cancel()
        server.process.kill()
        await server.process.wait()

    async with running_server(database, "--sim-step-seconds", "0", "--insecure-no-auth") as server:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stubs = Stubs(channel)
            call = stubs.work_requests.WatchWorkRequest(
                wr_pb.WatchWorkRequestRequest(work_request_id=demo_wr)
            )
            events = [e async for e in call]
            assert events[-1].work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED
            pools = (
                await stubs.clusters.ListNodePools(
                    cl_pb.ListNodePoolsRequest(cluster_id=cluster_id)
                )
            ).node_pools
            assert [p.lifecycle_state for p in pools] == [cl_pb.NODE_POOL_LIFECYCLE_STATE_ACTIVE]
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), 30) == 0


async def serve_exit(tmp_path: Path, *argv: str, **env: str) -> tuple[int, str]:
    """Run `clusterops serve` expecting it to refuse to start: its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clusterops.cli.main",
        "serve",
        "--insecure-no-auth",
        "--database-url",
        f"sqlite:///{tmp_path / 'refused.db'}",
        *argv,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CLUSTEROPS_LOG_LEVEL": "WARNING", **env},
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, stderr.decode()


@pytest.mark.slow  # seconds of real time: started first
async def test_a_second_server_on_a_busy_port_refuses_to_start(tmp_path: Path) -> None:
    async with running_server(tmp_path / "first.db", "--insecure-no-auth") as first:
        code, stderr = await serve_exit(tmp_path, "--port", str(first.port))
        assert code == 1
        assert f"cannot listen on 127.0.0.1:{first.port}" in stderr
        assert "Traceback" not in stderr
        assert first.process.returncode is None


async def test_a_taken_metrics_port_stops_the_start_in_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, stderr = await serve_exit(tmp_path, "--port", "0", "--metrics-port", str(port))
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        f"clusterops serve: --metrics-port: cannot listen on 127.0.0.1:{port}: "
        "is another server using it?"
    )
    assert "Traceback" not in stderr


async def test_a_bad_environment_value_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    code, stderr = await serve_exit(tmp_path, CLUSTEROPS_PORT="abc")
    assert code == 2
    assert "argument --port: invalid int value: 'abc'" in stderr
    assert "Traceback" not in stderr


async def test_a_bad_log_level_in_the_environment_is_a_usage_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    code, stderr = await serve_exit(tmp_path, CLUSTEROPS_LOG_LEVEL="LOUD")
    assert code == 2
    assert stderr.strip().splitlines() == [
        "clusterops serve: --log-level (env CLUSTEROPS_LOG_LEVEL) must be one of "
        "DEBUG, INFO, WARNING, ERROR, not 'LOUD'"
    ]


def test_addon_reconcile_flags_and_environment_reach_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def config(*argv: str) -> ServerConfig:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return config_from(parser.parse_args(["--insecure-no-auth", *argv]))

    assert config().reconcile == ReconcileSettings()
    monkeypatch.setenv("CLUSTEROPS_ADDON_ATTENTION_WINDOW_HOURS", "6")
    settings = config(
        "--addon-check-hours",
        "1",
        "--addon-attention-first-minutes",
        "0.5",
        "--addon-attention-growth",
        "2",
        "--addon-attention-max-minutes",
        "10",
        "--addon-work-request-timeout-minutes",
        "5",
    ).reconcile
    assert (
        settings.active_interval,
        settings.attention_first_interval,
        settings.attention_growth,
        settings.attention_max_interval,
        settings.attention_window,
        settings.work_request_timeout,
    ) == (
        timedelta(hours=1),
        timedelta(seconds=30),
        2.0,
        timedelta(minutes=10),
        timedelta(hours=6),
        timedelta(minutes=5),
    )
    with pytest.raises(ConfigError, match="--addon-attention-growth must be at least 1"):
        config("--addon-attention-growth", "0.5")
    with pytest.raises(ConfigError, match="--addon-check-hours must be positive"):
        config("--addon-check-hours", "0")


def test_simulated_step_times_reach_the_config_per_action_over_the_default() -> None:
    def config(*argv: str) -> ServerConfig:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return config_from(parser.parse_args(["--insecure-no-auth", *argv]))

    assert config().simulation == SimulationSettings()
    assert config("--demo").simulation.duration("create_cluster") == 2.0
    simulation = config(
        "--sim-step-seconds",
        "1",
        "--sim-action-seconds",
        "upgrade:PreCheck=3600",
        "--sim-action-seconds",
        "provision_node=0",
        "--sim-action-seconds",
        "upgrade:PreCheck=60",  # the last one counts
    ).simulation
    assert simulation.duration("upgrade:PreCheck") == 60.0
    assert simulation.duration("provision_node") == 0.0
    assert simulation.duration("upgrade:Snapshot") == 1.0


def test_webhook_flags_and_environment_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    def config(*argv: str) -> ServerConfig:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return config_from(parser.parse_args(["--insecure-no-auth", *argv]))

    assert config().webhooks == WebhookSettings()
    monkeypatch.setenv("CLUSTEROPS_WEBHOOK_SUSPEND_AFTER_HOURS", "2")
    settings = config("--webhook-max-backoff-seconds", "60").webhooks
    assert (settings.suspend_after, settings.max_backoff) == (
        timedelta(hours=2),
        timedelta(seconds=60),
    )
    with pytest.raises(ConfigError):
        config("--webhook-suspend-after-hours", "0")
    monkeypatch.delenv("CLUSTEROPS_WEBHOOK_SUSPEND_AFTER_HOURS")
    # Left unset, suspension comes at 12 h, or at half a shorter retention.
    assert config().webhooks.suspend_after == timedelta(hours=12)
    assert config("--event-retention-hours", "6").webhooks.suspend_after == timedelta(hours=3)
    with pytest.raises(ConfigError, match="must be shorter than --event-retention-hours"):
        config("--webhook-suspend-after-hours", "24")
    assert config(
        "--webhook-suspend-after-hours", "47", "--event-retention-hours", "48"
    ).webhooks.suspend_after == timedelta(hours=47)
