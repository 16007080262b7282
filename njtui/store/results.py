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
keeps a reader safe from half-written files: it stops at an incomplete last line.

The newest KEEP_VERSIONS executions of each cell are kept. Events are written once and read
back as a stream: a reader never holds a whole large output in memory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import mimetypes
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from njtui.model import ExecutionRecord
from njtui.store.atomic import atomic_write_bytes

KEEP_VERSIONS = 20
CURSOR_LOG_LIMIT = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
_VERSION_FILE = re.compile(r"^(\d{6,})\.(.+)\.jsonl$")
_END_FIELDS = ("status", "ended_at", "duration", "exit_code", "stdout_bytes", "stderr_bytes", "events", "reason", "count")


def results_dir_for(notebook_path: Path | str) -> Path:
    path = Path(notebook_path)
    return path.with_name(path.stem + ".results")


def _file_name(identifier: str) -> str:
    if _SAFE_NAME.match(identifier):
        return identifier
    return "id-" + hashlib.sha256(identifier.encode()).hexdigest()[:16]


def _dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace")


class RecordWriter:
    """Appends one execution's events. Nothing touches the disk until `flush`, so an execution
    that finishes quickly is written with one create and one write."""

    def __init__(self, store: ResultsStore, record: ExecutionRecord, path: Path, file: IO[bytes] | None = None) -> None:
        self.store = store
        self.record = record
        self.path = path
        self._file = file
        existing = file is None
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
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed by finish()
        self._file.write(b"".join(self._pending))
        self._file.flush()
        self._pending.clear()

    def finish(self, **fields: Any) -> None:
        if self.inert:
            return
        self.inert = True
        for name, value in fields.items():
            setattr(self.record, name, value)
        self._pending.append(_dumps({"end": {name: getattr(self.record, name) for name in _END_FIELDS}}))
        self.flush()
        self.close()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def _header(record: ExecutionRecord) -> dict[str, Any]:
    data = record.to_dict()
    return {key: value for key, value in data.items() if key not in _END_FIELDS or key == "count"}


def _last_seq(path: Path) -> int:
    """Seq of the last event written: a resumed recording skips what is already there."""
    for line in _tail_lines(path):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if "seq" in event:
            return int(event["seq"] or 0)
    return 0


