"""What a cell widget shows of its latest execution: status, counters and a bounded output tail.

The full output lives in the results store; the UI keeps only the last TAIL_LINES lines of each
cell, so a cell printing 200,000 lines costs the UI a few kilobytes, and the pager reads the
rest from disk when asked.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from njtui.model import ExecutionRecord
from njtui.model.output import terminal_safe
from njtui.model.size import format_size
from njtui.model.terminal_text import OutputLines, truncate

TAIL_LINES = 30
OUTPUT_EVENTS = ("stream", "result", "error")
MAX_LINE_CHARS = 1000


def _clip(line: str) -> str:
    """A sanitised line as the cell shows it: long ones cut (never inside a colour sequence)."""
    clipped, more = truncate(line, MAX_LINE_CHARS)
    return clipped + f"… ({more} more characters)" if more else clipped


class CellOutput:
    """The UI's view of one cell's latest execution."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Back to a cell never run: every field as a new CellOutput has it."""
        self.status: str | None = None  # None: never run; queued | running | ok | error | interrupted | lost
        self.exec_id: str | None = None
        self.count: int | None = None
        self.started_at: float | None = None
        self.duration: float | None = None
        self.source_hash: str | None = None
        self.reason: str | None = None
        self.lines: deque[tuple[str, str]] = deque(maxlen=TAIL_LINES)  # finished lines, clipped
        # Output played as a terminal shows it (\r, erasing, colours), across chunks: a progress
        # bar redrawn over many messages stays one line.
        self.text = OutputLines()
        self.total_lines = 0
        self.earlier_output = False  # the store's tail was loaded: there is more before it
        self.files: list[dict[str, Any]] = []  # what the execution left in /results
        self.last_seq = 0
        self.last_output_seq = 0  # the seq of the last stream/result/error seen: the pager needs the store to have it
        self.generation = 0  # bumped on every change, so widgets redraw only when needed

    # -- building
    def begin(self, exec_id: str | None, source_hash: str | None) -> None:
        """A new execution of the cell was sent: its old output goes."""
        self._reset()
        self.status = "queued"
        self.exec_id = exec_id
        self.source_hash = source_hash
        self.generation += 1

    def load(self, record: ExecutionRecord, events: list[dict[str, Any]], truncated: bool) -> None:
        """The cell's latest stored execution, as found when the notebook opens."""
        self._reset()
        self.exec_id = record.exec_id
        self.count = record.count
        self.source_hash = record.source_hash
        self.started_at = record.started_at
        self.duration = record.duration
        self.reason = record.reason
        self.status = record.status
        self.earlier_output = truncated
        for event in events:
            self._add_event(event)
            self.last_seq = max(self.last_seq, event.get("seq") or 0)
            if event.get("type") in OUTPUT_EVENTS:
                self.last_output_seq = max(self.last_output_seq, event.get("seq") or 0)
        if record.finished:
            self._push_all(self.text.end())
        self.generation += 1

    def apply(self, message: dict[str, Any]) -> bool:
        """A protocol message of this cell's execution; False if it was seen already."""
        seq = message.get("seq")
        if seq is not None:
            if seq <= self.last_seq:
                return False
            self.last_seq = seq
        kind = message.get("type")
        if kind == "queued":
            self.status = self.status if self.status == "running" else "queued"
        elif kind == "start":
            self.status = "running"
            self.count = message.get("count")
            self.started_at = message.get("t") or time.time()
        elif kind == "files":
            self.set_files(message.get("files") or [])
        elif kind == "done":
            self.status = message.get("status") or "ok"
            self.duration = message.get("duration")
            self.reason = message.get("reason")
            if self.count is None:
                self.count = message.get("count")
            # What was left on the last line stays (unless it erased itself), and a sequence cut
            # off by the end of the output is dropped.
            self._push_all(self.text.end())
            if self.status != "ok" and self.reason:
                self.add_text("note", f"[{self.reason}]\n")
        else:
            self._add_event(message)
            if kind in OUTPUT_EVENTS and seq is not None:
                self.last_output_seq = seq
        self.generation += 1
        return True

    def _add_event(self, event: dict[str, Any]) -> None:
        self._push_all(self.text.feed_event(event))

    def set_files(self, files: list[dict[str, Any]]) -> None:
        self.files = list(files)
        self._close_open_line()
        for entry in self.files:
            # A name is one line of text, whatever it holds.
            self._push("file", f"{terminal_safe(str(entry['name']))}  {format_size(entry.get('size', 0))}  {terminal_safe(str(entry.get('type', '')))}")
        self.generation += 1

    def add_text(self, kind: str, text: str) -> None:
        self._push_all(self.text.feed(kind, text))

    def _push_all(self, lines: list[tuple[str, str]]) -> None:
        if len(lines) > TAIL_LINES:
            # Only the tail is shown; count the lines that go by without clipping them.
            self.total_lines += len(lines) - TAIL_LINES
            lines = lines[-TAIL_LINES:]
        for kind, line in lines:
            self._push(kind, line)

    def _push(self, kind: str, line: str) -> None:
        self.lines.append((kind, _clip(line)))
        self.total_lines += 1

    def _close_open_line(self) -> None:
        self._push_all(self.text.close())

    @property
    def open_line(self) -> tuple[str, str] | None:
        """The last line while it has no newline yet (a progress bar), as it shows now."""
        return self.text.open_line

    # -- reading
    @property
    def has_run(self) -> bool:
        return self.status is not None

    @property
    def finished(self) -> bool:
        return self.status in ("ok", "error", "interrupted", "lost")

    def visible_lines(self) -> list[tuple[str, str]]:
        lines = list(self.lines)
        open_line = self.text.open_line
        if open_line is not None:
            lines.append((open_line[0], _clip(open_line[1])))
        return lines[-TAIL_LINES:]

    @property
    def hidden(self) -> int:
        """Lines not shown in the cell: the pager has them."""
        shown = len(self.visible_lines())
        return max(0, self.total_lines + (self.text.open_line is not None) - shown)

    @property
    def has_hidden(self) -> bool:
        return self.hidden > 0 or self.earlier_output

    def elapsed(self, now: float | None = None) -> float | None:
        if self.status == "running" and self.started_at:
            return max(0.0, (now or time.time()) - self.started_at)
        return self.duration

    def is_stale_for(self, source_hash: str) -> bool:
        return self.has_run and self.source_hash is not None and self.source_hash != source_hash
