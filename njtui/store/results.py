"""The results store: outputs of executions, beside the notebook, never inside it.

Layout of `analysis.results/` for `analysis.toml`:

    cells/<cell id>/000007.<exec id>.jsonl   version 7 of the cell's output
    cells/<cell id>/000007.files.json        the files version 7 left in /results
    blobs/<ab>/<sha256>                      those files' contents, each content stored once
    cursors/<runtime key>.jsonl              how far the runtime's journal has been recorded
    cursors/<runtime key>.lock               held by the one client recording that runtime

One execution is one append-only file: a `record` line (runtime, execution count, start
time, the hash of the source it ran), its events in the order the runtime produced them, and
an `end` line (status, end time, duration, sizes) once it finished. A file without an `end`
line is an execution still running, or one whose runtime vanished (it is closed as `lost` when
that is known). Appending only — never rewriting — keeps recording off the latency path and
keeps a reader safe from half-written files: it stops at an incomplete last line. A write cut
short (a full disk) leaves half a line; the next writer cuts it off before appending.

The newest KEEP_VERSIONS executions of each cell are kept. Events are written once and read
back as a stream: a reader never holds a whole large output in memory.

A results directory is committed and shared, so everything in it is untrusted input: names
and fields are checked before they become paths, files are opened without following symbolic
links, and directories inside the store that are links are neither read nor written through.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import mimetypes
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from njtui.model import EXEC_STATUSES, ExecutionRecord, is_cell_id
from njtui.store.atomic import atomic_write_bytes

KEEP_VERSIONS = 20
CURSOR_LOG_LIMIT = 1 << 20
MANIFEST_LIMIT = 16 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
# [0-9], not \d: int() also reads other scripts' digits, which no writer here produces.
_VERSION_FILE = re.compile(r"([0-9]{6,12})\.([A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})\.jsonl")
_VERSION_DIR = re.compile(r"v[0-9]{1,12}")
_END_FIELDS = ("status", "ended_at", "duration", "exit_code", "stdout_bytes", "stderr_bytes", "events", "reason", "count")
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "runtime": str,
    "status": str,
    "count": int,
    "started_at": (int, float),
    "ended_at": (int, float),
    "duration": (int, float),
    "source_hash": str,
    "exit_code": int,
    "stdout_bytes": int,
    "stderr_bytes": int,
    "events": int,
    "reason": str,
}
# O_NONBLOCK: opening a FIFO planted under a store's name must not hang the reader.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK, errno.ENOTDIR)


class InvalidCellId(ValueError):
    def __init__(self, cell_id: object) -> None:
        super().__init__(f"cell id {cell_id!r} is not 1 to 64 letters, digits, '-' or '_'")


class Refused(Exception):
    """An entry of a results directory that is not used: the message says why."""


def results_dir_for(notebook_path: Path | str) -> Path:
    path = Path(notebook_path)
    return path.with_name(path.stem + ".results")


def valid_cell_id(cell_id: object) -> bool:
    return isinstance(cell_id, str) and is_cell_id(cell_id)


def _file_name(identifier: str) -> str:
    if _SAFE_NAME.fullmatch(identifier):
        return identifier
    return "id-" + hashlib.sha256(identifier.encode()).hexdigest()[:16]


def _dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_regular(path: Path) -> int:
    """A read descriptor of a regular file at `path` itself, never of what a link points to."""
    fd = os.open(path, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_append(path: Path, create: bool = False) -> int:
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
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


def _cut_incomplete_line(fd: int) -> None:
    """Drops the half line a write cut short left at the end (a full disk, a killed writer)."""
    end = os.fstat(fd).st_size
    if end and os.pread(fd, 1, end - 1) != b"\n":
        os.ftruncate(fd, _rfind_newline(fd, end) + 1)


def _lines_from_end(path: Path) -> Iterator[bytes]:
    """The complete lines of a file, last first, each whole however long (one output event can
    be a large line, more than any fixed window from the end)."""
    try:
        fd = _open_regular(path)
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


def _first_line_complete(fd: int) -> bool:
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        if b"\n" in chunk:
            return True
        offset += len(chunk)
    return False


def _typed(data: dict[str, Any]) -> dict[str, Any]:
    """Fields of a record line with the type they must have; the others are dropped."""
    kept = {}
    for key, value in data.items():
        wanted = _FIELD_TYPES.get(key)
        if wanted is not None and (value is not None and (isinstance(value, bool) or not isinstance(value, wanted))):
            continue
        if key == "status" and value not in EXEC_STATUSES:
            continue
        kept[key] = value
    return kept


class RecordWriter:
    """Appends one execution's events. Nothing touches the disk until `flush`, so an execution
    that finishes quickly is written with one create and one write. Writes are unbuffered: an
    error (a full disk) is raised at the write that met it, and nothing is left half-flushed in
    memory to be written later out of order."""

    def __init__(self, record: ExecutionRecord, path: Path, fd: int | None = None) -> None:
        self.record = record
        self.path = path
        self._fd = fd
        existing = fd is None
        self.last_seq = _last_seq(path) if existing else 0
        self._pending: list[bytes] = [] if existing else [_dumps({"record": _header(record)})]
        # A finished execution met again in a replay has nothing left to write.
        self.inert = existing and record.finished

    def add(self, message: dict[str, Any]) -> None:
        if self.inert:
            return
        seq = message.get("seq") or 0
        if seq and seq <= self.last_seq:
            return  # replayed after a recorder died before saving its cursor
        self.last_seq = seq or self.last_seq
        self._pending.append(_dumps(message))
        self.record.events += 1
        if message.get("type") == "stream":
            size = len(message.get("text", "").encode("utf-8", "replace"))
            if message.get("name") == "stderr":
                self.record.stderr_bytes += size
            else:
                self.record.stdout_bytes += size

    def flush(self) -> None:
        if not self._pending:
            return
        if self._fd is None:
            fd = _open_append(self.path)
            try:
                _cut_incomplete_line(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        data = b"".join(self._pending)
        self._pending.clear()
        _write_all(self._fd, data)

    def finish(self, **fields: Any) -> None:
        if self.inert:
            return
        self.inert = True
        for name, value in fields.items():
            setattr(self.record, name, value)
        self._pending.append(_dumps({"end": {name: getattr(self.record, name) for name in _END_FIELDS}}))
        self.close()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Lets go of the file without writing what is pending: after a write error, the
        journal replays it into a fresh writer."""
        self._pending.clear()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _header(record: ExecutionRecord) -> dict[str, Any]:
    data = record.to_dict()
    return {key: value for key, value in data.items() if key not in _END_FIELDS or key == "count"}


