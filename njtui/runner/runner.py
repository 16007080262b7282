"""The runner facade: everything the CLI and the UI do with runtimes goes through `Runner`.

One Runner serves one notebook. It finds runtimes that are already running (any njtui process
may have started them), boots the ones a cell needs, sends cells, and reports what happens as
events to its subscribers: `RuntimeChanged` (state) and `RuntimeMessage` (protocol messages of
executions). Calls that boot or stop block; the UI makes them from worker threads. Events are
delivered on the runner's reader threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from njtui.model import Cell, ExecutionRecord, Notebook, RuntimeSpec
from njtui.model.size import format_size
from njtui.runner import protocol
from njtui.runner.backend import Backend, BackendError, Connection, RuntimeInfo
from njtui.runner.boot_board import BootBoard
from njtui.runner.launch import changed_settings, settings_of
from njtui.runner.launch import resolve as resolve_launch
from njtui.runner.paths import runtime_key
from njtui.runner.host import HostBackend
from njtui.runner.log import RunnerLog
from njtui.runner.recorder import Recorder
from njtui.runner.state import RuntimeState, RuntimeStatus
from njtui.store.results import ResultsStore

RECORDER_RETRY_INTERVAL = 1.0
# After write errors the store is retried less and less often, up to this: each try replays the
# journal from the cursor, wasted work while the disk is still full.
RECORDER_RETRY_MAX = 30.0


@dataclass(frozen=True)
class RuntimeChanged:
    runtime_id: str
    status: RuntimeStatus


@dataclass(frozen=True)
class RuntimeMessage:
    runtime_id: str
    message: dict[str, Any]


RunnerEvent = RuntimeChanged | RuntimeMessage
Listener = Callable[[RunnerEvent], None]

# How long `Runner.list_runtimes` waits for the runtimes to say whether they are busy.
STATUS_TIMEOUT = 2.0


@dataclass
class RuntimeEntry:
    """One runtime on this machine, of any notebook, as `njtui runtimes` lists it."""

    key: str
    notebook: str
    runtime: str
    backend: str
    environment: str
    language: str
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
        if self.notebook_missing:
            row["notebook_missing"] = True
        return row


@dataclass
class RuntimeListing:
    runtimes: list[RuntimeEntry]
    problems: list[str]  # backends whose runtimes could not be listed, and why, in words


@dataclass
class RuntimeStops:
    stopped: list[RuntimeEntry]
    failed: list[tuple[RuntimeEntry, str]]  # and why
    problems: list[str]  # as in RuntimeListing: what could not even be looked at


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


class RuntimeSession:
    """One client's attachment to one running runtime."""

    def __init__(self, runner: Runner, spec: RuntimeSpec, backend: Backend, info: RuntimeInfo) -> None:
        self.runner = runner
        self.spec = spec
        self.backend = backend
        self.info = info
        self.recorder = Recorder(runner.store, info.key, spec.id)
        self.last_seq = 0
        self.open_execs: dict[str, str] = {}  # exec id → cell id, for executions not yet done
        self.running_exec: str | None = None
        self.connection: Connection | None = None
        self.closed = threading.Event()
        # Set when the answer to the status request sent on open arrives: replay is done.
        self.caught_up = threading.Event()
        # The credentials its S3 mounts were made with: set at boot, or read on first need by a
        # client that attached to a runtime another process booted.
        self.mount_credentials: dict[str, str] | None = None
        self._opened_at = 0.0
        self._thread: threading.Thread | None = None
        # The reader thread and the recording watcher both use the recorder: one at a time.
        self._recording = threading.Lock()
        # Set when this client saw a message it did not record: the watcher makes sure someone
        # records it (the recording client, or this one once that has gone or the store heals).
        self._unrecorded = threading.Event()
        self._watcher: threading.Thread | None = None
        self._retry_delay = RECORDER_RETRY_INTERVAL
        self._seen_failed_at = 0.0
        self._reported_failure: str | None = None
        self._replay_from = 0  # `since` of the last attach sent

    def open(self) -> None:
        self._opened_at = time.time()
        with self._recording:
            if self.recorder.try_activate():
                self.recorder.bind(self.info.instance)
            if self.recorder.active:
                since = self.recorder.since()
            else:
                cursor = self.runner.store.cursor(self.info.key)
                since = cursor.get("seq", 0) + 1 if cursor.get("instance") == self.info.instance else 1
            self._replay_from = since
            self._after_recording()
        try:
            self.connection = self.backend.connect(self.info)
        except BaseException:
            with self._recording:
                self.recorder.release()  # the lock must not outlive a session that never opened
            raise
        self.connection.send({"op": "attach", "since": since})
        self.connection.send({"op": "status"})

    def start_reading(self) -> None:
        self._thread = threading.Thread(target=self._read, name=f"njtui-runtime-{self.spec.id}", daemon=True)
        self._thread.start()

    def submit(self, exec_id: str, code: str, meta: dict[str, Any]) -> None:
        assert self.connection is not None
        self.open_execs[exec_id] = meta.get("cell", "")
        self.connection.send(protocol.execute_request(exec_id, code, meta))

    def send(self, request: dict[str, Any]) -> None:
        if self.connection is not None:
            self.connection.send(request)

    def _read(self) -> None:
        try:
            self._read_messages()
        except Exception as exc:  # a bug here must turn the runtime red, not hang its clients
            self.runner.log.error(self.spec.id, f"reading the runtime failed: {type(exc).__name__}: {exc}")
            self._ended(f"njtui failed reading the runtime: {exc}", True)

    def _read_messages(self) -> None:
        assert self.connection is not None
        exit_reason = "the connection to the runtime closed"
        crashed = True
        for message in self.connection:
            if "seq" not in message:
                kind = message.get("type")
                if kind == protocol.AGENT_STDERR:
                    for line in message.get("text", "").splitlines():
                        self.runner.log.write(self.spec.id, line, "agent")
                elif kind == protocol.RUNTIME_EXIT:
                    exit_reason = message.get("reason") or "stopped"
                    crashed = not exit_reason.startswith("stopped")
                continue
            fresh = message["seq"] > self.last_seq
            done = message.get("type") == "done"
            if fresh:
                self.last_seq = message["seq"]
                self._track(message)
                if not done:
                    self.runner._emit(RuntimeMessage(self.spec.id, message))
            # Recorded after the listeners have it, so file writes stay off the latency path; a
            # `done` goes out once recorded, with its /results files stored, as its status must
            # say whether the store has it all.
            finished = self._record(message)
            if finished is not None:
                self.runner.collect_files(self.backend, self.info, finished, message)
            if fresh and done:
                self.runner._emit(RuntimeMessage(self.spec.id, self._as_recorded(message)))
            if done:
                with self._recording:
                    self.recorder.flush()
                    self._after_recording()
                    unrecorded = not self.recorder.active
                self._watch_if(unrecorded)
            if finished is not None:
                self.runner.write_back_mounts(self)
        self._ended(exit_reason, crashed)

    def _record(self, message: dict[str, Any]) -> ExecutionRecord | None:
        with self._recording:
            finished = self.recorder.handle(message)
            if self.recorder.behind and self._replay_from != self.recorder.since():
                self._request_replay()
            if self.recorder.failure is not None and self.recorder.active and not self.recorder.behind and self.recorder.cursor.get("seq", 0) >= self.last_seq:
                self.recorder.failure = None  # caught up with everything this client has seen
            self._after_recording()
            unrecorded = not self.recorder.active
        self._watch_if(unrecorded)
        return finished

    def _watch_if(self, unrecorded: bool) -> None:
        """Wakes the recording watcher (started on first need) when this client is not recording."""
        if not unrecorded:
            return
        self._unrecorded.set()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_recording, name=f"njtui-recording-{self.spec.id}", daemon=True)
            self._watcher.start()

    def _as_recorded(self, done: dict[str, Any]) -> dict[str, Any]:
        """A `done` as the listeners get it: not ok while this client's writes to the store fail."""
        with self._recording:
            failure = self.recorder.failure
            if failure is None or (self.recorder.active and self.recorder.cursor.get("seq", 0) >= done["seq"]):
                return done
        status = done.get("status", "ok")
        return {**done, "status": "error" if status == "ok" else status, "reason": f"{failure} (the runtime's journal keeps the output)"}

    def _request_replay(self) -> None:
        """The journal from the cursor on: what this client has not recorded comes again."""
        since = self.recorder.since()
        self._replay_from = since
        try:
            self.send({"op": "attach", "since": since})
            # A Docker connection replays when the next live message arrives: ask for one.
            self.send({"op": "status"})
        except (BackendError, OSError):
            pass  # the reader sees the connection end

    def _after_recording(self) -> None:
        """After each use of the recorder (under its lock): retry pacing, and a log line when
        writing to the store fails or works again."""
        failure = self.recorder.failure
        if failure is None:
            self._seen_failed_at = 0.0
            self._retry_delay = RECORDER_RETRY_INTERVAL
        elif self.recorder.failed_at != self._seen_failed_at:
            if self._seen_failed_at:
                self._retry_delay = min(self._retry_delay * 2, RECORDER_RETRY_MAX)
            self._seen_failed_at = self.recorder.failed_at
        if failure == self._reported_failure:
            return
        self._reported_failure = failure
        if failure is not None:
            self.runner.log.error(
                self.spec.id,
                f"{failure}: outputs are not recorded in {self.runner.store.root}; the runtime's journal keeps them, "
                "and recording resumes from it once the store can be written (`njtui show` does it too)",
            )
        else:
            self.runner.log.info(self.spec.id, f"recording to {self.runner.store.root} resumed: it has everything again")

    def _watch_recording(self) -> None:
        """Sees that what this client saw unrecorded gets recorded: by the recording client, or
        by this one once that client has gone (its lock is free) or the store takes writes again.
        It runs on an event, not on the next message: the recording client may leave after the
        last message of a cell, and none may follow."""
        while True:
            self._unrecorded.wait()
            if self.closed.is_set():
                return
            self._unrecorded.clear()
            if self._maybe_take_recording() or self._recorded_elsewhere():
                continue
            self._unrecorded.set()
            if self.closed.wait(self._retry_delay):
                return

    def _maybe_take_recording(self) -> bool:
        """A watching client becomes the recorder when the recording client has gone; one whose
        writes failed tries again (less often each time). Either replays from the cursor."""
        with self._recording:
            if self.closed.is_set():
                return False
            if self.recorder.active:
                return True
            if self.recorder.failure is not None and time.monotonic() - self.recorder.failed_at < self._retry_delay:
                return False
            if self.recorder.try_activate():
                self.recorder.bind(self.info.instance)
            if self.recorder.active:
                self._request_replay()
            self._after_recording()
            return self.recorder.active

    def _recorded_elsewhere(self) -> bool:
        """Whether the store has all this client has seen, recorded by another client."""
        cursor = self.runner.store.cursor(self.info.key)
        if cursor.get("instance") != self.info.instance or cursor.get("seq", 0) < self.last_seq:
            return False
        with self._recording:
            if not self.recorder.active:
                self.recorder.failure = None
            self._after_recording()
        return True

    def _track(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        exec_id = message.get("exec")
        if kind == "queued":
            self.open_execs[exec_id] = (message.get("meta") or {}).get("cell", "")
        elif kind == "start":
            self.running_exec = exec_id
            self.open_execs.setdefault(exec_id, (message.get("meta") or {}).get("cell", ""))
            self.runner._update(self.spec.id, busy=True)
        elif kind == "done":
            self.open_execs.pop(exec_id, None)
            if self.running_exec == exec_id:
                self.running_exec = None
            if not self.open_execs:
                self.runner._update(self.spec.id, busy=False, idle_since=message.get("t"))
        elif kind == "status":
            if (message.get("t") or 0) >= self._opened_at - 0.001:
                self.caught_up.set()
            busy = message.get("state") == "busy"
            self.running_exec = message.get("running")
            idle_since = None if busy else (message.get("t") or time.time()) - (message.get("idle_for") or 0)
            self.runner._update(self.spec.id, busy=busy, idle_since=idle_since)
        elif kind == "exit":
            self.runner.log.info(self.spec.id, f"agent exiting: {message.get('reason')}")
        elif kind == "log":
            self.runner.log.write(self.spec.id, message.get("text", ""), message.get("level", "info"))

    def _ended(self, reason: str, crashed: bool) -> None:
        if self.closed.is_set():
            return  # detached on purpose: the runtime runs on
        self.closed.set()
        # Red (or grey) with its reason first: the clean-up below can be slow, most of all when
        # the engine itself has gone.
        self.runner._report_session_end(self, reason, crashed)
        lost = f"lost: {reason}"
        for exec_id, cell in list(self.open_execs.items()):
            self.runner._emit(
                RuntimeMessage(self.spec.id, {"seq": None, "exec": exec_id, "type": "done", "status": "lost", "reason": lost, "meta": {"cell": cell}, "t": time.time()})
            )
        self.open_execs.clear()
        self._unrecorded.set()  # the watcher sees `closed` and stops
        with self._recording:
            recorded = self._record_rest_of_journal()
            self.recorder.close_open(reason)
            recorded = recorded and self.recorder.active
            self.recorder.release()
            recorded = recorded and self.recorder.failure is None
            self._after_recording()
        # Under the runtime's lock: a restart waits until the old container is gone.
        with self.runner._lock(self.spec.id):
            if recorded:
                # A journal not recorded whole stays for the next client (Runner.sync_ended).
                self.backend.discard(self.info)
            self.runner._forget_session(self)

    def _record_rest_of_journal(self) -> bool:
        """At the runtime's end (under the recording lock): records from its journal what nobody
        has, if no other client is recording. Whether the store now has all of it."""
        if not self.recorder.active:
            if not self.recorder.try_activate():
                return False
            self.recorder.bind(self.info.instance)
            if not self.recorder.active:
                return False
        if self.recorder.cursor.get("seq", 0) >= self.last_seq and not self.recorder.behind:
            self.recorder.failure = None
            return True  # it recorded all this client saw: the journal holds nothing more
        try:
            for message in self.backend.journal(self.info):
                finished = self.recorder.handle(message)
                if not self.recorder.active:
                    return False
                if finished is not None:
                    self.runner.collect_files(self.backend, self.info, finished, message)
        except (BackendError, OSError, ValueError) as exc:
            self.runner.log.warning(self.spec.id, f"could not read the journal of the ended runtime: {exc}")
            return False
        if self.recorder.behind:
            return False
        self.recorder.failure = None
        return True

    def detach(self) -> None:
        self.closed.set()
        self._unrecorded.set()  # the watcher sees `closed` and stops
        if self.connection is not None:
            self.connection.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._recording:
            self.recorder.release()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)


