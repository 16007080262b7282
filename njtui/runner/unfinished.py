"""The executions a runner sent that have not ended yet, and which runtime instance has each.

Every execution a runner accepts gets exactly one `done`. A session that ends reports its open
cells lost; a detached client learns the end of its cells from the journal replay when it
attaches again. What neither covers — cells of a runtime that ended, or was replaced, while this
client was detached — is settled from the results store when the runtime's next session opens.
"""

from __future__ import annotations

import threading


class Unfinished:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._execs: dict[str, tuple[str, str | None, str]] = {}  # exec id → (runtime, instance, cell)

    def expect(self, exec_id: str, runtime_id: str, instance: str | None, cell_id: str) -> None:
        with self._lock:
            self._execs[exec_id] = (runtime_id, instance, cell_id)

    def ended(self, exec_id: str) -> bool:
        """Marks one ended; whether it was still waiting (a second `done` finds it gone)."""
        with self._lock:
            return self._execs.pop(exec_id, None) is not None

    def of_other_instances(self, runtime_id: str, instance: str | None) -> list[tuple[str, str]]:
        """(exec id, cell id) of the runtime's unfinished executions sent to another instance."""
        with self._lock:
            return [(exec_id, cell) for exec_id, (runtime, sent_to, cell) in self._execs.items() if runtime == runtime_id and sent_to != instance]
