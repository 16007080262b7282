"""The scrollable column of cells, virtualized: only cells near the viewport are mounted.

Two spacers stand in for the cells above and below the mounted window; their heights are the
sum of those cells' heights — exact for code cells (nothing wraps, the output tail is bounded),
measured once mounted for markdown cells. Opening a 500-cell notebook therefore mounts a dozen
widgets, and scrolling mounts and unmounts a few at the window's edges.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget

from njtui.model import Cell
from njtui.ui.cell import RUN_BINDINGS, CellWidget, estimate_height
from njtui.ui.cell_output import CellOutput


class Spacer(Widget):
    DEFAULT_CSS = "Spacer { height: 0; width: 1fr; }"


class NotebookView(VerticalScroll, can_focus=True):
    """Command mode lives here: its bindings are the notebook's keyboard model."""

    BINDINGS = [
        *RUN_BINDINGS,
        Binding("up,k", "app.select_relative(-1)", "up", show=False),
        Binding("down,j", "app.select_relative(1)", "down", show=False),
        Binding("home,g", "app.select_index(0)", "first", show=False),
        Binding("end,G", "app.select_index(-1)", "last", show=False),
        Binding("pageup", "app.select_page(-1)", "page up", show=False),
        Binding("pagedown", "app.select_page(1)", "page down", show=False),
        Binding("enter", "app.edit_cell", "edit", show=True),
        Binding("a", "app.insert_cell('above')", "insert above", show=False),
        Binding("b", "app.insert_cell('below')", "insert below", show=False),
        Binding("d", "app.chord('delete')", "delete (press twice)", show=False),
        Binding("z", "app.undo_delete", "undo delete", show=False),
        Binding("c", "app.copy_cells", "copy", show=False),
        Binding("x", "app.cut_cells", "cut", show=False),
        Binding("v", "app.paste_cells", "paste below", show=False),
        Binding("m", "app.set_kind('markdown')", "to markdown", show=False),
        Binding("y", "app.set_kind('code')", "to code", show=False),
        Binding("i", "app.chord('interrupt')", "interrupt (press twice)", show=False),
        Binding("0", "app.chord('restart')", "restart runtime (press twice)", show=False),
        Binding("r", "app.pick_runtime", "runtime", show=False),
        Binding("l", "app.pick_language", "language", show=False),
        Binding("o", "app.open_pager", "full output", show=False),
        Binding("e", "app.runtime_settings", "runtime settings", show=False),
        Binding("question_mark", "app.help", "help", show=True),
    ]

    def __init__(
        self,
        cells: list[Cell],
        outputs: dict[str, CellOutput],
        environment_of: Callable[[Cell], str],
        blob_path: Callable[[str], Path] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.cells = cells
        self.outputs = outputs
        self.environment_of = environment_of
        self.blob_path = blob_path
        self.selected = 0
        self.dark = True
        self.widgets: dict[str, CellWidget] = {}
        self.window = (0, 0)
        self._heights: list[int] = []
        self._measured: dict[str, tuple[tuple, int]] = {}
        self._top = Spacer(id="top-spacer")
        self._bottom = Spacer(id="bottom-spacer")
        self._window_pending = False
        self._mounting: list = []
        # The selected cell stays in view as outputs above it grow, until the user scrolls away.
        self.follow_selection = True

    def compose(self):
        yield self._top
        yield self._bottom

    def on_mount(self) -> None:
        self.rebuild()

    # -- geometry
    def _measure_key(self, cell: Cell) -> tuple:
        output = self.outputs.get(cell.id)
        return (cell.kind, cell.source, output.generation if output else -1, self.size.width)

    def _height_of(self, cell: Cell) -> int:
        measured = self._measured.get(cell.id)
        if measured is not None and measured[0] == self._measure_key(cell):
            return measured[1]
        return estimate_height(cell, self.outputs.get(cell.id))

    def note_height(self, widget: CellWidget, height: int) -> None:
        """A mounted cell reports its real height; cells outside the window keep using it."""
        self._measured[widget.cell.id] = (self._measure_key(widget.cell), height)

    @property
    def viewport_height(self) -> int:
        return max(1, self.scrollable_content_region.height)

    # -- the window of mounted cells
    def rebuild(self) -> None:
        """After a structural change (insert, delete, move, kind): remount the window."""
        for widget in list(self.widgets.values()):
            widget.remove()
        self.widgets.clear()
        self.window = (0, 0)
        self.selected = min(max(0, self.selected), max(0, len(self.cells) - 1))
        self.refresh_window()

    def schedule_window(self) -> None:
        if not self._window_pending:
            self._window_pending = True
            self.call_after_refresh(self._scheduled_window)

    def _scheduled_window(self) -> None:
        self._window_pending = False
        self.refresh_window()

    def refresh_window(self) -> None:
        self._heights = [self._height_of(cell) for cell in self.cells]
        bottoms = list(accumulate(self._heights))
        count = len(self.cells)
        viewport = max(self.viewport_height, 24)
        top = self.scroll_y
        start = bisect.bisect_right(bottoms, max(0, top - viewport))
        end = min(count, bisect.bisect_left(bottoms, top + 2 * viewport) + 1)
        start = min(start, end)
        old_start, old_end = self.window
        keep = range(max(start, old_start), min(end, old_end))
        for cell_id, widget in list(self.widgets.items()):
            index = self._index_of(cell_id)
            if index is None or index not in keep:
                # An editor's text is in its cell as typed: leaving the window ends edit mode.
                widget.remove()
                del self.widgets[cell_id]
        if len(keep):
            above = [self._make(i) for i in range(start, keep.start)]
            below = [self._make(i) for i in range(keep.stop, end)]
            if above:
                self._mounting.append(self.mount(*above, after=self._top))
            if below:
                self._mounting.append(self.mount(*below, before=self._bottom))
        else:
            fresh = [self._make(i) for i in range(start, end)]
            if fresh:
                self._mounting.append(self.mount(*fresh, before=self._bottom))
        self.window = (start, end)
        self._top.styles.height = sum(self._heights[:start])
        self._bottom.styles.height = sum(self._heights[end:])

    async def settle(self) -> None:
        """Waits until the cells of the current window are mounted."""
        while self._mounting:
            await self._mounting.pop(0)

    def _index_of(self, cell_id: str) -> int | None:
        for index in range(self.window[0], min(self.window[1], len(self.cells))):
            if self.cells[index].id == cell_id:
                return index
        for index, cell in enumerate(self.cells):
            if cell.id == cell_id:
                return index
        return None

    def _make(self, index: int) -> CellWidget:
        cell = self.cells[index]
        output = self.outputs.setdefault(cell.id, CellOutput())
        widget = CellWidget(cell, output, self.environment_of(cell), dark=self.dark, blob_path=self.blob_path)
        widget.set_class(index == self.selected, "selected")
        self.widgets[cell.id] = widget
        return widget

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.schedule_window()

    def on_mouse_scroll_down(self) -> None:
        self.follow_selection = False

    def on_mouse_scroll_up(self) -> None:
        self.follow_selection = False

    def reveal_selected(self) -> None:
        """After outputs changed: keep the selected cell on screen if it is being followed."""
        if self.follow_selection and self.cells:
            self.scroll_to_cell(self.selected)

    def on_resize(self) -> None:
        self.schedule_window()

    # -- selection
    def widget_at(self, index: int) -> CellWidget | None:
        if 0 <= index < len(self.cells):
            return self.widgets.get(self.cells[index].id)
        return None

    @property
    def selected_cell(self) -> Cell | None:
        return self.cells[self.selected] if self.cells else None

    def select(self, index: int, *, scroll: bool = True) -> None:
        if not self.cells:
            self.selected = 0
            return
        index = max(0, min(index, len(self.cells) - 1))
        previous = self.widget_at(self.selected)
        if previous is not None:
            previous.remove_class("selected")
        self.selected = index
        if scroll:
            self.scroll_to_cell(index)
        current = self.widget_at(index)
        if current is not None:
            current.add_class("selected")

    def scroll_to_cell(self, index: int) -> None:
        self._heights = [self._height_of(cell) for cell in self.cells]
        top = sum(self._heights[:index])
        bottom = top + self._heights[index]
        viewport = self.viewport_height
        target = None
        if top < self.scroll_y:
            target = top
        elif bottom > self.scroll_y + viewport:
            target = top if self._heights[index] > viewport else bottom - viewport
        if target is not None:
            self.scroll_to(y=target, animate=False, immediate=True, force=True)
        self.follow_selection = True
        self.refresh_window()

    # -- updates
    def refresh_cell(self, cell_id: str) -> None:
        widget = self.widgets.get(cell_id)
        if widget is not None:
            self._update(widget)

    def _update(self, widget: CellWidget) -> None:
        output = self.outputs.setdefault(widget.cell.id, CellOutput())
        if widget.output is not output:
            widget.output = output
            widget.forget_shown_output()
        widget.environment = self.environment_of(widget.cell)
        widget.refresh_cell()

    def refresh_all(self) -> None:
        for widget in self.widgets.values():
            self._update(widget)
        self.schedule_window()

    def tick(self) -> None:
        now = time.time()
        for widget in self.widgets.values():
            widget.tick(now)
