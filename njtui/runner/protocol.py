"""Client side of the runtime agent protocol (docs/protocol.md)."""

from __future__ import annotations

import json
import secrets
from typing import Any

PROTOCOL = 1

# Messages a relay adds that are not the agent's (they carry no seq and are not journaled).
AGENT_STDERR = "agent_stderr"
RUNTIME_EXIT = "runtime_exit"
# The reason in the `done` of a cell that a `shutdown` request ended (both agents say it).
STOPPED_MID_CELL = "the runtime was stopped"
# Answers to one client's request, matched to it by `id`: no seq, not journaled, never replayed.
COMPLETION = "completion"  # {"type":"completion","id":ID,"matches":[...],"start":N,"end":N}
UNSUPPORTED = "unsupported"  # {"type":"unsupported","id":ID,"op":OP}: an op this agent does not know


def new_exec_id() -> str:
    return secrets.token_hex(6)


def encode(request: dict[str, Any]) -> bytes:
    return (json.dumps(request, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def execute_request(exec_id: str, code: str, meta: dict[str, Any]) -> dict[str, Any]:
    # Key order is part of the contract with the bash agent, which scans rather than parses.
    return {"op": "execute", "exec": exec_id, "code": code, "meta": meta}


def complete_request(request_id: str, code: str, cursor: int) -> dict[str, Any]:
    """Completions at `cursor` (characters into `code`); the answer is a COMPLETION message
    whose `start`..`end` is the range of `code` each match replaces. `request_id`: letters,
    digits and `_.:-`, at most 128 (the bash agent refuses others); `new_exec_id()` fits."""
    # Key order is part of the contract with the bash agent, which scans rather than parses.
    return {"op": "complete", "id": request_id, "code": code, "cursor": cursor}


def decode(line: bytes) -> dict[str, Any]:
    return json.loads(line.decode("utf-8", "replace"))


_EXIT_WORDS = {"idle": "stopped: idle timeout", "shutdown": "stopped", "stdin closed": "stopped: its input closed"}


def exit_words(exit_message: dict[str, Any]) -> str:
    """The reason of an agent's `exit` message, as the panel and the log say it. An agent that
    could not do its job (`"error": true`: the Jupyter bridge without its kernel, or its kernel
    died) gives its own sentence, which does not start with "stopped": the runtime turns red."""
    reason = exit_message.get("reason")
    if exit_message.get("error") is True:
        return str(reason or "the agent failed")
    return _EXIT_WORDS.get(reason or "", f"stopped: {reason}")
