"""Private state: directories and files that only the user running njtui may touch.

Runtime state (sockets, journals, secret files, the Bash agent's cell files) lives in places
like `/tmp/njtui-runtime-<uid>`, whose name any local user can take first: make it writable to
all, or plant symlinks named like njtui's files, and njtui would hand them secrets, write
through the links, or source their script as a cell. So every such directory is created 0700
and checked with lstat each time it is used (a directory, not a symlink, owned by this user, no
permission bits for group or others), and files in it are opened without following symlinks.
A directory that fails is refused, with what to do, and never repaired: whoever made it may
already have planted something in it, and a chmod would not take that out.

Inside a directory that passes, nobody else can add, rename or remove an entry, so checking
the directory (not every file in it) is what keeps its files ours.

Only the standard library: the host relay (njtui.runner.hostd) imports this on every boot.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import stat
import time
from pathlib import Path


class NotPrivateError(Exception):
    """A directory or file that other users could read, replace or have planted; refused."""

    def __init__(self, path: Path | str, problem: str, remedy: str) -> None:
        self.path = Path(path)
        self.problem = problem
        self.remedy = remedy
        # One line: the runner shows a runtime's first line of error as its reason.
        super().__init__(f"{path} is not private: {problem}; {remedy}")


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _remedy(path: Path, owner: int, alternative: str | None) -> str:
    if owner == os.getuid():
        text = f"remove it (rm -rf {path}): files may have been planted in it"
    else:
        text = "it must be removed by its owner or an administrator"
    return f"{text}, or {alternative}" if alternative else text


def check_private_dir(path: Path | str, *, alternative: str | None = None) -> Path:
    """`path` if it is a directory only this user can use, else NotPrivateError; lstat's
    FileNotFoundError if it is missing. `alternative`: another way out, for the error."""
    path = Path(path)
    info = os.lstat(path)
    me = os.getuid()
    if stat.S_ISLNK(info.st_mode):
        raise NotPrivateError(path, f"it is a symbolic link to {os.readlink(path)}", _remedy(path, info.st_uid, alternative))
    if not stat.S_ISDIR(info.st_mode):
        raise NotPrivateError(path, "it is not a directory", _remedy(path, info.st_uid, alternative))
    if info.st_uid != me:
        raise NotPrivateError(path, f"it belongs to {_user(info.st_uid)}, not to you (uid {me})", _remedy(path, info.st_uid, alternative))
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise NotPrivateError(path, f"its mode is {mode:04o}, so other users can use it (njtui makes it 0700)", _remedy(path, info.st_uid, alternative))
    return path


def check_ancestors(path: Path | str, *, alternative: str | None = None) -> None:
    """Refuses `path` if a directory above it lets every user rename entries (writable by all
    without the sticky bit, unlike /tmp): the checked directory could be swapped after the check.
    Both the path as written and its resolved form are checked, for symlinks on the way."""
    path = Path(os.path.abspath(path))
    above = {*path.parents, *Path(os.path.realpath(path.parent)).parents, Path(os.path.realpath(path.parent))}
    for directory in sorted(above, key=lambda p: len(p.parts)):
        info = os.stat(directory)
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            raise NotPrivateError(
                path,
                f"{directory} above it is writable by every user (mode {stat.S_IMODE(info.st_mode):04o}), so it could be swapped",
                alternative or "use a directory whose parents only their owners can write",
            )


def private_dir(path: Path | str, *, parents: bool = False, alternative: str | None = None) -> Path:
    """`path` as a private directory: created 0700 if missing, then checked (NotPrivateError)."""
    path = Path(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        if not parents:
            raise
        os.makedirs(path.parent, 0o700, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    return check_private_dir(path, alternative=alternative)


def _checked_fd(path: Path | str, fd: int) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"it belongs to {_user(info.st_uid)}"
        raise NotPrivateError(path, what, _remedy(Path(path), info.st_uid, None))
    # Opened non-blocking so a planted FIFO could not hang us; a regular file reads as usual.
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def _open(path: Path | str, flags: int, mode: int = 0o600) -> int:
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotPrivateError(path, "it is a symbolic link", f"remove it (rm {path})") from None
        raise
    return _checked_fd(path, fd)


def open_private(path: Path | str, flags: int, *, exclusive: bool = False) -> int:
    """A file descriptor on `path`, a file in a private directory, never through a symlink.
    Created 0600 if missing; `exclusive`: it must not exist yet (O_EXCL)."""
    return _open(path, flags | os.O_CREAT | (os.O_EXCL if exclusive else 0))


def open_existing(path: Path | str, flags: int = os.O_RDONLY) -> int:
    """A file descriptor on an existing file `path`, never through a symlink (FileNotFoundError
    if it is missing)."""
    return _open(path, flags)


def read_private(path: Path | str) -> bytes:
    fd = open_existing(path)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def write_private(path: Path | str, data: bytes) -> None:
    """Replaces `path` with a 0600 file holding `data`: written to a new file beside it, then
    renamed over it (a reader sees the old or the new, and a symlink there is replaced, not
    followed)."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = open_private(temp, os.O_WRONLY, exclusive=True)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
