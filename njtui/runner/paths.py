"""Where live runtimes keep their sockets, journals and registrations on this machine.

Every directory here must be private to the user (see njtui.runner.private): without
XDG_RUNTIME_DIR the root is a fixed name in the shared /tmp that another user can take first.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

from njtui.dirs import make_dirs
from njtui.runner.private import PrivateDir, check_ancestors, private_dir

_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, fewer elsewhere


def runtime_root() -> Path:
    """The runtime root, created 0700 if missing but not checked: use private_runtime_root()
    before putting anything in it."""
    override = os.environ.get("NJTUI_RUNTIME_DIR")
    if override:
        root = Path(override)
    elif os.environ.get("XDG_RUNTIME_DIR") or not os.name == "posix" or os.uname().sysname == "Darwin":
        root = Path(platformdirs.user_runtime_dir("njtui"))
    else:
        # No XDG_RUNTIME_DIR (su, cron, some SSH set-ups): a private directory in /tmp, as
        # platformdirs would pick, without its warning on every command.
        root = Path(f"/tmp/njtui-runtime-{os.getuid()}")
    try:
        # Made here, before anything else (the boot board) can create it with the umask's mode.
        private_dir(root, parents=True)
    except Exception:  # noqa: BLE001 - refused by private_runtime_root, with the reason, where it is used
        pass
    return root


def _way_out() -> str:
    if os.environ.get("NJTUI_RUNTIME_DIR"):
        return "point NJTUI_RUNTIME_DIR at a directory only you can use"
    return "set XDG_RUNTIME_DIR to a directory only you can use (mkdir -m 700 DIR)"


def private_root(root: Path, alternative: str | None = None) -> Path:
    """`root`, created 0700 if missing, checked private (NotPrivateError says why and what to do)."""
    open_private_root(root, alternative).close()
    return root


def open_private_root(root: Path, alternative: str | None = None) -> PrivateDir:
    """`root` opened, created 0700 if missing (and the directories above it that are missing,
    each 0700), checked private as opened, and its parents checked (NotPrivateError says why
    and what to do). Everything in the root is made and found at this descriptor."""
    alternative = alternative or _way_out()
    if not os.path.lexists(root):
        make_dirs(root.parent)
    directory = PrivateDir.at(root, create=True, alternative=alternative)
    try:
        check_ancestors(root, alternative=alternative)
    except BaseException:
        directory.close()
        raise
    return directory


def private_runtime_root() -> Path:
    return private_root(runtime_root())


def notebook_identity(notebook_path: Path | str) -> str:
    return str(Path(notebook_path).resolve())


def runtime_key(notebook_path: Path | str, runtime_id: str) -> str:
    """Stable name of one runtime of one notebook on this machine: any njtui process finds it."""
    digest = hashlib.sha256(f"{notebook_identity(notebook_path)}\0{runtime_id}".encode()).hexdigest()
    return digest[:12]


def socket_path(runtime_dir: Path) -> Path:
    """Where a runtime's relay listens: in its (private) directory, or, if that path is too
    long for a unix socket, in a private /tmp/njtui-<uid>, checked like the runtime root."""
    path = runtime_dir / "sock"
    if len(str(path)) <= _SOCKET_PATH_MAX:
        return path
    short_root = Path(f"/tmp/njtui-{os.getuid()}")
    private_root(short_root, "give the runtime directory a shorter path (XDG_RUNTIME_DIR or NJTUI_RUNTIME_DIR), which keeps sockets in it")
    return short_root / f"{runtime_dir.name}.sock"
