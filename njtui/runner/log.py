"""The runner log: what the runtimes do (start, stop, attach, interrupt, errors, agent stderr).

Entries go to listeners as they happen (the TUI's log panel), to a bounded in-memory history
(for a panel opened later), and, when a path is given, to a file.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from njtui.dirs import make_dirs

HISTORY = 5000


@dataclass(frozen=True)
class LogEntry:
    at: float
    runtime: str | None
    level: str  # info | warning | error | agent
    text: str

    def format(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        return f"{stamp} {self.level:<7} {self.runtime or '-':<10} {self.text}"


class RunnerLog:
    def __init__(self, path: Path | None = None) -> None:
        self.history: deque[LogEntry] = deque(maxlen=HISTORY)
        self._listeners: list[Callable[[LogEntry], None]] = []
        self._lock = threading.Lock()
        self._file = None
        if path is not None:
            make_dirs(path.parent)  # njtui's own: 0700, with any made above it
            self._file = open(path, "a", encoding="utf-8")

    def subscribe(self, listener: Callable[[LogEntry], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[LogEntry], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def write(self, runtime: str | None, text: str, level: str = "info") -> LogEntry:
        entry = LogEntry(time.time(), runtime, level, text.rstrip("\n"))
        with self._lock:
            self.history.append(entry)
            if self._file is not None:
                self._file.write(entry.format() + "\n")
                self._file.flush()
        for listener in list(self._listeners):
            listener(entry)
        return entry

    def info(self, runtime: str | None, text: str) -> None:
        self.write(runtime, text, "info")

    def warning(self, runtime: str | None, text: str) -> None:
        self.write(runtime, text, "warning")

    def error(self, runtime: str | None, text: str) -> None:
        self.write(runtime, text, "error")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
