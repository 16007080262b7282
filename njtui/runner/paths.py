"""Where live runtimes keep their sockets, journals and registrations on this machine."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, fewer elsewhere


def runtime_root() -> Path:
    override = os.environ.get("NJTUI_RUNTIME_DIR")
    if override:
        root = Path(override)
    elif os.environ.get("XDG_RUNTIME_DIR") or not os.name == "posix" or os.uname().sysname == "Darwin":
        root = Path(platformdirs.user_runtime_dir("njtui"))
    else:
        # No XDG_RUNTIME_DIR (su, cron, some SSH set-ups): a private directory in /tmp, as
        # platformdirs would pick, without its warning on every command.
        root = Path(f"/tmp/njtui-runtime-{os.getuid()}")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def notebook_identity(notebook_path: Path | str) -> str:
    return str(Path(notebook_path).resolve())


def runtime_key(notebook_path: Path | str, runtime_id: str) -> str:
    """Stable name of one runtime of one notebook on this machine: any njtui process finds it."""
    digest = hashlib.sha256(f"{notebook_identity(notebook_path)}\0{runtime_id}".encode()).hexdigest()
    return digest[:12]


def socket_path(runtime_dir: Path) -> Path:
    path = runtime_dir / "sock"
    if len(str(path)) <= _SOCKET_PATH_MAX:
        return path
    short_root = Path(f"/tmp/njtui-{os.getuid()}")
    short_root.mkdir(exist_ok=True, mode=0o700)
    return short_root / f"{runtime_dir.name}.sock"
