"""The results store: outputs of executions, beside the notebook, never inside it.

Layout of `analysis.results/` for `analysis.toml`:

    cells/<cell id>/000007.json            the record of version 7 (status, times, source hash)
    cells/<cell id>/000007.events.jsonl    its events, in order, as the runtime sent them
    cursors/<runtime key>.json             how far the runtime's journal has been recorded
    cursors/<runtime key>.lock             held by the one client recording that runtime

Each execution of a cell is a new version; the newest KEEP_VERSIONS of a cell are kept.
Events are written once, appended as they arrive, and read back as a stream: a reader never
holds a whole large output in memory, and output is never copied to be read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from njtui.model import ExecutionRecord
from njtui.store.atomic import atomic_write_bytes

KEEP_VERSIONS = 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")


def results_dir_for(notebook_path: Path | str) -> Path:
    path = Path(notebook_path)
    return path.with_name(path.stem + ".results")


def _file_name(identifier: str) -> str:
    if _SAFE_NAME.match(identifier):
        return identifier
    return "id-" + hashlib.sha256(identifier.encode()).hexdigest()[:16]


class RecordWriter:
    """Appends one execution's events and keeps its record current."""

    def __init__(self, store: ResultsStore, record: ExecutionRecord) -> None:
        self.store = store
        self.record = record
        self.events_path = store.events_path(record)
        self.last_seq = _last_seq(self.events_path)
        self._file: IO[bytes] = open(self.events_path, "ab")  # noqa: SIM115 - closed by finish()

    def add(self, message: dict[str, Any]) -> None:
        seq = message.get("seq", 0)
        if seq and seq <= self.last_seq:
            return
        self.last_seq = seq or self.last_seq
        self._file.write((json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace"))
        self.record.events += 1
        if message.get("type") == "stream":
            size = len(message.get("text", "").encode("utf-8", "replace"))
            if message.get("name") == "stderr":
                self.record.stderr_bytes += size
            else:
                self.record.stdout_bytes += size

    def flush(self) -> None:
        self._file.flush()

    def save(self) -> None:
        self.flush()
        self.store.save_record(self.record)

    def finish(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.record, name, value)
        self.save()
        self._file.close()


def _last_seq(events_path: Path) -> int:
    """Seq of the last event written: a resumed recording skips what is already there."""
    try:
        size = events_path.stat().st_size
    except FileNotFoundError:
        return 0
    with open(events_path, "rb") as handle:
        handle.seek(max(0, size - 65536))
        lines = handle.read().splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line).get("seq", 0))
        except ValueError:
            continue
    return 0


class ResultsStore:
    def __init__(self, notebook_path: Path | str) -> None:
        self.root = results_dir_for(notebook_path)

    # -- reading
    def cell_dir(self, cell_id: str) -> Path:
        return self.root / "cells" / _file_name(cell_id)

    def versions(self, cell_id: str) -> list[int]:
        directory = self.cell_dir(cell_id)
        if not directory.is_dir():
            return []
        return sorted(int(p.stem) for p in directory.glob("[0-9]*.json") if p.stem.isdigit())

    def load(self, cell_id: str, version: int) -> ExecutionRecord:
        data = json.loads((self.cell_dir(cell_id) / f"{version:06d}.json").read_text())
        return ExecutionRecord.from_dict(data)

    def latest(self, cell_id: str) -> ExecutionRecord | None:
        versions = self.versions(cell_id)
        return self.load(cell_id, versions[-1]) if versions else None

    def events_path(self, record: ExecutionRecord) -> Path:
        return self.cell_dir(record.cell) / f"{record.version:06d}.events.jsonl"

    def events(self, record: ExecutionRecord) -> Iterator[dict[str, Any]]:
        last = 0
        try:
            handle = open(self.events_path(record), "rb")  # noqa: SIM115
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                event = json.loads(line)
                seq = event.get("seq", 0)
                if seq and seq <= last:
                    continue  # written twice by a recorder that died before saving its cursor
                last = seq or last
                yield event

    def find_exec(self, cell_id: str, exec_id: str) -> ExecutionRecord | None:
        for version in reversed(self.versions(cell_id)):
            record = self.load(cell_id, version)
            if record.exec_id == exec_id:
                return record
        return None

    # -- writing
    def save_record(self, record: ExecutionRecord) -> None:
        path = self.cell_dir(record.cell) / f"{record.version:06d}.json"
        atomic_write_bytes(path, json.dumps(record.to_dict(), indent=1, sort_keys=True).encode(), durable=record.finished)

    def begin(self, cell_id: str, exec_id: str, runtime: str, **fields: Any) -> RecordWriter:
        directory = self.cell_dir(cell_id)
        directory.mkdir(parents=True, exist_ok=True)
        versions = self.versions(cell_id)
        record = ExecutionRecord(cell=cell_id, version=(versions[-1] + 1) if versions else 1, exec_id=exec_id, runtime=runtime, **fields)
        self.save_record(record)
        self._prune(cell_id, versions)
        return RecordWriter(self, record)

    def resume(self, record: ExecutionRecord) -> RecordWriter:
        return RecordWriter(self, record)

    def _prune(self, cell_id: str, older: list[int]) -> None:
        directory = self.cell_dir(cell_id)
        for version in older[: max(0, len(older) + 1 - KEEP_VERSIONS)]:
            record = self.load(cell_id, version)
            if not record.finished:
                continue
            (directory / f"{version:06d}.events.jsonl").unlink(missing_ok=True)
            (directory / f"{version:06d}.json").unlink(missing_ok=True)

    # -- the recorder's bookkeeping
    def cursor(self, runtime_key: str) -> dict[str, Any]:
        try:
            return json.loads((self.root / "cursors" / f"{runtime_key}.json").read_text())
        except (OSError, ValueError):
            return {}

    def save_cursor(self, runtime_key: str, cursor: dict[str, Any]) -> None:
        directory = self.root / "cursors"
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / f"{runtime_key}.json", json.dumps(cursor, sort_keys=True).encode(), durable=False)

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
        os.set_inheritable(handle.fileno(), False)
        return handle
