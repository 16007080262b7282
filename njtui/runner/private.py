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

By descriptor (PrivateDir): a directory is opened (O_DIRECTORY | O_NOFOLLOW) and the open
directory is checked (fstat), then its entries are made and opened at that descriptor, so what
is used is what was checked, even if a name on the way is swapped meanwhile; a directory that
another user's 0700 squats, which this user may not even open, is refused like any other.

Only the standard library: the host relay (njtui.runner.hostd) imports this on every boot.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

from njtui.dirs import make_dirs


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


def _refuse_unless_private(path: Path, info: os.stat_result, link: Callable[[], str] | None, alternative: str | None) -> None:
    """NotPrivateError unless `info` (of `path`) is a directory only this user can use;
    `link`: what a symbolic link there points to, for the message."""
    me = os.getuid()
    if stat.S_ISLNK(info.st_mode):
        target = link() if link is not None else "somewhere"
        raise NotPrivateError(path, f"it is a symbolic link to {target}", _remedy(path, info.st_uid, alternative))
    if not stat.S_ISDIR(info.st_mode):
        raise NotPrivateError(path, "it is not a directory", _remedy(path, info.st_uid, alternative))
    if info.st_uid != me:
        raise NotPrivateError(path, f"it belongs to {_user(info.st_uid)}, not to you (uid {me})", _remedy(path, info.st_uid, alternative))
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise NotPrivateError(path, f"its mode is {mode:04o}, so other users can use it (njtui makes it 0700)", _remedy(path, info.st_uid, alternative))


def check_private_dir(path: Path | str, *, alternative: str | None = None) -> Path:
    """`path` if it is a directory only this user can use, else NotPrivateError; lstat's
    FileNotFoundError if it is missing. `alternative`: another way out, for the error."""
    path = Path(path)
    _refuse_unless_private(path, os.lstat(path), lambda: os.readlink(path), alternative)
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
    """`path` as a private directory: created 0700 if missing (with `parents`, the directories
    above it that are missing too, each 0700), then checked (NotPrivateError)."""
    path = Path(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        if not parents:
            raise
        make_dirs(path)
    return check_private_dir(path, alternative=alternative)


# A directory opened as itself: never through a symbolic link, never a file in its place.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_private_dir(name: Path | str, *, dir_fd: int | None = None, create: bool = False, shown: Path | str | None = None, alternative: str | None = None) -> int:
    """A descriptor of the private directory `name` (at `dir_fd`, if given), created 0700 first
    with `create`. What is checked is what was opened (fstat): a directory swapped in after the
    check cannot be the one used, and files opened at the descriptor are in the checked one.
    NotPrivateError, naming `shown` (default `name`), if it is not private, a symbolic link or
    not a directory, or one this user may not even open (another user's, 0700); FileNotFoundError
    if it is missing."""
    shown = Path(shown if shown is not None else name)
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            pass
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EACCES, errno.EPERM):
            # Why, in words: a link, a file, another user's directory we may not open.
            info = os.lstat(name, dir_fd=dir_fd)
            _refuse_unless_private(shown, info, lambda: os.readlink(name, dir_fd=dir_fd), alternative)
        raise
    try:
        _refuse_unless_private(shown, os.fstat(fd), None, alternative)
    except BaseException:
        os.close(fd)
        raise
    return fd


class PrivateDir:
    """An open private directory (open_private_dir): its entries are made, opened, renamed and
    removed at its descriptor, so each is in the directory that was checked, whatever is done
    to the names on the way to it meanwhile. `path` is for messages and for what must be
    named by path (a socket, an agent's files)."""

    def __init__(self, fd: int, path: Path | str) -> None:
        self.fd = fd
        self.path = Path(path)

    @classmethod
    def at(cls, path: Path | str, *, create: bool = False, alternative: str | None = None) -> PrivateDir:
        return cls(open_private_dir(path, create=create, alternative=alternative), path)

    def subdir(self, name: str, *, create: bool = False, alternative: str | None = None) -> PrivateDir:
        return PrivateDir(open_private_dir(name, dir_fd=self.fd, create=create, shown=self.path / name, alternative=alternative), self.path / name)

    def identity(self) -> str:
        """Which directory this is (device and inode), whatever its name now."""
        info = os.fstat(self.fd)
        return f"{info.st_dev}:{info.st_ino}"

    def open(self, name: str, flags: int, *, exclusive: bool = False) -> int:
        """As open_private, in this directory."""
        return _open(self.path / name, flags | os.O_CREAT | (os.O_EXCL if exclusive else 0), name=name, dir_fd=self.fd)

    def open_existing(self, name: str, flags: int = os.O_RDONLY) -> int:
        """As open_existing, in this directory."""
        return _open(self.path / name, flags, name=name, dir_fd=self.fd)

    def read(self, name: str) -> bytes:
        with os.fdopen(self.open_existing(name), "rb") as handle:
            return handle.read()

    def write(self, name: str, data: bytes) -> None:
        """As write_private, in this directory."""
        _write(self.path / name, data, self.fd)

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def rename(self, name: str, new_name: str) -> None:
        os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def remove_tree(self, name: str) -> None:
        """Removes the directory `name` and all in it, following no link (a link there is left)."""
        shutil.rmtree(name, ignore_errors=True, dir_fd=self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> PrivateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checked_fd(path: Path | str, fd: int) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"it belongs to {_user(info.st_uid)}"
        raise NotPrivateError(path, what, _remedy(Path(path), info.st_uid, None))
    # Opened non-blocking so a planted FIFO could not hang us; a regular file reads as usual.
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def _open(path: Path | str, flags: int, mode: int = 0o600, *, name: str | None = None, dir_fd: int | None = None) -> int:
    """`path`, or with `dir_fd` the entry `name` of that directory (`path` then names it in
    messages), never through a symlink."""
    try:
        fd = os.open(path if dir_fd is None else name or Path(path).name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dir_fd)
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
    _write(Path(path), data, None)


def _write(path: Path, data: bytes, dir_fd: int | None) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    names = (temp, path) if dir_fd is None else (temp.name, path.name)
    fd = _open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, name=temp.name, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(*names, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(names[0], dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
