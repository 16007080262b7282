#!/usr/bin/env python3
"""The njtui Python runtime agent (protocol 1, see docs/protocol.md).

Standard library only, one file: it is copied into arbitrary images that have nothing but
`python3`. It reads requests from stdin and writes messages to stdout, journaling each one.
Usage: python3 agent.py --journal PATH [--idle-timeout SECONDS]
"""

from __future__ import annotations

import _thread
import argparse
import ast
import base64
import builtins
import codecs
import collections
import io
import json
import keyword
import linecache
import os
import pkgutil
import queue
import re
import select
import signal
import stat
import sys
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable, Sequence

PROTOCOL = 1
# Python-level writes are batched: one message per flush keeps a print loop fast.
FLUSH_INTERVAL = 0.02
FLUSH_BYTES = 1 << 16
# How often a Python-level write checks the fd pipes for output of subprocesses: more often
# than any subprocess can start and exit, so sequential code keeps its order.
FD_CHECK_NS = 100_000
READ_CHUNK = 1 << 16
AGENT_FILE = os.path.abspath(__file__)
_get_ident = _thread.get_ident


# After a shutdown or the end of its input, a cell that ignores its interrupt this long is
# abandoned and the agent exits anyway (a cell that takes it ends in milliseconds).
# NJTUI_SHUTDOWN_GRACE_MS sets it (tests on a loaded machine lengthen it); the cell never sees it.
def _shutdown_grace(default_ms: int = 1000) -> float:
    text = os.environ.pop("NJTUI_SHUTDOWN_GRACE_MS", "")
    return (int(text) if text.isdigit() and len(text) <= 7 else default_ms) / 1000


SHUTDOWN_GRACE = _shutdown_grace()
INTERRUPT_RETRIES, INTERRUPT_RETRY_INTERVAL = 20, 0.02
# What a cell ended by the agent's own end says, by the reason the agent ends.
ENDED_BY = {"shutdown": "the runtime was stopped", "stdin closed": "the runtime's connection closed"}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# Exec ids name staged files: only ids that are safe as a file name get files staged.
_SAFE_ID = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _safe_id(exec_id: object) -> bool:
    return isinstance(exec_id, str) and 0 < len(exec_id) <= 64 and set(exec_id) <= _SAFE_ID


def _results_snapshot() -> dict[str, tuple[int, int, int]]:
    """Regular files under $NJTUI_RESULTS (relative name → mtime, size, inode), links not followed."""
    root = os.environ.get("NJTUI_RESULTS")
    found: dict[str, tuple[int, int, int]] = {}
    if not root:
        return found
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    stat = entry.stat(follow_symlinks=False)
                    found[os.path.relpath(entry.path, root)] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            except OSError:
                continue
    return found


def _copy_no_follow(source: str, target: str) -> int:
    """Copies a regular file byte for byte; a link planted in its place is not followed."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    in_fd = os.open(source, flags)
    try:
        if not stat.S_ISREG(os.fstat(in_fd).st_mode):
            raise OSError(f"{source} is not a regular file")
        out_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        size = 0
        try:
            while True:
                chunk = os.read(in_fd, 1 << 20)
                if not chunk:
                    return size
                _write_all(out_fd, chunk)
                size += len(chunk)
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)


def _own_dir(path: str) -> None:
    """Makes the directory `path` (mode 0700) if it is missing, never its parents: a runtime
    directory removed meanwhile (the runtime ended, a new one is starting) is not made again,
    with the umask's mode (FileNotFoundError)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


def keep_secrets(secrets: dict, log: Callable[[str, str], None]) -> dict[str, str]:
    """The secrets that are variables (a name and a string value), each also written to a file
    in the secrets directory ($NJTUI_SECRETS_DIR, a tmpfs in containers); `log(level, text)`
    says what could not be written. Nothing of them is journaled or echoed."""
    directory = os.environ.get("NJTUI_SECRETS_DIR")
    kept = {}
    for name, value in secrets.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name.isidentifier():
            continue
        kept[name] = value
        if directory:
            try:
                _own_dir(directory)
                fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(value)
            except OSError as exc:
                log("error", f"cannot write secret file {name}: {exc.strerror}")
    return kept


def release_staged(stage_dir: str | None, exec_id: object) -> None:
    """A client has stored an execution's files: their staged copies go."""
    if not stage_dir or not _safe_id(exec_id):
        return
    try:
        names = os.listdir(stage_dir)
    except OSError:
        return
    for name in names:
        if name.startswith(f"{exec_id}."):
            try:
                os.unlink(os.path.join(stage_dir, name))
            except OSError:
                pass


def stage_results(stage_dir: str | None, exec_id: str, before: dict[str, tuple[int, int, int]], log: Callable[[str, str], None]) -> list[dict[str, str]]:
    """Copies, in `stage_dir`, of the files this cell created or changed under $NJTUI_RESULTS
    (`before`: the snapshot taken as it started), listed as its `done` lists them."""
    root = os.environ.get("NJTUI_RESULTS")
    if not root or not stage_dir or not _safe_id(exec_id):
        return []
    changed = sorted(name for name, signature in _results_snapshot().items() if before.get(name) != signature)
    staged = []
    for number, name in enumerate(changed):
        target = f"{exec_id}.{number}"
        try:
            _own_dir(stage_dir)
            path = os.path.join(stage_dir, target)
            if os.path.lexists(path):
                os.unlink(path)
            _copy_no_follow(os.path.join(root, name), path)
        except OSError as exc:
            log("warning", f"could not keep results file {name}: {exc}")
            continue
        staged.append({"name": name, "staged": target})
    return staged


class Channel:
    """Numbers every message, journals it, then writes it to the client."""

    def __init__(self, out_fd: int, journal_path: str | None) -> None:
        self._lock = threading.Lock()
        self._out_fd: int | None = out_fd
        self._journal_fd = os.open(journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600) if journal_path else None
        self.seq = 0

    def emit(self, type_: str, exec_id: str | None = None, **fields: object) -> None:
        with self._lock:
            self.seq += 1
            message: dict[str, object] = {"seq": self.seq, "exec": exec_id, "type": type_, "t": time.time()}
            message.update(fields)
            line = json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"
            data = line.encode("utf-8", "replace")
            if self._journal_fd is not None:
                _write_all(self._journal_fd, data)
            if self._out_fd is not None:
                try:
                    _write_all(self._out_fd, data)
                except OSError:
                    # The client side is gone; the journal still has everything for replay.
                    self._out_fd = None

    def reply(self, message: dict[str, object]) -> None:
        """An answer to one client's request (a completion): no seq, not journaled, as it is
        nobody else's business and means nothing on replay."""
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:  # one line at a time on the channel: never inside another message
            if self._out_fd is not None:
                try:
                    _write_all(self._out_fd, line.encode("utf-8", "replace"))
                except OSError:
                    self._out_fd = None


