"""Errors that name the file, the line and column, and what to do."""

from __future__ import annotations

import re
from pathlib import Path


class StoreError(Exception):
    """A file njtui cannot use; the file is left untouched."""

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint
        super().__init__(str(self))

    @property
    def location(self) -> str:
        parts = [str(self.path)]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        text = f"{self.location}: error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class NotebookError(StoreError):
    """The notebook file is not a notebook njtui can read."""


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


_AT_END = "(at end of document)"


def toml_error_position(exc: Exception, text: str | None = None) -> tuple[str, int | None, int | None]:
    """(message, line, column) of a tomllib error; Python 3.11's carries them only in its text.
    An error "at end of document" is placed just after the last character of `text`, if given."""
    message = str(exc)
    position = _TOML_POSITION.search(message)
    if position is not None:
        return message[: position.start()], int(position.group(1)), int(position.group(2))
    if message.endswith(_AT_END) and text is not None:
        return message[: -len(_AT_END)].rstrip(), text.count("\n") + 1, len(text) - text.rfind("\n")
    return message, None, None