def _tail_lines(path: Path, size: int = 65536) -> list[bytes]:
    """Complete lines near the end of a file, last first."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            handle.seek(max(0, end - size))
            data = handle.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is incomplete (or empty)
    if end > size:
        complete = complete[1:]  # the first line was cut by the seek
    return list(reversed(complete))


class ResultsStore:
    def __init__(self, notebook_path: Path | str) -> None:
        self.root = results_dir_for(notebook_path)

    # -- reading
    def cell_dir(self, cell_id: str) -> Path:
        return self.root / "cells" / _file_name(cell_id)

    def _files(self, cell_id: str) -> dict[int, tuple[str, Path]]:
        directory = self.cell_dir(cell_id)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            match = _VERSION_FILE.match(name)
            if match:
                found[int(match.group(1))] = (match.group(2), directory / name)
        return found

    def versions(self, cell_id: str) -> list[int]:
        return sorted(self._files(cell_id))

    def load(self, cell_id: str, version: int) -> ExecutionRecord:
        _, path = self._files(cell_id)[version]
        return self._load(path)

    def _load(self, path: Path) -> ExecutionRecord:
        with open(path, "rb") as handle:
            first = handle.readline()
        if not first.endswith(b"\n"):
            # Claimed a moment ago; the recorder writes it at its next flush.
            version, exec_name = _VERSION_FILE.match(path.name).groups()
            return ExecutionRecord(cell=path.parent.name, version=int(version), exec_id=exec_name, runtime="")
        record = ExecutionRecord.from_dict(json.loads(first)["record"])
        for line in _tail_lines(path):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "end" in entry:
                for key, value in entry["end"].items():
                    setattr(record, key, value)
            elif "record" not in entry and record.status == "running":
                # Not finished: count what is there so far.
                self._count(record, path)
            break
        return record

    @staticmethod
    def _count(record: ExecutionRecord, path: Path) -> None:
        with open(path, "rb") as handle:
            handle.readline()
            for line in handle:
                if line.endswith(b"\n") and b'"type":"stream"' in line:
                    event = json.loads(line)
                    size = len(event.get("text", "").encode("utf-8", "replace"))
                    if event.get("name") == "stderr":
                        record.stderr_bytes += size
                    else:
                        record.stdout_bytes += size

    def latest(self, cell_id: str) -> ExecutionRecord | None:
        files = self._files(cell_id)
        return self._load(files[max(files)][1]) if files else None

    def path_of(self, record: ExecutionRecord) -> Path:
        return self.cell_dir(record.cell) / f"{record.version:06d}.{_file_name(record.exec_id)}.jsonl"

    def events(self, record: ExecutionRecord) -> Iterator[dict[str, Any]]:
        """The execution's events in order, streamed from disk."""
        last = 0
        try:
            handle = open(self.path_of(record), "rb")  # noqa: SIM115
        except FileNotFoundError:
            return
        with handle:
            handle.readline()
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                event = json.loads(line)
                if "end" in event:
                    break
                seq = event.get("seq") or 0
                if seq and seq <= last:
                    continue
                last = seq or last
                yield event

    def tail_events(self, record: ExecutionRecord, max_bytes: int = 1 << 16) -> tuple[list[dict[str, Any]], bool]:
        """The events in the last `max_bytes` of the execution's file, and whether earlier ones
        exist: what a cell shows of a long output without reading all of it."""
        path = self.path_of(record)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return [], False
        if size <= max_bytes:
            return list(self.events(record)), False
        events = []
        for line in reversed(_tail_lines(path, max_bytes)):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "end" in event:
                break
            if "record" not in event:
                events.append(event)
        return events, True

    def find_exec(self, cell_id: str, exec_id: str) -> ExecutionRecord | None:
        wanted = _file_name(exec_id)
        for _, (name, path) in sorted(self._files(cell_id).items(), reverse=True):
            if name == wanted:
                return self._load(path)
        return None

    # -- writing
    def begin(self, cell_id: str, exec_id: str, runtime: str, **fields: Any) -> RecordWriter:
        """A new version of the cell's output, or the one this execution already has."""
        directory = self.cell_dir(cell_id)
        files = self._files(cell_id)
        wanted = _file_name(exec_id)
        for version, (name, path) in files.items():
            if name != wanted:
                continue
            if path.stat().st_size:
                return RecordWriter(self, self._load(path), path)
            # Claimed by a recorder that died before its first write: start it afresh.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            break
        else:
            directory.mkdir(parents=True, exist_ok=True)
            version = max(files, default=0) + 1
            while True:
                path = directory / f"{version:06d}.{wanted}.jsonl"
                try:
                    # Exclusive create claims the version number even if two runtimes record one cell.
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
                    break
                except FileExistsError:
                    version += 1
        record = ExecutionRecord(cell=cell_id, version=version, exec_id=exec_id, runtime=runtime, **fields)
        self._prune(files)
        return RecordWriter(self, record, path, os.fdopen(fd, "ab"))

    def close_lost(self, record: ExecutionRecord, reason: str, at: float) -> None:
        """Ends an execution whose runtime is gone."""
        writer = RecordWriter(self, record, self.path_of(record))
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
        return self.root / "blobs" / digest[:2] / digest

    def save_files(self, record: ExecutionRecord, files: Iterable[tuple[str, IO[bytes]]]) -> list[dict[str, Any]]:
        """Stores the files of one execution; identical contents are stored once."""
        entries = []
        staging = self.root / "blobs" / "incoming"
        staging.mkdir(parents=True, exist_ok=True)
        for name, handle in files:
            digest = hashlib.sha256()
            size = 0
            with tempfile.NamedTemporaryFile(dir=staging, delete=False) as temporary:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    temporary.write(chunk)
                    size += len(chunk)
            target = self.blob_path(digest.hexdigest())
            if target.exists():
                os.unlink(temporary.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary.name, target)
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            entries.append({"name": name, "size": size, "type": kind, "sha256": digest.hexdigest()})
        entries.sort(key=lambda entry: entry["name"])
        atomic_write_bytes(self._manifest(record.cell, record.version), json.dumps({"exec": record.exec_id, "files": entries}, indent=1).encode(), durable=False)
        return entries

    def files(self, record: ExecutionRecord) -> list[dict[str, Any]]:
        try:
            return json.loads(self._manifest(record.cell, record.version).read_text())["files"]
        except (OSError, ValueError, KeyError):
            return []

    # -- the recorder's bookkeeping
    def cursor(self, runtime_key: str) -> dict[str, Any]:
        """The last cursor saved; the cursor file is a log of them, appended, never rewritten."""
        for line in _tail_lines(self.root / "cursors" / f"{runtime_key}.jsonl"):
            try:
                return json.loads(line)
            except ValueError:
                continue
        return {}

    def save_cursor(self, runtime_key: str, cursor: dict[str, Any]) -> None:
        directory = self.root / "cursors"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{runtime_key}.jsonl"
        line = (json.dumps(cursor, sort_keys=True) + "\n").encode()
        with open(path, "ab") as handle:
            handle.write(line)
            if handle.tell() > CURSOR_LOG_LIMIT:
                # Only the last entry matters: start the log again from it.
                atomic_write_bytes(path, line, durable=False)

    def try_lock_recorder(self, runtime_key: str) -> IO[str] | None:
        """The recorder lock of a runtime, or None while another client holds it."""
        directory = self.root / "cursors"
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / f"{runtime_key}.lock", "w")  # noqa: SIM115 - returned, held by caller
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle
