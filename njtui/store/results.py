"""The results store: outputs of executions, beside the notebook, never inside it.

Layout of `analysis.results/` for `analysis.toml`:

    cells/<cell id>/000007.<exec id>.jsonl   version 7 of the cell's output
    cells/<cell id>/000007.files.json        the files version 7 left in /results
    blobs/<ab>/<sha256>                      those files' contents, each content stored once
    cursors/<runtime key>.jsonl              how far the runtime's journal has been recorded
    cursors/<runtime key>.lock               held by the one client recording that runtime
    counts.jsonl, counts.lock                the notebook's execution counts (results_counts)

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

The parts of the store have modules of their own: results_paths (names and directories),
results_io (opening files there), results_records (an execution's lines, and their writer) and
results_files (the files a cell wrote) and results_counts (execution counts); the names they
export are importable from here too.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from njtui.model import ExecutionRecord
from njtui.store.results_counts import ExecutionCounts
from njtui.store.results_files import (
    MANIFEST_LIMIT as MANIFEST_LIMIT,
)
from njtui.store.results_files import (
    SHA256_HEX as SHA256_HEX,
)
from njtui.store.results_files import (
    ResultFiles,
)
from njtui.store.results_files import (
    entry_problem as entry_problem,
)
from njtui.store.results_io import (
    Refused as Refused,
)
from njtui.store.results_io import (
    first_line_complete,
    lines_from_end,
    open_append,
    open_beneath,
    open_regular,
    replace_beneath,
    tail_lines,
    unlink_beneath,
    write_all,
)
from njtui.store.results_paths import (
    SAFE_NAME,
    InvalidCellId,
    file_name,
    valid_cell_id,
)
from njtui.store.results_paths import (
    results_dir_for as results_dir_for,
)
from njtui.store.results_records import END_FIELDS, RecordWriter, parsed, typed_fields

KEEP_VERSIONS = 20
CURSOR_LOG_LIMIT = 1 << 20
# [0-9], not \d: int() also reads other scripts' digits, which no writer here produces.
_VERSION_FILE = re.compile(r"([0-9]{6,12})\.([A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})\.jsonl")


def _checked_cursor(data: dict[str, Any]) -> dict[str, Any] | None:
    seq = data.get("seq", 0)
    instance = data.get("instance")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not (instance is None or isinstance(instance, str)):
        return None
    opened = data.get("open")
    opened = opened if isinstance(opened, dict) else {}
    return {"instance": instance, "seq": seq, "open": {e: c for e, c in opened.items() if isinstance(e, str) and valid_cell_id(c)}}


class ResultsStore(ResultFiles, ExecutionCounts):
    """A notebook's results: its executions, their files (ResultFiles), their counts
    (ExecutionCounts) and the recorder's cursors, in the layout above."""

    # -- reading
    def _files(self, cell_id: str) -> dict[int, tuple[str, Path]]:
        if not valid_cell_id(cell_id):
            return {}
        directory = self.cell_dir(cell_id)
        found = {}
        for name, is_file in self._names("cells", cell_id):
            match = _VERSION_FILE.fullmatch(name)
            if match and is_file:
                found[int(match.group(1))] = (match.group(2), directory / name)
        return found

    def versions(self, cell_id: str) -> list[int]:
        return sorted(self._files(cell_id))

    def load(self, cell_id: str, version: int) -> ExecutionRecord:
        _, path = self._files(cell_id)[version]
        return self._load(path, cell_id, version)

    def _load(self, path: Path, cell_id: str, version: int) -> ExecutionRecord:
        match = _VERSION_FILE.fullmatch(path.name)
        assert match is not None  # every path here comes from _files, which lists only names that match
        exec_name = match.group(2)
        try:
            fd = open_regular(path, beneath=self.root)
        except OSError as exc:
            return ExecutionRecord(cell=cell_id, version=version, exec_id=exec_name, runtime="", status="error", reason=f"unreadable record {path}: {exc.strerror or exc}")
        with os.fdopen(fd, "rb") as handle:
            first = handle.readline()
        if not first.endswith(b"\n"):
            # Claimed a moment ago; the recorder writes it at its next flush.
            return ExecutionRecord(cell=cell_id, version=version, exec_id=exec_name, runtime="")
        header = parsed(first)
        if header is None or not isinstance(header.get("record"), dict):
            return ExecutionRecord(cell=cell_id, version=version, exec_id=exec_name, runtime="", status="error", reason=f"unreadable record {path}: its first line is not a record")
        fields = typed_fields(header["record"])
        # Where it is on disk says which cell, version and execution it is, whatever it claims.
        exec_id = fields.get("exec_id")
        fields.update(cell=cell_id, version=version, exec_id=exec_id if isinstance(exec_id, str) and file_name(exec_id) == exec_name else exec_name)
        fields.setdefault("runtime", "")
        record = ExecutionRecord.from_dict(fields)
        for line in lines_from_end(path, beneath=self.root):
            entry = parsed(line)
            if entry is None:
                continue
            if isinstance(entry.get("end"), dict):
                for key, value in typed_fields(entry["end"]).items():
                    if key in END_FIELDS:
                        setattr(record, key, value)
            elif "record" not in entry and record.status == "running":
                # Not finished: count what is there so far.
                self._count(record, path)
            break
        return record

    def _count(self, record: ExecutionRecord, path: Path) -> None:
        try:
            fd = open_regular(path, beneath=self.root)
        except OSError:
            return
        with os.fdopen(fd, "rb") as handle:
            handle.readline()
            for line in handle:
                if not line.endswith(b"\n") or b'"type":"stream"' not in line:
                    continue
                event = parsed(line)
                if event is None:
                    continue
                text = event.get("text")
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
        return self.cell_dir(record.cell) / f"{record.version:06d}.{file_name(record.exec_id)}.jsonl"

    def _open_record(self, record: ExecutionRecord) -> IO[bytes] | None:
        try:
            return os.fdopen(open_regular(self.path_of(record), beneath=self.root), "rb")
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
                event = parsed(line)
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
        # Whole lines, last first, until the budget is spent: the line that spends it is read
        # whole too, so a picture (one large line) at the end is never cut off.
        events: list[dict[str, Any]] = []
        spent = 0
        for line in lines_from_end(self.path_of(record), beneath=self.root):
            event = parsed(line)
            if event is not None and "record" in event:
                events.reverse()
                return events, False
            if event is not None and "end" not in event:
                events.append(event)
            spent += len(line) + 1
            if spent >= max_bytes:
                break
        events.reverse()
        return events, True

    def recorded_count(self, cell_id: str, exec_id: str) -> int | None:
        record = self.find_exec(cell_id, exec_id)
        return record.count if record is not None else None

    def highest_recorded_count(self) -> int:
        """The highest count any stored record holds, from the record lines (read once for a
        store, when its counts begin: before then each runtime counted on its own, so any
        version may hold the highest)."""
        highest = 0
        cells = [name for name, _ in self._names("cells") if valid_cell_id(name)]
        for cell_id in cells:
            for _, path in self._files(cell_id).values():
                try:
                    fd = open_regular(path, beneath=self.root)
                except OSError:
                    continue
                with os.fdopen(fd, "rb") as handle:
                    header = parsed(handle.readline(65536))
                fields = typed_fields(header["record"]) if header is not None and isinstance(header.get("record"), dict) else {}
                count = fields.get("count")
                if isinstance(count, int) and 0 < count < (1 << 40):
                    highest = max(highest, count)
        return highest

    def find_exec(self, cell_id: str, exec_id: str) -> ExecutionRecord | None:
        wanted = file_name(exec_id)
        for version, (name, path) in sorted(self._files(cell_id).items(), reverse=True):
            if name == wanted:
                return self._load(path, cell_id, version)
        return None

    # -- writing
    def begin(self, cell_id: str, exec_id: str, runtime: str, **fields: Any) -> RecordWriter:
        """A new version of the cell's output, or the one this execution already has."""
        directory = self._real_dir("cells", self.cell_dir(cell_id).name)
        files = self._files(cell_id)
        wanted = file_name(exec_id)
        for version, (name, path) in files.items():
            if name != wanted:
                continue
            fd = open_append(path, beneath=self.root)
            try:
                if first_line_complete(fd):
                    os.close(fd)
                    return RecordWriter(self._load(path, cell_id, version), path, root=self.root)
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
                    fd = open_beneath(self.root, path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND)
                    break
                except FileExistsError:
                    version += 1
        record = ExecutionRecord(cell=cell_id, version=version, exec_id=exec_id, runtime=runtime, **fields)
        try:
            self._prune(files)
        except BaseException:
            os.close(fd)
            raise
        return RecordWriter(record, path, fd, root=self.root)

    def close_lost(self, record: ExecutionRecord, reason: str, at: float) -> None:
        """Ends an execution whose runtime is gone."""
        writer = RecordWriter(record, self.path_of(record), root=self.root)
        writer.finish(status="lost", ended_at=at, reason=reason)

    def _prune(self, files: dict[int, tuple[str, Path]]) -> None:
        surplus = len(files) + 1 - KEEP_VERSIONS
        for version in sorted(files)[: max(0, surplus)]:
            path = files[version][1]
            if any(b'"end"' in line[:8] for line in tail_lines(path, 4096, beneath=self.root)[:1]):
                unlink_beneath(self.root, path)
                # Blobs stay: another version may share them.
                unlink_beneath(self.root, self._manifest(path.parent.name, version))

    # -- the recorder's bookkeeping
    def _cursor_path(self, runtime_key: str, suffix: str) -> Path:
        if not SAFE_NAME.fullmatch(runtime_key):
            raise ValueError(f"{runtime_key!r} is not a runtime key")
        return self.root / "cursors" / f"{runtime_key}{suffix}"

    def cursor(self, runtime_key: str) -> dict[str, Any]:
        """The last cursor saved; the cursor file is a log of them, appended, never rewritten."""
        if not self._is_real_dir("cursors"):
            return {}
        for line in tail_lines(self._cursor_path(runtime_key, ".jsonl"), beneath=self.root):
            entry = parsed(line)
            cursor = _checked_cursor(entry) if entry is not None else None
            if cursor is not None:
                return cursor
        return {}

    def has_cursor(self, runtime_key: str) -> bool:
        """Whether this store has ever recorded the runtime (a cursor file for it, whatever is
        in it): a store that has not is new, or was deleted since, and its journal's past is
        not this store's."""
        if not self._is_real_dir("cursors"):
            return False
        return os.path.lexists(self._cursor_path(runtime_key, ".jsonl"))

    def save_cursor(self, runtime_key: str, cursor: dict[str, Any]) -> None:
        self._real_dir("cursors")
        path = self._cursor_path(runtime_key, ".jsonl")
        line = (json.dumps(cursor, sort_keys=True) + "\n").encode()
        fd = open_append(path, create=True, beneath=self.root)
        try:
            end = os.fstat(fd).st_size
            # A write cut short (a full disk) left half a line: start on a line of our own.
            prefix = b"\n" if end and os.pread(fd, 1, end - 1) != b"\n" else b""
            write_all(fd, prefix + line)
            end += len(prefix) + len(line)
        finally:
            os.close(fd)
        if end > CURSOR_LOG_LIMIT:
            # Only the last entry matters: start the log again from it.
            replace_beneath(self.root, path, line)

    def try_lock_recorder(self, runtime_key: str) -> IO[str] | None:
        """The recorder lock of a runtime, or None while another client holds it."""
        self._real_dir("cursors")
        # Not truncated, not followed: a shared results dir may hold a link under this name.
        handle = os.fdopen(open_append(self._cursor_path(runtime_key, ".lock"), create=True, beneath=self.root), "r")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle
