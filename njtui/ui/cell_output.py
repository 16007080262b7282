"""What a cell widget shows of its latest execution: status, counters and a bounded output tail.

The full output lives in the results store; the UI keeps only the last TAIL_LINES entries of
each cell, so a cell printing 200,000 lines costs the UI a few kilobytes, and the pager reads the
rest from disk when asked. An entry is a line of text or a rich output (a `result` or `display`
MIME bundle, in its place among the text); at most MAX_RICH_IN_TAIL of those stay in the tail,
each drawn in at most rich_output.MAX_RICH_ROWS rows.

Rich outputs follow Jupyter: `update_display` replaces the bundle of every output with its
display id in every cell of the notebook (the cells' outputs share a DisplayRegistry), also one
loaded from the store after the update was; `clear_output` empties the cell's output, with
`wait` only when the next output comes, so a redrawn output does not flicker. A result with
nothing but text/plain is a line of text, as it has always been.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from rich.console import RenderableType

from njtui.model import ExecutionRecord
from njtui.model.output import OUTPUT_EVENTS, display_id_of, terminal_safe
from njtui.model.size import format_size
from njtui.model.terminal_text import OutputLines, truncate
from njtui.ui.rich_output import cell_renderable, drawn_as_bundle

TAIL_LINES = 30
MAX_RICH_IN_TAIL = 8
# Events that end a clear_output(wait=True): the cell empties as the next output comes.
SHOWING_EVENTS = ("stream", "result", "error", "display")
MAX_LINE_CHARS = 1000
MAX_REMEMBERED_UPDATES = 1000


class RichOutput:
    """One `result` or `display` in a cell: its bundle (replaced by an update_display), and its
    drawing, kept until the bundle changes."""

    __slots__ = ("__weakref__", "_drawn", "count", "data", "display_id", "kind", "metadata", "t", "version")

    def __init__(self, kind: str, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, count: int | None, t: float) -> None:
        self.kind = kind  # result | display
        self.data = data
        self.metadata = metadata
        self.display_id = display_id
        self.count = count
        self.t = t
        self.version = 0
        self._drawn: tuple[bool, RenderableType, int] | None = None

    def replace(self, data: dict[str, Any], metadata: dict[str, Any], t: float) -> None:
        self.data, self.metadata, self.t = data, metadata, t
        self.version += 1
        self._drawn = None

    def drawn(self, images: bool = True) -> tuple[RenderableType, int]:
        """The renderable and a guess of its rows; `images`: pictures can be drawn."""
        if self._drawn is None or self._drawn[0] != images:
            renderable, rows = cell_renderable(self.data, self.metadata, images=images)
            self._drawn = (images, renderable, rows)
        return self._drawn[1], self._drawn[2]

    @property
    def label(self) -> str | None:
        """What precedes a result's drawing, as a plain result's text has it."""
        if self.kind == "result" and self.count is not None:
            return f"Out[{self.count}]:"
        return None

    def __repr__(self) -> str:
        return f"RichOutput({self.kind}, {sorted(self.data)}, display_id={self.display_id!r})"


def _bundle(message: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    data = message.get("data")
    metadata = message.get("metadata")
    return (data if isinstance(data, dict) else {}), (metadata if isinstance(metadata, dict) else {})


class DisplayRegistry:
    """The outputs with a display id in every cell of a notebook, so an update_display reaches
    them all; and the latest update of each id, for outputs loaded (from the store) after it."""

    def __init__(self) -> None:
        self._outputs: dict[str, weakref.WeakSet[CellOutput]] = {}
        self._updates: OrderedDict[str, tuple[float, dict[str, Any], dict[str, Any]]] = OrderedDict()

    def shown(self, display_id: str, output: CellOutput, entry: RichOutput) -> None:
        self._outputs.setdefault(display_id, weakref.WeakSet()).add(output)
        update = self._updates.get(display_id)
        if update is not None and update[0] > entry.t:
            entry.replace(update[1], update[2], update[0])

    def update(self, display_id: str, data: dict[str, Any], metadata: dict[str, Any], t: float, source: CellOutput) -> None:
        self._updates[display_id] = (t, data, metadata)
        self._updates.move_to_end(display_id)
        while len(self._updates) > MAX_REMEMBERED_UPDATES:
            self._updates.popitem(last=False)
        for output in list(self._outputs.get(display_id, ())):
            if output.replace_display(display_id, data, metadata, t) and output is not source:
                output.changed_elsewhere()


# Outputs made without a registry (tests, a lone cell) share this one.
DISPLAYS = DisplayRegistry()


class CellOutputs(dict[str, "CellOutput"]):
    """The outputs of one notebook's cells, by cell id, sharing one display registry: display
    ids are the notebook's, as in Jupyter, and never reach another notebook's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.displays = DisplayRegistry()

    def for_cell(self, cell_id: str) -> CellOutput:
        output = self.get(cell_id)
        if output is None:
            output = self[cell_id] = CellOutput(self.displays)
        return output