class CellStream(io.TextIOBase):
    """sys.stdout / sys.stderr of cells: ordered, batched, without a syscall per print."""

    def __init__(self, capture: Capture, name: str) -> None:
        self._capture = capture
        self._name = name
        self._buffer = CellBuffer(self)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def buffer(self) -> CellBuffer:
        """Bytes written here join the text written around them, in order, as on a real stdout."""
        return self._buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1 if self._name == "stdout" else 2

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        capture = self._capture
        now = time.monotonic_ns()
        if now - capture.last_fd_check > FD_CHECK_NS:
            capture.check_fds(now)
        # Whose output it is: the running cell's from the main thread, else the cell that
        # started the writing thread (see Capture.origin; none started yet: no need to ask).
        if capture.threaded and _get_ident() != capture.main_ident:
            capture.pending.append((capture.origin(), self._name, text))
        else:
            capture.pending.append((capture.cell, self._name, text))
        capture.pending_size += len(text)
        if capture.pending_size > FLUSH_BYTES:
            capture.flush()
        elif capture.flusher_asleep:
            capture.wake_flusher()
        return len(text)

    def flush(self) -> None:
        if time.monotonic() - self._capture.last_flush > FLUSH_INTERVAL:
            self._capture.flush()


class CellBuffer(io.BufferedIOBase):
    """sys.stdout.buffer / sys.stderr.buffer of cells: UTF-8 decoded as it comes (a character
    split across two writes waits for its end) and written through the text stream."""

    def __init__(self, stream: CellStream) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        text = self._decoder.decode(view.tobytes())
        if text:
            self._stream.write(text)
        return view.nbytes

    def flush(self) -> None:
        self._stream.flush()


class NoInput(io.TextIOBase):
    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        raise OSError("njtui cells have no standard input; read files or use variables instead")

    readline = read  # type: ignore[assignment]


class _Pipe:
    """One output pipe of one cell (fds 1 and 2 while that cell ran), read until its end."""

    __slots__ = ("name", "decoder", "cell")

    def __init__(self, name: str, cell: int) -> None:
        self.name = name
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.cell = cell


class _Poller:
    """The pipes the reader thread waits on, changed under the capture's lock. With epoll
    (Linux) the set changes without waking it; elsewhere it selects on a copy of the set, is
    woken through a pipe to take the new one, and closes what was given up (never a pipe it may
    be waiting on)."""

    def __init__(self) -> None:
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._watched: set[int] = set()
        self._closing: list[int] = []
        self._wake_read = self._wake_write = -1
        if self._epoll is None:
            self._wake_read, self._wake_write = os.pipe()
            os.set_blocking(self._wake_read, False)
            os.set_blocking(self._wake_write, False)

    def watch(self, fd: int) -> None:
        self._watched.add(fd)
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            self._wake()

    def forget(self, fd: int, close: bool = False) -> None:
        """Waits for `fd` no more (and closes it)."""
        if fd in self._watched:
            self._watched.discard(fd)
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:
                self._wake()
        if close and self._epoll is not None:
            os.close(fd)
        elif close:
            self._closing.append(fd)

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # a wake-up is pending already

    def settle(self) -> tuple[int, ...]:
        """The reader thread, under the lock: closes what was given up; the set to wait on."""
        for fd in self._closing:
            os.close(fd)
        self._closing.clear()
        return (*self._watched, self._wake_read)

    def wait(self, fds: tuple[int, ...]) -> list[int]:
        """The reader thread, without the lock: the pipes with output, or at their end."""
        if self._epoll is not None:
            return [fd for fd, _ in self._epoll.poll()]
        readable, _, _ = select.select(fds, [], [])
        if self._wake_read in readable:
            try:
                os.read(self._wake_read, 64)
            except BlockingIOError:
                pass
        return [fd for fd in readable if fd != self._wake_read]


