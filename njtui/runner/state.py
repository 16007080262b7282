"""Runtime states, as the reference names them, and the moves between them.

stopped (grey) → booting (yellow; sub-phases such as Starting, Preparing Download,
Downloading, Restoring, Uploading) → running (green) → stopped, or error (red, with the reason
in words) from booting or running. A restart goes running → stopped → booting: the old runtime
is gone before the next one boots. A client attaching to a runtime another process booted goes
from stopped (or error) straight to running. Any other move is a bug and raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class RuntimeState(str, Enum):
    STOPPED = "stopped"
    BOOTING = "booting"
    RUNNING = "running"
    ERROR = "error"


# Moves to another state; staying in one (a new phase, busy/idle) is always allowed.
ALLOWED = {
    RuntimeState.STOPPED: {RuntimeState.BOOTING, RuntimeState.RUNNING, RuntimeState.ERROR},
    # Stopped from booting: a boot given up on (a Swarm runtime no node could hold).
    RuntimeState.BOOTING: {RuntimeState.RUNNING, RuntimeState.ERROR, RuntimeState.STOPPED},
    RuntimeState.RUNNING: {RuntimeState.STOPPED, RuntimeState.ERROR},
    RuntimeState.ERROR: {RuntimeState.BOOTING, RuntimeState.RUNNING, RuntimeState.STOPPED},
}


class TransitionError(RuntimeError):
    pass


@dataclass
class RuntimeStatus:
    state: RuntimeState = RuntimeState.STOPPED
    phase: str | None = None  # the booting sub-state
    progress: dict[str, Any] = field(default_factory=dict)  # e.g. {"done": bytes, "total": bytes}
    reason: str | None = None  # why it stopped or failed, in words
    since: float = field(default_factory=time.time)
    busy: bool = False
    idle_since: float | None = None
    backend: str | None = None
    pid: int | None = None
    node: str | None = None  # the cluster node it runs on (a Swarm runtime)

    def moved(self, state: RuntimeState, **changes: Any) -> RuntimeStatus:
        if state != self.state and state not in ALLOWED[self.state]:
            raise TransitionError(f"a runtime cannot go from {self.state.value} to {state.value}")
        keep: dict[str, Any] = {"backend": self.backend, "pid": self.pid, "node": self.node} if state == self.state or state == RuntimeState.RUNNING else {}
        base: dict[str, Any] = {"state": state, "since": time.time() if state != self.state else self.since, **keep}
        if state == self.state:
            base.update(busy=self.busy, idle_since=self.idle_since, phase=self.phase, progress=self.progress, reason=self.reason)
        base.update(changes)
        return RuntimeStatus(**base)

    def describe(self) -> str:
        if self.state == RuntimeState.BOOTING:
            text = self.phase or "booting"
            done, total = self.progress.get("done"), self.progress.get("total")
            if total:
                text += f" {done or 0}/{total}"
            return text
        if self.state == RuntimeState.RUNNING:
            return "busy" if self.busy else "idle"
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value


def stopped_reason(words: str) -> str | None:
    """The reason a stopped runtime shows, from the words its end came with ("stopped",
    "stopped: idle timeout"): shown after the state, which says "stopped" already, so a plain
    stop has none and the others lose the prefix ("idle timeout"). Words that say more than
    the state ("stopped by njtui runtimes stop") are kept whole."""
    if words == RuntimeState.STOPPED.value:
        return None
    return words.removeprefix(f"{RuntimeState.STOPPED.value}: ") or None
