"""Records one runtime's messages into the results store, exactly once.

Only the client holding the runtime's recorder lock writes; others only watch. The cursor
(the last journal seq recorded, and which executions are still open) lets the next client
resume after a client died mid-cell: it attaches from the cursor, and the runtime's journal
replays what nobody recorded.

Messages are recorded in journal order without a gap: one past the cursor is recorded, an
older one is a duplicate, a later one is left for the replay from the cursor that the caller
asks for (`behind`). So a client that takes the recording over while live messages are already
on their way records the replay first, and never moves the cursor past what it did not write.

A write to the store that fails (a full disk, EIO, a read-only file system) stops recording:
the recorder says why (`failure`), lets go of its files and of the lock, and the journal keeps
everything from the cursor on; the next recorder (this client later, or any other) resumes from
there.

An execution's /results files are part of its record: they are stored (`store_files`) as its
`done` is recorded, before its record's `end` line and before the cursor passes the `done`, so a
file the store cannot take stops recording like any other write, and the `done` is recorded
again, files and all, from the journal. Once the record has its `end` line, the agent may let
its staged copies go (`release`): never before the store has them, and a replay of a finished
record never asks for them again.

A store that does not know a runtime (no cursor for it: the store is new, or was deleted) does
not take from its journal executions that ended before it (`bind` with `history`): a deleted
store stays deleted, and only what still runs, and what comes, is recorded.

Executions are numbered for the notebook, not by the agent (`numbered`): the `count` of each
`start`, `result` and `done` is the results store's, the same for every client and in the record.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from njtui.model import ExecutionRecord
from njtui.model.output import OUTPUT_EVENTS
from njtui.runner.backend import BackendError
from njtui.store.results import InvalidCellId, RecordWriter, ResultsStore

# Stores the /results files a `done` lists for its execution's record, returning the stored
# entries; raises OSError when the store cannot take them.
FilesStorer = Callable[[ExecutionRecord, dict[str, Any]], list[dict[str, Any]]]
# Every message of a runtime's journal, in order (Backend.journal).
History = Callable[[], Iterable[dict[str, Any]]]


@dataclass
class Finished:
    """An execution whose `done` was just recorded: its record, and the /results files stored with it."""

    record: ExecutionRecord
    files: list[dict[str, Any]] = field(default_factory=list)


CURSOR_SAVE_INTERVAL = 0.25
# Messages that end a burst (or come alone): the cursor is saved at once, so a watching client
# that compares it with what it has seen knows that nothing is left to record. After a `done`,
# the caller saves it (flush) once the listeners have it: that save is off the latency path.
_SAVE_AT_ONCE = frozenset({"status", "hello", "exit", "log"})
# The messages whose `count` is their execution's.
_COUNTED = frozenset({"start", "result", "done"})


def numbered(store: ResultsStore, message: dict[str, Any]) -> dict[str, Any]:
    """`message` with its execution's count in the notebook (ResultsStore.execution_count) in
    place of the agent's own, which starts at 1 in every runtime. A `start` gives the execution
    its count; a `done` of one that never started (a queued cell an interrupt dropped) has none."""
    kind = message.get("type")
    exec_id = message.get("exec")
    if kind not in _COUNTED or not isinstance(exec_id, str):
        return message
    if kind == "start":
        meta = message.get("meta")
        cell = meta.get("cell") if isinstance(meta, dict) else None
        count: int | None = store.execution_count(exec_id, cell if isinstance(cell, str) else None)
    else:
        count = store.known_count(exec_id)
    if "count" in message and message["count"] == count:
        return message
    return {**message, "count": count}


class Recorder:
    def __init__(
        self,
        store: ResultsStore,
        runtime_key: str,
        runtime_id: str,
        *,
        store_files: FilesStorer | None = None,
        release: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.key = runtime_key
        self.runtime_id = runtime_id
        self._store_files = store_files
        # Tells the agent it may let an execution's staged copies go (None: nobody to tell).
        self._release = release
        # The instance whose binding could not be saved: the store was not writable as it began.
        self._unsaved_instance: str | None = None
        self._lock: IO[str] | None = None
        self.cursor: dict[str, Any] = {}
        self._writers: dict[str, RecordWriter] = {}
        self._queued_meta: dict[str, dict[str, Any]] = {}
        self._last_save = 0.0
        self._dirty = False
        # Why the last write to the store failed ("results store: No space left on device"),
        # until a recorder has caught up again; the caller clears it.
        self.failure: str | None = None
        self.failed_at = 0.0
        # A message past the cursor arrived: a replay from since() must come first.
        self.behind = False

    @property
    def active(self) -> bool:
        return self._lock is not None

    def try_activate(self) -> bool:
        if self._lock is None:
            try:
                self._lock = self.store.try_lock_recorder(self.key)
                if self._lock is not None:
                    self.cursor = self.store.cursor(self.key)
                    self.behind = False
            except OSError as exc:
                self._fail(exc)
        return self._lock is not None

    def bind(
        self,
        instance: str | None,
        lost_reason: str = "the runtime ended before the cell finished",
        *,
        history: History | None = None,
        ended: bool = False,
    ) -> None:
        """Start recording runtime `instance`; executions left open by an earlier instance are lost.

        `history`: the runtime's journal, read when the store does not know the runtime at all
        (no cursor for it: a new store, or one deleted since): executions that ended before then
        are passed over, not recorded (all of them when the runtime has `ended`). None: the
        journal holds nothing older than this client (it booted the runtime just now)."""
        if not self.active or self.cursor.get("instance") == instance:
            return
        try:
            known = self.store.has_cursor(self.key) or instance == self._unsaved_instance
        except OSError as exc:
            self._fail(exc)
            return
        self.close_open(lost_reason)
        if not self.active:
            return
        self.cursor = {"instance": instance, "seq": 0, "open": {}}
        try:
            if not known and history is not None:
                self._pass_over_history(history, ended)
            if not self.active:
                return
            self._save_cursor()
        except OSError as exc:
            self._unsaved_instance = instance
            self._fail(exc)

    def _pass_over_history(self, history: History, ended: bool) -> None:
        """Moves the cursor over what the journal holds that is older than this store: the
        executions that ended (every one, when the runtime has ended); those still running are
        recorded from their start. Whatever goes wrong reading the journal, the replay records
        from the cursor as far as it got."""
        try:
            finished: set[str] = set()
            last = 0
            for message in history():
                seq = message.get("seq")
                if isinstance(seq, int):
                    last = max(last, seq)
                if message.get("type") == "done" and isinstance(message.get("exec"), str):
                    finished.add(message["exec"])
            if ended or not last:
                self.cursor["seq"] = last
                return
            for message in history():
                seq = message.get("seq")
                if not isinstance(seq, int) or seq < self.since():
                    continue
                exec_id = message.get("exec")
                if seq == self.since() and (exec_id is None or exec_id in finished):
                    self.cursor["seq"] = seq  # older than this store: not its to record
                    continue
                self.handle(message)
                if not self.active or self.behind:
                    return
        except (OSError, ValueError, BackendError):
            return  # the journal could not be read whole: the replay records from the cursor on

    def since(self) -> int:
        return int(self.cursor.get("seq", 0)) + 1

    def handle(self, message: dict[str, Any]) -> Finished | None:
        """Records one message; returns the execution's record (and files) when this message
        finished it."""
        if not self.active:
            return None
        seq = message.get("seq")
        if not isinstance(seq, int) or seq < self.since():
            return None
        if seq > self.since():
            self.behind = True
            return None
        self.behind = False
        kind = message.get("type")
        try:
            finished = self._record(kind, message.get("exec"), numbered(self.store, message))
            self.cursor["seq"] = seq
            self._dirty = True
            if kind in _SAVE_AT_ONCE or time.monotonic() - self._last_save > CURSOR_SAVE_INTERVAL:
                self._flush()
        except OSError as exc:
            self._fail(exc)
            return None
        return finished

    def _record(self, kind: str | None, exec_id: Any, message: dict[str, Any]) -> Finished | None:
        if kind == "queued":
            self._queued_meta[exec_id] = message.get("meta") or {}
        elif kind == "start":
            self._start(exec_id, message)
        elif kind in OUTPUT_EVENTS:
            writer = self._writer(exec_id)
            if writer is not None:
                writer.add(message)
        elif kind == "done":
            return self._done(exec_id, message)
        return None

    def _start(self, exec_id: str, message: dict[str, Any]) -> RecordWriter | None:
        meta = message.get("meta") or self._queued_meta.get(exec_id) or {}
        cell = meta.get("cell")
        if not cell or not isinstance(exec_id, str):
            return None
        # begin() finds the version this execution already has when a recording is resumed.
        try:
            writer = self.store.begin(
                cell,
                exec_id,
                self.runtime_id,
                status="running",
                count=message.get("count"),
                started_at=message.get("t"),
                source_hash=meta.get("source_hash"),
            )
        except InvalidCellId:
            return None  # not a cell of a notebook njtui can load: nothing to show it under
        self._writers[exec_id] = writer
        self.cursor.setdefault("open", {})[exec_id] = cell
        return writer

    def _writer(self, exec_id: str) -> RecordWriter | None:
        writer = self._writers.get(exec_id)
        if writer is None and exec_id in self.cursor.get("open", {}):
            record = self.store.find_exec(self.cursor["open"][exec_id], exec_id)
            if record is None:
                return None
            writer = self.store.begin(record.cell, exec_id, self.runtime_id)
            self._writers[exec_id] = writer
        return writer

    def _done(self, exec_id: str, message: dict[str, Any]) -> Finished | None:
        writer = self._writer(exec_id)
        if writer is None and message.get("status") == "interrupted" and exec_id in self._queued_meta:
            # A queued cell dropped by an interrupt never started; its record says so.
            writer = self._start(exec_id, {"t": message.get("t"), "meta": self._queued_meta[exec_id]})
        if writer is None:
            return None
        files: list[dict[str, Any]] = []
        if message.get("files") and not writer.inert and self._store_files is not None:
            # Before the `end` line: a record that is finished has its files. Raises OSError
            # when the store cannot take them: the `done` is recorded again, files and all.
            try:
                files = self._store_files(writer.record, message)
            except BackendError as exc:
                # The runtime's engine did not hand them over (unreachable): tried again too.
                raise OSError(errno.EIO, f"the /results files of cell {writer.record.cell} could not be collected: {exc}") from None
        started = writer.record.started_at or message.get("t")
        writer.finish(
            status=message.get("status", "ok"),
            count=message.get("count") if message.get("count") is not None else writer.record.count,
            ended_at=message.get("t"),
            duration=message["duration"] if message.get("duration") is not None else (message.get("t") or 0) - (started or 0),
            exit_code=message.get("exit_code"),
            reason=message.get("reason"),
        )
        self._writers.pop(exec_id, None)
        self._queued_meta.pop(exec_id, None)
        self.cursor.get("open", {}).pop(exec_id, None)
        if message.get("files") and self._release is not None:
            # Finished, with its files: the staged copies are not needed again.
            self._release(exec_id)
        return Finished(writer.record, files)

    def close_open(self, reason: str) -> None:
        """Executions that can no longer finish (their runtime is gone) end as `lost`."""
        if not self.active:
            return
        try:
            for exec_id in list(self.cursor.get("open", {})):
                writer = self._writer(exec_id)
                if writer is not None:
                    writer.finish(status="lost", ended_at=time.time(), reason=reason)
                self._writers.pop(exec_id, None)
                self.cursor["open"].pop(exec_id, None)
                self._dirty = True
            self._flush()
        except OSError as exc:
            self._fail(exc)

    def flush(self) -> None:
        if not self.active:
            return
        try:
            self._flush()
        except OSError as exc:
            self._fail(exc)

    def _flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()
        if self._dirty:
            self._save_cursor()

    def _save_cursor(self) -> None:
        self.store.save_cursor(self.key, self.cursor)
        self._last_save = time.monotonic()
        self._dirty = False

    def _fail(self, exc: OSError) -> None:
        """Stops recording after a write error: what was not written stays in the journal, from
        the cursor last saved, for whoever records next."""
        self.failure = f"results store: {exc.strerror or exc}"
        self.failed_at = time.monotonic()
        for writer in self._writers.values():
            writer.abandon()
        self._writers.clear()
        self._drop_lock()

    @property
    def recorded_seq(self) -> int:
        """How far this recorder has recorded its instance's journal (0 when it records none)."""
        return int(self.cursor.get("seq", 0)) if self.active else 0

    def _drop_lock(self) -> None:
        if self._lock is not None:
            try:
                self._lock.close()
            except OSError:
                pass
        self._lock = None
        self.cursor = {}
        self._dirty = False

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            self._flush()
            for writer in self._writers.values():
                writer.close()
        except OSError as exc:
            self._fail(exc)
            return
        self._writers.clear()
        self._drop_lock()