class Capture:
    """Captures fds 1 and 2 (subprocesses, C code) and Python-level writes, in order.

    Each cell gets a pair of pipes on fds 1 and 2 of its own (made as the cell before it
    ended). As a cell ends the agent closes its own write ends of them: a pipe then reaches its
    end at once unless something else holds it (a background process that inherited it), and is
    read on until it does. Output is its cell's while that cell runs, and `exec: null` once it
    has ended, so it never lands in a later cell (docs/protocol.md, "Output capture").
    Python-level writes of other threads belong to the cell that started the thread.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.exec_id: str | None = None
        # The running cell's serial (1, 2, 3 …), 0 between cells: output of an earlier serial
        # is emitted with exec null.
        self.cell = 0
        self._serial = 0
        self.main_ident = _thread.get_ident()
        # Set once a cell has started a thread (see track_thread_origins).
        self.threaded = False
        self.pending: collections.deque[tuple[int, str, str]] = collections.deque()
        self.pending_size = 0
        self.last_fd_check = 0
        self.last_flush = 0.0
        # The flusher sleeps on this while nothing is pending, so an idle runtime never wakes.
        self.flusher_asleep = False
        self._flusher_wake = threading.Event()
        self._lock = threading.RLock()
        self._poller = _Poller()
        self._pipes: dict[int, _Pipe] = {}
        self._fds: tuple[int, ...] = ()
        self._current: tuple[int, ...] = ()  # the read ends of the pipes now on fds 1 and 2
        # Read ends of pipes now on fds 1 and 2 that ended early (the cell closed fd 1 and 2):
        # check_fds still selects on them, so they close when the next pipes come.
        self._spent: list[int] = []
        self._new_pipes(0)
        self.stdout = CellStream(self, "stdout")
        self.stderr = CellStream(self, "stderr")
        threading.Thread(target=self._read_fds_forever, name="njtui-fd-reader", daemon=True).start()
        threading.Thread(target=self._flush_forever, name="njtui-flusher", daemon=True).start()

    def _new_pipes(self, cell: int) -> None:
        """Fresh pipes on fds 1 and 2, replacing (and closing) the agent's write ends of the
        ones there before. Under the lock."""
        current = []
        for target, name in ((1, "stdout"), (2, "stderr")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, target)
            os.close(write_end)
            os.set_blocking(read_end, False)
            self._pipes[read_end] = _Pipe(name, cell)
            self._poller.watch(read_end)
            current.append(read_end)
        self._current = tuple(current)
        self._fds = tuple(self._pipes)
        for fd in self._spent:
            self._poller.forget(fd, close=True)
        self._spent.clear()

    def begin(self, exec_id: str, **start_fields: object) -> None:
        """A cell starts: the pipes made as the previous one ended become its own (what came
        through them before, from a thread of an earlier cell, goes as exec null), and its
        `start` message comes before anything it writes."""
        with self._lock:
            self._flush_pending()
            for fd in self._current:
                self._read_fd(fd)
            self._serial += 1
            for fd in self._current:
                if fd in self._pipes:
                    self._pipes[fd].cell = self._serial
            self.exec_id = exec_id
            self.cell = self._serial
            self.channel.emit("start", exec_id, **start_fields)

    def end(self, type_: str, exec_id: str | None, **fields: object) -> None:
        """The cell's last message (`done`), after everything it wrote; what comes later, from
        what still runs, is emitted with exec null. The next cell's pipes are made now: the
        cell's own reach their end here unless something else holds them, with no work for
        the reader thread."""
        with self._lock:
            self._flush_pending()
            for fd in self._fds:
                self._read_fd(fd)
            ended = self._current
            for fd in ended:
                self._poller.forget(fd)  # (their end wakes nobody)
            self._new_pipes(0)
            for fd in ended:
                self._read_fd(fd, to_the_end=True)
                if fd in self._pipes:
                    self._poller.watch(fd)  # a background process holds it: exec null from now
            self.channel.emit(type_, exec_id, **fields)
            self.cell = 0

    def origin(self) -> int:
        """The serial of the cell that started the calling thread (a thread not started
        through threading.Thread: the running cell's)."""
        return getattr(threading.current_thread(), "_njtui_cell", self.cell)

    def flush(self) -> None:
        with self._lock:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if not self.pending:
            return  # (not a flush: a print with flush=True right after goes out at once)
        self.last_flush = time.monotonic()
        running = self.cell
        running_exec = self.exec_id if running else None
        name: str | None = None
        exec_id: str | None = None
        parts: list[str] = []
        pending = self.pending
        while pending:
            cell, item_name, text = pending.popleft()
            item_exec = running_exec if cell == running else None
            if parts and (item_name != name or item_exec != exec_id):
                self.channel.emit("stream", exec_id, name=name, text="".join(parts))
                parts = []
            name, exec_id = item_name, item_exec
            parts.append(text)
        self.pending_size = 0
        if parts:
            self.channel.emit("stream", exec_id, name=name, text="".join(parts))

    def check_fds(self, now: int) -> None:
        self.last_fd_check = now
        # The running cell's pipes (the order of its own output), under the lock: a thread of
        # an earlier cell may be here as a cell ends and its pipes close.
        with self._lock:
            readable, _, _ = select.select(self._current, [], [], 0)
            if readable:
                self._flush_pending()
                for fd in readable:
                    self._read_fd(fd)

    def drain(self) -> None:
        """Everything written so far, emitted: called before a cell's `done`."""
        with self._lock:
            self._flush_pending()
            for fd in self._fds:
                self._read_fd(fd)

    def emit_after_output(self, type_: str, exec_id: str | None, **fields: object) -> None:
        """A message (a result, a display) placed after everything written before it and before
        anything written after it: the drain and the message happen under one lock."""
        with self._lock:
            self._flush_pending()
            for fd in self._fds:
                self._read_fd(fd)
            self.channel.emit(type_, exec_id, **fields)

    def _read_fd(self, fd: int, to_the_end: bool = False) -> None:
        """What waits in the pipe, emitted; at the pipe's end, the pipe is given up."""
        pipe = self._pipes.get(fd)
        if pipe is None:
            return  # at its end already (a reader thread's stale wake-up)
        chunks = []
        ended = False
        while True:
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                break
            if not data:
                ended = True
                break
            chunks.append(pipe.decoder.decode(data))
            if len(data) < READ_CHUNK and not to_the_end:
                break
        if ended:
            chunks.append(pipe.decoder.decode(b"", final=True))
            del self._pipes[fd]
            self._fds = tuple(self._pipes)
            if fd in self._current:
                self._poller.forget(fd)
                self._spent.append(fd)
            else:
                self._poller.forget(fd, close=True)
        text = "".join(chunks)
        if text:
            self.channel.emit("stream", self.exec_id if pipe.cell and pipe.cell == self.cell else None, name=pipe.name, text=text)

    def _read_fds_forever(self) -> None:
        while True:
            with self._lock:
                fds = self._poller.settle()
            ready = self._poller.wait(fds)
            with self._lock:
                # Python-level output printed before this fd output came first.
                self._flush_pending()
                for fd in ready:
                    self._read_fd(fd)

    def wake_flusher(self) -> None:
        self.flusher_asleep = False
        self._flusher_wake.set()

    def _flush_forever(self) -> None:
        while True:
            # A writer appends, then reads `flusher_asleep`; this sets it, then reads `pending`:
            # one of the two sees the other, so a write is never left waiting for a next one.
            self.flusher_asleep = True
            if not self.pending:
                self._flusher_wake.wait()
            self.flusher_asleep = False
            self._flusher_wake.clear()
            time.sleep(FLUSH_INTERVAL)
            if self.pending:
                self.flush()


# -- rich outputs: MIME bundles built by IPython's rules (docs/protocol.md, "Rich outputs")

# One message is one line, which every client reads whole and the journal keeps: a bundle larger
# than this is replaced by its text, with a note saying so.
MAX_BUNDLE_BYTES = 32 << 20
# The methods IPython's formatters look for, in its order, and the MIME type each one fills.
# `_repr_javascript_` is left out on purpose: it is a program for a browser, which no terminal
# client runs (docs/security.md: output never drives the client).
REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _is_text_mime(mime: str) -> bool:
    return mime.startswith("text/") or mime == "image/svg+xml" or mime.endswith("+xml") or mime == "application/javascript"


def _wire_value(mime: str, value: object, json_text_allowed: bool = False) -> object:
    """The value as nbformat stores it under `mime`; raises TypeError/ValueError for one it can't hold."""
    if _is_json_mime(mime):
        if json_text_allowed and isinstance(value, (str, bytes)):
            value = json.loads(value)  # as IPython: a `_repr_json_` may return JSON text
        json.dumps(value)
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return raw.decode("utf-8") if _is_text_mime(mime) else base64.b64encode(raw).decode("ascii")
    if isinstance(value, str):
        return value  # a binary type given as text is base64 already, as IPython assumes
    raise TypeError(f"{mime} data must be str or bytes, not {type(value).__name__}")


def _real_method(obj: object, name: str) -> Callable[..., object] | None:
    """IPython's get_real_method: a method the object really has; none on a class (its methods
    are unbound) nor from a __getattr__ that answers every name (a proxy would claim them all)."""
    if isinstance(obj, type):
        return None
    try:
        if getattr(obj, "_ipython_canary_method_should_not_exist_", None) is not None:
            return None
        method = getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - a __getattr__ that raises: the object offers nothing
        return None
    return method if callable(method) else None


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def _json_or_none(value: object) -> object:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


class RichOutput:
    """MIME bundles of objects, and the display messages of the cells' display() builtins."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def warn(self, text: str) -> None:
        # On the cell's stderr, in order with its output, as IPython reports a formatter that fails.
        self.capture.stderr.write(text + "\n")

    def took_over(self, obj: object) -> bool:
        """An object with `_ipython_display_` displays itself (it calls display() as it likes)."""
        method = _real_method(obj, "_ipython_display_")
        if method is None:
            return False
        try:
            method()
        except Exception as exc:  # noqa: BLE001 - as IPython: reported, then the usual bundle
            self.warn(f"_ipython_display_ of {type(obj).__name__} failed: {_one_line(exc)}")
            return False
        return True

    def bundle(self, obj: object, include: object = None, exclude: object = None) -> tuple[dict[str, object], dict[str, object]]:
        """(data, metadata) of `obj`: `_repr_mimebundle_` first, then each `_repr_*_` for the types
        it did not give, a matplotlib figure's PNG, and text/plain: its repr (which may raise, as
        a failing repr fails the cell)."""

        def wanted(mime: str) -> bool:
            return (not include or mime in include) and not (exclude and mime in exclude)  # type: ignore[operator]

        data: dict[str, object] = {}
        metadata: dict[str, object] = {}
        returned = self._call(obj, "_repr_mimebundle_", include=include, exclude=exclude)
        if returned is not None:
            given, given_metadata = returned if isinstance(returned, tuple) and len(returned) == 2 else (returned, None)
            if isinstance(given, dict):
                for mime, value in given.items():
                    if isinstance(mime, str) and wanted(mime):
                        self._put(data, obj, "_repr_mimebundle_", mime, value)
            else:
                self.warn(f"_repr_mimebundle_ of {type(obj).__name__} returned {type(given).__name__}, not a dict: left out")
            if given_metadata is not None:
                self._put_metadata(metadata, obj, "_repr_mimebundle_", given_metadata)
        for name, mime in REPR_METHODS:
            if mime in data or not wanted(mime):
                continue
            returned = self._call(obj, name)
            if returned is None:
                continue
            value, value_metadata = returned if isinstance(returned, tuple) and len(returned) == 2 else (returned, None)
            if self._put(data, obj, name, mime, value, json_text_allowed=True) and value_metadata is not None:
                self._put_metadata(metadata, obj, name, {mime: value_metadata})
        if "image/png" not in data and wanted("image/png"):
            self._figure_png(obj, data)
        if "text/plain" not in data and wanted("text/plain"):
            data = {"text/plain": repr(obj), **data}
        return data, metadata

    def _call(self, obj: object, name: str, **arguments: object) -> object:
        method = _real_method(obj, name)
        if method is None:
            return None
        try:
            return method(**arguments)
        except Exception as exc:  # noqa: BLE001 - the object's code failed: its other forms still show
            self.warn(f"{name} of {type(obj).__name__} failed, left out: {_one_line(exc)}")
            return None

    def _put(self, data: dict[str, object], obj: object, name: str, mime: str, value: object, json_text_allowed: bool = False) -> bool:
        if value is None:
            return False
        try:
            data[mime] = _wire_value(mime, value, json_text_allowed)
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            self.warn(f"{name} of {type(obj).__name__} gave {mime} data that can't be sent, left out: {_one_line(exc)}")
            return False
        return True

    def _put_metadata(self, metadata: dict[str, object], obj: object, name: str, given: object) -> None:
        if isinstance(given, dict) and _json_or_none(given) is not None:
            metadata.update(given)
        else:
            self.warn(f"{name} of {type(obj).__name__} gave metadata that is not a JSON object: left out")

    def _figure_png(self, obj: object, data: dict[str, object]) -> None:
        # Only a figure of a matplotlib the cells imported themselves: importing it here would
        # cost every runtime its start-up time and run code nobody asked for.
        # A figure left open when a cell ends is not shown: a plain Python runtime has no
        # IPython-style post-execute hook; a bare `fig` or display(fig) shows it.
        figure_type = getattr(sys.modules.get("matplotlib.figure"), "Figure", None)
        if not isinstance(figure_type, type) or not isinstance(obj, figure_type):
            return
        image = io.BytesIO()
        try:
            obj.savefig(image, format="png", bbox_inches="tight")  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a figure that can't be drawn still has its text
            self.warn(f"drawing {type(obj).__name__} failed: {_one_line(exc)}")
            return
        data["image/png"] = base64.b64encode(image.getvalue()).decode("ascii")

    def emit(self, type_: str, exec_id: str | None, data: dict[str, object], metadata: dict[str, object], **fields: object) -> None:
        data, metadata = _bounded(data, metadata)
        self.capture.emit_after_output(type_, exec_id, data=data, metadata=metadata, **fields)

    # -- the cells' builtins (see display() below)
    def display(self, objs: tuple, include: object, exclude: object, metadata: dict | None, display_id: object, raw: bool, clear: bool, update: bool) -> DisplayHandle | None:
        if display_id is True:
            display_id = uuid.uuid4().hex
        if display_id is not None and display_id is not False and not isinstance(display_id, str):
            raise TypeError(f"display_id must be a string or True, not {type(display_id).__name__}")
        display_id = display_id or None
        if update and display_id is None:
            raise TypeError("display_id required for update_display")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
        if not objs and display_id is not None:
            objs, raw = ({},), True  # as IPython: an empty output to fill in later with its id
        if clear:
            self.clear_output(wait=True)
        for obj in objs:
            if raw:
                if not isinstance(obj, dict):
                    raise TypeError(f"display(raw=True) takes MIME bundles (dicts), not {type(obj).__name__}")
                data: dict[str, object] = {}
                for mime, value in obj.items():
                    self._put(data, obj, "display(raw=True)", str(mime), value)
                bundle_metadata: dict[str, object] = {}
            elif self.took_over(obj):
                continue
            else:
                data, bundle_metadata = self.bundle(obj, include, exclude)
            if metadata:
                _merge(bundle_metadata, metadata)
            if _json_or_none(bundle_metadata) is None:
                self.warn("display() metadata is not JSON: left out")
                bundle_metadata = {}
            self.emit("update_display" if update else "display", self.capture.exec_id, data, bundle_metadata, display_id=display_id)
        return DisplayHandle(display_id) if display_id is not None and not update else None

    def clear_output(self, wait: bool) -> None:
        self.capture.emit_after_output("clear_output", self.capture.exec_id, wait=bool(wait))


def _merge(into: dict, given: dict) -> None:
    """IPython's metadata merge: nested dicts merged, anything else replaced."""
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _bounded(data: dict[str, object], metadata: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    # Text only, and short enough that even escaped (6 bytes a character at most) it fits: the
    # usual case is measured without serialising it a second time.
    texts = [value for value in data.values() if isinstance(value, str)]
    if not metadata and len(texts) == len(data) and sum(map(len, texts)) * 6 < MAX_BUNDLE_BYTES:
        return data, metadata
    size = len(json.dumps(data, ensure_ascii=False).encode("utf-8", "replace")) + len(json.dumps(metadata, ensure_ascii=False).encode("utf-8", "replace"))
    if size <= MAX_BUNDLE_BYTES:
        return data, metadata
    text = data.get("text/plain")
    text = text if isinstance(text, str) else ""
    if len(text.encode("utf-8", "replace")) > MAX_BUNDLE_BYTES // 2:
        text = text.encode("utf-8", "replace")[: MAX_BUNDLE_BYTES // 2].decode("utf-8", "ignore") + "…"
    note = f"[njtui: this output is {size / (1 << 20):.1f} MiB, over the {MAX_BUNDLE_BYTES >> 20} MiB one output may have: only its text is kept]"
    return {"text/plain": f"{text}\n{note}" if text else note}, {}


_rich_output: RichOutput | None = None  # set by main(): the cells' display() writes through it


def display(
    *objs: object,
    include: object = None,
    exclude: object = None,
    metadata: dict | None = None,
    transient: dict | None = None,
    display_id: str | bool | None = None,
    raw: bool = False,
    clear: bool = False,
    update: bool = False,
    **kwargs: object,
) -> DisplayHandle | None:
    """Shows each object in the cell's output, with its rich forms (HTML, Markdown, images, …).

    display_id: True for a new id, or a string; returns a DisplayHandle to update it later.
    raw: the objects are MIME bundles already ({"text/plain": …, "image/png": …}).
    As IPython's display(); `transient` and other IPython keywords are accepted and ignored."""
    if _rich_output is None:
        print(*objs)  # as IPython's own outside a shell: this module used without its agent
        return None
    return _rich_output.display(objs, include, exclude, metadata, display_id, raw, clear, update)


def update_display(obj: object, *, display_id: str, **kwargs: object) -> None:
    """Replaces every earlier output with this display_id (in any cell) by `obj`."""
    kwargs["update"] = True
    display(obj, display_id=display_id, **kwargs)  # type: ignore[arg-type]


def clear_output(wait: bool = False) -> None:
    """Clears the cell's output so far; with wait=True, only when its next output comes."""
    if _rich_output is not None:
        _rich_output.clear_output(wait)


class DisplayHandle:
    """A display that can be shown again or updated, as IPython's."""

    def __init__(self, display_id: str | None = None) -> None:
        self.display_id = display_id or uuid.uuid4().hex

    def __repr__(self) -> str:
        return f"<DisplayHandle display_id={self.display_id}>"

    def display(self, obj: object, **kwargs: object) -> None:
        display(obj, display_id=self.display_id, **kwargs)  # type: ignore[arg-type]

    def update(self, obj: object, **kwargs: object) -> None:
        update_display(obj, display_id=self.display_id, **kwargs)


DISPLAY_BUILTINS = {"display": display, "update_display": update_display, "clear_output": clear_output}


class IPythonDisplayHook:
    """Where IPython is installed, `from IPython.display import display` gets these builtins:
    without an IPython shell around it, IPython's own display() only prints the object's repr.
    Patched as those modules are first imported (IPython.display re-exports display_functions'
    names, read at that moment); the objects of IPython.display (Markdown, Image, …) need nothing:
    they have `_repr_*_` methods."""

    MODULES = ("IPython.core.display_functions", "IPython.core.display", "IPython.display")

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None) -> object:
        if fullname not in self.MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = getattr(spec.loader, "exec_module", None)
        if exec_module is not None:

            def exec_then_patch(module: types.ModuleType) -> None:
                exec_module(module)
                _patch_ipython_display(module)

            # On the loader of this one module (each spec has its own), so it keeps its type.
            setattr(spec.loader, "exec_module", exec_then_patch)  # noqa: B010
        return spec


def _patch_ipython_display(module: types.ModuleType) -> None:
    for name, function in DISPLAY_BUILTINS.items():
        if hasattr(module, name):
            setattr(module, name, function)


def install_display(capture: Capture) -> RichOutput:
    """display(), update_display() and clear_output() for the cells, as builtins (as IPython puts
    them there), and IPython's display functions routed to them."""
    global _rich_output
    _rich_output = RichOutput(capture)
    for name, function in DISPLAY_BUILTINS.items():
        setattr(builtins, name, function)
    for name in IPythonDisplayHook.MODULES:
        if name in sys.modules:
            _patch_ipython_display(sys.modules[name])
    sys.meta_path.insert(0, IPythonDisplayHook())  # type: ignore[arg-type]
    return _rich_output


def track_thread_origins(capture: Capture) -> None:
    """Each thread remembers the cell that started it (a thread started by a thread, that
    thread's cell), as ipykernel does: its Python-level output is that cell's while the cell
    runs, and exec null once it has ended, never a later cell's."""
    start = threading.Thread.start

    def start_in_cell(self: threading.Thread) -> None:
        cell = capture.cell if _thread.get_ident() == capture.main_ident else capture.origin()
        if cell:
            capture.threaded = True  # the agent's own threads (no cell) write nothing
        try:
            setattr(self, "_njtui_cell", cell)  # noqa: B010 - an attribute Thread does not declare
        except AttributeError:
            pass  # a subclass with slots and no __dict__: the running cell's output, as before
        start(self)

    start_in_cell.__doc__ = start.__doc__
    threading.Thread.start = start_in_cell  # type: ignore[method-assign]


class Agent:
    def __init__(self, channel: Channel, capture: Capture, idle_timeout: float, stage_dir: str | None = None) -> None:
        self.channel = channel
        self.capture = capture
        self.idle_timeout = idle_timeout
        # Where the files a cell wrote to $NJTUI_RESULTS are copied as it ends, so that the next
        # cell can't change them before a client collects them.
        self.stage_dir = stage_dir
        # Held while an execution's `done` (or the agent's `exit`) is written: the cell's thread and
        # the shutdown watchdog must not both end the same execution.
        self._ending = threading.Lock()
        self._ended = False
        self.requests: queue.Queue[dict | None] = queue.Queue()
        self.count = 0
        self.running: str | None = None  # while the cell's code runs: SIGINT interrupts it
        self.current: str | None = None  # from its start message to its done message
        self.last_activity = time.monotonic()
        self.interrupt_requested = False
        self._interrupt_raised = False
        self._interrupting = 0  # the count of the execution the signals sent are meant for
        self.shutdown_reason: str | None = None  # set once: the first reason to end wins
        self.main_module = types.ModuleType("__main__")
        self.main_module.__dict__["__builtins__"] = __builtins__
        self.namespace = self.main_module.__dict__
        self.rich = _rich_output or RichOutput(capture)

    # -- requests, read on their own thread so interrupt works while a cell runs
    def read_requests(self, stream: io.BufferedReader) -> None:
        for raw in stream:
            try:
                request = json.loads(raw)
                op = request["op"]
            except (ValueError, KeyError, TypeError):
                self.channel.emit("log", level="error", text=f"bad request: {raw[:200]!r}")
                continue
            if op == "execute":
                meta = request.get("meta") or {}
                ahead = self.requests.qsize() + (self.current is not None)
                self.channel.emit("queued", request.get("exec"), meta=meta, position=ahead)
                self.requests.put(request)
            elif op == "interrupt":
                self.interrupt()
            elif op == "status":
                self.emit_status()
            elif op == "shutdown":
                self.shutdown("shutdown")
                return
            elif op == "secrets":
                self.set_secrets(request.get("env") or {})
            elif op == "release":
                release_staged(self.stage_dir, request.get("exec"))
            elif op == "complete":
                # On a thread of its own: an attribute lookup in user code may block, and this
                # reader must stay free to take an interrupt.
                threading.Thread(target=self.answer_completion, args=(request,), name="njtui-complete", daemon=True).start()
            elif "id" in request:
                # A request from a newer client that waits for its answer: it gets one.
                self.channel.reply({"type": "unsupported", "id": request["id"], "op": op})
            else:
                self.channel.emit("log", level="error", text=f"unknown op {op!r}")
        self.shutdown("stdin closed")

    def answer_completion(self, request: dict) -> None:
        code = request.get("code")
        code = code if isinstance(code, str) else ""
        cursor = request.get("cursor")
        cursor = min(max(cursor, 0), len(code)) if isinstance(cursor, int) and not isinstance(cursor, bool) else len(code)
        try:
            matches, start = complete(code, cursor, self.namespace)
        except Exception:  # noqa: BLE001 - a completion that fails offers nothing; the cell goes on
            matches, start = [], cursor
        self.channel.reply({"type": "completion", "id": request.get("id"), "matches": matches, "start": start, "end": cursor})

    def set_secrets(self, secrets: dict) -> None:
        """Secrets become environment variables of the cells (and files: keep_secrets)."""
        os.environ.update(keep_secrets(secrets, self._log))

    def _log(self, level: str, text: str) -> None:
        self.channel.emit("log", level=level, text=text)

    def emit_status(self) -> None:
        self.channel.emit(
            "status",
            self.running,
            state="busy" if self.running else "idle",
            running=self.running,
            queued=self.requests.qsize(),
            count=self.count,
            idle_for=0.0 if self.running else round(time.monotonic() - self.last_activity, 3),
        )

    def interrupt(self) -> None:
        self.interrupt_requested = True
        if self.running is None:
            return
        self._interrupting = self.count
        # os.system() ignores SIGINT while it waits: interrupt_main raises KeyboardInterrupt
        # as soon as control is back in Python, so the rest of the cell does not run.
        _thread.interrupt_main()
        if os.getpgrp() == os.getpid():
            # As a terminal's Ctrl-C (and jupyter_client): the cell and its child processes.
            os.killpg(os.getpgrp(), signal.SIGINT)
        # A signal sent to the process wakes whichever thread the kernel picks, often this one:
        # the main thread would sleep on in time.sleep() or a blocking read. Sent to it, the call
        # returns with EINTR and the handler raises KeyboardInterrupt at once.
        signal.pthread_kill(_main_thread_id(), signal.SIGINT)
        threading.Thread(target=self._interrupt_until_raised, args=(self.count,), name="njtui-interrupt", daemon=True).start()

    def _interrupt_until_raised(self, count: int) -> None:
        """A signal that comes just as the cell enters a blocking call (between Python's last
        check for signals and the system call) is only handled once that call returns:
        time.sleep(60) would sleep on. So the main thread is signalled again until the
        interrupt has been raised in the cell, while that cell runs."""
        for _ in range(INTERRUPT_RETRIES):
            time.sleep(INTERRUPT_RETRY_INTERVAL)
            if self.running is None or self.count != count or self._interrupt_raised:
                return
            signal.pthread_kill(_main_thread_id(), signal.SIGINT)

    def shutdown(self, reason: str) -> None:
        if self.shutdown_reason is not None:
            return
        self.shutdown_reason = reason
        self.interrupt()
        self.requests.put(None)
        threading.Thread(target=self._exit_after_grace, name="njtui-shutdown", daemon=True).start()

    def _exit_after_grace(self) -> None:
        """Ends the agent even when the running cell ignores its interrupt (catches
        KeyboardInterrupt, blocks in C code): the execution ends as interrupted."""
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while time.monotonic() < deadline:
            if self._ended:
                return
            time.sleep(0.01)
        with self._ending:
            if self._ended:
                return
            self.capture.drain()
            if self.current is not None:
                self.channel.emit(
                    "done",
                    self.current,
                    status="interrupted",
                    count=self.count,
                    duration=None,
                    reason=ENDED_BY.get(self.shutdown_reason or "", self.shutdown_reason),
                    files=[],
                )
            self._drop_queued()
            self.channel.emit("exit", reason=self.shutdown_reason)
            self._ended = True
            os._exit(0)

    def _on_sigint(self, signum: int, frame: object) -> None:
        # Raised once per cell: the interrupt arrives both as a signal and through
        # interrupt_main, and a second KeyboardInterrupt would hit the agent's own code.
        # A signal meant for an earlier execution (sent again as it ended) leaves this one be.
        if self.running is not None and self.count == self._interrupting and not self._interrupt_raised:
            self._interrupt_raised = True
            raise KeyboardInterrupt

    # -- the main thread: runs cells one at a time
    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_sigint)
        while True:
            timeout = self.idle_timeout - (time.monotonic() - self.last_activity)
            try:
                request = self.requests.get(timeout=max(timeout, 0.0))
            except queue.Empty:
                self.exit("idle")
                return
            if request is None or self.shutdown_reason is not None:
                break
            if self.interrupt_requested:
                self.interrupt_requested = False
                self._finish_dropped(request)
                self._drop_queued()
                continue
            self.run_cell(request["exec"], request.get("code", ""), request.get("meta") or {})
            self.last_activity = time.monotonic()
            if self.shutdown_reason is not None:
                break
            if self.interrupt_requested:
                self.interrupt_requested = False
                self._drop_queued()
        with self._ending:
            if not self._ended:
                self._drop_queued()
                self.exit(self.shutdown_reason or "shutdown")

    def _finish_dropped(self, request: dict) -> None:
        self.channel.emit("done", request.get("exec"), status="interrupted", count=None, duration=0.0)

    def _drop_queued(self) -> None:
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                self._finish_dropped(request)

    def exit(self, reason: str) -> None:
        self.capture.drain()
        self.channel.emit("exit", reason=reason)
        self._ended = True

    def run_cell(self, exec_id: str, code: str, meta: dict) -> None:
        self.count += 1
        count = self.count
        self._interrupt_raised = False
        self.current = exec_id
        results_before = _results_snapshot()
        self.capture.begin(exec_id, meta=meta, count=count)
        started = time.perf_counter()
        status = "ok"
        filename = f"<cell {meta.get('cell') or exec_id}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            try:
                self.running = exec_id
                if self.interrupt_requested and not self._interrupt_raised:
                    # It came after `start` but before the cell could be signalled.
                    self._interrupt_raised = True
                    raise KeyboardInterrupt
                self._execute(code, filename, exec_id, count)
            finally:
                self.running = None
        except KeyboardInterrupt as exc:
            status = "interrupted"
            if self.shutdown_reason is None:  # else the reason says it all, not a traceback
                self._report_error(exc, exec_id)
        except CellSyntaxError as exc:
            status = "error"
            self._report_error(exc.error, exec_id, stack=False)
        except BaseException as exc:  # noqa: BLE001 - a cell's failure, whatever it is
            status = "error"
            self._report_error(exc, exec_id)
        duration = time.perf_counter() - started
        # Output and files first, then `done`: what the cell did belongs to this execution alone.
        self.capture.drain()
        files = stage_results(self.stage_dir, exec_id, results_before, self._log)
        extra = {"reason": ENDED_BY.get(self.shutdown_reason, self.shutdown_reason)} if status == "interrupted" and self.shutdown_reason else {}
        with self._ending:
            if self._ended:
                return
            self.capture.end("done", exec_id, status=status, count=count, duration=duration, files=files, **extra)
            self.current = None

    def _execute(self, code: str, filename: str, exec_id: str, count: int) -> None:
        try:
            tree = ast.parse(code, filename, "exec")
            last_expression = None
            last = tree.body[-1] if tree.body else None
            if isinstance(last, ast.Expr) and not code.rstrip().endswith(";"):
                tree.body.pop()
                last_expression = ast.Expression(last.value)
            body = compile(tree, filename, "exec")
            tail = compile(last_expression, filename, "eval") if last_expression is not None else None
        except (SyntaxError, ValueError) as exc:  # ValueError: a NUL byte in the source
            if isinstance(exc, SyntaxError) and exc.text is None and exc.filename == filename and exc.lineno:
                # Compiled from the tree, the error has no source line to show: it is the cell's.
                lines = code.splitlines(True)
                exc.text = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else None
            raise CellSyntaxError(exc) from None
        exec(body, self.namespace)
        if tail is None:
            return
        value = eval(tail, self.namespace)
        if value is None:
            return
        self.namespace["_"] = value
        if self.rich.took_over(value):
            return
        data, metadata = self.rich.bundle(value)
        # Everything printed before it, subprocesses' output in the fd pipes included, goes first.
        self.rich.emit("result", exec_id, data, metadata, count=count)

    def _report_error(self, exc: BaseException, exec_id: str, stack: bool = True) -> None:
        self.capture.drain()
        report = traceback.TracebackException.from_exception(exc)
        _drop_agent_frames(report)
        # A cell that does not compile has no stack to show (the compiler's frames are not the
        # user's): the line with its caret and the message, as IPython shows it.
        text = "".join(report.format() if stack else report.format_exception_only())
        self.channel.emit(
            "error",
            exec_id,
            ename=type(exc).__name__,
            evalue=str(exc),
            traceback=text,
        )


