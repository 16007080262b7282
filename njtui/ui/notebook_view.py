"""Command mode: the notebook's keyboard model over the cell column.

The view owns the cells' structure as a person edits it (insert, delete, move, cut, copy,
paste, kind, undo) and the selection. It changes `cells` in place and tells the screen what it
did with messages; it never reaches up into the app.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from textual.binding import Binding
from textual.message import Message

from njtui.model import Cell
from njtui.ui.cell import RUN_BINDINGS
from njtui.ui.cell_column import CellColumn

CHORD_SECONDS = 1.0
UNDO_DEPTH = 100
# Two presses of one key within CHORD_SECONDS (as Jupyter has d d, i i, 0 0): key → action.
CHORDS = {"delete": "delete_cell", "interrupt": "screen.runtime_of_cell('interrupt')", "restart": "screen.runtime_of_cell('restart')"}


@dataclass
class Structure:
    """The cells' order and the parts of each a structural edit changes; sources are not in
    it (edit mode has its own undo), so undoing a move keeps what was typed since."""

    cells: list[Cell]
    parts: list[tuple[str, str | None, str | None, dict]] = field(default_factory=list)
    selected: int = 0

    @classmethod
    def of(cls, cells: list[Cell], selected: int) -> Structure:
        return cls(list(cells), [(c.kind, c.language, c.runtime, copy.deepcopy(c.extra)) for c in cells], selected)

    def restore(self, cells: list[Cell]) -> None:
        cells[:] = self.cells
        for cell, (kind, language, runtime, extra) in zip(cells, self.parts, strict=True):
            cell.kind, cell.language, cell.runtime, cell.extra = kind, language, runtime, copy.deepcopy(extra)


class NotebookView(CellColumn):
    """The cell column with command mode's keys."""

    BINDINGS = [
        *RUN_BINDINGS,
        Binding("R", "run_all", "run all cells", show=False),
        Binding("U", "run_above", "run cells above", show=False),
        Binding("D", "run_below", "run this and cells below", show=False),
        Binding("up,k", "select_relative(-1)", "up", show=False),
        Binding("down,j", "select_relative(1)", "down", show=False),
        Binding("home,g", "select_index(0)", "first", show=False),
        Binding("end,G", "select_index(-1)", "last", show=False),
        Binding("pageup", "select_page(-1)", "page up", show=False),
        Binding("pagedown", "select_page(1)", "page down", show=False),
        Binding("enter", "edit_cell", "edit", show=True),
        Binding("a", "insert_cell('above')", "insert above", show=False),
        Binding("b", "insert_cell('below')", "insert below", show=False),
        Binding("d", "chord('delete')", "delete (press twice)", show=False),
        Binding("z", "undo", "undo", show=False),
        Binding("Z", "redo", "redo", show=False),
        Binding("c", "copy_cell", "copy", show=False),
        Binding("x", "cut_cell", "cut", show=False),
        Binding("v", "paste_cells", "paste below", show=False),
        Binding("K,alt+up", "move_cell(-1)", "move up", show=False),
        Binding("J,alt+down", "move_cell(1)", "move down", show=False),
        Binding("m", "set_kind('markdown')", "to markdown", show=False),
        Binding("y", "set_kind('code')", "to code", show=False),
        Binding("slash", "screen.find", "find", show=True),
        Binding("n", "screen.find_next(1)", "next match", show=False),
        Binding("N", "screen.find_next(-1)", "previous match", show=False),
        Binding("i", "chord('interrupt')", "interrupt (press twice)", show=False),
        Binding("0", "chord('restart')", "restart runtime (press twice)", show=False),
        Binding("r", "screen.pick_runtime", "runtime", show=False),
        Binding("l", "screen.pick_language", "language", show=False),
        Binding("L", "toggle_line_numbers", "line numbers", show=False),
        Binding("w", "toggle_wrap", "wrap output", show=False),
        Binding("o", "screen.open_pager", "full output", show=False),
        Binding("e", "screen.runtime_settings", "runtime settings", show=False),
        Binding("S", "screen.env_of_cell('save')", "save runtime's environment", show=False),
        Binding("question_mark", "screen.help", "help", show=True),
    ]

    class Edited(Message):
        """The notebook changed: `structural` when cells came, went, moved or changed kind."""

        def __init__(self, structural: bool) -> None:
            super().__init__()
            self.structural = structural

    class RunRequested(Message):
        """Cells to run, in order."""

        def __init__(self, cells: list[Cell]) -> None:
            super().__init__()
            self.cells = cells

    class EditRequested(Message):
        """Edit mode for the selected cell (the screen makes sure its widget is mounted)."""

    def __init__(self, *args, new_cell: Callable[[str], Cell], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Makes a code cell of a language with an id not yet taken: the screen knows the notebook.
        self.new_cell = new_cell
        self.undo_stack: list[Structure] = []
        self.redo_stack: list[Structure] = []
        self.clipboard: list[Cell] = []
        self._chord: tuple[str, float] | None = None

    # -- moving the selection
    def action_select_relative(self, delta: int) -> None:
        self.selected = self.selected + delta

    def action_select_index(self, index: int) -> None:
        self.selected = index if index >= 0 else len(self.cells) - 1

    def action_select_page(self, direction: int) -> None:
        target = self.scroll_y + direction * self.viewport_height
        tops = 0
        for index, cell in enumerate(self.cells):
            tops += self.height_of(cell)
            if tops > target:
                self.selected = index
                return
        self.selected = len(self.cells) - 1

    def action_edit_cell(self) -> None:
        if not self.cells:
            self._insert(0, self.new_cell("python"))
        self.post_message(self.EditRequested())

    async def action_chord(self, name: str) -> None:
        now = time.monotonic()
        if self._chord is not None and self._chord[0] == name and now - self._chord[1] < CHORD_SECONDS:
            self._chord = None
            await self.run_action(CHORDS[name])
            return
        self._chord = (name, now)

    # -- running
    def action_run_all(self) -> None:
        self.post_message(self.RunRequested([cell for cell in self.cells if cell.is_code]))

    def action_run_above(self) -> None:
        self.post_message(self.RunRequested([cell for cell in self.cells[: self.selected] if cell.is_code]))

    def action_run_below(self) -> None:
        self.post_message(self.RunRequested([cell for cell in self.cells[self.selected :] if cell.is_code]))

    def language_near(self, index: int) -> str:
        """A new cell's language: that of the cell it is made from, else of the nearest code
        cell above it, else Python."""
        for cell in reversed(self.cells[: index + 1]):
            if cell.is_code and cell.language:
                return cell.language
        return "python"

    # -- structure
    def _remember(self) -> None:
        self.undo_stack.append(Structure.of(self.cells, self.selected))
        del self.undo_stack[:-UNDO_DEPTH]
        self.redo_stack.clear()

    def _changed(self, selected: int) -> None:
        self.rebuild_at(selected)
        self.post_message(self.Edited(structural=True))

    def rebuild_at(self, selected: int) -> None:
        self.set_reactive(CellColumn.selected, self.validate_selected(selected))
        self.rebuild()

    def _insert(self, index: int, cell: Cell) -> None:
        index = max(0, min(index, len(self.cells)))
        self._remember()
        self.cells.insert(index, cell)
        self._changed(index)

    def action_insert_cell(self, where: str) -> None:
        below = where == "below" and bool(self.cells)
        index = self.selected + (1 if below else 0)
        self._insert(index, self.new_cell(self.language_near(self.selected)))

    def action_delete_cell(self) -> None:
        if not self.cells:
            return
        self._remember()
        index = self.selected
        del self.cells[index]
        self._changed(min(index, len(self.cells) - 1))

    def _restore(self, source: list[Structure], target: list[Structure]) -> bool:
        if not source:
            return False
        target.append(Structure.of(self.cells, self.selected))
        structure = source.pop()
        structure.restore(self.cells)
        self._changed(structure.selected)
        return True

    def action_undo(self) -> None:
        if not self._restore(self.undo_stack, self.redo_stack):
            self.notify("nothing to undo", timeout=1.5)

    def action_redo(self) -> None:
        if not self._restore(self.redo_stack, self.undo_stack):
            self.notify("nothing to redo", timeout=1.5)

    def action_copy_cell(self) -> None:
        cell = self.selected_cell
        if cell is not None:
            self.clipboard = [copy.deepcopy(cell)]
            self.notify("cell copied", timeout=1.5)

    def action_cut_cell(self) -> None:
        cell = self.selected_cell
        if cell is not None:
            self.clipboard = [copy.deepcopy(cell)]
            self.action_delete_cell()

    def action_paste_cells(self) -> None:
        if not self.clipboard:
            self.notify("nothing to paste", timeout=1.5)
            return
        self._remember()
        index = self.selected + (1 if self.cells else 0)
        for offset, original in enumerate(self.clipboard):
            cell = copy.deepcopy(original)
            cell.id = self.new_cell(cell.language or "python").id  # only its fresh id is taken
            self.cells.insert(index + offset, cell)
        self._changed(index)

    def action_move_cell(self, delta: int) -> None:
        index, target = self.selected, self.selected + delta
        if not self.cells or not 0 <= target < len(self.cells):
            return
        self._remember()
        self.cells[index], self.cells[target] = self.cells[target], self.cells[index]
        self._changed(target)

    def action_set_kind(self, kind: str) -> None:
        cell = self.selected_cell
        if cell is None or cell.kind == kind:
            return
        self._remember()
        if kind == "markdown":
            cell.extra["language"] = cell.language
            cell.kind, cell.language, cell.runtime = "markdown", None, None
        else:
            cell.kind = "code"
            cell.language = cell.extra.pop("language", None) or self.language_near(self.selected)
        self._changed(self.selected)

    # -- how cells are shown
    def action_toggle_line_numbers(self) -> None:
        self.line_numbers = not self.line_numbers
        self.refresh_all()

    def action_toggle_wrap(self) -> None:
        cell = self.selected_cell
        if cell is None:
            return
        self.wrapped.symmetric_difference_update({cell.id})
        self.refresh_cell(cell.id)
        self.schedule_window()
        self.call_after_refresh(self.reveal, self.selected)
