"""Paths in a results directory: cell ids and execution ids checked (or hashed) before they
become names there, and its directories, which are used only when they are not links."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from pathlib import Path

from njtui.model import is_cell_id

SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


class InvalidCellId(ValueError):
    def __init__(self, cell_id: object) -> None:
        super().__init__(f"cell id {cell_id!r} is not 1 to 64 letters, digits, '-' or '_'")


def results_dir_for(notebook_path: Path | str) -> Path:
    path = Path(notebook_path)
    return path.with_name(path.stem + ".results")


def valid_cell_id(cell_id: object) -> bool:
    return isinstance(cell_id, str) and is_cell_id(cell_id)


def file_name(identifier: str) -> str:
    if SAFE_NAME.fullmatch(identifier):
        return identifier
    return "id-" + hashlib.sha256(identifier.encode()).hexdigest()[:16]


class ResultsDirectory:
    """The results directory of a notebook, `root`: where a cell's part of it is, and its
    directories, made and checked so that none is a link."""

    def __init__(self, notebook_path: Path | str) -> None:
        self.root = results_dir_for(notebook_path)

    def cell_dir(self, cell_id: str) -> Path:
        if not valid_cell_id(cell_id):
            raise InvalidCellId(cell_id)
        return self.root / "cells" / cell_id

    def _is_real_dir(self, *parts: str) -> bool:
        """Whether root/parts… are directories, none of them a link (the root itself may be)."""
        path = self.root
        for part in parts:
            path = path / part
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    return False
            except OSError:
                return False
        return True

    def _real_dir(self, *parts: str) -> Path:
        """root/parts…, made as needed; a link or a file in their place is an error, not followed."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root
        for part in parts:
            path = path / part
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise OSError(errno.ENOTDIR, f"{path} is not a directory (a link or a file is in its place); njtui does not write through it")
        return path
