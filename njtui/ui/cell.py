"""One notebook cell on screen: its source (highlighted, or a TextArea while edited), its output
tail, its status at the top left and "environment · language" at the bottom right."""

from __future__ import annotations

import re
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
from njtui.ui.cell_output import CellOutput, RichOutput
from njtui.ui.images import drawn_images, estimated_rows
from njtui.ui.terminal_text import styled_line

LEXERS = {"python": "python", "bash": "bash"}
STATUS_MARKS = {"ok": "✓", "error": "✗", "interrupted": "■", "lost": "✗", "queued": "…", "running": "●"}
OUTPUT_STYLES = {"stdout": "", "stderr": "red", "result": "bold", "error": "red", "note": "dim italic", "file": "cyan", "label": "dim"}
OUTPUT_GUTTERS = {"stdout": "  ", "stderr": "▌ ", "result": "  ", "error": "▌ ", "note": "  ", "file": "▤ ", "label": "  "}


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
    if output.imported:
        parts.append("imported")
    return " ".join(parts)


def output_lines_for(output: CellOutput) -> int:
    """Rows the output area takes: the height of a cell is known before it is mounted (a guess
    for rich outputs; the view measures the cell once drawn)."""
    rows = 0
    for kind, entry in output.visible_lines():
        if kind == "rich":
            rows += entry.drawn()[1] + (entry.label is not None)
        else:
            rows += 1
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
    Binding("shift+enter,ctrl+n", "screen.run_cell('next')", "run·next", key_display="⇧⏎/^N"),
    Binding("ctrl+enter,ctrl+r", "screen.run_cell('stay')", "run", key_display="^⏎/^R"),
    Binding("alt+enter,ctrl+b", "screen.run_cell('insert')", "run·new", key_display="M-⏎/^B"),
]


# After these, the next line is indented one level more (Python blocks, shell compounds).
OPENERS = {"python": re.compile(r":\s*(#.*)?$"), "bash": re.compile(r"(\b(then|do|else)|\{|\()\s*(#.*)?$")}
# After these, the next line is one level less (nothing more runs in the block).
CLOSERS = {"python": re.compile(r"^\s*(return|pass|break|continue|raise)\b")}
INDENT = "    "
# Tab completes when the cursor follows one of these; else it indents.
COMPLETES_AFTER = re.compile(r"[\w.$/~-]$")


def index_at(text: str, location: tuple[int, int]) -> int:
    """A (row, column) of the editor as a character offset in its text (the protocol's cursor)."""
    row, column = location
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[:row]) + column


def location_at(text: str, index: int) -> tuple[int, int]:
    before = text[:index].split("\n")
    return len(before) - 1, len(before[-1])


def next_line_indent(line: str, language: str | None) -> str:
    """The indentation a new line gets after `line` (the text before the cursor)."""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    opener, closer = OPENERS.get(language or ""), CLOSERS.get(language or "")
    if opener is not None and opener.search(line):
        return indent + INDENT
    if closer is not None and closer.search(line):
        return indent[: max(0, len(indent) - len(INDENT))]
    return indent


