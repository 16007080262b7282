"""What every runtime backend offers the runner: one small interface.

A backend starts a runtime for a notebook's runtime spec, finds runtimes that any njtui process
started (they outlive their clients), opens connections that speak the agent protocol, stops
them, and hands over the journal of a runtime that ended while nobody was attached.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

from njtui.model import RuntimeSpec
from njtui.runner import protocol

if TYPE_CHECKING:
    from njtui.runner.launch import Launch


class BackendError(Exception):
    """A runtime could not be started or reached; the message says why in words."""


@dataclass
class RuntimeInfo:
    key: str
    notebook: str
    runtime_id: str
    backend: str
    language: str
    environment: str
    idle_timeout: float
    started_at: float
    alive: bool = True
    pid: int | None = None
    instance: str | None = None
    exit_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# (phase, detail) while a runtime boots: e.g. ("Downloading", {"done": n, "total": m}).
ProgressCallback = Callable[[str, dict[str, Any]], None]


class Connection(Protocol):
    def send(self, request: dict[str, Any]) -> None: ...
    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def start(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, progress: ProgressCallback | None = None) -> RuntimeInfo: ...
    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None: ...
    def list(self) -> list[RuntimeInfo]: ...
    def connect(self, info: RuntimeInfo) -> Connection: ...
    def stop(self, info: RuntimeInfo, timeout: float = 5.0) -> None: ...
    def ended(self, notebook_path: str) -> list[RuntimeInfo]: ...
    def journal(self, info: RuntimeInfo) -> Iterator[dict[str, Any]]: ...
    def discard(self, info: RuntimeInfo) -> None: ...
    def collect_files(self, info: RuntimeInfo, staged: list[dict[str, Any]]) -> Iterator[tuple[str, IO[bytes]]]: ...


_STAGED_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{1,9}$")


def staged_files(staged: Any) -> Iterator[tuple[str, str]]:
    """(name under /results, name of its staged copy) for each file a `done` message lists.
    The message comes from inside the runtime: names that are not plain relative paths, and
    staged names that are not the agent's own, are skipped."""
    for entry in staged if isinstance(staged, list) else []:
        if not isinstance(entry, dict):
            continue
        name, staged_name = entry.get("name"), entry.get("staged")
        if not isinstance(name, str) or not isinstance(staged_name, str) or not _STAGED_NAME.match(staged_name):
            continue
        parts = name.split("/")
        if name.startswith("/") or "\0" in name or any(part in ("", ".", "..") for part in parts):
            continue
        yield name, staged_name


class SocketConnection:
    """A stream socket carrying protocol lines; close() unblocks a thread reading it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._send_lock = threading.Lock()

    def send(self, request: dict[str, Any]) -> None:
        data = protocol.encode(request)
        with self._send_lock:
            self._sock.sendall(data)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in self._reader:
                yield protocol.decode(line)
        except (OSError, ValueError):
            return

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
