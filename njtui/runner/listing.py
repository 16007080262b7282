"""Every runtime on this machine, of any notebook, as `njtui runtimes` lists and stops them."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from njtui.model.size import format_size
from njtui.runner.backend import ORPHANS, Backend, BackendError, BackendUnavailable, EngineGone, RuntimeInfo, StateRefused
from njtui.runner.boot_board import BootBoard
from njtui.runner.paths import open_private_root, runtime_root
from njtui.runner.private import NotPrivateError, PrivateDir

# How long `Runner.list_runtimes` waits for the runtimes to say whether they are busy.
STATUS_TIMEOUT = 2.0
# Why the clients attached to a runtime that `stop_runtimes` stopped see it end.
STOPPED_BY_COMMAND = "stopped by njtui runtimes stop"
# A stop note outlives every runtime it can be about by far: older ones are removed.
STOP_NOTE_RETENTION = 86400.0


@dataclass
class RuntimeEntry:
    """One runtime on this machine, of any notebook, as `njtui runtimes` lists it."""

    key: str
    notebook: str
    runtime: str
    backend: str
    environment: str
    language: str
    # The engine it runs on, as its runtime's `engine` setting names it; None: the default one.
    engine: str | None
    # running | booting (in another process) | exited (a container kept for its journal) |
    # what a runtime that did not answer in time is: unknown
    state: str
    busy: bool = False
    pid: int | None = None
    idle_for: float | None = None
    uptime: float | None = None
    phase: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None  # the boot phase with its byte counts
    exit_reason: str | None = None
    # Its notebook is not at its path any more (moved or deleted): no client will come back for
    # it, so an exited one would stay forever unless stopped.
    notebook_missing: bool = False
    node: str | None = None  # the cluster node it runs on (a Swarm runtime)
    _handle: tuple[Backend, RuntimeInfo] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, backend: Backend, info: RuntimeInfo, state: str, **details: Any) -> RuntimeEntry:
        """The entry of a runtime a backend reported, in `state`."""
        return cls(
            key=info.key,
            notebook=info.notebook,
            runtime=info.runtime_id,
            backend=info.backend,
            environment=info.environment,
            language=info.language,
            engine=info.details.get("engine"),
            node=info.details.get("node"),
            state=state,
            _handle=(backend, info),
            **details,
        )

    def matches(self, selector: str) -> bool:
        """Named by `selector`: its key, a prefix of it, or its runtime id."""
        return bool(selector) and (self.key.startswith(selector) or self.runtime == selector)

    def to_dict(self) -> dict[str, Any]:
        """The row of `njtui runtimes --json`."""
        row: dict[str, Any] = {
            "id": self.key,
            "notebook": self.notebook,
            "runtime": self.runtime,
            "backend": self.backend,
            "environment": self.environment,
            "language": self.language,
            "state": self.state,
        }
        if self.state == "booting":
            row.update(phase=self.phase, progress=self.progress, detail=self.detail)
        row.update(busy=self.busy, pid=self.pid, idle_for=self.idle_for, uptime=self.uptime)
        if self.exit_reason is not None:
            row["exit_reason"] = self.exit_reason
        if self.engine is not None:
            row["engine"] = self.engine
        if self.node is not None:
            row["node"] = self.node
        if self.notebook_missing:
            row["notebook_missing"] = True
        return row


@dataclass
class RuntimeListing:
    runtimes: list[RuntimeEntry]
    problems: list[str]  # backends whose runtimes could not be listed, and why, in words
    # Whether a backend's state here was refused as not private (StateRefused): the listing
    # is not whole, for a reason the user must act on, and the command fails.
    refused: bool = False


@dataclass
class RuntimeStops:
    stopped: list[RuntimeEntry]
    failed: list[tuple[RuntimeEntry, str]]  # and why
    problems: list[str]  # as in RuntimeListing: what could not even be looked at
    refused: bool = False  # as in RuntimeListing


def _notebook_missing(notebook: str) -> bool:
    return not os.path.exists(notebook)


def _activity(backend: Backend, info: RuntimeInfo, timeout: float) -> dict[str, Any]:
    """What a runtime answers to a status request (busy or idle, idle for how long); {} if it
    does not answer within `timeout`, as one going away while listed does not."""
    try:
        connection = backend.connect(info)
    except Exception:  # noqa: BLE001 - any way of not being reachable reads as "not answering"
        return {}
    answer: dict[str, Any] = {}

    def read() -> None:
        for message in connection:
            if message.get("type") == "status":
                answer.update(message)
                return

    try:
        # Attaching past the journal's end: only live messages, no replay of its history.
        connection.send({"op": "attach", "since": 1 << 62})
        connection.send({"op": "status"})
        reader = threading.Thread(target=read, name=f"njtui-status-{info.key}", daemon=True)
        reader.start()
        reader.join(timeout=timeout)
    except (BackendError, OSError):
        pass
    finally:
        connection.close()
    return dict(answer)


def _read_record(root: Path, path: Path) -> Any:
    """A private JSON record of this user's runtimes (`path`, in `root`); None when it is
    missing, unreadable or not private (then it is as if nothing was recorded)."""
    try:
        with open_private_root(root) as directory:
            return json.loads(directory.read(path.name))
    except (NotPrivateError, OSError, ValueError):
        return None


def _write_record(root: Path, path: Path, record: Any) -> None:
    try:
        with open_private_root(root) as directory:
            directory.write(path.name, json.dumps(record).encode())
    except (NotPrivateError, OSError):
        pass  # a record that can't be kept costs only what it is for (its users say what)


def _is_placement(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str) and all(isinstance(part, (str, type(None))) for part in entry[1:])


class KnownEngines:
    """The engines of their own that this user's runtimes were booted on (a runtime's `engine`
    setting), so that listing every runtime looks there too. One is forgotten once a listing
    finds nothing running on it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self.path = self.root / "engines.json"

    def _read(self) -> list[list[Any]]:
        known = _read_record(self.root, self.path)
        return [entry for entry in known if _is_placement(entry) and entry[1] is not None] if isinstance(known, list) else []

    def entries(self) -> list[tuple[str, str, str | None]]:
        """(backend name, engine, TLS directory) of each."""
        return [(entry[0], entry[1], entry[2]) for entry in self._read()]

    def add(self, backend: str, engine: str, engine_tls: str | None) -> None:
        known = self._read()
        if [backend, engine, engine_tls] not in known:
            # Missed by listings if it can't be written: each notebook still finds its own.
            _write_record(self.root, self.path, [*known, [backend, engine, engine_tls]])

    def forget(self, backend: str, engine: str, engine_tls: str | None) -> None:
        known = self._read()
        if [backend, engine, engine_tls] in known:
            _write_record(self.root, self.path, [entry for entry in known if entry != [backend, engine, engine_tls]])


