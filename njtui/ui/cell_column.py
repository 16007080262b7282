"""The scrollable column of cells, virtualized: only cells near the viewport are mounted.

Two spacers stand in for the cells above and below the mounted window; their heights are the
sum of those cells' heights — exact for code cells (nothing wraps, the output tail is bounded),
measured once mounted for markdown cells and wrapped outputs. Opening a 500-cell notebook
therefore mounts a dozen widgets, and scrolling mounts and unmounts a few at the window's edges.

The selected cell is kept in view: first by the estimated heights (so the right cells are
mounted), then, once they are mounted, by where the selected widget really is.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget

from njtui.model import Cell
from njtui.ui.cell import CellWidget, estimate_height
from njtui.ui.cell_output import CellOutputs

# How many refreshes the exact reveal keeps trying for before it settles for what it has: each
# pass follows a mount or a layout that may change heights above the selected cell or what the
# scroll can reach, and a loaded machine can need several before all is laid out. A pass that
# finds the cell in view ends it.
REVEAL_PASSES = 30
# How far past the window (in cells) the selected cell is still mounted with it; farther, the
# scroll brings the window there first.
MOUNT_REACH = 20


class Spacer(Widget):
    DEFAULT_CSS = "Spacer { height: 0; width: 1fr; }"


class CellColumn(VerticalScroll, can_focus=True):
    """Cells, their widgets near the viewport, and the selection."""

    selected: reactive[int] = reactive(0, always_update=True, init=False)

    def __init__(
        self,
        cells: list[Cell],
        outputs: CellOutputs,
        environment_of: Callable[[Cell], str],
        blob_path: Callable[[str], Path] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.cells = cells
        self.outputs = outputs
        self.environment_of = environment_of
        self.blob_path = blob_path
        self.dark = True
        self.line_numbers = False
        self.wrapped: set[str] = set()  # cells whose output wraps instead of being cut
        self.highlights: dict[str, str] = {}  # cell id → text to highlight (find)
        self.widgets: dict[str, CellWidget] = {}
        self.window = (0, 0)
        self._heights: list[int] = []
        self._measured: dict[str, tuple[tuple, int]] = {}
        self._top = Spacer(id="top-spacer")
        self._bottom = Spacer(id="bottom-spacer")
        self._window_pending = False
        self._mounting: list = []
        self._reveal_passes = 0
        self._reveal_budget = 0  # re-checks the window may still ask for since the last reveal
        self._shown_selected: str | None = None
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
        return (cell.kind, cell.source, output.generation if output else -1, self.size.width, cell.id in self.wrapped)

    def height_of(self, cell: Cell) -> int:
        measured = self._measured.get(cell.id)
        if measured is not None and measured[0] == self._measure_key(cell):
            return measured[1]
        return estimate_height(cell, self.outputs.get(cell.id))

    def note_height(self, widget: CellWidget, height: int) -> None:
        """A mounted cell reports its real height; cells outside the window keep using it. A
        height that changed at or above the selected cell moves it: it is revealed again."""
        self._measured[widget.cell.id] = (self._measure_key(widget.cell), height)
        index = self.index_of(widget.cell.id)
        if self.follow_selection and index is not None and index <= self.selected:
            self._schedule_exact_reveal(2)

    @property
    def viewport_height(self) -> int:
        return max(1, self.scrollable_content_region.height)

    # -- the window of mounted cells
    def rebuild(self) -> None:
        """After a structural change (insert, delete, move, kind): remount the window, and
        keep the selected cell where it can be seen."""
        for widget in list(self.widgets.values()):
            widget.remove()
        self.widgets.clear()
        self.window = (0, 0)
        self.selected = self.selected  # clamped, shown, revealed

    def schedule_window(self) -> None:
        if not self._window_pending:
            self._window_pending = True
            self.call_after_refresh(self._scheduled_window)

    def _scheduled_window(self) -> None:
        self._window_pending = False
        if self.is_attached:
            self.refresh_window()

    def refresh_window(self) -> None:
        self._heights = [self.height_of(cell) for cell in self.cells]
        bottoms = list(accumulate(self._heights))
        count = len(self.cells)
        viewport = max(self.viewport_height, 24)
        top = self.scroll_y
        start = bisect.bisect_right(bottoms, max(0, top - viewport))
        end = min(count, bisect.bisect_left(bottoms, top + 2 * viewport) + 1)
        if self.follow_selection and count:
            # The selected cell is mounted even where the estimated heights put it out of reach:
            # only a mounted cell's real place can be scrolled to.
            selected = max(0, min(self.selected, count - 1))
            if start - MOUNT_REACH <= selected < end + MOUNT_REACH:
                start, end = min(start, selected), max(end, selected + 1)
        start = min(start, end)
        old_start, old_end = self.window
        keep = range(max(start, old_start), min(end, old_end))
        for cell_id, widget in list(self.widgets.items()):
            index = self.index_of(cell_id)
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
        if self.follow_selection and self.cells and self._reveal_passes <= 0 and self._reveal_budget > 0:
            # A new window changes the spacers, and with them where the selected cell is: it is
            # checked again once laid out (a bounded number of times per reveal, so estimates
            # that disagree with real heights cannot keep the view moving).
            self._reveal_budget -= 1
            self._schedule_exact_reveal(2)

    async def settle(self) -> None:
        """Waits until the cells of the current window are mounted."""
        while self._mounting:
            await self._mounting.pop(0)

    def index_of(self, cell_id: str) -> int | None:
        for index in range(self.window[0], min(self.window[1], len(self.cells))):
            if self.cells[index].id == cell_id:
                return index
        for index, cell in enumerate(self.cells):
            if cell.id == cell_id:
                return index
        return None

    def _make(self, index: int) -> CellWidget:
        cell = self.cells[index]
        output = self.outputs.for_cell(cell.id)
        widget = CellWidget(cell, output, self.environment_of(cell), dark=self.dark, blob_path=self.blob_path)
        self._style_widget(widget)
        widget.set_class(index == self.selected, "selected")
        self.widgets[cell.id] = widget
        return widget

    def _style_widget(self, widget: CellWidget) -> None:
        widget.line_numbers = self.line_numbers
        widget.wrap = widget.cell.id in self.wrapped
        widget.highlight = self.highlights.get(widget.cell.id)

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
            self.reveal(self.selected)

    def on_resize(self) -> None:
        self.schedule_window()
        if self.follow_selection and self.cells:
            self.call_after_refresh(self.reveal, self.selected)

    # -- selection
    def widget_at(self, index: int) -> CellWidget | None:
        if 0 <= index < len(self.cells):
            return self.widgets.get(self.cells[index].id)
        return None

    @property
    def selected_cell(self) -> Cell | None:
        return self.cells[self.selected] if self.cells and 0 <= self.selected < len(self.cells) else None

    def validate_selected(self, index: int) -> int:
        return max(0, min(index, len(self.cells) - 1)) if self.cells else 0

    def watch_selected(self, index: int) -> None:
        if self.selected_cell is None:
            self._mark_selected()
            self.refresh_window()
            return
        self.reveal(index)
        self._mark_selected()

    def select(self, index: int, *, scroll: bool = True) -> None:
        if scroll:
            self.selected = index
            return
        # A click: the cell is on screen already, and the view must not jump.
        self.set_reactive(CellColumn.selected, self.validate_selected(index))
        self._mark_selected()

    def _mark_selected(self) -> None:
        """The "selected" class moves to the selected cell's widget (if it is mounted)."""
        if self._shown_selected is not None and (old := self.widgets.get(self._shown_selected)) is not None:
            old.remove_class("selected")
        cell = self.selected_cell
        self._shown_selected = cell.id if cell is not None else None
        if (current := self.widget_at(self.selected)) is not None:
            current.add_class("selected")

    def reveal(self, index: int) -> None:
        """Scrolls so that cell `index` is in view: by the estimated heights now, then by where
        its widget really is once mounted."""
        self._heights = [self.height_of(cell) for cell in self.cells]
        if not 0 <= index < len(self.cells):
            self.refresh_window()
            return
        top = sum(self._heights[:index])
        self._scroll_into_view(top, self._heights[index])
        self.follow_selection = True
        self._reveal_budget = REVEAL_PASSES
        self.refresh_window()
        self._schedule_exact_reveal(REVEAL_PASSES)

    def _schedule_exact_reveal(self, passes: int) -> None:
        pending = self._reveal_passes > 0
        self._reveal_passes = max(self._reveal_passes, passes)
        if not pending:
            self.call_after_refresh(self._reveal_exactly)

    def _scroll_into_view(self, top: int, height: int) -> bool:
        viewport = self.viewport_height
        target = None
        if top < self.scroll_y:
            target = top
        elif top + height > self.scroll_y + viewport:
            target = top if height > viewport else top + height - viewport
        if target is None:
            return False
        self.scroll_to(y=target, animate=False, immediate=True, force=True)
        return True

    def _reveal_exactly(self) -> None:
        self._reveal_passes -= 1
        if not self.is_attached or not self.cells or not self.follow_selection:
            self._reveal_passes = 0
            return
        widget = self.widget_at(self.selected)
        if widget is not None and widget.is_mounted and widget.size.height:
            region = widget.virtual_region_with_margin
            self._scroll_into_view(region.y, region.height)
            if self.is_selected_in_view():
                self._reveal_passes = 0
                return
        # Not mounted yet, or the scroll was held back by a content height not laid out yet:
        # once more after the next refresh.
        if self._reveal_passes > 0:
            self.refresh_window()
            self.call_after_refresh(self._reveal_exactly)
        else:
            self._reveal_passes = 0

    def is_selected_in_view(self) -> bool:
        """The selected cell's widget is mounted and (its top, at least) on screen."""
        widget = self.widget_at(self.selected)
        if widget is None or not widget.is_mounted:
            return False
        region = widget.virtual_region_with_margin
        viewport = self.viewport_height
        top, bottom = self.scroll_y, self.scroll_y + viewport
        if region.height > viewport:
            return region.y <= top + 1 and region.y + region.height >= top
        return region.y >= top and region.y + region.height <= bottom

    # -- updates
    def refresh_cell(self, cell_id: str) -> None:
        widget = self.widgets.get(cell_id)
        if widget is not None:
            self._update(widget)

    def _update(self, widget: CellWidget) -> None:
        output = self.outputs.for_cell(widget.cell.id)
        if widget.output is not output:
            widget.output = output
            widget.forget_shown_output()
        widget.environment = self.environment_of(widget.cell)
        self._style_widget(widget)
        widget.refresh_cell()

    def refresh_all(self) -> None:
        for widget in self.widgets.values():
            self._update(widget)
        self.schedule_window()

    def tick(self) -> None:
        now = time.time()
        for widget in self.widgets.values():
            widget.tick(now)
