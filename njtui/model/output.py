"""What one execution of a cell produced: its record and its ordered output events.

Events are the agent protocol's messages (see docs/protocol.md): `stream` (stdout/stderr
text), `result` (the value of a last bare expression), `error` (exception or failing exit
status), in the order the runtime produced them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

EXEC_STATUSES = ("queued", "running", "ok", "error", "interrupted", "lost")
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


# Output is untrusted: escape sequences in it would reach the terminal it is drawn on and move
# the cursor over other text, retitle the window or write the clipboard. Sequences are removed
# whole (OSC and DCS-like strings up to their terminator), then every other control character.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: title, clipboard, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI: cursor moves, colours, erasing
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # the same as one 8-bit code
    r"|\x1b[ -/]*[0-~]?"  # any other escape
)
_CONTROLS = (*range(0x20), 0x7F, *range(0x80, 0xA0))


_SGR = re.compile(r"\x1b\[[0-9;:]*m")


def terminal_safe(text: str, keep: str = "\t", colours: bool = False) -> str:
    """`text` as characters only: nothing in it can drive the terminal it is drawn on. `keep`:
    control characters let through (a line's tab; "\t\n\r" for a stream written as it is);
    `colours`: colour and style sequences (SGR) too, which change nothing but the look."""
    if text.isprintable():
        return text
    if colours:
        cleaned = _ESCAPE_SEQUENCE.sub(lambda match: match.group() if _SGR.fullmatch(match.group()) else "", text)
        controls = {code: None for code in _CONTROLS if chr(code) not in keep and code != 0x1B}
        # Only an SGR's ESC is left; any other ESC went with its sequence.
        return cleaned.translate(controls)
    return _ESCAPE_SEQUENCE.sub("", text).translate({code: None for code in _CONTROLS if chr(code) not in keep})