# (backend name, engine, TLS directory): where a runtime runs; engine None: the backend's own.
Placement = tuple[str, str | None, str | None]


class Placements:
    """Where this user last booted each runtime, by runtime key. A runtime whose `engine` or
    environment is edited while it runs keeps running where it is until it is restarted (as
    any setting does): a later njtui process finds it, and stops it, there rather than booting
    a second one beside it."""

    LIMIT = 1000  # the oldest are let go: one that old has long shut itself down when idle

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self.path = self.root / "placements.json"

    def _read(self) -> dict[str, list[Any]]:
        record = _read_record(self.root, self.path)
        return {key: entry for key, entry in record.items() if isinstance(key, str) and _is_placement(entry)} if isinstance(record, dict) else {}

    def get(self, key: str) -> Placement | None:
        entry = self._read().get(key)
        return (entry[0], entry[1], entry[2]) if entry is not None else None

    def record(self, key: str, placement: Placement) -> None:
        placements = self._read()
        if placements.get(key) == list(placement):
            return
        placements.pop(key, None)  # re-added last: the newest stay
        placements[key] = list(placement)
        _write_record(self.root, self.path, dict(list(placements.items())[-self.LIMIT :]))

    def forget(self, key: str, placement: Placement) -> None:
        placements = self._read()
        if placements.get(key) == list(placement):
            del placements[key]
            _write_record(self.root, self.path, placements)

    def forget_engine(self, backend: str, engine: str, engine_tls: str | None) -> None:
        """Every placement on an engine that is gone (EngineGone)."""
        placements = self._read()
        kept = {key: entry for key, entry in placements.items() if entry != [backend, engine, engine_tls]}
        if len(kept) != len(placements):
            _write_record(self.root, self.path, kept)


