"""The pager's lines: drawn one row at a time from a list (a Line API widget), so 200,000 lines
cost what the screen shows; wrapping only needs each line's width, measured once as it comes
in; search matches are found in the plain text and drawn over the styled one."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from itertools import accumulate, islice

from rich.cells import cell_len
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from njtui.model.terminal_text import expand_tabs, strip_sgr
from njtui.ui.cell import OUTPUT_STYLES
from njtui.ui.terminal_text import styled_line

STRIP_CACHE = 2000  # rendered lines kept: a few screens' worth, whatever the output's length


class PagerLine:
    """One line as the pager keeps it: text with colours, its plain text (searched), its kind
    (the base style) and its width in cells (for wrapping and horizontal scrolling)."""

    __slots__ = ("kind", "line", "plain", "width")

    def __init__(self, kind: str, line: str) -> None:
        # Tabs become spaces here, so a match's offset in the plain text is its column.
        self.line = expand_tabs(line)
        self.plain = strip_sgr(self.line)
        self.kind = kind
        self.width = len(self.plain) if self.plain.isascii() else cell_len(self.plain)


def pager_lines(entries: list[tuple[str, str]]) -> list[PagerLine]:
    return [PagerLine(kind, line) for kind, line in entries]


class PagerView(ScrollView, can_focus=True, inherit_bindings=False):
    """Lines of output, drawn on demand; wraps or scrolls sideways; highlights search matches."""

    COMPONENT_CLASSES = {"pager--match", "pager--match-current"}

    DEFAULT_CSS = """
    PagerView {
        height: 1fr;
        background: $surface;
    }
    PagerView > .pager--match {
        background: $warning 40%;
    }
    PagerView > .pager--match-current {
        background: $accent;
        color: $text;
        text-style: bold;
    }
    """

    # All the pager's keys are here, on the widget that has the focus, so the footer lists them
    # in this order (the search prompt, when it has the focus, takes letters as text).
    BINDINGS = [
        Binding("escape,q", "screen.close", "close", key_display="q"),
        Binding("slash", "screen.search", "search", key_display="/"),
        Binding("n", "screen.next_match", "match", key_display="n/N"),
        Binding("N", "screen.previous_match", "previous match", show=False),
        Binding("w", "screen.toggle_wrap", "wrap"),
        Binding("g,ctrl+home", "top", "top/end", key_display="g/G"),
        Binding("G,ctrl+end", "bottom", "end", show=False),
        Binding("left", "scroll_columns(-1)", "scroll left", show=False),
        Binding("right", "scroll_columns(1)", "scroll", key_display="←/→"),
        Binding("home", "line_start", "line", key_display="Home/End"),
        Binding("end", "line_end", "line end", show=False),
        Binding("up", "scroll_up", "up", show=False),
        Binding("down,j", "scroll_down", "down", show=False),
        Binding("k", "scroll_up", "up", show=False),
        Binding("pageup,b", "page_up", "page up", show=False),
        Binding("pagedown,space", "page_down", "page down", show=False),
    ]

    def __init__(self, *, follow: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[PagerLine] = []
        self.has_open_line = False  # the last line is still being written (live)
        self.follow = follow  # keep the end in view while the reader is there
        self.pinned = follow  # the reader is at the end: new lines scroll into view
        self.wrap = False
        self.max_width = 0
        self._offsets: list[int] = [0]  # wrapped: the first row of each line, and the total rows
        self._wrap_width = 0
        self._strips: OrderedDict[int, Strip] = OrderedDict()
        self.search_text = ""
        self._pattern: re.Pattern[str] | None = None
        self.matches: list[tuple[int, int, int]] = []  # (line, start, end) in the plain text, in order
        self.current_match: int | None = None

    # -- content
    def add(self, finished: list[PagerLine], open_line: PagerLine | None) -> None:
        """Appends finished lines and sets the line still being written (replacing the last one)."""
        first_changed = len(self.lines)
        if self.has_open_line:
            self.lines.pop()
            first_changed -= 1
            self._strips.pop(first_changed, None)
        self.lines.extend(finished)
        self.has_open_line = open_line is not None
        if open_line is not None:
            self.lines.append(open_line)
        for line in self.lines[first_changed:]:
            self.max_width = max(self.max_width, line.width)
        if self.wrap:
            del self._offsets[first_changed + 1 :]
            self._extend_offsets(first_changed)
        if self._pattern is not None:
            self._drop_matches_from(first_changed)
            self.matches.extend(self._find(first_changed))
        self._update_virtual_size()
        self.refresh()
        if self.follow and self.pinned:
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Moving away from the end stops following; coming back to it (G) starts it again.
        if self.size.height:
            self.pinned = self.follow and new_value >= self.max_scroll_y

    def _update_virtual_size(self) -> None:
        if self.wrap:
            self.virtual_size = Size(self._wrap_width, self._offsets[-1])
        else:
            self.virtual_size = Size(self.max_width, len(self.lines))

    # -- wrapping
    def _content_width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _extend_offsets(self, start: int) -> None:
        width = self._wrap_width
        rows = (max(1, -(-line.width // width)) for line in self.lines[start:])
        self._offsets.extend(islice(accumulate(rows, initial=self._offsets[start]), 1, None))

    def _rewrap(self) -> None:
        self._wrap_width = self._content_width()
        self._offsets = [0]
        self._extend_offsets(0)

    def top_line(self) -> int:
        """The line at the top of the view."""
        row = round(self.scroll_y)
        if not self.wrap:
            return row
        return max(0, bisect_right(self._offsets, row) - 1)

    def row_of(self, index: int, column: int = 0) -> int:
        if not self.wrap:
            return index
        return self._offsets[index] + column // self._wrap_width

    def set_wrap(self, wrap: bool) -> None:
        top = self.top_line()
        self.wrap = wrap
        if wrap:
            self._rewrap()
        self._strips.clear()
        self._update_virtual_size()
        self.refresh()
        # The line at the top stays there: wrapping does not lose the reader's place.
        self.scroll_to(x=0, y=self.row_of(min(top, max(0, len(self.lines) - 1))) if self.lines else 0, animate=False, force=True)

    def on_resize(self) -> None:
        if self.wrap and self._content_width() != self._wrap_width:
            top = self.top_line()
            self._rewrap()
            self._update_virtual_size()
            self.scroll_to(y=self.row_of(top) if self.lines else 0, animate=False, force=True)
        if self.follow and self.pinned:
            # Lines read before the view had a size could not be scrolled to.
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)

    # -- drawing
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def _strip(self, index: int) -> Strip:
        strip = self._strips.get(index)
        if strip is not None:
            self._strips.move_to_end(index)
            return strip
        line = self.lines[index]
        text = styled_line(line.line, self.rich_style + Style.parse(OUTPUT_STYLES.get(line.kind, "") or "none"))
        for start, end, number in self._matches_on(index):
            name = "pager--match-current" if number == self.current_match else "pager--match"
            text.stylize(self.get_component_rich_style(name), start, end)
        strip = Strip(text.render(self.app.console), line.width)
        self._strips[index] = strip
        if len(self._strips) > STRIP_CACHE:
            self._strips.popitem(last=False)
        return strip

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width
        style = self.rich_style
        if self.wrap:
            index = bisect_right(self._offsets, row) - 1
            if not 0 <= index < len(self.lines):
                return Strip.blank(width, style)
            start = (row - self._offsets[index]) * self._wrap_width
            return self._strip(index).crop_extend(start, start + self._wrap_width, style).crop_extend(0, width, style)
        if row >= len(self.lines):
            return Strip.blank(width, style)
        return self._strip(row).crop_extend(scroll_x, scroll_x + width, style).apply_offsets(scroll_x, row)

    # -- searching
    def search(self, query: str) -> None:
        """Finds every match of `query` (case-insensitive unless it has a capital)."""
        self.search_text = query
        self._pattern = re.compile(re.escape(query), 0 if query != query.lower() else re.IGNORECASE) if query else None
        self.matches = self._find(0) if self._pattern is not None else []
        self.current_match = None
        self._strips.clear()
        self.refresh()

    def _find(self, start: int) -> list[tuple[int, int, int]]:
        if self._pattern is None or start >= len(self.lines):
            return []
        plains = [line.plain for line in self.lines[start:]]
        # One scan of all lines joined: a query never spans lines (no newline can be typed).
        starts = list(accumulate((len(plain) + 1 for plain in plains), initial=0))
        found = []
        for match in self._pattern.finditer("\n".join(plains)):
            if match.start() == match.end():
                continue
            line = bisect_right(starts, match.start()) - 1
            found.append((start + line, match.start() - starts[line], match.end() - starts[line]))
        return found

    def _drop_matches_from(self, index: int) -> None:
        cut = bisect_left(self.matches, (index, -1, -1))
        del self.matches[cut:]
        if self.current_match is not None and self.current_match >= len(self.matches):
            self.current_match = None

    def _matches_on(self, index: int) -> list[tuple[int, int, int]]:
        if not self.matches:
            return []
        first = bisect_left(self.matches, (index, -1, -1))
        found = []
        for number in range(first, len(self.matches)):
            line, start, end = self.matches[number]
            if line != index:
                break
            found.append((start, end, number))
        return found

    def go_to_match(self, step: int) -> bool:
        """Makes the next (step 1) or previous (-1) match current, from the current one or
        else from the top of the view, wrapping around; False when there is none."""
        if not self.matches:
            return False
        if self.current_match is not None:
            number = (self.current_match + step) % len(self.matches)
        else:
            top = self.top_line()
            if step > 0:
                number = bisect_left(self.matches, (top, -1, -1)) % len(self.matches)
            else:
                number = (bisect_left(self.matches, (top, -1, -1)) - 1) % len(self.matches)
        previous, self.current_match = self.current_match, number
        if previous is not None:
            self._strips.pop(self.matches[previous][0], None)
        self._strips.pop(self.matches[number][0], None)
        self.refresh()
        self._reveal(*self.matches[number])
        return True

    def _reveal(self, index: int, start: int, end: int) -> None:
        plain = self.lines[index].plain
        column = cell_len(plain[:start])
        column_end = column + cell_len(plain[start:end])
        row = self.row_of(index, column)
        height = self.scrollable_content_region.height
        y = None
        if not self.scroll_y <= row < self.scroll_y + height:
            y = max(0, row - height // 3)
        x = None
        width = self._content_width()
        if not self.wrap and not (self.scroll_x <= column and column_end <= self.scroll_x + width):
            x = max(0, column - width // 4)
        self.scroll_to(x=x, y=y, animate=False, force=True)

    # -- keys
    def action_scroll_columns(self, direction: int) -> None:
        if not self.wrap:
            self.scroll_to(x=self.scroll_x + direction * max(1, self._content_width() // 2), animate=False, force=True)

    def action_line_start(self) -> None:
        self.scroll_to(x=0, animate=False, force=True)

    def action_line_end(self) -> None:
        """Shows the end of the longest line in view."""
        if self.wrap or not self.lines:
            return
        top = round(self.scroll_y)
        shown = self.lines[top : top + self.scrollable_content_region.height]
        longest = max((line.width for line in shown), default=0)
        self.scroll_to(x=max(0, longest - self._content_width()), animate=False, force=True)

    def action_top(self) -> None:
        self.scroll_to(x=0, y=0, animate=False, force=True)

    def action_bottom(self) -> None:
        self.scroll_to(y=self.max_scroll_y, animate=False, force=True)
