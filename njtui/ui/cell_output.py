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

TAIL_LINES = 30
MAX_LINE_CHARS = 1000


def _clip(text: str) -> str:
    if len(text) <= MAX_LINE_CHARS:
        return text
    return text[:MAX_LINE_CHARS] + f"… ({len(text) - MAX_LINE_CHARS} more characters)"


def _as_displayed(line: str) -> str:
    # A terminal shows what follows the last carriage return (progress bars redraw that way).
    if "\r" in line:
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    return _clip(terminal_safe(line))


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
        self.lines: deque[tuple[str, str]] = deque(maxlen=TAIL_LINES)
        self.open_line: tuple[str, str] | None = None  # the last line while it has no newline yet
        self.total_lines = 0
        self.earlier_output = False  # the store's tail was loaded: there is more before it
        self.files: list[dict[str, Any]] = []  # what the execution left in /results
        self.last_seq = 0
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
            if self.status != "ok" and self.reason:
                self.add_text("note", f"[{self.reason}]\n")
        else:
            self._add_event(message)
        self.generation += 1
        return True

    def _add_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "stream":
            self.add_text("stderr" if event.get("name") == "stderr" else "stdout", event.get("text", ""))
        elif kind == "result":
            text = (event.get("data") or {}).get("text/plain", "")
            self._close_open_line()
            count = event.get("count")
            prefix = f"Out[{count}]: " if count is not None else ""
            self.add_text("result", prefix + text + "\n")
        elif kind == "error":
            self._close_open_line()
            traceback = event.get("traceback") or ""
            if traceback:
                self.add_text("error", traceback if traceback.endswith("\n") else traceback + "\n")
            elif event.get("ename") == "ExitStatus":
                self.add_text("error", f"{event.get('evalue') or 'non-zero exit status'}\n")
            else:
                self.add_text("error", f"{event.get('ename', 'Error')}: {event.get('evalue', '')}\n")

    def set_files(self, files: list[dict[str, Any]]) -> None:
        self.files = list(files)
        self._close_open_line()
        for entry in self.files:
            self._push("file", f"{entry['name']}  {format_size(entry.get('size', 0))}  {entry.get('type', '')}")
        self.generation += 1

    def add_text(self, kind: str, text: str) -> None:
        if not text:
            return
        pieces = text.split("\n")
        if self.open_line is not None:
            open_kind, open_text = self.open_line
            if open_kind == kind:
                pieces[0] = open_text + pieces[0]
            else:
                self._push(open_kind, open_text)
            self.open_line = None
        *complete, rest = pieces
        if len(complete) > TAIL_LINES:
            # Only the tail is shown; count the lines that go by without building them.
            self.total_lines += len(complete) - TAIL_LINES
            complete = complete[-TAIL_LINES:]
        for line in complete:
            self._push(kind, line)
        if rest:
            # Long lines without newline (a progress bar) must not grow without bound.
            self.open_line = (kind, rest if len(rest) <= 4 * MAX_LINE_CHARS else rest[-4 * MAX_LINE_CHARS :])

    def _push(self, kind: str, line: str) -> None:
        self.lines.append((kind, _as_displayed(line)))
        self.total_lines += 1

    def _close_open_line(self) -> None:
        if self.open_line is not None:
            self._push(*self.open_line)
            self.open_line = None

    # -- reading
    @property
    def has_run(self) -> bool:
        return self.status is not None

    @property
    def finished(self) -> bool:
        return self.status in ("ok", "error", "interrupted", "lost")

    def visible_lines(self) -> list[tuple[str, str]]:
        lines = list(self.lines)
        if self.open_line is not None:
            lines.append((self.open_line[0], _as_displayed(self.open_line[1])))
        return lines[-TAIL_LINES:]

    @property
    def hidden(self) -> int:
        """Lines not shown in the cell: the pager has them."""
        shown = len(self.lines)
        return max(0, self.total_lines - shown)

    @property
    def has_hidden(self) -> bool:
        return self.hidden > 0 or self.earlier_output

    def elapsed(self, now: float | None = None) -> float | None:
        if self.status == "running" and self.started_at:
            return max(0.0, (now or time.time()) - self.started_at)
        return self.duration

    def is_stale_for(self, source_hash: str) -> bool:
        return self.has_run and self.source_hash is not None and self.source_hash != source_hash
