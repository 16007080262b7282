"""Execution counts as Jupyter users read them: one counter per notebook, across its runtimes,
their restarts and every njtui process, never reset (the agents' own counters start at 1 in
each runtime, so three runtimes would all show [1]).

`counts.jsonl` in the results directory gives each execution id its count, one line each,
appended under the lock `counts.lock`, so counts only grow and no two executions share one,
whichever processes ask at the same time. Whoever first sees an execution start gets the next
count; every later asker (a second client of the same runtime, a replay after reattaching, the
recording of a journal nobody was attached to) gets the same one. A store that has no counts
yet (one written before them) goes on from the highest count its records hold.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from pathlib import Path

from njtui.store.results_io import open_append, replace_beneath, tail_lines, write_all
from njtui.store.results_paths import ResultsDirectory
from njtui.store.results_records import parsed

# The log is cut back to this many lines once it holds twice as many: the executions that are
# still asked about (running, or replayed on attach) are the recent ones, and an older one's
# count is in its stored record.
COUNTS_KEEP = 1000
_LOG_READ_LIMIT = 1 << 20
# Counts from a results directory anyone may have written: a huge one would only make every
# later count huge, so such lines are passed over.
_COUNT_LIMIT = 1 << 40
# Counts this process remembers by execution id: its own executions ask several times each.
_REMEMBERED = 4096


def _valid_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < _COUNT_LIMIT


class ExecutionCounts(ResultsDirectory):
    """The counts part of a results store (see the module's docstring)."""

    def __init__(self, notebook_path: Path | str) -> None:
        super().__init__(notebook_path)
        # One allocation at a time in this process too: the file lock is per open file, and
        # the remembered counts are shared by every reader thread of a runner.
        self._counts_lock = threading.Lock()
        self._remembered: dict[str, int] = {}
        self._highest_seen = 0

    # Where a store's records are read: ResultsStore gives them.
    def recorded_count(self, cell_id: str, exec_id: str) -> int | None:
        """The count the stored record of an execution has, if any."""
        return None

    def highest_recorded_count(self) -> int:
        """The highest count among the stored records."""
        return 0

    def execution_count(self, exec_id: str, cell_id: str | None = None) -> int:
        """The notebook's count of execution `exec_id` (of cell `cell_id`, when known): the one it
        was given already, by any client, else the next one."""
        with self._counts_lock:
            count = self._remembered.get(exec_id)
            if count is None:
                try:
                    count = self._allocate(exec_id, cell_id)
                except OSError:
                    # The store cannot be written (a full disk, a read-only file system): the
                    # cell still gets a number, counted on from what this process has seen.
                    count = self._highest_seen + 1
                self._remember(exec_id, count)
            return count

    def known_count(self, exec_id: str) -> int | None:
        """The count an execution was given, or None: it never started (a queued cell that an
        interrupt dropped), or nobody could write the store when it did."""
        with self._counts_lock:
            count = self._remembered.get(exec_id)
            if count is None:
                count = _logged_count(self._read_log(), exec_id)
                if count is not None:
                    self._remember(exec_id, count)
            return count

    def _remember(self, exec_id: str, count: int) -> None:
        if len(self._remembered) >= _REMEMBERED:
            del self._remembered[next(iter(self._remembered))]
        self._remembered[exec_id] = count
        self._highest_seen = max(self._highest_seen, count)

    def _counts_path(self, suffix: str) -> Path:
        return self.root / f"counts{suffix}"

    def _read_log(self) -> bytes:
        """The log's complete lines (its last _LOG_READ_LIMIT bytes: it is cut back long before)."""
        if not self._is_real_dir():
            return b""
        return b"".join(line + b"\n" for line in reversed(tail_lines(self._counts_path(".jsonl"), _LOG_READ_LIMIT, beneath=self.root)))

    def _allocate(self, exec_id: str, cell_id: str | None) -> int:
        self._real_dir()
        lock = open_append(self._counts_path(".lock"), create=True, beneath=self.root)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            log = self._read_log()
            count = _logged_count(log, exec_id)
            if count is not None:
                return count
            if cell_id is not None:
                # An execution recorded before the log had it (or cut from it): its record's.
                recorded = self.recorded_count(cell_id, exec_id)
                if recorded is not None:
                    return recorded
            highest = _highest_logged(log) if log else self.highest_recorded_count()
            count = max(highest, self._highest_seen) + 1
            self._append(log, exec_id, count)
            return count
        finally:
            os.close(lock)

    def _append(self, log: bytes, exec_id: str, count: int) -> None:
        """Adds a line (under the lock); cuts the log back once it has grown to twice COUNTS_KEEP."""
        path = self._counts_path(".jsonl")
        line = _line(exec_id, count)
        if log.count(b"\n") + 1 >= 2 * COUNTS_KEEP:
            kept = [_line(each, n) for each, n in _entries(log)][-(COUNTS_KEEP - 1) :]
            replace_beneath(self.root, path, b"".join(kept) + line)
            return
        fd = open_append(path, create=True, beneath=self.root)
        try:
            end = os.fstat(fd).st_size
            # A write cut short (a full disk) left half a line: start on a line of our own.
            prefix = b"\n" if end and os.pread(fd, 1, end - 1) != b"\n" else b""
            write_all(fd, prefix + line)
        finally:
            os.close(fd)


# The log is read on every execution's start: it is searched as bytes, and only the lines that
# can matter are parsed (a results directory is shared, so each is checked when it is).
_COUNT_FIELD = re.compile(rb'"count": ?([0-9]{1,16})[,}]')


def _line(exec_id: str, count: int) -> bytes:
    return (json.dumps({"exec": exec_id, "count": count}) + "\n").encode()


def _entries(log: bytes) -> list[tuple[str, int]]:
    """(execution id, count) of the log's lines, oldest first; lines that are not such a pair
    are passed over."""
    entries = []
    for line in log.splitlines():
        entry = parsed(line)
        if entry is not None and isinstance(entry.get("exec"), str) and _valid_count(entry.get("count")):
            entries.append((entry["exec"], entry["count"]))
    return entries


def _logged_count(log: bytes, exec_id: str) -> int | None:
    """The count the log gives `exec_id`, if it has a line for it."""
    needle = json.dumps(exec_id).encode()
    if needle not in log:
        return None
    lines = b"\n".join(line for line in log.splitlines() if needle in line)
    return next((count for each, count in reversed(_entries(lines)) if each == exec_id), None)


def _highest_logged(log: bytes) -> int:
    """The highest count in the log: its last line's, unless anything else wrote to it."""
    counts = [int(found) for found in _COUNT_FIELD.findall(log)]
    return max((count for count in counts if _valid_count(count)), default=0)
