"""Showing a work request as it runs: a live bar on a terminal, plain lines in a pipe or log,
one JSON object per event for scripts."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator

from clusterops import WatchEvent, WorkRequest, WorkRequestError
from clusterops.cli._output import Output, enum_label, to_json
from clusterops.v1 import work_requests_pb2 as wr_pb

_STATUS = wr_pb.WorkRequestStatus.DESCRIPTOR
_BAR_WIDTH = 24

# Exit codes of `watch` (and of mutations run with --watch).
EXIT_SUCCEEDED = 0
EXIT_FAILED = 4
EXIT_CANCELED = 5


def status_label(work_request: WorkRequest) -> str:
    return enum_label(_STATUS, work_request.status)


def exit_code(work_request: WorkRequest) -> int:
    if work_request.status == wr_pb.WORK_REQUEST_STATUS_SUCCEEDED:
        return EXIT_SUCCEEDED
    if work_request.status == wr_pb.WORK_REQUEST_STATUS_CANCELED:
        return EXIT_CANCELED
    return EXIT_FAILED


def bar(percent: float, width: int = _BAR_WIDTH) -> str:
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    """Receives each watch event once (as `wait(on_event=...)`'s callback) and prints it."""

    def __init__(self, output: Output, *, live: bool | None = None) -> None:
        self.output = output
        stream = output.stream
        self.live = stream.isatty() if live is None else live
        self.latest_log = ""
        self.errors: list[WorkRequestError] = []
        self._last_status = -1
        self._started = time.monotonic()
        self._drawn = False

    def __call__(self, event: WatchEvent) -> None:
        self.errors.extend(event.errors)
        if event.log_entries:
            self.latest_log = event.log_entries[-1].message
        if self.output.json:
            self.output.json_line(to_json(event))
        elif self.live:
            self._draw(event.work_request)
        else:
            self._plain(event)

    @contextlib.contextmanager
    def showing_reconnections(self) -> Iterator[None]:
        """While the watch runs, say on stderr when the SDK reconnects it."""
        watch_logger = logging.getLogger("clusterops.watch")
        handler = _Reconnections(self)
        level = watch_logger.level
        watch_logger.addHandler(handler)
        if watch_logger.getEffectiveLevel() > logging.INFO:
            watch_logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            watch_logger.removeHandler(handler)
            watch_logger.setLevel(level)

    def notice(self, text: str) -> None:
        """A status line on stderr, below the live bar rather than through it."""
        if self._drawn:
            self.output.line()
            self._drawn = False
        self.output.note(text)

    def _draw(self, work_request: WorkRequest) -> None:
        text = (
            f"{bar(work_request.percent_complete)} {work_request.percent_complete:3.0f}% "
            f"{status_label(work_request):<11} {self.latest_log}"
        )
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.output.stream.write("\r\x1b[2K" + text[:width])
        self.output.stream.flush()
        self._drawn = True

    def _plain(self, event: WatchEvent) -> None:
        work_request = event.work_request
        percent = f"[{work_request.percent_complete:3.0f}%]"
        if work_request.status != self._last_status:
            self._last_status = work_request.status
            self.output.line(f"{percent} {work_request.id} is {status_label(work_request)}")
        for entry in event.log_entries:
            self.output.line(f"{percent} {entry.message}")
        for error in event.errors:
            self.output.line(f"{percent} error {error.code}: {error.message}")

    def finish(self, work_request: WorkRequest) -> int:
        """Print the outcome; return the exit code that tells it."""
        code = exit_code(work_request)
        if self.output.json:
            return code
        if self._drawn:
            self.output.line()  # keep the last bar on screen
        seconds = time.monotonic() - self._started
        self.output.line(f"{work_request.id} {status_label(work_request)} ({seconds:.1f}s watched)")
        if self.live:
            for error in self.errors:
                self.output.line(f"  error {error.code}: {error.message}")
        return code


class _Reconnections(logging.Handler):
    """The SDK's watch reconnections (logger "clusterops.watch") as short status lines."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        action = getattr(record, "watch_action", "")
        revision = getattr(record, "revision", 0)
        attempt = getattr(record, "attempt", 0)
        if action == "reconnect" and attempt == 1:
            self.progress.notice(f"connection lost; resuming from revision {revision}")
        elif action == "reconnect":
            self.progress.notice(
                f"still reconnecting (attempt {attempt}) to resume from revision {revision}"
            )
        elif action == "restart":
            self.progress.notice(
                f"revision {revision} can no longer be resumed; starting again from now"
            )