class CellSyntaxError(Exception):
    """The cell's source does not compile: carries the compiler's error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


# -- completion: names, attributes, dict keys and modules, without running the user's code
# beyond looking up a dotted name (never a call), as IPython's default completer does.

_NAME_TAIL = re.compile(r"[^\W\d]\w*$|$")
_ATTRIBUTE = re.compile(r"((?:[^\W\d]\w*\.)*[^\W\d]\w*)\.(\w*)$")
_DICT_KEY = re.compile(r"((?:[^\W\d]\w*\.)*[^\W\d]\w*)\[\s*(?:(['\"])([^'\"\\]*)|([^\W\d]\w*|\d*))$")
_IMPORT = re.compile(r"^\s*(?:import\s+(?:[\w.]+\s*,\s*)*|from\s+)([\w.]*)$")
_FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+(?:\(?\s*(?:\w+\s*,\s*)*)(\w*)$")
_top_level_modules: list[str] | None = None


def complete(code: str, cursor: int, namespace: dict) -> tuple[list[str], int]:
    """Matches for the text before `cursor`, and where the text they replace starts."""
    before = code[:cursor]
    line = before.rsplit("\n", 1)[-1]
    found = _FROM_IMPORT.search(line)
    if found:
        return _sorted(_module_attributes(found.group(1), found.group(2))), cursor - len(found.group(2))
    found = _IMPORT.search(line)
    if found:
        dotted = found.group(1)
        package, _, word = dotted.rpartition(".")
        return _sorted(_module_names(package, word)), cursor - len(word)
    found = _DICT_KEY.search(line)
    if found and (found.group(2) or not found.group(4) or found.group(4).isdigit()):
        return _dict_keys(namespace, found, cursor)
    found = _ATTRIBUTE.search(line)
    if found:
        expression, word = found.groups()
        try:
            target = _lookup(expression, namespace)
        except Exception:  # noqa: BLE001 - an unknown name, or an attribute that raises
            return [], cursor
        return _sorted(_public(_dir(target), word)), cursor - len(word)
    found = _NAME_TAIL.search(line)
    word = found.group(0) if found else ""
    rest = line[: len(line) - len(word)]
    if rest.endswith(".") or (rest[-1:].isalnum() or rest.endswith("_")):
        return [], cursor  # after a call or a literal (evaluating it could do anything), in a number
    names = set(list(namespace)) | set(dir(builtins)) | set(keyword.kwlist) | set(getattr(keyword, "softkwlist", ()))
    return _sorted(_public(names, word)), cursor - len(word)


def _lookup(expression: str, namespace: dict) -> object:
    """The object a dotted name stands for: the first name, then getattr for each part."""
    first, *rest = expression.split(".")
    if first in namespace:
        target = namespace[first]
    elif hasattr(builtins, first):
        target = getattr(builtins, first)
    else:
        raise LookupError(first)
    for part in rest:
        target = getattr(target, part)
    return target


def _dir(target: object) -> list[str]:
    try:
        return [name for name in dir(target) if isinstance(name, str)]
    except Exception:  # noqa: BLE001 - a __dir__ that fails
        return list(getattr(target, "__dict__", {}) or ())


def _public(names, word: str) -> list[str]:
    """Names starting with `word`; private ones only when it asks for them (as rlcompleter)."""
    if not word:
        return [name for name in names if not name.startswith("_")]
    if word == "_":
        return [name for name in names if name.startswith("_") and not name.startswith("__")]
    return [name for name in names if name.startswith(word)]


def _sorted(names) -> list[str]:
    return sorted(set(names), key=lambda name: (name.startswith("_"), name.lower(), name))


def _dict_keys(namespace: dict, found: re.Match, cursor: int) -> tuple[list[str], int]:
    expression, quote, quoted, bare = found.groups()
    try:
        target = _lookup(expression, namespace)
    except Exception:  # noqa: BLE001 - as for attributes
        return [], cursor
    if not isinstance(target, dict):
        return [], cursor
    keys = list(dict.keys(target))  # not a subclass's own keys() or __iter__: that is user code
    # Builtin types only: a subclass's __repr__ or startswith would be user code.
    if quote:
        return sorted(key for key in keys if type(key) is str and key.startswith(quoted) and quote not in key and "\\" not in key), cursor - len(quoted)
    texts = [repr(key) for key in keys if type(key) in (str, bytes, int, float)]
    return sorted(text for text in texts if text.startswith(bare)), cursor - len(bare)


def _module_names(package: str, word: str) -> list[str]:
    global _top_level_modules
    if package:
        module = sys.modules.get(package)
        path = getattr(module, "__path__", None)  # only packages already imported: importing runs code
        return [info.name for info in pkgutil.iter_modules(path) if info.name.startswith(word)] if path is not None else []
    if _top_level_modules is None:
        _top_level_modules = sorted({info.name for info in pkgutil.iter_modules()} | set(sys.builtin_module_names))
    return [name for name in _top_level_modules if name.startswith(word) and (word.startswith("_") or not name.startswith("_"))]


def _module_attributes(dotted: str, word: str) -> list[str]:
    module = sys.modules.get(dotted)
    names = _public(_dir(module), word) if module is not None else []
    return names + _module_names(dotted, word)


def _main_thread_id() -> int:
    ident = threading.main_thread().ident
    assert ident is not None  # the main thread is always started
    return ident


def _drop_agent_frames(report: traceback.TracebackException | None) -> None:
    """Tracebacks show the user's code, not the agent's frames, in every chained exception."""
    seen: set[int] = set()
    while report is not None and id(report) not in seen:
        seen.add(id(report))
        kept = [frame for frame in report.stack if frame.filename != AGENT_FILE]
        report.stack = traceback.StackSummary.from_list(kept)
        _drop_agent_frames(report.__cause__) if report.__cause__ else None
        report = report.__context__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--idle-timeout", type=float, default=1200.0)
    parser.add_argument("--language", default="python")
    args = parser.parse_args(argv)

    # The protocol keeps the original stdin/stdout; cells get /dev/null and capture pipes.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if os.getpid() != 1 and os.getpgrp() != os.getpid():
        try:
            os.setpgid(0, 0)
        except OSError:
            pass

    channel = Channel(proto_out, args.journal)
    capture = Capture(channel)
    install_display(capture)
    track_thread_origins(capture)
    agent = Agent(channel, capture, args.idle_timeout, os.path.join(os.path.dirname(os.path.abspath(args.journal)), "files"))
    sys.stdout, sys.stderr, sys.stdin = capture.stdout, capture.stderr, NoInput()
    sys.modules["__main__"] = agent.main_module
    sys.argv = [""]
    # Cells import from the notebook's directory (the working directory) first, as a script
    # does from its own or a Jupyter kernel from the notebook's. Only now: the agent itself ran
    # with -P (or from its own directory, in a container), and imports nothing later, so no
    # module planted there stands in for one of the agent's.
    if sys.path and os.path.dirname(AGENT_FILE) == os.path.abspath(sys.path[0] or "."):
        sys.path[0] = ""
    elif "" not in sys.path:
        sys.path.insert(0, "")

    channel.emit(
        "hello",
        agent="python",
        protocol=PROTOCOL,
        instance=uuid.uuid4().hex,
        pid=os.getpid(),
        language=args.language,
        idle_timeout=args.idle_timeout,
        python=sys.version.split()[0],
    )
    reader = threading.Thread(target=agent.read_requests, args=(os.fdopen(proto_in, "rb"),), daemon=True)
    reader.start()
    agent.serve()
    # User threads may still run; the runtime ends here regardless.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
