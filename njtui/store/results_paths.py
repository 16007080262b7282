"""Paths in a results directory: cell ids and execution ids checked (or hashed) before they
become names there, and its directories, which are used only when they are not links, and
only through descriptors (results_io.directory_beneath)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from njtui.dirs import make_dirs
from njtui.model import is_cell_id
from njtui.store.results_io import directory_beneath

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
        try:
            with directory_beneath(self.root, parts):
                return True
        except OSError:
            return False

    def _names(self, *parts: str) -> list[tuple[str, bool]]:
        """(name, whether it is a regular file, not a link) of each entry of root/parts…, read
        at that directory's descriptor (directory_beneath); [] if it is missing or refused."""
        try:
            with directory_beneath(self.root, parts) as directory, os.scandir(directory) as entries:
                return [(entry.name, entry.is_file(follow_symlinks=False)) for entry in entries]
        except OSError:
            return []

    def _real_dir(self, *parts: str) -> Path:
        """root/parts…, made as needed, each at the descriptor of the one above (the root with
        the umask's mode, and only missing directories above it 0700); a link or a file in
        their place is an error, not followed."""
        if not os.path.isdir(self.root):
            make_dirs(self.root, 0o777)
        with directory_beneath(self.root, parts, create=True):
            pass
        return self.root.joinpath(*parts)
