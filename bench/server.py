"""`clusterops serve` in a process of its own, as a caller (and ratio.py) sees it.

Its log goes to a file: kept in $BENCH_SERVER_LOGS (one file per server, named after
the figure) when that is set, else in a temporary file that is removed with the server.
A server that dies, or answers an RPC with an error, is reported with its log's tail
and the log's path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LISTENING = re.compile(r"clusterops listening on (\S+):(\d+)")
START_TIMEOUT = 120.0


class ServerFailed(RuntimeError):
    pass


@dataclass
class Server:
    address: str
    log: Path
    process: subprocess.Popen[bytes]

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def problems(self) -> list[str]:
        """ERROR and CRITICAL lines of the server's log, and tracebacks' last lines."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [
            line
            for line in text.splitlines()
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]


def log_directory() -> Path | None:
    value = os.environ.get("BENCH_SERVER_LOGS")
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-")[:80] or "server"


@contextmanager
def serve(database_url: str, name: str, *extra: str) -> Iterator[Server]:
    """A server on a free port of 127.0.0.1 with zero-time simulated steps; stopped
    (SIGTERM, then SIGKILL) on exit."""
    keep = log_directory()
    if keep is not None:
        log = keep / f"{time.strftime('%Y%m%dT%H%M%S')}-{_slug(name)}.log"
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="bench-server-")
        log = Path(cleanup.name) / "server.log"
    command = [
        str(Path(sys.executable).with_name("clusterops")),
        "serve",
        "--port",
        "0",
        "--database-url",
        database_url,
        "--sim-step-seconds",
        "0",
        "--insecure-no-auth",
        *extra,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out)
    server = Server("", log, process)
    try:
        server.address = _wait_listening(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if cleanup is not None:
            cleanup.cleanup()


def _wait_listening(server: Server) -> str:
    assert server.process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = server.process.stdout.readline().decode(errors="replace")
        if not line:
            break
        match = LISTENING.search(line)
        if match:
            return f"{match.group(1)}:{match.group(2)}"
    server.process.kill()
    server.process.wait()
    raise ServerFailed(
        f"clusterops serve did not start (exit {server.process.returncode}); "
        f"log {server.log}:\n{server.tail()}"
    )