def default_backends() -> dict[str, Backend]:
    from njtui.runner.docker_backend import DockerBackend

    # The Docker backend reaches for an engine only when a runtime needs one.
    return {"host": HostBackend(), "docker": DockerBackend()}


class Runner:
    def __init__(
        self,
        notebook_path: Path | str,
        notebook: Notebook,
        *,
        log: RunnerLog | None = None,
        backends: dict[str, Backend] | None = None,
    ) -> None:
        self.path = str(Path(notebook_path).resolve())
        self.notebook = notebook
        self.store = ResultsStore(self.path)
        self.log = log or RunnerLog()
        self.backends: dict[str, Backend] = backends or default_backends()
        self.sessions: dict[str, RuntimeSession] = {}
        self._statuses: dict[str, RuntimeStatus] = {}
        self._listeners: list[Listener] = []
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._state_guard = threading.Lock()
        self.boot_board = BootBoard()

    # -- events
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: RunnerEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    def status(self, runtime_id: str) -> RuntimeStatus:
        return self._statuses.get(runtime_id) or RuntimeStatus()

    def _move(self, runtime_id: str, state: RuntimeState | None, **changes: Any) -> None:
        """To `state`, or, with None, an update in the state it is in."""
        # Reader threads and the caller's thread both move states; one at a time keeps them whole.
        with self._state_guard:
            status = self.status(runtime_id)
            status = status.moved(state or status.state, **changes)
            self._statuses[runtime_id] = status
        self._emit(RuntimeChanged(runtime_id, status))

    def _update(self, runtime_id: str, **changes: Any) -> None:
        self._move(runtime_id, None, **changes)

    # -- runtimes
    def backend_for(self, spec: RuntimeSpec) -> Backend:
        name = "host" if spec.is_host else "docker"
        backend = self.backends.get(name)
        if backend is None:
            raise BackendError(f"runtime {spec.id}: no {name} backend is available for environment {spec.environment!r}")
        return backend

    def _lock(self, runtime_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(runtime_id, threading.Lock())

    def attach_running(self) -> None:
        """Attach to this notebook's runtimes that are already running; record what ended unseen."""
        self.sync_ended()
        for spec in self.notebook.runtimes.values():
            try:
                backend = self.backend_for(spec)
                info = backend.find(self.path, spec.id)
            except BackendError as exc:
                self.log.warning(spec.id, str(exc))
                continue
            if info is not None:
                with self._lock(spec.id):
                    if spec.id not in self.sessions:
                        self._open_session(spec, backend, info, attached=True)

    def ensure(self, runtime_id: str) -> RuntimeSession:
        """The session of a running runtime, booting it first if it is stopped."""
        with self._lock(runtime_id):
            session = self.sessions.get(runtime_id)
            if session is not None and not session.closed.is_set():
                return session
            spec = self.notebook.runtimes[runtime_id]
            try:
                backend = self.backend_for(spec)
                info = backend.find(self.path, spec.id)
                if info is not None:
                    return self._open_session(spec, backend, info, attached=True)
                self._move(runtime_id, RuntimeState.BOOTING, phase="Starting", reason=None, backend=backend.name)
                self.log.info(runtime_id, f"booting {spec.language} runtime in {spec.environment}")
                board_key = runtime_key(self.path, spec.id)
                board_entry = {"notebook": self.path, "runtime": spec.id, "backend": backend.name, "environment": spec.environment, "language": spec.language}
                last = {"phase": "Starting", "posted": 0.0}

                def progress(phase: str, detail: dict[str, Any]) -> None:
                    self._move(runtime_id, RuntimeState.BOOTING, phase=phase, progress=dict(detail))
                    if phase != last["phase"]:
                        self.log.info(runtime_id, f"{phase}{' ' + str(detail['image']) if detail.get('image') else ''}")
                    now = time.monotonic()
                    if phase != last["phase"] or now - last["posted"] > 0.2:
                        self.boot_board.post(board_key, {**board_entry, "phase": phase, "progress": dict(detail)})
                        last["posted"] = now
                    last["phase"] = phase

                launch = resolve_launch(self.notebook, spec)
                try:
                    info = backend.start(self.path, spec, launch, progress)
                finally:
                    self.boot_board.clear(board_key)
                session = self._open_session(spec, backend, info, attached=False)
                session.mount_credentials = launch.mount_credentials
                if launch.secrets:
                    # Over the agent connection only: not in the container's config, not journaled.
                    session.send({"op": "secrets", "env": launch.secrets})
                return session
            except BackendError as exc:
                reason = str(exc).splitlines()[0]
                self.log.error(runtime_id, f"failed to start: {exc}")
                self._move(runtime_id, RuntimeState.ERROR, reason=reason, phase=None)
                raise

    def _open_session(self, spec: RuntimeSpec, backend: Backend, info: RuntimeInfo, *, attached: bool) -> RuntimeSession:
        session = RuntimeSession(self, spec, backend, info)
        session.open()
        self.sessions[spec.id] = session
        self.log.info(spec.id, f"{'attached to' if attached else 'started'} {backend.name} runtime (pid {info.pid})")
        self._move(spec.id, RuntimeState.RUNNING, phase=None, progress={}, reason=None, backend=backend.name, pid=info.pid)
        # Reading starts only once the runtime shows as running, so busy/idle updates land on it.
        session.start_reading()
        return session

    def _report_session_end(self, session: RuntimeSession, reason: str, crashed: bool) -> None:
        if self.sessions.get(session.spec.id) is not session:
            return  # a newer session of the runtime has the panel now
        if crashed:
            self.log.error(session.spec.id, reason)
            self._move(session.spec.id, RuntimeState.ERROR, reason=reason, busy=False)
        else:
            self.log.info(session.spec.id, reason)
            self._move(session.spec.id, RuntimeState.STOPPED, reason=reason, busy=False)

    def _forget_session(self, session: RuntimeSession) -> None:
        if self.sessions.get(session.spec.id) is session:
            del self.sessions[session.spec.id]

    def collect_files(self, backend: Backend, info: RuntimeInfo, record: ExecutionRecord, done: dict[str, Any]) -> None:
        """The files an execution wrote to /results (or $NJTUI_RESULTS) go to the results store:
        the copies its agent staged before `done`, so a later cell's writes are never taken
        for this one's. Once stored, the agent may let its copies go."""
        staged = done.get("files")
        if not staged:
            return
        try:
            files = self.store.save_files(record, backend.collect_files(info, staged))
        except (BackendError, OSError) as exc:
            self.log.warning(info.runtime_id, f"could not collect /results of cell {record.cell}: {exc}")
            return
        session = self.sessions.get(info.runtime_id)
        if session is not None and session.info.key == info.key and session.info.instance == info.instance:
            session.send({"op": "release", "exec": record.exec_id})
        if files:
            self.log.info(info.runtime_id, f"collected {len(files)} file{'s' if len(files) != 1 else ''} from /results of cell {record.cell}")
            self._emit(RuntimeMessage(info.runtime_id, {"seq": None, "exec": record.exec_id, "type": "files", "files": files, "version": record.version, "t": time.time()}))

    def write_back_mounts(self, session: RuntimeSession) -> None:
        """After a cell: read-write S3 mounts send their changed files back to the bucket."""
        spec = session.spec
        mounts = [mount for mount in spec.mounts if mount.kind == "s3" and not mount.read_only]
        write_back = getattr(session.backend, "write_back", None)
        if not mounts or write_back is None:
            return
        try:
            if session.mount_credentials is None:
                session.mount_credentials = resolve_launch(self.notebook, spec).mount_credentials
            for mount in mounts:
                keys = write_back(session.info, mount, session.mount_credentials)
                if keys:
                    self.log.info(spec.id, f"wrote {len(keys)} changed file{'s' if len(keys) != 1 else ''} back to {mount.source}")
        except BackendError as exc:
            self.log.error(spec.id, f"could not write back to S3: {exc}")

    # -- environments, for the settings screen (the UI asks here, never the engine)
    def local_images(self) -> list[dict[str, Any]]:
        backend = self.backends.get("docker")
        return backend.local_images() if backend is not None else []

    def check_environment(self, environment: str) -> str:
        if environment == "host":
            return "this machine"
        backend = self.backends.get("docker")
        if backend is None:
            raise BackendError("no Docker backend")
        return backend.check_image(environment)

    def image_env(self, environment: str) -> dict[str, str]:
        backend = self.backends.get("docker")
        if environment == "host" or backend is None:
            return {}
        try:
            return backend.image_env(environment)
        except BackendError:
            return {}

    def pending_changes(self, runtime_id: str) -> list[str]:
        """Settings edited since the running runtime started: they apply on restart."""
        session = self.sessions.get(runtime_id)
        spec = self.notebook.runtimes.get(runtime_id)
        if session is None or spec is None:
            return []
        started_with = session.info.details.get("settings")
        if not isinstance(started_with, dict):
            return []
        return changed_settings(started_with, settings_of(self.notebook, spec))

    def runtime_for(self, cell: Cell) -> RuntimeSpec:
        return self.notebook.runtime_for(cell)

    def execute(self, cell: Cell, code: str | None = None) -> str:
        """Sends a code cell to its runtime (booting it if needed); returns the execution id."""
        spec = self.runtime_for(cell)
        session = self.ensure(spec.id)
        exec_id = protocol.new_exec_id()
        source = cell.source if code is None else code
        session.submit(exec_id, source, {"cell": cell.id, "source_hash": cell.source_hash})
        return exec_id

    def interrupt(self, runtime_id: str) -> None:
        session = self.sessions.get(runtime_id)
        if session is not None:
            self.log.info(runtime_id, "interrupt")
            session.send({"op": "interrupt"})

    def stop(self, runtime_id: str) -> None:
        spec = self.notebook.runtimes[runtime_id]
        backend = self.backend_for(spec)
        session = self.sessions.get(runtime_id)
        info = session.info if session is not None else backend.find(self.path, runtime_id)
        if info is None:
            return
        self.log.info(runtime_id, "stopping")
        backend.stop(info)
        if session is not None:
            session.closed.wait(timeout=5)

    def restart(self, runtime_id: str) -> RuntimeSession:
        self.log.info(runtime_id, "restart")
        self.stop(runtime_id)
        return self.ensure(runtime_id)

    def stop_all(self) -> None:
        for runtime_id in list(self.notebook.runtimes):
            self.stop(runtime_id)

    def sync_ended(self) -> None:
        """Records what runtimes of this notebook did after their last client went away."""
        for backend in self.backends.values():
            try:
                ended = backend.ended(self.path)
            except BackendError:
                continue
            for info in ended:
                recorder = Recorder(self.store, info.key, info.runtime_id)
                if not recorder.try_activate():
                    if recorder.failure is not None:
                        self.log.error(info.runtime_id, f"{recorder.failure}: the ended runtime's outputs are not recorded; its journal is kept for the next try")
                    continue
                try:
                    recorder.bind(info.instance)
                    for message in backend.journal(info):
                        finished = recorder.handle(message)
                        if finished is not None:
                            self.collect_files(backend, info, finished, message)
                    recorder.close_open(info.exit_reason or "the runtime ended")
                finally:
                    recorder.release()
                if recorder.failure is not None or recorder.behind:
                    # Not recorded whole: the journal stays until the store can take it.
                    self.log.error(info.runtime_id, f"{recorder.failure or 'its journal has a gap'}: the ended runtime's outputs are not all in {self.store.root}; its journal is kept for the next try")
                    continue
                backend.discard(info)

    def detach(self) -> None:
        """Lets go of every runtime; they keep running and shut themselves down when idle."""
        for session in list(self.sessions.values()):
            session.detach()
        self.sessions.clear()

    def wait_caught_up(self, timeout: float = 10.0) -> bool:
        """Waits until each attached runtime has replayed to this client what it did unseen (its
        answer to the status request sent on attach has come), at most `timeout` seconds for
        each; whether all of them did."""
        return all([session.caught_up.wait(timeout) for session in list(self.sessions.values())])

    # -- every runtime on this machine, of any notebook (`njtui runtimes`)
    @staticmethod
    def list_runtimes(*, backends: dict[str, Backend] | None = None, ask: bool = True) -> RuntimeListing:
        """The runtimes njtui processes run on this machine, across notebooks and backends, the
        ones being booted, and the exited containers of notebooks that are gone. With `ask`,
        each running one is asked whether it is busy (all at once, within STATUS_TIMEOUT)."""
        backends = backends if backends is not None else default_backends()
        entries: list[RuntimeEntry] = []
        problems: list[str] = []
        now = time.time()
        for name, backend in backends.items():
            try:
                live = backend.list()
            except BackendError as exc:
                # No engine where none is configured is a machine without Docker: nothing to say.
                if name != "docker" or "unreachable" not in str(exc) or os.environ.get("DOCKER_HOST"):
                    problems.append(f"{name} runtimes not listed: {exc}")
                continue
            for info in live:
                entries.append(
                    RuntimeEntry.of(backend, info, "running", pid=info.pid, uptime=now - info.started_at, notebook_missing=_notebook_missing(info.notebook))
                )
            orphans = getattr(backend, "orphans", None)
            try:
                ended = orphans() if orphans is not None else []
            except BackendError as exc:
                problems.append(f"exited {name} runtimes not listed: {exc}")
                ended = []
            for info in ended:
                entries.append(RuntimeEntry.of(backend, info, "exited", exit_reason=info.exit_reason, notebook_missing=True))
        if ask:
            _ask_activity([entry for entry in entries if entry.state == "running"])
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
                    state="booting",
                    phase=board.get("phase"),
                    progress=progress,
                    detail=detail,
                    notebook_missing=_notebook_missing(notebook),
                )
            )
        return RuntimeListing(entries, problems)

    @staticmethod
    def stop_runtimes(selector: str | None = None, *, backends: dict[str, Backend] | None = None) -> RuntimeStops:
        """Stops the runtimes `selector` names (a key, a prefix of one, or a runtime id), or with
        None every one on this machine, exited containers of notebooks that are gone included:
        stopping removes them. One that another process is still booting is left to it."""
        listing = Runner.list_runtimes(backends=backends, ask=False)
        stopped: list[RuntimeEntry] = []
        failed: list[tuple[RuntimeEntry, str]] = []
        for entry in listing.runtimes:
            if entry._handle is None or (selector is not None and not entry.matches(selector)):
                continue
            backend, info = entry._handle
            try:
                backend.stop(info)
            except BackendError as exc:
                failed.append((entry, str(exc)))
            else:
                stopped.append(entry)
        return RuntimeStops(stopped, failed, listing.problems)


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
    for entry, answer in zip(entries, list(answers)):
        state = answer.get("state", "unknown")
        entry.state = "running" if state in ("idle", "busy") else state
        entry.busy = state == "busy"
        entry.idle_for = answer.get("idle_for")