def _every_backend(backends: Mapping[str, Backend]) -> Iterator[tuple[str, Callable[[], Backend], tuple[str, str, str | None] | None]]:
    """(what, a getter, the known engine it is for, if one) for the default backends and those
    of the engines runtimes were booted on."""
    for name in backends:
        yield name, functools.partial(backends.__getitem__, name), None
    on_engine = getattr(backends, "on_engine", None)
    if on_engine is None:
        return
    for known in KnownEngines().entries():
        yield f"{known[0]} on {known[1]}", functools.partial(on_engine, *known), known


def list_runtimes(backends: Mapping[str, Backend], *, ask: bool = True) -> RuntimeListing:
    """The runtimes njtui processes run on this machine, across notebooks and backends, the
    ones being booted, and the exited containers of notebooks that are gone. With `ask`,
    each running one is asked whether it is busy (all at once, within STATUS_TIMEOUT)."""
    entries: list[RuntimeEntry] = []
    problems: list[str] = []
    refused = False
    now = time.time()
    for name, backend_of, known in _every_backend(backends):
        try:
            backend = backend_of()
            live = backend.list()
        except EngineGone as exc:
            if known is None:
                problems.append(f"{name} runtimes not listed: {exc}")
            else:
                # Remembered from a boot there; the engine's name names nothing now, so nothing
                # can run there for njtui to find: said this once, then forgotten.
                problems.append(f"{name} runtimes not listed: {exc}; njtui forgets that engine and the runtimes it placed there")
                KnownEngines().forget(*known)
                Placements().forget_engine(*known)
            continue
        except (BackendError, KeyError) as exc:
            # No engine where none is configured is a machine without Docker: nothing to say.
            if not isinstance(exc, BackendUnavailable):
                problems.append(f"{name} runtimes not listed: {exc}")
            refused = refused or isinstance(exc, StateRefused)
            continue
        if known is not None and not live:
            KnownEngines().forget(*known)
        for info in live:
            entries.append(RuntimeEntry.of(backend, info, "running", pid=info.pid, uptime=now - info.started_at, notebook_missing=_notebook_missing(info.notebook)))
        ended: list[RuntimeInfo] = []
        if backend.supports(ORPHANS):
            try:
                ended = backend.orphans()
            except BackendError as exc:
                problems.append(f"exited {name} runtimes not listed: {exc}")
        for info in ended:
            entries.append(RuntimeEntry.of(backend, info, "exited", exit_reason=info.exit_reason, notebook_missing=True))
    if ask:
        _ask_activity([entry for entry in entries if entry.state == "running"])
    entries.extend(_booting_entries())
    return RuntimeListing(entries, problems, refused)


def _booting_entries() -> list[RuntimeEntry]:
    """Runtimes other processes are booting now, from the boot board."""
    entries: list[RuntimeEntry] = []
    for board in BootBoard().entries():
        progress = board.get("progress") or {}
        detail = board.get("phase") or "booting"
        if progress.get("total"):
            detail += f" {format_size(progress.get('done') or 0)}/{format_size(progress['total'])}"
        notebook = board.get("notebook") or ""
        entries.append(
            RuntimeEntry(
                key=board["key"],
                notebook=notebook,
                runtime=board.get("runtime") or "",
                backend=board.get("backend") or "",
                environment=board.get("environment") or "",
                language=board.get("language") or "",
                engine=board.get("engine"),
                state="booting",
                phase=board.get("phase"),
                progress=progress,
                detail=detail,
                notebook_missing=_notebook_missing(notebook),
            )
        )
    return entries


