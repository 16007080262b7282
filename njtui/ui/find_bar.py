"""Find in the notebook: `/` (or Ctrl+F while editing) opens the bar, Enter finds, `n`/`N` go
on to the next and previous cell with a match; matches are marked in the cells."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.document._document import Selection
from textual.message import Message
from textual.widgets import Input, Static

from njtui.model import Cell, Notebook
from njtui.ui.cell import CellEditor, location_at

if TYPE_CHECKING:
    from njtui.ui.notebook_view import NotebookView


def matching_cells(cells: list[Cell], text: str) -> list[int]:
    """Indexes of the cells whose source holds `text` (case ignored)."""
    if not text:
        return []
    needle = text.lower()
    return [index for index, cell in enumerate(cells) if needle in cell.source.lower()]


def next_match(matches: list[int], selected: int, direction: int) -> int | None:
    """The match after (direction 1) or before (-1) the selected cell, wrapping around."""
    if not matches:
        return None
    if direction > 0:
        return next((index for index in matches if index > selected), matches[0])
    return next((index for index in reversed(matches) if index < selected), matches[-1])


class FindBar(Horizontal):
    """One line above the footer while finding."""

    BINDINGS = [Binding("escape", "close", "close find", show=True)]

    class Find(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Closed(Message):
        pass

    def compose(self) -> ComposeResult:
        yield Static("Find:", id="find-label")
        yield Input(placeholder="text in the cells · Enter finds · n/N next/previous · Esc closes", id="find-input")
        yield Static("", id="find-count")

    def open(self, text: str = "") -> None:
        self.display = True
        field = self.query_one(Input)
        if text:
            field.value = text
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Find(event.value))

    def show_count(self, position: int | None, total: int) -> None:
        count = self.query_one("#find-count", Static)
        if total == 0:
            count.update("no match")
        else:
            count.update(f"{(position or 0) + 1}/{total} cells")

    def action_close(self) -> None:
        self.display = False
        self.post_message(self.Closed())


class FindActions:
    """Mixed into NotebookScreen: what `/`, Ctrl+F, Enter, `n`, `N` and Esc do."""

    notebook: Notebook
    find_text: str
    _find_origin: CellEditor | None

    if TYPE_CHECKING:
        focused: Any

        @property
        def view(self) -> NotebookView: ...

        def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...
        def notify(self, message: str, **kwargs: Any) -> None: ...

    def action_find(self) -> None:
        self._find_origin = self.focused if isinstance(self.focused, CellEditor) else None
        self.query_one(FindBar).open(self.find_text)

    def on_find_bar_find(self, event: FindBar.Find) -> None:
        self.find_text = event.text
        self._refresh_find()
        editor, self._find_origin = self._find_origin, None
        if editor is not None and editor.is_attached and self._select_in_editor(editor):
            return
        self.view.focus()
        self.action_find_next(1, include_selected=True)

    def _select_in_editor(self, editor: CellEditor) -> bool:
        """Ctrl+F while editing: the next match in this cell (after the cursor, then from its
        start) is selected there."""
        text, needle = editor.text.lower(), self.find_text.lower()
        start = text.find(needle, editor.cursor_index) if needle else -1
        if start < 0 and needle:
            start = text.find(needle)
        if start < 0:
            return False
        editor.selection = Selection(location_at(editor.text, start), location_at(editor.text, start + len(needle)))
        editor.focus()
        return True

    def _refresh_find(self) -> None:
        if not self.find_text:
            return
        view = self.view
        view.highlights = {self.notebook.cells[index].id: self.find_text for index in matching_cells(self.notebook.cells, self.find_text)}
        view.refresh_all()

    def action_find_next(self, direction: int, include_selected: bool = False) -> None:
        if not self.find_text:
            self.action_find()
            return
        matches = matching_cells(self.notebook.cells, self.find_text)
        view = self.view
        start = view.selected - 1 if include_selected and direction > 0 else view.selected
        index = next_match(matches, start, direction)
        if index is not None:
            view.selected = index
        self.query_one(FindBar).show_count(matches.index(index) if index is not None else None, len(matches))
        if not self.query_one(FindBar).display and index is None:
            self.notify(f"no cell holds {self.find_text!r}", timeout=2)

    def action_close_find(self) -> None:
        bar = self.query_one(FindBar)
        if bar.display or self.view.highlights:
            bar.display = False
            self.view.highlights = {}
            self.view.refresh_all()
            self.view.focus()

    def on_find_bar_closed(self) -> None:
        self.view.highlights = {}
        self.view.refresh_all()
        editor, self._find_origin = self._find_origin, None
        (editor if editor is not None and editor.is_attached else self.view).focus()