class CellEditor(TextArea):
    """The source editor of a cell in edit mode. Esc leaves edit mode (TextArea would move
    focus), Enter keeps the indentation (and opens or closes a block), Tab after a name asks
    the runtime for completions."""

    BINDINGS = [
        *RUN_BINDINGS,
        Binding("escape", "leave", "command mode", key_display="Esc"),
        Binding("ctrl+f", "screen.find", "find", key_display="^F"),
    ]

    class Leave(Message):
        pass

    class CompletionRequested(Message):
        def __init__(self, editor: CellEditor, code: str, cursor: int) -> None:
            super().__init__()
            self.editor = editor
            self.code = code
            self.cursor = cursor

    def __init__(self, *args, code_language: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.code_language = code_language

    @property
    def cursor_index(self) -> int:
        return index_at(self.text, self.cursor_location)

    def action_leave(self) -> None:
        self.post_message(self.Leave())

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            self.post_message(self.Leave())
            return
        if event.key == "enter" and not self.read_only:
            event.stop()
            event.prevent_default()
            row, column = self.cursor_location
            before = self.document.get_line(row)[:column]
            self.replace("\n" + next_line_indent(before, self.code_language), self.selection.start, self.selection.end)
            return
        if event.key == "tab" and self.code_language and self.selection.is_empty:
            row, column = self.cursor_location
            if COMPLETES_AFTER.search(self.document.get_line(row)[:column]):
                event.stop()
                event.prevent_default()
                self.post_message(self.CompletionRequested(self, self.text, self.cursor_index))
                return
        await super()._on_key(event)

    def apply_completion(self, start: int, end: int, text: str) -> None:
        """Replaces code[start:end] (character offsets) with `text`, the cursor after it."""
        self.replace(text, location_at(self.text, start), location_at(self.text, end))


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
        self.line_numbers = False
        self.wrap = False
        self.highlight: str | None = None  # text the find bar is looking for
        self._shown_generation: tuple | None = None
        self._shown_source: tuple | None = None
        self._watched: CellOutput | None = None  # the output whose updates from other cells redraw this widget
        # Held, not queried: a widget removed while mounting has no children to find.
        self._source = Static("", id="source", classes="source")
        self._output = Static("", id="output", classes="output")

    def compose(self) -> ComposeResult:
        yield self._source
        yield self._output

    def on_mount(self) -> None:
        self._shown_source = None  # drawn now that the app's theme is known
        self.refresh_cell()

    def on_unmount(self) -> None:
        self._watch(None)

    def _watch(self, output: CellOutput | None) -> None:
        """An update_display in another cell can change this cell's output: it redraws then."""
        if self._watched is output:
            return
        if self._watched is not None and self._output_changed_elsewhere in self._watched.watchers:
            self._watched.watchers.remove(self._output_changed_elsewhere)
        self._watched = output
        if output is not None:
            output.watchers.append(self._output_changed_elsewhere)

    def _output_changed_elsewhere(self) -> None:
        if self.is_attached:
            self.refresh_cell()

    def on_resize(self) -> None:
        note_height = getattr(self.parent, "note_height", None)
        if note_height is not None:
            note_height(self, self.outer_size.height)

    # -- rendering
    def _source_key(self) -> tuple:
        return (self.cell.source, self.cell.kind, self.cell.language, self.line_numbers, self.highlight)

    def _source_renderable(self):
        source = self.cell.source.rstrip("\n")
        self._shown_source = self._source_key()
        if not self.cell.is_code:
            if self.highlight and self.highlight.lower() in source.lower():
                # Markdown drawn as its text while a match is shown in it, so the match can be marked.
                text = Text(source)
                text.highlight_words([self.highlight], style="reverse", case_sensitive=False)
                return text
            return RichMarkdown(source) if source.strip() else Text("(empty markdown cell)", style="dim")
        if not source.strip():
            return Text("(empty cell)", style="dim")
        theme = self.app.current_theme if self.is_attached else None
        syntax = Syntax(
            source,
            LEXERS.get(self.cell.language or "", "text"),
            theme="monokai" if self.dark else "default",
            # The notebook's own background, so a cell reads as one surface in every theme.
            background_color=(theme.background if theme is not None and theme.background else "default"),
            word_wrap=False,
            line_numbers=self.line_numbers,
        )
        if self.highlight:
            for row, line in enumerate(source.split("\n"), start=1):
                lowered, needle, column = line.lower(), self.highlight.lower(), 0
                while (column := lowered.find(needle, column)) >= 0:
                    syntax.stylize_range("reverse", (row, column), (row, column + len(needle)))
                    column += len(needle)
        return syntax

    def _output_renderable(self) -> RenderableType:
        parts = self._output_parts()
        images = self._images()
        if not images and len(parts) == 1:
            return parts[0]
        for part in parts:
            if isinstance(part, Text):
                part.end = "\n"
        return Group(*parts, *images)

    @property
    def _draws_pictures(self) -> bool:
        # Without colour, half blocks draw nothing: a bundle's other types, the file list say it all.
        return not (self.is_attached and self.app.no_color)

    def _images(self) -> list:
        if not self.output.files or self.blob_path is None or not self._draws_pictures:
            return []
        return drawn_images(self.output.files, self.blob_path)

    def _new_text(self) -> Text:
        return Text(no_wrap=not self.wrap, overflow="fold" if self.wrap else "ellipsis", end="")

    def _output_parts(self) -> list[RenderableType]:
        """The output in order: runs of text lines as one Text each, rich outputs between them."""
        parts: list[RenderableType] = []
        text = self._new_text()
        if self.output.has_hidden:
            hidden = self.output.hidden
            what = f"{hidden:,} earlier lines hidden" if hidden else "earlier output hidden"
            text.append(f"  … {what} · o opens the full output\n", style="dim italic")
        lines = self.output.visible_lines()
        pictures = self._draws_pictures
        for index, (kind, line) in enumerate(lines):
            if kind == "rich":
                if text.plain.endswith("\n"):
                    text.right_crop(1)  # the Text ends its own line
                if text:
                    parts.append(text)
                parts.extend(self._rich_parts(line, pictures))
                text = self._new_text()
                continue
            text.append(OUTPUT_GUTTERS[kind], style=OUTPUT_STYLES[kind])
            # Colours a program asked for, as styles; every other escape was dropped already.
            text.append_text(styled_line(line, OUTPUT_STYLES[kind]))
            if index < len(lines) - 1:
                text.append("\n")
        if text or not parts:
            parts.append(text)
        return parts

    def _output_text(self) -> Text:
        """The output's text parts as one Text (what a find or a check of escapes reads)."""
        text = self._new_text()
        for part in self._output_parts():
            if isinstance(part, Text):
                text.append_text(part)
                text.append("\n")
        return text

    def _rich_parts(self, entry: RichOutput, pictures: bool) -> list[RenderableType]:
        renderable, _ = entry.drawn(pictures)
        if entry.label is None:
            return [renderable]
        label = self._new_text()
        label.append(OUTPUT_GUTTERS["result"])
        label.append(entry.label, style=OUTPUT_STYLES["result"])
        label.end = "\n"
        return [label, renderable]

    def refresh_cell(self, *, now: float | None = None) -> None:
        """Brings the widget up to date with its cell and output; cheap when nothing changed."""
        if self.is_attached:
            self._watch(self.output)
        self.border_title = status_title(self.cell, self.output, now)
        self.border_subtitle = f"{self.environment} · {self.cell.language}" if self.cell.is_code else "markdown"
        self.set_class(self.output.status in ("error", "lost"), "failed")
        self.set_class(self.output.status in ("running", "queued"), "busy")
        self.set_class(self.cell.is_code and self.output.is_stale_for(self.cell.source_hash), "stale")
        if not self.editing and self._shown_source != self._source_key():
            self._source.update(self._source_renderable())
        shown = (self.output.generation, self.wrap)
        if self._shown_generation != shown:
            self._shown_generation = shown
            self._output.set_class(self.wrap, "wrapped")
            self._output.display = self.cell.is_code and bool(self.output.visible_lines() or self.output.has_hidden)
            self._output.update(self._output_renderable())

    def forget_shown_output(self) -> None:
        self._shown_generation = None

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
            show_line_numbers=self.line_numbers,
            id="editor",
            code_language=self.cell.language if self.cell.is_code else None,
        )
        self._source.display = False
        await self.mount(editor, after=self._source)
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
        self._source.display = True
        self._shown_source = None
        self.remove_class("editing")
        self.refresh_cell(now=time.time())
