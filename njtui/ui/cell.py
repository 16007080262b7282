"""One notebook cell on screen: its source (highlighted, or a TextArea while edited), its output
tail, its status at the top left and "environment · language" at the bottom right."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Group, RenderableType
from rich.markdown import Markdown as RichMarkdown
from rich.syntax import Syntax
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static, TextArea

from njtui.model import Cell
from njtui.model.duration import format_duration
from njtui.ui.cell_output import CellOutput
from njtui.ui.images import drawn_images, estimated_rows

LEXERS = {"python": "python", "bash": "bash"}
STATUS_MARKS = {"ok": "✓", "error": "✗", "interrupted": "■", "lost": "✗", "queued": "…", "running": "●"}
OUTPUT_STYLES = {"stdout": "", "stderr": "red", "result": "bold", "error": "red", "note": "dim italic", "file": "cyan"}
OUTPUT_GUTTERS = {"stdout": "  ", "stderr": "▌ ", "result": "  ", "error": "▌ ", "note": "  ", "file": "▤ "}


def format_seconds(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def status_title(cell: Cell, output: CellOutput, now: float | None = None) -> str:
    if not cell.is_code:
        return ""
    count = f"[{output.count}]" if output.count is not None else "[ ]"
    if output.status is None:
        return count
    parts = [count, f"{STATUS_MARKS.get(output.status, '')} {output.status}"]
    if output.status == "running":
        parts.append(format_seconds(output.elapsed(now)))
    elif output.duration is not None and output.status != "queued":
        parts.append(format_seconds(output.duration))
    if output.is_stale_for(cell.source_hash):
        parts.append("stale")
    return " ".join(parts)


def output_lines_for(output: CellOutput) -> int:
    """Rows the output area takes: the height of a cell is known before it is mounted."""
    rows = len(output.visible_lines())
    if output.has_hidden:
        rows += 1
    return rows + 1 if rows else 0  # + the separator above the output


def source_rows(cell: Cell) -> int:
    return max(1, cell.source.rstrip("\n").count("\n") + 1)


def estimate_height(cell: Cell, output: CellOutput | None) -> int:
    """A cell's height in rows: exact for code cells (nothing wraps) without images, a guess for
    markdown and images."""
    rows = source_rows(cell)
    if not cell.is_code:
        rows += cell.source.count("\n#") + 1  # headings get a blank line
    elif output is not None:
        rows += output_lines_for(output) + estimated_rows(output.files)
    return rows + 2  # the border


# Terminals and tmux often send Shift/Ctrl+Enter as plain Enter: every run action also has a
# Ctrl+letter that arrives intact through xterm, tmux and SSH, and the footer shows both. They
# are bound on the focused widgets (the notebook view, the cell editor), not as app-wide priority
# bindings, so a run key typed right after a move key acts on the cell that key selected.
RUN_BINDINGS = [
    Binding("shift+enter,ctrl+n", "app.run_cell('next')", "run·next", key_display="⇧⏎/^N"),
    Binding("ctrl+enter,ctrl+r", "app.run_cell('stay')", "run", key_display="^⏎/^R"),
    Binding("alt+enter,ctrl+b", "app.run_cell('insert')", "run·new", key_display="M-⏎/^B"),
]


class CellEditor(TextArea):
    """The source editor of a cell in edit mode. Esc leaves edit mode (TextArea would move focus)."""

    BINDINGS = [*RUN_BINDINGS, Binding("escape", "app.leave_edit", "command mode", key_display="Esc")]

    class Leave(Message):
        pass

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            self.post_message(self.Leave())
            return
        await super()._on_key(event)


class CellWidget(Widget):
    """Shows one cell; the notebook view mounts these only near the viewport."""

    class Clicked(Message):
        def __init__(self, cell_id: str) -> None:
            super().__init__()
            self.cell_id = cell_id

    def on_click(self) -> None:
        if not self.editing:
            self.post_message(self.Clicked(self.cell.id))

    def __init__(self, cell: Cell, output: CellOutput, environment: str, *, dark: bool = True, blob_path: Callable[[str], Path] | None = None) -> None:
        super().__init__(classes="cell " + ("code" if cell.is_code else "markdown"))
        self.cell = cell
        self.output = output
        self.environment = environment
        self.dark = dark
        self.blob_path = blob_path  # where the results store keeps a file's content, for images
        self.editing = False
        self._shown_generation = -1
        self._shown_source: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="source", classes="source")
        yield Static("", id="output", classes="output")

    def on_mount(self) -> None:
        self._shown_source = None  # drawn now that the app's theme is known
        self.refresh_cell()

    def on_resize(self) -> None:
        note_height = getattr(self.parent, "note_height", None)
        if note_height is not None:
            note_height(self, self.outer_size.height)

    # -- rendering
    def _source_renderable(self):
        source = self.cell.source.rstrip("\n")
        self._shown_source = self.cell.source
        if not self.cell.is_code:
            return RichMarkdown(source) if source.strip() else Text("(empty markdown cell)", style="dim")
        if not source.strip():
            return Text("(empty cell)", style="dim")
        theme = self.app.current_theme if self.is_attached else None
        return Syntax(
            source,
            LEXERS.get(self.cell.language or "", "text"),
            theme="monokai" if self.dark else "default",
            # The notebook's own background, so a cell reads as one surface in every theme.
            background_color=(theme.background if theme is not None and theme.background else "default"),
            word_wrap=False,
        )

    def _output_renderable(self) -> RenderableType:
        text = self._output_text()
        images = self._images()
        if not images:
            return text
        text.end = "\n"
        return Group(text, *images)

    def _images(self) -> list:
        if not self.output.files or self.blob_path is None or (self.is_attached and self.app.no_color):
            return []  # without colour, half blocks draw nothing: the file list says it all
        return drawn_images(self.output.files, self.blob_path)

    def _output_text(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if self.output.has_hidden:
            hidden = self.output.hidden
            what = f"{hidden:,} earlier lines hidden" if hidden else "earlier output hidden"
            text.append(f"  … {what} · o opens the full output\n", style="dim italic")
        lines = self.output.visible_lines()
        for index, (kind, line) in enumerate(lines):
            text.append(OUTPUT_GUTTERS[kind], style=OUTPUT_STYLES[kind])
            text.append(line, style=OUTPUT_STYLES[kind])
            if index < len(lines) - 1:
                text.append("\n")
        return text

    def refresh_cell(self, *, now: float | None = None) -> None:
        """Brings the widget up to date with its cell and output; cheap when nothing changed."""
        self.border_title = status_title(self.cell, self.output, now)
        self.border_subtitle = f"{self.environment} · {self.cell.language}" if self.cell.is_code else "markdown"
        self.set_class(self.output.status in ("error", "lost"), "failed")
        self.set_class(self.output.status in ("running", "queued"), "busy")
        self.set_class(self.cell.is_code and self.output.is_stale_for(self.cell.source_hash), "stale")
        if not self.editing and self._shown_source != self.cell.source:
            self.query_one("#source", Static).update(self._source_renderable())
        if self._shown_generation != self.output.generation:
            self._shown_generation = self.output.generation
            output = self.query_one("#output", Static)
            output.display = self.cell.is_code and bool(self.output.visible_lines() or self.output.has_hidden)
            output.update(self._output_renderable())

    def forget_shown_output(self) -> None:
        self._shown_generation = -1

    def tick(self, now: float) -> None:
        if self.output.status == "running":
            self.border_title = status_title(self.cell, self.output, now)

    # -- edit mode
    async def start_editing(self) -> CellEditor:
        if self.editing:
            editor = self.query_one(CellEditor)
            editor.focus()
            return editor
        self.editing = True
        language = self.cell.language if self.cell.is_code else "markdown"
        editor = CellEditor(
            self.cell.source.rstrip("\n"),
            language=language if language in ("python", "bash", "markdown") else None,
            theme="monokai" if self.dark else "github_light",
            soft_wrap=False,
            tab_behavior="indent",
            show_line_numbers=False,
            id="editor",
        )
        source = self.query_one("#source", Static)
        source.display = False
        await self.mount(editor, after=source)
        editor.focus()
        editor.move_cursor(editor.document.end)
        self.add_class("editing")
        return editor

    async def stop_editing(self) -> None:
        if not self.editing:
            return
        self.editing = False
        for editor in self.query(CellEditor):
            await editor.remove()
        source = self.query_one("#source", Static)
        source.display = True
        self._shown_source = None
        self.remove_class("editing")
        self.refresh_cell(now=time.time())
