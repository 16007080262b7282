"""Boots in progress, visible to every njtui process: `njtui runtimes` shows a runtime that
another process is booting (pulling its image, say) with its phase and byte counts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from njtui.runner.paths import private_root, runtime_root
from njtui.runner.private import NotPrivateError, private_dir, read_private, write_private


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
    directory someone else made could be read, or written through planted links."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self.dir = self.root / "booting"

    def _private_dir(self) -> Path | None:
        try:
            private_root(self.root)
            return private_dir(self.dir)
        except (NotPrivateError, OSError):
            return None  # the boot itself reports the refused root

    def post(self, key: str, entry: dict[str, Any]) -> None:
        if self._private_dir() is None:
            return
        try:
            write_private(self.dir / f"{key}.json", json.dumps({**entry, "pid": os.getpid()}).encode())
        except (NotPrivateError, OSError):
            pass

    def clear(self, key: str) -> None:
        (self.dir / f"{key}.json").unlink(missing_ok=True)

    def entries(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        if not self.dir.exists() or self._private_dir() is None:
            return found
        for path in sorted(self.dir.glob("*.json")):
            try:
                entry = json.loads(read_private(path))
            except (NotPrivateError, OSError, ValueError):
                continue
            if _alive(int(entry.get("pid", 0))):
                found.append({**entry, "key": path.stem})
            else:
                path.unlink(missing_ok=True)  # its booting process died
        return found