def _clip(line: str) -> str:
    """A sanitised line as the cell shows it: long ones cut (never inside a colour sequence)."""
    clipped, more = truncate(line, MAX_LINE_CHARS)
    return clipped + f"… ({more} more characters)" if more else clipped


class CellOutput:
    """The UI's view of one cell's latest execution."""

    def __init__(self, displays: DisplayRegistry | None = None) -> None:
        self.displays = displays if displays is not None else DISPLAYS
        self.watchers: list[Callable[[], None]] = []  # the widget showing it, told of updates from other cells
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
        self.lines: deque[tuple[str, Any]] = deque(maxlen=TAIL_LINES)  # finished lines (clipped) and rich outputs ("rich", RichOutput)
        # Output played as a terminal shows it (\r, erasing, colours), across chunks: a progress
        # bar redrawn over many messages stays one line.
        self.text = OutputLines()
        self.total_lines = 0
        self.earlier_output = False  # the store's tail was loaded: there is more before it
        self.files: list[dict[str, Any]] = []  # what the execution left in /results
        self.last_seq = 0
        self.last_output_seq = 0  # the seq of the last output event seen: the pager needs the store to have it
        self.clear_pending = False  # a clear_output(wait=True) waits for the next output
        self.imported = False  # the execution came from a Jupyter notebook (`njtui import`)
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
        self.imported = bool(record.extra.get("imported"))
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
        kind = event.get("type")
        if kind in SHOWING_EVENTS and self.clear_pending:
            self.clear()
        if kind == "clear_output":
            if event.get("wait"):
                self.clear_pending = True
            else:
                self.clear()
            return
        if kind == "update_display":
            display_id = display_id_of(event)
            if display_id is not None:
                data, metadata = _bundle(event)
                self.displays.update(display_id, data, metadata, _time(event), self)
            return
        if kind in ("result", "display") and drawn_as_bundle(event):
            data, metadata = _bundle(event)
            self._push_rich(RichOutput(kind, data, metadata, display_id_of(event), event.get("count"), _time(event)))
            return
        self._push_all(self.text.feed_event(event))

    def _push_rich(self, entry: RichOutput) -> None:
        self._close_open_line()
        if entry.display_id is not None:
            self.displays.shown(entry.display_id, self, entry)
        self.lines.append(("rich", entry))
        self.total_lines += 1
        rich = sum(1 for kind, _ in self.lines if kind == "rich")
        while rich > MAX_RICH_IN_TAIL:
            kind, _ = self.lines.popleft()
            rich -= kind == "rich"

    def clear(self) -> None:
        """clear_output: what the execution showed so far goes (the store keeps it: the pager shows it)."""
        self.clear_pending = False
        self.lines.clear()
        self.text = OutputLines()
        self.total_lines = 0
        self.earlier_output = False
        self.generation += 1

    def replace_display(self, display_id: str, data: dict[str, Any], metadata: dict[str, Any], t: float) -> bool:
        """An update_display for `display_id`: True if this cell shows one."""
        changed = False
        for kind, entry in self.lines:
            if kind == "rich" and entry.display_id == display_id:
                entry.replace(data, metadata, t)
                changed = True
        if changed:
            self.generation += 1
        return changed

    def changed_elsewhere(self) -> None:
        for watcher in list(self.watchers):
            watcher()

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

    def rich_outputs(self) -> list[RichOutput]:
        return [entry for kind, entry in self.lines if kind == "rich"]

    def visible_lines(self) -> list[tuple[str, Any]]:
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


def _time(event: dict[str, Any]) -> float:
    t = event.get("t")
    return float(t) if isinstance(t, int | float) else time.time()
