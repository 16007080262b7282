"""Sanitised output lines (njtui.model.terminal_text: text, tabs and SGR only) as Rich text."""

from __future__ import annotations

from rich.ansi import AnsiDecoder
from rich.style import Style
from rich.text import Text


def styled_line(line: str, base_style: str | Style = "") -> Text:
    """One sanitised line with its colours as styles, over `base_style` (the kind's: stderr
    red...), which the line's own colours override where they are set."""
    if "\x1b" not in line:
        return Text(line, style=base_style, end="", no_wrap=True)
    # A fresh decoder: its state must not carry over from another line (each is self-contained).
    text = AnsiDecoder().decode_line(line)
    text.style = base_style
    text.end = ""
    text.no_wrap = True
    return text
