"""`work-requests watch --filter ...`: a live table of many work requests, one stream.

On a terminal the table is redrawn in place after each change; in a pipe or a log each
change is one plain line; with `--output json` each event is one JSON object per line.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from clusterops import WatchManyEvent, WorkRequest
from clusterops.cli._output import Output, enum_label, to_json
from clusterops.cli._progress import EXIT_FAILED, EXIT_SUCCEEDED, status_label
from clusterops.v1 import work_requests_pb2 as wr_pb

_OPERATION = wr_pb.WorkRequestOperationType.DESCRIPTOR
HEADER = ("ID", "OPERATION", "STATUS", "%", "LAST")
_TERMINAL = frozenset(
    {
        wr_pb.WORK_REQUEST_STATUS_SUCCEEDED,
        wr_pb.WORK_REQUEST_STATUS_FAILED,
        wr_pb.WORK_REQUEST_STATUS_CANCELED,
    }
)


@dataclass
class Row:
    work_request: WorkRequest
    # The newest log line, or the newest error once there is one.
    last: str = ""

    def cells(self) -> list[str]:
        wr = self.work_request
        return [
            wr.id,
            enum_label(_OPERATION, wr.operation_type),
            status_label(wr),
            f"{wr.percent_complete:.0f}",
            self.last or "-",
        ]


def _last(event: WatchManyEvent, before: str) -> str:
    wr = event.work_request
    if wr.HasField("last_error"):
        return f"error {wr.last_error.code}: {wr.last_error.message}"
    if event.log_entries:
        return event.log_entries[-1].message
    return before


class LiveTable:
    """Receives each event of `watch_many` once and shows the set as it is now."""

    def __init__(self, output: Output, *, live: bool | None = None) -> None:
        self.output = output
        self.live = output.stream.isatty() if live is None else live
        self.rows: dict[str, Row] = {}
        self.synced = False
        self._drawn_lines = 0

    def __call__(self, event: WatchManyEvent) -> None:
        if self.output.json:
            self.output.json_line(to_json(event))
        if event.event_type == wr_pb.WATCH_EVENT_TYPE_SYNCED:
            self.synced = True
            if not self.output.json:
                self._show_all()
            return
        wr = event.work_request
        if event.event_type == wr_pb.WATCH_EVENT_TYPE_SNAPSHOT:
            if self.synced:  # the SDK started again from a fresh snapshot
                self.synced = False
                self.rows.clear()
            self.rows[wr.id] = Row(wr, _last(event, ""))
            return
        known = self.rows.get(wr.id)
        row = Row(wr, _last(event, known.last if known else ""))
        if event.left_filter:
            self.rows.pop(wr.id, None)
        else:
            self.rows[wr.id] = row
        if self.output.json:
            return
        if self.live:
            self._draw()
        else:
            gone = " (no longer matches)" if event.left_filter else ""
            self.output.line("  ".join(row.cells()) + gone)

    @property
    def done(self) -> bool:
        """Synced, and every work request shown has finished."""
        return self.synced and all(r.work_request.status in _TERMINAL for r in self.rows.values())

    def exit_code(self) -> int:
        """EXIT_FAILED if a work request shown FAILED, else EXIT_SUCCEEDED."""
        failed = wr_pb.WORK_REQUEST_STATUS_FAILED
        if any(r.work_request.status == failed for r in self.rows.values()):
            return EXIT_FAILED
        return EXIT_SUCCEEDED

    def _show_all(self) -> None:
        if self.live:
            self._draw()
            return
        self.output.grid(HEADER, [r.cells() for r in self.rows.values()])

    def _draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        rows = [HEADER, *(r.cells() for r in self.rows.values())]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()[:width]
            for row in rows
        ]
        stream = self.output.stream
        if self._drawn_lines:
            stream.write(f"\x1b[{self._drawn_lines}F")  # back to the table's first line
        stream.write("\x1b[J" + "\n".join(lines) + "\n")  # clear below, then redraw
        stream.flush()
        self._drawn_lines = len(lines)
