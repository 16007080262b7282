"""The full output of one execution, read from the results store (never held by the cell), and
followed live while the execution runs.

Output is played as a terminal shows it (njtui.model.terminal_text: `\\r` and erasing applied,
colours kept, every other escape dropped), so the pager shows what the cell shows. A rich output
(a MIME bundle) shows every type it has, each under a label line, drawn at the width the pager
had when it opened (Markdown and HTML also as their source, so a search finds what was written);
an update_display shows its new bundle where it came, and a clear_output is a note: nothing
the execution showed is hidden here. Lines are
drawn one row at a time from a list (a Line API widget), so 200,000 lines cost what the screen
shows; wrapping only needs each line's width, measured once as it comes in.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from njtui.model import ExecutionRecord
from njtui.model.output import display_id_of, terminal_safe
from njtui.model.terminal_text import OutputLines
from njtui.store.results import ResultsStore
from njtui.ui.pager_view import PagerLine, PagerView, pager_lines
from njtui.ui.rich_output import drawn_as_bundle, pager_parts

PAGER_BATCH = 5000
# While the store has not caught up with what the notebook already showed (the recorder writes
# a moment later), it is read again this often, for at most this many times, before live output
# is shown after it anyway.
CATCH_UP_INTERVAL = 0.2
CATCH_UP_TRIES = 25


DEFAULT_WIDTH = 100


class EventLines:
    """An execution's events as pager lines: text played as a terminal shows it, rich outputs
    drawn (each type of a bundle, labelled) at `width` columns."""

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        self.output = OutputLines()
        self.width = max(20, width)
        self._console: Console | None = None  # made in the thread that draws

    def feed(self, event: dict[str, Any]) -> list[PagerLine]:
        kind = event.get("type")
        data = event.get("data")
        if drawn_as_bundle(event):
            return [*pager_lines(self.output.close()), *self._bundle(str(kind), event, data if isinstance(data, dict) else {})]
        if kind == "clear_output":
            wait = " (wait: when the next output comes)" if event.get("wait") else ""
            return [*pager_lines(self.output.close()), PagerLine("label", f"── clear_output{wait}: the cell shows only what follows ──")]
        return pager_lines(self.output.feed_event(event))

    def _bundle(self, kind: str, event: dict[str, Any], data: dict[str, Any]) -> list[PagerLine]:
        metadata = event.get("metadata") if isinstance(event.get("metadata"), dict) else {}
        display_id = display_id_of(event)
        what = {"result": f"Out[{event.get('count')}]" if event.get("count") is not None else "result", "display": "display", "update_display": "update_display"}[kind]
        if display_id is not None:
            what += f" {terminal_safe(display_id)}"
        lines = []
        for label, renderable in pager_parts(data, metadata or {}):
            lines.append(PagerLine("label", f"── {what} · {label} ──"))
            lines.extend(PagerLine("stdout", line) for line in self._drawn(renderable))
        if not lines:
            lines.append(PagerLine("label", f"── {what} · an empty bundle ──"))
        return lines

    def _drawn(self, renderable: Any) -> list[str]:
        """A renderable as lines of text with colour sequences (SGR only, as any output line)."""
        if self._console is None:
            self._console = Console(file=io.StringIO(), width=self.width, color_system="truecolor", force_terminal=True, legacy_windows=False, emoji=False, highlight=False)
        console = self._console
        with console.capture() as capture:
            console.print(renderable, crop=False, soft_wrap=False)
        drawn = capture.get().rstrip("\n").split("\n")
        while drawn and not drawn[-1].strip():
            drawn.pop()
        return [terminal_safe(line, colours=True) for line in drawn]

    @property
    def open_line(self) -> tuple[str, str] | None:
        return self.output.open_line

    def end(self) -> list[PagerLine]:
        return pager_lines(self.output.end())


class SearchInput(Input):
    """The `/` prompt: Enter searches, Esc goes back to the output."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def action_cancel(self) -> None:
        screen = self.screen
        if isinstance(screen, PagerScreen):
            screen.close_search()