class StopNotes:
    """Which runtimes `stop_runtimes` stopped, for the clients attached to them: a stop from
    another process reaches them only as the runtime's end (the agent's exit, or a container
    gone), which cannot tell an intended stop from a crash, nor say who stopped it. The note is
    left before the stop begins, so it is there when the attached clients see the end.

    Notes live beside the boot board in the runtime root, used only once that is checked
    private, one file per runtime key; a note is about the instance it names (or, where the
    backend does not say which, the one running when it was left)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self.dir = self.root / "stopping"

    def _open(self, *, create: bool) -> PrivateDir | None:
        """The notes' directory, opened and checked; None if it is missing (and not `create`d)
        or refused: without a usable root, the stop says what the end says."""
        try:
            with open_private_root(self.root) as root:
                return root.subdir(self.dir.name, create=create)
        except (NotPrivateError, OSError):
            return None

    def leave(self, info: RuntimeInfo, reason: str = STOPPED_BY_COMMAND) -> None:
        directory = self._open(create=True)
        if directory is None:
            return
        now = time.time()
        with directory:
            try:
                names = directory.names()
            except OSError:
                names = []
            for old in names:
                try:
                    if old.endswith(".json") and now - directory.lstat(old).st_mtime > STOP_NOTE_RETENTION:
                        directory.unlink(old)
                except OSError:
                    pass
            try:
                directory.write(f"{info.key}.json", json.dumps({"reason": reason, "instance": info.instance, "at": now}).encode())
            except (NotPrivateError, OSError):
                pass

    def take_back(self, info: RuntimeInfo) -> None:
        """The stop failed: the runtime runs on, and a later end of it is not this stop's."""
        directory = self._open(create=False)
        if directory is not None:
            with directory:
                try:
                    directory.unlink(f"{info.key}.json")
                except OSError:
                    pass

    def reason_for(self, info: RuntimeInfo) -> str | None:
        """Why the runtime `info` ended, if a stop note is about it."""
        directory = self._open(create=False)
        if directory is None:
            return None
        try:
            with directory:
                note = json.loads(directory.read(f"{info.key}.json"))
        except (NotPrivateError, OSError, ValueError):
            return None
        if not isinstance(note, dict) or not isinstance(note.get("reason"), str) or not isinstance(note.get("at"), (int, float)):
            return None
        instance = note.get("instance")
        if instance is not None and info.instance is not None and instance != info.instance:
            return None
        # Left for an earlier instance of the same runtime, before this one started.
        if note["at"] < info.started_at:
            return None
        return note["reason"]


def stop_runtimes(backends: Mapping[str, Backend], selector: str | None = None) -> RuntimeStops:
    """Stops the runtimes `selector` names (a key, a prefix of one, or a runtime id), or with
    None every one on this machine, exited containers of notebooks that are gone included:
    stopping removes them. One that another process is still booting is left to it. Clients
    attached to one see it end as STOPPED_BY_COMMAND (StopNotes)."""
    listing = list_runtimes(backends, ask=False)
    stopped: list[RuntimeEntry] = []
    failed: list[tuple[RuntimeEntry, str]] = []
    notes = StopNotes()
    for entry in listing.runtimes:
        if entry._handle is None or (selector is not None and not entry.matches(selector)):
            continue
        backend, info = entry._handle
        notes.leave(info)
        try:
            backend.stop(info)
        except BackendError as exc:
            notes.take_back(info)
            failed.append((entry, str(exc)))
        else:
            stopped.append(entry)
    return RuntimeStops(stopped, failed, listing.problems, listing.refused)


def _ask_activity(entries: list[RuntimeEntry]) -> None:
    """Fills in busy/idle from each runtime's answer, asking all of them at once; one that has
    not answered within STATUS_TIMEOUT (going away, or wedged) is listed as unknown."""
    answers: list[dict[str, Any]] = [{} for _ in entries]

    def ask(index: int, entry: RuntimeEntry) -> None:
        assert entry._handle is not None
        answers[index] = _activity(*entry._handle, STATUS_TIMEOUT)

    threads = [threading.Thread(target=ask, args=(index, entry), name=f"njtui-ask-{entry.key}", daemon=True) for index, entry in enumerate(entries)]
    for thread in threads:
        thread.start()
    # Connecting counts too: a margin over the answer's own timeout for an engine that is slow to.
    deadline = time.monotonic() + STATUS_TIMEOUT + 2.0
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    for entry, answer in zip(entries, list(answers), strict=True):
        state = answer.get("state", "unknown")
        entry.state = "running" if state in ("idle", "busy") else state
        entry.busy = state == "busy"
        entry.idle_for = answer.get("idle_for")
