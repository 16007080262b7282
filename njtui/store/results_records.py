"""An execution's file, line by line: a `record` line, the events, an `end` line, each one
JSON object (see results for the whole layout); and RecordWriter, which appends them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from njtui.model import EXEC_STATUSES, ExecutionRecord
from njtui.store.results_io import cut_incomplete_line, lines_from_end, open_append, write_all

END_FIELDS = ("status", "ended_at", "duration", "exit_code", "stdout_bytes", "stderr_bytes", "events", "reason", "count")
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


def _dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace")


def parsed(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def typed_fields(data: dict[str, Any]) -> dict[str, Any]:
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

    def __init__(self, record: ExecutionRecord, path: Path, fd: int | None = None, *, root: Path) -> None:
        self.record = record
        self.path = path
        self.root = root  # the results directory: `path` is opened from its descriptor (results_io)
        self._fd = fd
        existing = fd is None
        self.last_seq = _last_seq(path, root) if existing else 0
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
            fd = open_append(self.path, beneath=self.root)
            try:
                cut_incomplete_line(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        data = b"".join(self._pending)
        self._pending.clear()
        write_all(self._fd, data)

    def finish(self, **fields: Any) -> None:
        if self.inert:
            return
        self.inert = True
        for name, value in fields.items():
            setattr(self.record, name, value)
        self._pending.append(_dumps({"end": {name: getattr(self.record, name) for name in END_FIELDS}}))
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
    return {key: value for key, value in data.items() if key not in END_FIELDS or key == "count"}


def _last_seq(path: Path, root: Path) -> int:
    """Seq of the last event written: a resumed recording skips what is already there."""
    for line in lines_from_end(path, beneath=root):
        event = parsed(line)
        if event is None:
            continue
        if "record" in event:
            return 0
        seq = event.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            return seq
    return 0
