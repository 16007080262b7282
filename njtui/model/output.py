"""What one execution of a cell produced: its record and its ordered output events.

Events are the agent protocol's messages (see docs/protocol.md): `stream` (stdout/stderr
text), `result` (the value of a last bare expression), `display`, `update_display` and
`clear_output` (Jupyter's rich outputs, MIME bundles), `error` (exception or failing exit
status), in the order the runtime produced them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from njtui.model.terminal_text import sanitize

EXEC_STATUSES = ("queued", "running", "ok", "error", "interrupted", "lost")
# The protocol's messages that are an execution's output, kept in the results store and shown:
# text, values and rich displays (MIME bundles), and what changes the displays shown before.
OUTPUT_EVENTS = ("stream", "result", "error", "display", "update_display", "clear_output")
FINISHED_STATUSES = ("ok", "error", "interrupted", "lost")


@dataclass
class ExecutionRecord:
    cell: str
    version: int
    exec_id: str
    runtime: str
    status: str = "running"
    count: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None
    source_hash: str | None = None
    exit_code: int | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    events: int = 0
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def is_stale_for(self, current_source_hash: str) -> bool:
        return self.source_hash is not None and self.source_hash != current_source_hash

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **{k: v for k, v in data.items() if v is not None}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionRecord:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
        )


def terminal_safe(text: str, keep: str = "\t", colours: bool = False) -> str:
    """`text` as characters only: nothing in it can drive the terminal it is drawn on. `keep`:
    control characters let through (a line's tab; "\t\n\r" for a stream written as it is);
    `colours`: colour and style sequences (SGR) too, which change nothing but the look. The
    escape grammar is njtui.model.terminal_text's, which also plays output as a terminal would."""
    if text.isprintable():
        return text
    return sanitize(text, keep=keep, colours=colours)


def bundle_text(data: dict[str, Any]) -> str:
    """A MIME bundle as text, for where only text can go (a pipe, a log): Markdown and JSON are
    text already, and say more than the text/plain beside them (for IPython's Markdown or JSON
    objects, "<IPython.core.display.Markdown object>"); else text/plain, else the LaTeX
    source, else a note of what it holds."""
    if isinstance(data.get("text/markdown"), str):
        return data["text/markdown"]
    if "application/json" in data:
        return json.dumps(data["application/json"], indent=2, ensure_ascii=False)
    for mime in ("text/plain", "text/latex"):
        value = data.get(mime)
        if isinstance(value, str):
            return value
    kinds = ", ".join(sorted(str(mime) for mime in data)) or "nothing"
    return f"[{kinds}]"


def is_json_mime(mime: str) -> bool:
    """nbformat's rule: these types hold a JSON value, every other one a string."""
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def display_id_of(event: dict[str, Any]) -> str | None:
    """The display id of a `display`, `update_display` or `result` event, if it has a usable one."""
    display_id = event.get("display_id")
    return display_id if isinstance(display_id, str) and display_id else None
