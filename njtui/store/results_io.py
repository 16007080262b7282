"""Files in a results directory, opened as what they are: a results directory is committed
and shared, so a name in it may be a symbolic link, a FIFO or a directory planted there. No
link is followed, no FIFO waited on, and only complete lines are read.

By descriptor: every file of the store is reached from a descriptor of the results directory,
one directory at a time (O_DIRECTORY | O_NOFOLLOW at the descriptor of the one before), and
made, opened, renamed or removed at the descriptor of its own directory (the `beneath`
functions). A store in a directory someone else can write may have a subdirectory swapped for
a link at any moment; a swap before a step makes that step fail, and one after it changes
nothing, for the descriptor is of the directory that was there, not of its name. The results
directory itself may be a link (as the notebook's directory may be)."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
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


def _relative(root: Path, path: Path) -> tuple[tuple[str, ...], str]:
    """(the directories from `root` down to `path`'s, `path`'s name): `path` is one the store
    made of `root` and checked names."""
    parts = path.relative_to(root).parts
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{path} is not a file under {root}")
    return parts[:-1], parts[-1]


@contextmanager
def directory_beneath(root: Path, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
    """A descriptor of root/parts…, walked from the root's descriptor without following a link
    (made as needed with `create`); a link or a file on the way is an OSError (ELOOP) that says
    so, FileNotFoundError if one is missing."""
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        directory = open_directory(top, parts, create=create)
    except Refused as exc:
        raise OSError(errno.ELOOP, f"{root.joinpath(*parts)}: {exc}; njtui does not read or write through it") from None
    finally:
        os.close(top)
    try:
        yield directory
    finally:
        os.close(directory)


def open_beneath(root: Path, path: Path, flags: int, mode: int = 0o644) -> int:
    """`path`, a file under `root`, opened at its directory's descriptor (directory_beneath),
    never through a link (O_NOFOLLOW is added)."""
    parts, name = _relative(root, path)
    with directory_beneath(root, parts) as directory:
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=directory)
        except OSError as exc:
            if exc.errno in LINK_ERRNOS:
                raise OSError(exc.errno, f"{path} is a symbolic link; njtui does not read or write through it") from None
            raise


def unlink_beneath(root: Path, path: Path) -> None:
    """Removes the file `path` under `root` (a link there itself, never what it points to)."""
    parts, name = _relative(root, path)
    try:
        with directory_beneath(root, parts) as directory:
            os.unlink(name, dir_fd=directory)
    except FileNotFoundError:
        pass


def replace_beneath(root: Path, path: Path, data: bytes) -> None:
    """Replaces the file `path` under `root` with one holding `data`: written to a new name in
    its directory, then renamed over it, both at that directory's descriptor (a reader sees the
    old or the new; a link there is replaced, never written through). Keeps the old file's mode."""
    parts, name = _relative(root, path)
    with directory_beneath(root, parts) as directory:
        try:
            mode: int | None = stat.S_IMODE(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            mode = None
        with new_file_at(directory, name, 0o666) as fd:
            write_all(fd, data)
            if mode is not None:
                os.fchmod(fd, mode)


@contextmanager
def new_file_at(directory: int, name: str, mode: int) -> Iterator[int]:
    """A descriptor of a new file in `directory`, under a temporary name, renamed to `name` (over
    what is there) when the block ends, or removed if it fails: a reader sees the old file or
    the whole new one. Made O_EXCL and O_NOFOLLOW at the directory's descriptor, so nothing
    planted under the temporary name is written through."""
    temporary = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=directory)
    try:
        try:
            yield fd
        finally:
            os.close(fd)
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=directory)
        except OSError:
            pass
        raise


def open_regular(path: Path, *, beneath: Path) -> int:
    """A read descriptor of a regular file at `path` (under the results directory `beneath`)
    itself, never of what a link points to."""
    fd = open_beneath(beneath, path, READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: Path, create: bool = False, *, beneath: Path) -> int:
    """`path` (under the results directory `beneath`) opened to append, created 0644 (less the
    umask) with `create`; never through a link."""
    return open_beneath(beneath, path, os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0))


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


def lines_from_end(path: Path, *, beneath: Path) -> Iterator[bytes]:
    """The complete lines of a file, last first, each whole however long (one output event can
    be a large line, more than any fixed window from the end)."""
    try:
        fd = open_regular(path, beneath=beneath)
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


def tail_lines(path: Path, size: int = 65536, *, beneath: Path) -> list[bytes]:
    """Complete lines near the end of a file, last first."""
    try:
        fd = open_regular(path, beneath=beneath)
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
