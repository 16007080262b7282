"""Files in a results directory, opened as what they are: a results directory is committed
and shared, so a name in it may be a symbolic link, a FIFO or a directory planted there. No
link is followed, no FIFO waited on, and only complete lines are read."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

# O_NONBLOCK: opening a FIFO planted under a store's name must not hang the reader.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LINK_ERRNOS = (errno.ELOOP, errno.EMLINK, errno.ENOTDIR)


class Refused(Exception):
    """An entry of a results directory that is not used: the message says why."""


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_regular(path: Path) -> int:
    """A read descriptor of a regular file at `path` itself, never of what a link points to."""
    fd = os.open(path, READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: Path, create: bool = False) -> int:
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in LINK_ERRNOS:
            raise OSError(exc.errno, f"{path} is a symbolic link; njtui does not write through it") from None
        raise


def _rfind_newline(fd: int, before: int) -> int:
    """Offset of the last newline before offset `before`, or -1."""
    position = before
    while position > 0:
        start = max(0, position - 65536)
        found = os.pread(fd, position - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        position = start
    return -1


def cut_incomplete_line(fd: int) -> None:
    """Drops the half line a write cut short left at the end (a full disk, a killed writer)."""
    end = os.fstat(fd).st_size
    if end and os.pread(fd, 1, end - 1) != b"\n":
        os.ftruncate(fd, _rfind_newline(fd, end) + 1)


def lines_from_end(path: Path) -> Iterator[bytes]:
    """The complete lines of a file, last first, each whole however long (one output event can
    be a large line, more than any fixed window from the end)."""
    try:
        fd = open_regular(path)
    except OSError:
        return
    try:
        end = _rfind_newline(fd, os.fstat(fd).st_size)
        while end >= 0:
            start = _rfind_newline(fd, end) + 1
            yield os.pread(fd, end - start, start)
            end = start - 1
    except OSError:
        return
    finally:
        os.close(fd)


def first_line_complete(fd: int) -> bool:
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        if b"\n" in chunk:
            return True
        offset += len(chunk)
    return False


def tail_lines(path: Path, size: int = 65536) -> list[bytes]:
    """Complete lines near the end of a file, last first."""
    try:
        fd = open_regular(path)
    except OSError:
        return []
    try:
        end = os.fstat(fd).st_size
        data = os.pread(fd, min(size, end), max(0, end - size))
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is incomplete (or empty)
    if end > size:
        complete = complete[1:]  # the first line was cut by the seek
    return list(reversed(complete))


def open_directory(fd: int, parts: Iterable[str], *, create: bool) -> int:
    """A descriptor of directory fd/parts…, made as needed; a link or file on the way is refused."""
    current = os.dup(fd)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=current)
                except FileExistsError:
                    pass
            try:
                following = os.open(part, _DIR_FLAGS, dir_fd=current)
            except OSError as exc:
                if exc.errno in LINK_ERRNOS:
                    raise Refused(f"{part!r} on its path is a symbolic link or not a directory") from None
                raise
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current
