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


def toml_error_position(exc: Exception) -> tuple[str, int | None, int | None]:
    """(message, line, column) of a tomllib error; Python 3.11's carries them only in its text."""
    message = str(exc)
    position = _TOML_POSITION.search(message)
    if position is None:
        return message, None, None
    return message[: position.start()], int(position.group(1)), int(position.group(2))