class PagerScreen(Screen[None]):
    """One execution's full output. `live`: it is still running; `feed` it the execution's
    protocol messages as they come (those the store already had are skipped)."""

    DEFAULT_CSS = """
    PagerScreen #pager-title {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    PagerScreen #pager-search {
        display: none;
        border: none;
        height: 1;
        padding: 0 1;
    }
    PagerScreen #pager-search.open {
        display: block;
    }
    """

    BINDINGS = [Binding("escape,q", "close", "close", show=False)]  # when the output is not focused

    def __init__(self, store: ResultsStore, record: ExecutionRecord, title: str, *, live: bool = False, seen_seq: int = 0) -> None:
        """`seen_seq`: the seq of the last output message shown before the pager opened
        (CellOutput.last_output_seq): live output is shown once the store has that one."""
        super().__init__()
        self.store = store
        self.record = record
        self.status = record.status
        # A title that ends with the record's status drops it: the pager says the status itself,
        # and it changes when a live execution ends.
        suffix = f" {record.status}"
        self.title_text = title[: -len(suffix)].rstrip(" ·") if title.endswith(suffix) else title
        self.live = live
        self.reading = True
        self.seen_seq = seen_seq
        self._output = EventLines()
        self._covered = 0  # the last seq whose output is in the view
        self._buffered: list[dict[str, Any]] = []  # live messages that came while the store was read
        self._catch_up_tries = 0
        self._gone = False  # batches still on their way are dropped
        # Held here, not queried: a batch may arrive while the screen is being taken down.
        self._title = Static(self.title_text, id="pager-title")
        self.view = PagerView(follow=live, id="pager-view")
        self._search = SearchInput(placeholder="search (Enter finds, Esc cancels)", id="pager-search")

    @property
    def lines_read(self) -> int:
        return len(self.view.lines)

    def compose(self) -> ComposeResult:
        yield self._title
        yield self.view
        yield self._search
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        # Rich outputs are drawn once, as wide as the screen is now (less the pager's margins).
        self._output.width = max(20, self.app.size.width - 2) if self.app.size.width else DEFAULT_WIDTH
        self.view.focus()
        self._show_title()
        self._load(0, final=not self.live)

    # -- reading the store
    @work(thread=True, exclusive=True, group="pager-load")
    def _load(self, after: int, final: bool) -> None:
        """Reads the execution's events after seq `after` into lines, in batches."""
        worker = get_current_worker()
        output = self._output  # the UI thread leaves it alone until this is done
        covered = after
        batch: list[PagerLine] = []
        for event in self.store.events(self.record):
            if worker.is_cancelled:
                return
            seq = event.get("seq")
            if isinstance(seq, int):
                if seq <= after:
                    continue
                covered = max(covered, seq)
            batch.extend(output.feed(event))
            if len(batch) >= PAGER_BATCH:
                if not self._call(self._add, batch, None):
                    return
                batch = []
        finished = None
        if not final:
            # Ended while unseen (the notebook had its `done` before the pager opened)?
            latest = self.store.find_exec(self.record.cell, self.record.exec_id)
            if latest is not None and latest.finished:
                finished = latest.status
        if final or finished is not None:
            batch.extend(output.end())
        open_line = output.open_line
        opened = None if open_line is None else PagerLine(*open_line)
        if not worker.is_cancelled:
            self._call(self._loaded, batch, opened, covered, finished)

    def _call(self, callback: Any, *args: Any) -> bool:
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:  # the app is closing
            return False
        return True

    def _add(self, finished: list[PagerLine], open_line: PagerLine | None) -> None:
        if not self._gone:
            self.view.add(finished, open_line)
            self._show_title()

    def _loaded(self, finished: list[PagerLine], open_line: PagerLine | None, covered: int, ended: str | None) -> None:
        if self._gone:
            return
        self._covered = max(self._covered, covered)
        self.view.add(finished, open_line)
        if ended is not None:
            self._end(ended)
        if self.live and self._covered < self.seen_seq and self._catch_up_tries < CATCH_UP_TRIES and not any(m.get("type") == "done" for m in self._buffered):
            # The notebook showed output the store does not have yet: read it again shortly.
            self._catch_up_tries += 1
            self.set_timer(CATCH_UP_INTERVAL, lambda: self._load(self._covered, final=False))
            self._show_title()
            return
        self.reading = False
        buffered, self._buffered = self._buffered, []
        for message in buffered:
            self._apply(message)
        self._show_title()

    # -- live
    def feed(self, message: dict[str, Any]) -> None:
        """A protocol message of this execution, as it comes (on the UI thread)."""
        if not self.live or self._gone:
            return
        if self.reading:
            self._buffered.append(message)
            return
        self._apply(message)
        self._show_title()

    def _apply(self, message: dict[str, Any]) -> None:
        if not self.live:
            return
        seq = message.get("seq")
        if isinstance(seq, int):
            if seq <= self._covered:
                return
            self._covered = seq
        if message.get("type") == "done":
            self.view.add(self._output.end(), None)
            self._end(message.get("status") or "ok")
            return
        finished = self._output.feed(message)
        open_line = self._output.open_line
        if finished or open_line is not None or self.view.has_open_line:
            self.view.add(finished, None if open_line is None else PagerLine(*open_line))

    def _end(self, status: str) -> None:
        self.live = False
        self.status = status
        self.view.follow = self.view.pinned = False

    # -- the title line
    def _show_title(self) -> None:
        view = self.view
        parts = [self.title_text, self.status]
        if self.live:
            parts.append("live")
        count = len(view.lines)
        parts.append(f"{'reading… ' if self.reading else ''}{count:,} line{'s' if count != 1 else ''}")
        if view.wrap:
            parts.append("wrapped")
        title = Text(" · ".join(parts))
        if view.search_text:
            title.append(" · ")
            title.append(f"/{view.search_text}", style="bold")
            if not view.matches:
                title.append(" no match")
            elif view.current_match is None:
                title.append(f" {len(view.matches):,} match{'es' if len(view.matches) != 1 else ''}")
            else:
                title.append(f" {view.current_match + 1:,}/{len(view.matches):,} matches")
        self._title.update(title)

    def on_unmount(self) -> None:
        self._gone = True

    # -- keys
    def action_close(self) -> None:
        self._gone = True
        self.app.pop_screen()

    def action_search(self) -> None:
        search = self._search
        search.add_class("open")
        search.value = ""
        search.focus()

    def close_search(self) -> None:
        self._search.remove_class("open")
        self.view.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.close_search()
        if not event.value:
            return
        view = self.view
        view.search(event.value)
        view.go_to_match(1)
        self._show_title()

    def action_next_match(self) -> None:
        self.view.go_to_match(1)
        self._show_title()

    def action_previous_match(self) -> None:
        self.view.go_to_match(-1)
        self._show_title()

    def action_toggle_wrap(self) -> None:
        self.view.set_wrap(not self.view.wrap)
        self._show_title()
