"""Boots in progress, visible to every njtui process: `njtui runtimes` shows a runtime that
another process is booting (pulling its image, say) with its phase and byte counts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from njtui.runner.paths import open_private_root, runtime_root
from njtui.runner.private import NotPrivateError, PrivateDir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BootBoard:
    """Lives in the runtime root, so it is only used once that is checked private: a board in a
    directory someone else made could be read, or written through planted links. Its entries
    are found and written at the descriptor of the board that was checked."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self.dir = self.root / "booting"

    def _open(self, *, create: bool) -> PrivateDir | None:
        """The board, opened and checked; None if it is missing (and not `create`d) or refused
        (the boot itself, or `njtui runtimes`, says why the root is)."""
        try:
            with open_private_root(self.root) as root:
                return root.subdir(self.dir.name, create=create)
        except (NotPrivateError, OSError):
            return None

    def post(self, key: str, entry: dict[str, Any]) -> None:
        board = self._open(create=True)
        if board is None:
            return
        with board:
            try:
                board.write(f"{key}.json", json.dumps({**entry, "pid": os.getpid()}).encode())
            except (NotPrivateError, OSError):
                pass

    def clear(self, key: str) -> None:
        board = self._open(create=False)
        if board is None:
            return
        with board:
            try:
                board.unlink(f"{key}.json")
            except OSError:
                pass

    def entries(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        board = self._open(create=False)
        if board is None:
            return found
        with board:
            try:
                names = sorted(name for name in board.names() if name.endswith(".json") and not name.startswith("."))
            except OSError:
                return found
            for name in names:
                try:
                    entry = json.loads(board.read(name))
                    pid = int(entry.get("pid", 0))
                except (NotPrivateError, OSError, ValueError, TypeError, AttributeError):
                    continue
                if pid > 0 and _alive(pid):
                    found.append({**entry, "key": name.removesuffix(".json")})
                else:
                    try:
                        board.unlink(name)  # its booting process died
                    except OSError:
                        pass
        return found
