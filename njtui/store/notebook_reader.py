"""Reading a notebook file's bytes: only a regular file is read (a FIFO would block, /dev/zero
never end), and at most MAX_NOTEBOOK_BYTES of it; NotebookError otherwise."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from njtui.store.errors import NotebookError

MAX_NOTEBOOK_BYTES = 64 * 1024**2
DONT_CHANGE = "njtui left the file unchanged"


def too_large(path: Path, size: int) -> NotebookError:
    return NotebookError(
        path,
        f"is {size / 1024**2:,.1f} MiB, larger than the {MAX_NOTEBOOK_BYTES // 1024**2} MiB a notebook may be",
        hint=f"name the .toml notebook file itself; large data belongs in files beside it, not in cells; {DONT_CHANGE}",
    )


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_regular(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    if kind == "a directory":
        raise NotebookError(path, "is a directory, not a notebook file", hint="name a .toml notebook file")
    raise NotebookError(
        path,
        f"is {kind}, not a regular file, so not a notebook",
        hint="name the .toml notebook file itself (a symlink to one is fine); njtui reads notebooks only from regular files",
    )


def read_notebook_bytes(path: Path) -> bytes:
    """The bytes of a notebook file. Only a regular file is read (a FIFO would block, /dev/zero
    never end), and at most MAX_NOTEBOOK_BYTES of it; NotebookError otherwise."""
    try:
        # stat follows a symlink: it is the file that would be read that must be regular, and
        # it is checked before opening, since opening some devices already does something.
        _check_regular(path, os.stat(path).st_mode)
        # O_NONBLOCK: should a FIFO replace the file after the stat, opening it does not wait
        # for a writer; the fstat below then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotebookError(path, "no such notebook", hint="check the path, or run `njtui PATH` to create a new notebook there") from None
    except IsADirectoryError:
        raise NotebookError(path, "is a directory, not a notebook file", hint="name a .toml notebook file") from None
    except OSError as exc:
        raise NotebookError(path, f"cannot read the file: {exc.strerror}", hint=os_error_hint(exc)) from None
    except ValueError:  # a NUL in the path
        raise NotebookError(path, "is not a path a file can have (it contains a NUL)", hint="name the .toml notebook file") from None
    try:
        info = os.fstat(descriptor)
        _check_regular(path, info.st_mode)
        if info.st_size > MAX_NOTEBOOK_BYTES:
            raise too_large(path, info.st_size)
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow after the fstat: the limit holds for what is read
            chunk = os.read(descriptor, min(1024**2, MAX_NOTEBOOK_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_NOTEBOOK_BYTES:
                raise too_large(path, total)
    except OSError as exc:
        raise NotebookError(path, f"cannot read the file: {exc.strerror}", hint=os_error_hint(exc)) from None
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def os_error_hint(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "check its permissions (and those of the directories above it)"
    return "check the path; it must name a readable .toml notebook file"
