"""What the commands print that may come from someone else: the output of executions, shared
by `run` and `show`, and values from containers and results directories, made inert on a
terminal."""

from __future__ import annotations

import json
import os
import sys
from itertools import groupby
from typing import Any, TextIO

from njtui.model import format_duration
from njtui.model.output import bundle_text, terminal_safe
from njtui.model.terminal_text import OutputLines, strip_sgr


class TextPrinter:
    """Output as the cell wrote it; on a terminal, without the escape sequences that would drive
    it (cursor moves, titles, the clipboard): output may come from someone else's notebook or
    results. Colours stay. A pipe gets the bytes unchanged.

    `played` (stored output, `njtui show`): output is played as a terminal shows it, line by
    line (`\r` and erasing applied, so a progress bar is its last state; every escape but
    colours dropped), with colours on a terminal and as plain text elsewhere."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, played: bool = False) -> None:
        self.out, self.err = out, err
        self.color = err.isatty() and "NO_COLOR" not in os.environ
        self._guarded = {id(stream) for stream in (out, err) if stream.isatty()}
        self._lines: OutputLines | None = OutputLines() if played else None

    def _write(self, stream: TextIO, text: str) -> None:
        if id(stream) in self._guarded:
            text = terminal_safe(text, keep="\t\n\r", colours="NO_COLOR" not in os.environ)
        stream.write(text)

    def _play(self, kind: str, text: str) -> None:
        assert self._lines is not None
        self._print_lines(self._lines.feed(kind, text))

    def _print_lines(self, lines: list[tuple[str, str]]) -> None:
        coloured = "NO_COLOR" not in os.environ
        # Consecutive lines to one stream go in one write; the streams keep their order.
        for to_err, run in groupby(lines, key=lambda entry: entry[0] in ("stderr", "error")):
            stream = self.err if to_err else self.out
            if to_err:
                self.out.flush()
            # Lines are sanitised already: only their colours are left to keep or drop.
            keep = coloured and id(stream) in self._guarded
            stream.write("".join((line if keep else strip_sgr(line)) + "\n" for _, line in run))
            stream.flush()

    def _end_played(self) -> None:
        if self._lines is not None:
            self._print_lines(self._lines.end())
            self._lines = OutputLines()

    def _dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[0m" if self.color else text

    def start(self, cell_id: str, label: str, count: int | None) -> None:
        self.out.flush()
        self.err.write(self._dim(f"── {cell_id} · {label}" + (f" · [{count}]" if count else "") + " ──") + "\n")
        self.err.flush()

    def event(self, cell_id: str, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if self._lines is not None:
            if kind == "stream":
                self._play("stderr" if message.get("name") == "stderr" else "stdout", message.get("text", ""))
            elif kind in ("result", "display"):
                self._play("result", bundle_text(message.get("data") or {}) + "\n")
            elif kind == "error" and message.get("traceback"):
                self._play("error", message["traceback"] if message["traceback"].endswith("\n") else message["traceback"] + "\n")
            return
        if kind == "stream":
            stream = self.err if message.get("name") == "stderr" else self.out
            if stream is self.err:
                self.out.flush()
            self._write(stream, message.get("text", ""))
            stream.flush()
        elif kind in ("result", "display"):
            # A pipe gets text: an update of a display already printed, or a clearing, has no
            # place in text that has gone by.
            self._write(self.out, bundle_text(message.get("data") or {}) + "\n")
            self.out.flush()
        elif kind == "error" and message.get("traceback"):
            self.out.flush()
            self._write(self.err, message["traceback"] if message["traceback"].endswith("\n") else message["traceback"] + "\n")
            self.err.flush()

    def done(self, cell_id: str, status: str, duration: float | None, reason: str | None = None, extra: str = "") -> None:
        self._end_played()
        self.out.flush()
        mark = {"ok": "✓", "error": "✗", "interrupted": "■", "lost": "✗"}.get(status, "·")
        text = f"{mark} {cell_id} {status}"
        if duration is not None:
            text += f" in {format_duration(duration)}"
        if reason:
            text += f" ({terminal_safe(reason)})"
        self.err.write(self._dim(text + extra) + "\n")
        self.err.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


class JsonPrinter:
    """JSON Lines: one event per line, in the order the runtime produced them."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def _write(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.out.flush()

    def start(self, cell_id: str, label: str, count: int | None, **extra: Any) -> None:
        self._write({"event": "start", "cell": cell_id, "count": count, "label": label, **extra})

    def event(self, cell_id: str, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "stream":
            self._write({"event": "stream", "cell": cell_id, "name": message.get("name"), "text": message.get("text", "")})
        elif kind == "result":
            self._write({"event": "result", "cell": cell_id, "count": message.get("count"), "data": message.get("data", {}), "metadata": message.get("metadata") or {}})
        elif kind in ("display", "update_display"):
            self._write({"event": kind, "cell": cell_id, "data": message.get("data", {}), "metadata": message.get("metadata") or {}, "display_id": message.get("display_id")})
        elif kind == "clear_output":
            self._write({"event": "clear_output", "cell": cell_id, "wait": bool(message.get("wait"))})
        elif kind == "error":
            self._write({"event": "error", "cell": cell_id, "ename": message.get("ename"), "evalue": message.get("evalue"), "traceback": message.get("traceback", "")})
        elif kind == "files":
            self._write({"event": "files", "cell": cell_id, "version": message.get("version"), "files": message.get("files", [])})

    def done(self, cell_id: str, status: str, duration: float | None, reason: str | None = None, **extra: Any) -> None:
        event = {"event": "done", "cell": cell_id, "status": status, "duration": duration}
        if reason:
            event["reason"] = reason
        event.update({k: v for k, v in extra.items() if v is not None})
        self._write(event)

    def note(self, text: str) -> None:
        sys.stderr.write(text + "\n")


def safe(text: str | None) -> str:
    """A value from a container label or a boot board entry, which any process of the user (or
    any image's author, for labels) may have written: inert on a terminal."""
    return terminal_safe(text or "")


def printable(text: str) -> str:
    """A name from a results directory as it may reach a terminal: escapes stay inert."""
    return text if text.isprintable() else ascii(text)[1:-1]
