"""Boots in progress, visible to every njtui process: `njtui runtimes` shows a runtime that
another process is booting (pulling its image, say) with its phase and byte counts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from njtui.runner.paths import runtime_root
from njtui.store.atomic import atomic_write_bytes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BootBoard:
    def __init__(self, root: Path | None = None) -> None:
        self.dir = (root or runtime_root()) / "booting"

    def post(self, key: str, entry: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps({**entry, "pid": os.getpid()}).encode()
        atomic_write_bytes(self.dir / f"{key}.json", data, durable=False)

    def clear(self, key: str) -> None:
        (self.dir / f"{key}.json").unlink(missing_ok=True)

    def entries(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.exists() else []:
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if _alive(int(entry.get("pid", 0))):
                found.append({**entry, "key": path.stem})
            else:
                path.unlink(missing_ok=True)  # its booting process died
        return found
