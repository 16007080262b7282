"""Errors that name the file, the line and column, and what to do."""

from __future__ import annotations

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
