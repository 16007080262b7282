"""Tab completion in a cell's editor: the runtime's matches in a menu under the cursor."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.geometry import Offset
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from njtui.model.output import terminal_safe

MAX_SHOWN = 10


class CompletionMenu(OptionList):
    """Up/Down (or Tab) choose, Enter takes, Esc or any other key closes it."""

    BINDINGS = [
        Binding("escape", "close", "close", show=False),
        Binding("tab", "cursor_down", "next", show=False),
        Binding("shift+tab", "cursor_up", "previous", show=False),
    ]

    class Chosen(Message):
        def __init__(self, text: str | None, key: str | None = None) -> None:
            super().__init__()
            self.text = text
            self.key = key  # a key typed over the menu, for the editor

    def __init__(self, matches: list[str], at: Offset) -> None:
        # Matches come from the runtime: drawn, never interpreted.
        super().__init__(*[Option(terminal_safe(match), id=str(index)) for index, match in enumerate(matches)], id="completion-menu")
        self.matches = matches
        self.styles.offset = (at.x, at.y)
        self.styles.height = min(len(matches), MAX_SHOWN) + 2

    def on_mount(self) -> None:
        self.highlighted = 0
        self.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(self.Chosen(self.matches[int(event.option.id or 0)]))

    def action_close(self) -> None:
        self.post_message(self.Chosen(None))

    def on_key(self, event: events.Key) -> None:
        if event.key in ("up", "down", "enter", "tab", "shift+tab", "escape", "pageup", "pagedown", "home", "end"):
            return
        event.stop()
        event.prevent_default()
        self.post_message(self.Chosen(None, event.character if event.is_printable else None))


def common_prefix(matches: list[str]) -> str:
    if not matches:
        return ""
    first, last = min(matches), max(matches)
    length = 0
    while length < len(first) and first[length] == last[length]:
        length += 1
    return first[:length]