def _last_seq(path: Path) -> int:
    """Seq of the last event written: a resumed recording skips what is already there."""
    for line in _lines_from_end(path):
        event = _parsed(line)
        if event is None:
            continue
        if "record" in event:
            return 0
        seq = event.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return 0


def _tail_lines(path: Path, size: int = 65536) -> list[bytes]:
    """Complete lines near the end of a file, last first."""
    try:
        fd = _open_regular(path)
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


def _parsed(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _walk(fd: int, parts: Iterable[str], *, create: bool) -> int:
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
                if exc.errno in _LINK_ERRNOS:
                    raise Refused(f"{part!r} on its path is a symbolic link or not a directory") from None
                raise
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def _checked_cursor(data: dict[str, Any]) -> dict[str, Any] | None:
    seq = data.get("seq", 0)
    instance = data.get("instance")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not (instance is None or isinstance(instance, str)):
        return None
    opened = data.get("open")
    opened = opened if isinstance(opened, dict) else {}
    return {"instance": instance, "seq": seq, "open": {e: c for e, c in opened.items() if isinstance(e, str) and valid_cell_id(c)}}


def entry_problem(entry: object) -> str | None:
    """Why an entry of a files manifest cannot be used, or None."""
    if not isinstance(entry, dict):
        return "not a file entry"
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        return "it has no name"
    if "\0" in name:
        return "its name holds a NUL byte"
    if name.startswith("/"):
        return "its name is absolute"
    parts = name.split("/")
    if ".." in parts:
        return "its name climbs out of the directory ('..')"
    if any(part in ("", ".") for part in parts):
        return "its name has empty or '.' parts"
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
        return "its sha256 is not 64 lowercase hex digits"
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "its size is not a number of bytes"
    if not isinstance(entry.get("type", ""), str):
        return "its type is not a string"
    return None


class ResultsStore:
    def __init__(self, notebook_path: Path | str) -> None:
        self.root = results_dir_for(notebook_path)

    # -- reading
    def cell_dir(self, cell_id: str) -> Path:
        if not valid_cell_id(cell_id):
            raise InvalidCellId(cell_id)
        return self.root / "cells" / cell_id

    def _is_real_dir(self, *parts: str) -> bool:
        """Whether root/parts… are directories, none of them a link (the root itself may be)."""
        path = self.root
        for part in parts:
            path = path / part
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    return False
            except OSError:
                return False
        return True

    def _real_dir(self, *parts: str) -> Path:
        """root/parts…, made as needed; a link or a file in their place is an error, not followed."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root
        for part in parts:
            path = path / part
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise OSError(errno.ENOTDIR, f"{path} is not a directory (a link or a file is in its place); njtui does not write through it")
        return path

    def _files(self, cell_id: str) -> dict[int, tuple[str, Path]]:
        if not valid_cell_id(cell_id) or not self._is_real_dir("cells", cell_id):
            return {}
        directory = self.cell_dir(cell_id)
        found = {}
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    match = _VERSION_FILE.fullmatch(entry.name)
                    if match and entry.is_file(follow_symlinks=False):
                        found[int(match.group(1))] = (match.group(2), directory / entry.name)
        except OSError:
            return {}
        return found

    def versions(self, cell_id: str) -> list[int]:
        return sorted(self._files(cell_id))

    def load(self, cell_id: str, version: int) -> ExecutionRecord:
        _, path = self._files(cell_id)[version]
        return self._load(path, cell_id, version)

    def _load(self, path: Path, cell_id: str, version: int) -> ExecutionRecord:
        exec_name = _VERSION_FILE.fullmatch(path.name).group(2)
        try:
            fd = _open_regular(path)
        except OSError as exc:
            return ExecutionRecord(cell=cell_id, version=version, exec_id=exec_name, runtime="", status="error", reason=f"unreadable record {path}: {exc.strerror or exc}")
        with os.fdopen(fd, "rb") as handle:
            first = handle.readline()
        if not first.endswith(b"\n"):
            # Claimed a moment ago; the recorder writes it at its next flush.
            return ExecutionRecord(cell=cell_id, version=version, exec_id=exec_name, runtime="")
        header = _parsed(first)
        if header is None or not isinstance(header.get("record"), dict):
            return ExecutionRecord(cell=cell_id, version=version, exec_id=exec_name, runtime="", status="error", reason=f"unreadable record {path}: its first line is not a record")
        fields = _typed(header["record"])
        # Where it is on disk says which cell, version and execution it is, whatever it claims.
        exec_id = fields.get("exec_id")
        fields.update(cell=cell_id, version=version, exec_id=exec_id if isinstance(exec_id, str) and _file_name(exec_id) == exec_name else exec_name)
        fields.setdefault("runtime", "")
        record = ExecutionRecord.from_dict(fields)
        for line in _lines_from_end(path):
            entry = _parsed(line)
            if entry is None:
                continue
            if isinstance(entry.get("end"), dict):
                for key, value in _typed(entry["end"]).items():
                    if key in _END_FIELDS:
                        setattr(record, key, value)
            elif "record" not in entry and record.status == "running":
                # Not finished: count what is there so far.
                self._count(record, path)
            break
        return record

    @staticmethod
    def _count(record: ExecutionRecord, path: Path) -> None:
        try:
            fd = _open_regular(path)
        except OSError:
            return
        with os.fdopen(fd, "rb") as handle:
            handle.readline()
            for line in handle:
                if not line.endswith(b"\n") or b'"type":"stream"' not in line:
                    continue
                event = _parsed(line)
                text = event.get("text") if event is not None else None
                if not isinstance(text, str):
                    continue
                size = len(text.encode("utf-8", "replace"))
                if event.get("name") == "stderr":
                    record.stderr_bytes += size
                else:
                    record.stdout_bytes += size

    def latest(self, cell_id: str) -> ExecutionRecord | None:
        files = self._files(cell_id)
        if not files:
            return None
        version = max(files)
        return self._load(files[version][1], cell_id, version)

    def path_of(self, record: ExecutionRecord) -> Path:
        return self.cell_dir(record.cell) / f"{record.version:06d}.{_file_name(record.exec_id)}.jsonl"

    def _open_record(self, record: ExecutionRecord) -> IO[bytes] | None:
        try:
            return os.fdopen(_open_regular(self.path_of(record)), "rb")
        except (OSError, InvalidCellId):
            return None

    def events(self, record: ExecutionRecord) -> Iterator[dict[str, Any]]:
        """The execution's events in order, streamed from disk."""
        last = 0
        handle = self._open_record(record)
        if handle is None:
            return
        with handle:
            handle.readline()
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                event = _parsed(line)
                if event is None:
                    continue
                if "end" in event:
                    break
                seq = event.get("seq") or 0
                if isinstance(seq, int) and seq:
                    if seq <= last:
                        continue
                    last = seq
                yield event

    def tail_events(self, record: ExecutionRecord, max_bytes: int = 1 << 16) -> tuple[list[dict[str, Any]], bool]:
        """The events in the last `max_bytes` of the execution's file, and whether earlier ones
        exist: what a cell shows of a long output without reading all of it."""
        handle = self._open_record(record)
        if handle is None:
            return [], False
        with handle:
            size = os.fstat(handle.fileno()).st_size
        if size <= max_bytes:
            return list(self.events(record)), False
        events = []
        for line in reversed(_tail_lines(self.path_of(record), max_bytes)):
            event = _parsed(line)
            if event is None:
                continue
            if "end" in event:
                break
            if "record" not in event:
                events.append(event)
        return events, True

    def find_exec(self, cell_id: str, exec_id: str) -> ExecutionRecord | None:
        wanted = _file_name(exec_id)
        for version, (name, path) in sorted(self._files(cell_id).items(), reverse=True):
            if name == wanted:
                return self._load(path, cell_id, version)
        return None

    # -- writing
    def begin(self, cell_id: str, exec_id: str, runtime: str, **fields: Any) -> RecordWriter:
        """A new version of the cell's output, or the one this execution already has."""
        directory = self._real_dir("cells", self.cell_dir(cell_id).name)
        files = self._files(cell_id)
        wanted = _file_name(exec_id)
        for version, (name, path) in files.items():
            if name != wanted:
                continue
            fd = _open_append(path)
            try:
                if _first_line_complete(fd):
                    os.close(fd)
                    return RecordWriter(self._load(path, cell_id, version), path)
                # Claimed by a recorder that died (or met a full disk) before its first line
                # was whole: start it afresh.
                os.ftruncate(fd, 0)
            except BaseException:
                os.close(fd)
                raise
            break
        else:
            version = max(files, default=0) + 1
            while True:
                path = directory / f"{version:06d}.{wanted}.jsonl"
                try:
                    # Exclusive create claims the version number even if two runtimes record one cell.
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                    break
                except FileExistsError:
                    version += 1
        record = ExecutionRecord(cell=cell_id, version=version, exec_id=exec_id, runtime=runtime, **fields)
        try:
            self._prune(files)
        except BaseException:
            os.close(fd)
            raise
        return RecordWriter(record, path, fd)

    def close_lost(self, record: ExecutionRecord, reason: str, at: float) -> None:
        """Ends an execution whose runtime is gone."""
        writer = RecordWriter(record, self.path_of(record))
        writer.finish(status="lost", ended_at=at, reason=reason)

    def _prune(self, files: dict[int, tuple[str, Path]]) -> None:
        surplus = len(files) + 1 - KEEP_VERSIONS
        for version in sorted(files)[: max(0, surplus)]:
            path = files[version][1]
            if any(b'"end"' in line[:8] for line in _tail_lines(path, 4096)[:1]):
                path.unlink(missing_ok=True)
                # Blobs stay: another version may share them.
                self._manifest(path.parent.name, version).unlink(missing_ok=True)

    # -- files a cell wrote to /results (or $NJTUI_RESULTS), content-addressed
    def _manifest(self, cell_id: str, version: int) -> Path:
        return self.cell_dir(cell_id) / f"{version:06d}.files.json"

    def blob_path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 (64 lowercase hex digits)")
        return self.root / "blobs" / digest[:2] / digest

    def save_files(self, record: ExecutionRecord, files: Iterable[tuple[str, IO[bytes]]]) -> list[dict[str, Any]]:
        """Stores the files of one execution; identical contents are stored once."""
        entries = []
        staging = self._real_dir("blobs", "incoming")
        for name, handle in files:
            digest = hashlib.sha256()
            size = 0
            with tempfile.NamedTemporaryFile(dir=staging, delete=False) as temporary:
                try:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
                        temporary.write(chunk)
                        size += len(chunk)
                    temporary.flush()
                except BaseException:
                    os.unlink(temporary.name)
                    raise
            try:
                target = self._real_dir("blobs", digest.hexdigest()[:2]) / digest.hexdigest()
                if os.path.lexists(target):
                    os.unlink(temporary.name)
                else:
                    os.replace(temporary.name, target)
            except BaseException:
                if os.path.lexists(temporary.name):
                    os.unlink(temporary.name)
                raise
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            entries.append({"name": name, "size": size, "type": kind, "sha256": digest.hexdigest()})
        entries.sort(key=lambda entry: entry["name"])
        self._real_dir("cells", self.cell_dir(record.cell).name)
        atomic_write_bytes(self._manifest(record.cell, record.version), json.dumps({"exec": record.exec_id, "files": entries}, indent=1).encode(), durable=False)
        return entries

    def manifest(self, record: ExecutionRecord) -> tuple[list[dict[str, Any]], list[str]]:
        """The files of one version that are fit to use, and why each other entry is not."""
        try:
            path = self._manifest(record.cell, record.version)
        except InvalidCellId as exc:
            return [], [str(exc)]
        if not self._is_real_dir("cells", record.cell):
            return [], []
        try:
            fd = _open_regular(path)
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            return [], [f"{path}: not read: {exc.strerror or exc}"]
        with os.fdopen(fd, "rb") as handle:
            text = handle.read(MANIFEST_LIMIT + 1)
        try:
            data = json.loads(text) if len(text) <= MANIFEST_LIMIT else None
        except ValueError:
            data = None
        listed = data.get("files") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            return [], [f"{path}: not read: not a files manifest"]
        usable, refused = [], []
        for index, entry in enumerate(listed):
            problem = entry_problem(entry)
            if problem is None:
                usable.append({"type": "application/octet-stream", **entry})
            else:
                name = entry.get("name") if isinstance(entry, dict) else None
                refused.append(f"cell {record.cell} version {record.version}: {name if isinstance(name, str) else f'entry {index}'!r}: {problem}")
        return usable, refused

    def files(self, record: ExecutionRecord) -> list[dict[str, Any]]:
        return self.manifest(record)[0]

    def _open_blob(self, digest: str) -> int:
        """A read descriptor of the blob itself: a regular file under blobs/, no link on the way."""
        if not SHA256_HEX.fullmatch(digest):
            raise Refused("its sha256 is not 64 lowercase hex digits")
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise Refused(f"the results directory cannot be opened: {exc.strerror or exc}") from None
        try:
            directory = _walk(root, ("blobs", digest[:2]), create=False)
        except FileNotFoundError:
            raise Refused("its blob is not in the store") from None
        finally:
            os.close(root)
        try:
            fd = os.open(digest, _READ_FLAGS, dir_fd=directory)
        except FileNotFoundError:
            raise Refused("its blob is not in the store") from None
        except OSError as exc:
            if exc.errno in _LINK_ERRNOS:
                raise Refused("its blob is a symbolic link") from None
            raise
        finally:
            os.close(directory)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Refused("its blob is not a regular file")
        os.set_blocking(fd, True)
        return fd

    def extract(self, record: ExecutionRecord, into: Path | str, under: Iterable[str] = ()) -> tuple[list[Path], list[str]]:
        """Copies the files of one version to into/under…/NAME: the paths written, and a warning
        naming each entry that was not (refused, or failed), the others extracted regardless.

        Nothing lands outside `into`: names and hashes come from a manifest anyone may have
        written, so a name that climbs out, an absolute one, a link on the way (in the store or
        in `into`) is refused. Each file is written to a new temporary name and renamed into
        place, so a link already at the destination is replaced, never followed; its mode is
        the blob's at most."""
        entries, warnings = self.manifest(record)
        under = tuple(under)
        for part in under:
            if not (valid_cell_id(part) or _VERSION_DIR.fullmatch(part)):
                raise ValueError(f"{part!r} is not a cell id or version directory")
        into = Path(into)
        into.mkdir(parents=True, exist_ok=True)
        top = into.resolve()
        base = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        written = []
        try:
            for entry in entries:
                name = entry["name"]
                parts = (*under, *name.split("/"))
                destination = top.joinpath(*parts)
                try:
                    if not destination.resolve().is_relative_to(top):
                        raise Refused(f"it would land outside {top}")
                    self._extract_one(entry["sha256"], base, parts)
                except Refused as exc:
                    warnings.append(f"cell {record.cell} version {record.version}: {name!r}: {exc}")
                    continue
                except OSError as exc:
                    warnings.append(f"cell {record.cell} version {record.version}: {name!r}: not written: {exc.strerror or exc}")
                    continue
                written.append(destination)
        finally:
            os.close(base)
        return written, warnings

    def _extract_one(self, digest: str, base: int, parts: tuple[str, ...]) -> None:
        blob = self._open_blob(digest)
        try:
            mode = stat.S_IMODE(os.fstat(blob).st_mode) & 0o777
            directory = _walk(base, parts[:-1], create=True)
            try:
                temporary = f".njtui-{secrets.token_hex(8)}.tmp"
                out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=directory)
                try:
                    try:
                        digest_of_copy = hashlib.sha256()
                        while chunk := os.read(blob, 1 << 20):
                            digest_of_copy.update(chunk)
                            _write_all(out, chunk)
                    finally:
                        os.close(out)
                    if digest_of_copy.hexdigest() != digest:
                        raise Refused("its blob's content does not match its sha256")
                    os.rename(temporary, parts[-1], src_dir_fd=directory, dst_dir_fd=directory)
                except BaseException:
                    try:
                        os.unlink(temporary, dir_fd=directory)
                    except OSError:
                        pass
                    raise
            finally:
                os.close(directory)
        finally:
            os.close(blob)

    # -- the recorder's bookkeeping
    def _cursor_path(self, runtime_key: str, suffix: str) -> Path:
        if not _SAFE_NAME.fullmatch(runtime_key):
            raise ValueError(f"{runtime_key!r} is not a runtime key")
        return self.root / "cursors" / f"{runtime_key}{suffix}"

    def cursor(self, runtime_key: str) -> dict[str, Any]:
        """The last cursor saved; the cursor file is a log of them, appended, never rewritten."""
        if not self._is_real_dir("cursors"):
            return {}
        for line in _tail_lines(self._cursor_path(runtime_key, ".jsonl")):
            entry = _parsed(line)
            cursor = _checked_cursor(entry) if entry is not None else None
            if cursor is not None:
                return cursor
        return {}

    def save_cursor(self, runtime_key: str, cursor: dict[str, Any]) -> None:
        self._real_dir("cursors")
        path = self._cursor_path(runtime_key, ".jsonl")
        line = (json.dumps(cursor, sort_keys=True) + "\n").encode()
        fd = _open_append(path, create=True)
        try:
            end = os.fstat(fd).st_size
            # A write cut short (a full disk) left half a line: start on a line of our own.
            prefix = b"\n" if end and os.pread(fd, 1, end - 1) != b"\n" else b""
            _write_all(fd, prefix + line)
            end += len(prefix) + len(line)
        finally:
            os.close(fd)
        if end > CURSOR_LOG_LIMIT:
            # Only the last entry matters: start the log again from it.
            atomic_write_bytes(path, line, durable=False)

    def try_lock_recorder(self, runtime_key: str) -> IO[str] | None:
        """The recorder lock of a runtime, or None while another client holds it."""
        self._real_dir("cursors")
        # Not truncated, not followed: a shared results dir may hold a link under this name.
        handle = os.fdopen(_open_append(self._cursor_path(runtime_key, ".lock"), create=True), "r")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle
