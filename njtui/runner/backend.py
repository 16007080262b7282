"""The contract every runtime backend implements, and the types it speaks in.

A backend starts a runtime for a notebook's runtime spec, finds runtimes that any njtui process
started (they outlive their clients), opens connections that speak the agent protocol, stops
them, and hands over the journal of a runtime that ended while nobody was attached. The runner
uses backends only through `Backend`; what only some backends can do is declared in
`capabilities`, never probed. `docs/backends.md` shows how to add one.
"""

from __future__ import annotations

import builtins
import re
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol

from njtui.model import RuntimeSpec
from njtui.runner import protocol

if TYPE_CHECKING:
    from njtui.runner.launch import Launch


class BackendError(Exception):
    """A runtime could not be started or reached; the message says why in words."""


class BootCancelled(BackendError):
    """A runtime's boot was given up on purpose (a stop while it booted): it is stopped, not failed.
    A backend's `progress` callback raises it; a backend lets it through."""


class BackendUnavailable(BackendError):
    """What a backend needs is not on this machine and nothing configured it (no Docker engine
    where none is set up): listing all runtimes says nothing about it; using it still fails."""


class EngineGone(BackendError):
    """The engine a runtime's `engine` (or a remembered placement) names is named by nothing
    here any more: a Docker context that was removed. Nothing can run there for njtui to find,
    so what is remembered about it is forgotten once this is said."""


class StateRefused(BackendError):
    """A backend's own state on this machine failed its privacy check (njtui.runner.private:
    another user's directory, one open to all, a link): refused, never used; the message says
    why and what to do. Listing or stopping runtimes says it and fails."""


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


# Optional capabilities a backend declares in `Backend.capabilities`.
# Lists the exited runtimes of notebooks that were moved or deleted (`orphans`): kept for their
# journal, nobody would come back for them.
ORPHANS = "orphans"
# Writes the changed files of read-write S3 mounts back after each cell (`write_back`).
WRITE_BACK = "write_back"
# Runs environments that are images: lists, checks and reads them (`local_images`,
# `check_image`, `image_env`).
IMAGES = "images"


class Backend(ABC):
    """One way of running runtimes (host processes, Docker containers, ...).

    Every method may block; the runner calls them from worker threads. Failures a person can act
    on raise `BackendError` with the reason in words. A runtime is identified by `RuntimeInfo`:
    whatever a backend needs to find it again goes in its `key`, `instance` and `details`.
    """

    #: The name it is registered under, and the name a runtime's `backend` key gives.
    name: ClassVar[str]
    #: What it can do beyond the contract: a subset of ORPHANS, WRITE_BACK, IMAGES.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    @abstractmethod
    def start(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, progress: ProgressCallback | None = None) -> RuntimeInfo:
        """Boots a runtime for `spec` with the resolved `launch` settings and returns once its
        agent is up. `progress(phase, detail)` reports long steps (e.g. "Downloading" with
        byte counts). The runtime must outlive this process: it ends itself when idle."""

    @abstractmethod
    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None:
        """The running runtime of this notebook's `runtime_id`, started by any process; None if none."""

    @abstractmethod
    def list(self) -> builtins.list[RuntimeInfo]:
        """Every running runtime of this backend on this machine, of any notebook."""

    @abstractmethod
    def connect(self, info: RuntimeInfo) -> Connection:
        """A new connection to a running runtime's agent. It answers `{"op": "attach", "since":
        seq}` by replaying the journal from `seq`, then carries live messages; when the runtime
        ends it yields a `protocol.RUNTIME_EXIT` message whose reason starts with "stopped" for
        an orderly stop (anything else reads as a crash) and ends."""

    def interrupt(self, connection: Connection) -> None:
        """Interrupts the cell a runtime is running; its agent ends it as interrupted."""
        connection.send({"op": "interrupt"})

    @abstractmethod
    def stop(self, info: RuntimeInfo, timeout: float = 5.0) -> None:
        """Stops a runtime: its agent ends a running cell as stopped and exits; after `timeout`
        it is killed. Connected clients see the connection end. Stopping one already gone is fine."""

    @abstractmethod
    def ended(self, notebook_path: str) -> builtins.list[RuntimeInfo]:
        """This notebook's runtimes that ended while no client was attached and whose journal
        was not yet recorded."""

    @abstractmethod
    def journal(self, info: RuntimeInfo) -> Iterator[dict[str, Any]]:
        """Every message an ended (or running) runtime journaled, in order."""

    @abstractmethod
    def discard(self, info: RuntimeInfo) -> None:
        """Lets go of what an ended runtime left (journal, directory, container) once recorded."""

    @abstractmethod
    def collect_files(self, info: RuntimeInfo, staged: builtins.list[dict[str, Any]]) -> Iterator[tuple[str, IO[bytes]]]:
        """(name under /results, readable file) for the copies an agent staged for a `done`
        (the `files` it lists; see `staged_files`)."""

    # -- optional capabilities: called only when declared in `capabilities`
    def orphans(self) -> builtins.list[RuntimeInfo]:
        """ORPHANS: exited runtimes whose notebook is gone (`njtui runtimes` lists them, stop removes them)."""
        raise NotImplementedError(f"the {self.name} backend does not declare {ORPHANS!r}")

    def write_back(self, info: RuntimeInfo, mount: Any, credentials: dict[str, str]) -> builtins.list[str]:
        """WRITE_BACK: sends a read-write S3 mount's changed files back; the keys written."""
        raise NotImplementedError(f"the {self.name} backend does not declare {WRITE_BACK!r}")

    def local_images(self) -> builtins.list[dict[str, Any]]:
        """IMAGES: the images this machine has, for the environment picker."""
        raise NotImplementedError(f"the {self.name} backend does not declare {IMAGES!r}")

    def check_image(self, reference: str) -> str:
        """IMAGES: where an image would come from (here, or a registry), or BackendError why not."""
        raise NotImplementedError(f"the {self.name} backend does not declare {IMAGES!r}")

    def image_env(self, reference: str) -> dict[str, str]:
        """IMAGES: the environment variables an image sets."""
        raise NotImplementedError(f"the {self.name} backend does not declare {IMAGES!r}")


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
