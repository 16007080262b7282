"""The runner facade: everything the CLI and the UI do with runtimes goes through `Runner`.

One Runner serves one notebook. It finds runtimes that are already running (any njtui process
may have started them), boots the ones a cell needs, sends cells, and reports what happens as
events to its subscribers: `RuntimeChanged` (state) and `RuntimeMessage` (protocol messages of
executions). Calls that boot or stop block; the UI makes them from worker threads. Events are
delivered on the runner's reader threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from njtui.model import Cell, ExecutionRecord, Notebook, RuntimeSpec
from njtui.model.engine import parse_engine
from njtui.runner import protocol
from njtui.runner.backend import IMAGES, WRITE_BACK, Backend, BackendError, BootCancelled, EngineGone, RuntimeInfo
from njtui.runner.boot_board import BootBoard
from njtui.runner.environments import Environments
from njtui.runner.events import Listener, RunnerEvent, RuntimeChanged, RuntimeMessage
from njtui.runner.launch import changed_settings, settings_of
from njtui.runner.launch import resolve as resolve_launch
from njtui.runner.listing import KnownEngines, Placement, Placements, RuntimeListing, RuntimeStops, list_runtimes, stop_runtimes
from njtui.runner.log import RunnerLog
from njtui.runner.paths import runtime_key
from njtui.runner.recorder import Recorder
from njtui.runner.registry import Backends, engine_of, placement_of
from njtui.runner.session import Completion, RuntimeSession, SessionEnded
from njtui.runner.state import RuntimeState, RuntimeStatus, stopped_reason
from njtui.runner.unfinished import Unfinished
from njtui.store.results import ResultsStore

# The runner's public names that live in its parts, importable from here as before.
__all__ = ["Completion", "Runner", "RuntimeChanged", "RuntimeMessage", "RuntimeSession", "RuntimeListing", "RuntimeStops"]


class _LastProgress(TypedDict):
    """What a boot's progress callback last did: the phase it logged, when it posted to the board."""

    phase: str
    posted: float  # time.monotonic()


class Runner:
    def __init__(
        self,
        notebook_path: Path | str,
        notebook: Notebook,
        *,
        log: RunnerLog | None = None,
        backends: Mapping[str, Backend] | None = None,
    ) -> None:
        self.path = str(Path(notebook_path).resolve())
        self.notebook = notebook
        self.store = ResultsStore(self.path)
        self.log = log or RunnerLog()
        self.backends = Backends(backends)
        self.sessions: dict[str, RuntimeSession] = {}
        self._statuses: dict[str, RuntimeStatus] = {}
        self._listeners: list[Listener] = []
        # One per runtime, held by whatever changes its life (boot, attach, stop, restart,
        # detach): those happen one at a time, whichever threads ask. Reentrant: a restart is a
        # stop and a boot under one hold.
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        # Runtimes whose boot a stop gave up on: their boot ends at its next progress report.
        self._cancelling: set[str] = set()
        # Held while a state changes and while any event goes out: listeners get events in the
        # order the changes happened, whichever thread made them.
        self._events_lock = threading.RLock()
        self._unfinished = Unfinished()
        # (runtime, instance) → the last journal seq this runner passed on from it: a later
        # session's replay of the same instance passes on only what comes after.
        self.seen_seq: dict[tuple[str, str | None], int] = {}
        self.boot_board = BootBoard()
        self.placements = Placements()
        # Saving, comparing, resetting, exporting and importing environments (`njtui env`).
        self.environments = Environments(self)

    # -- events
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: RunnerEvent) -> None:
        with self._events_lock:
            if isinstance(event, RuntimeMessage) and event.message.get("type") == "done":
                exec_id = event.message.get("exec")
                if isinstance(exec_id, str):  # unfinished executions are keyed by their (string) ids
                    self._unfinished.ended(exec_id)
            for listener in list(self._listeners):
                listener(event)

    def status(self, runtime_id: str) -> RuntimeStatus:
        return self._statuses.get(runtime_id) or RuntimeStatus()

    def _move(self, runtime_id: str, state: RuntimeState | None, **changes: Any) -> None:
        """To `state`, or, with None, an update in the state it is in."""
        # Reader threads and the caller's thread both move states; one at a time keeps them whole,
        # and the event leaves before another change can be made.
        with self._events_lock:
            status = self.status(runtime_id)
            status = status.moved(state or status.state, **changes)
            self._statuses[runtime_id] = status
            self._emit(RuntimeChanged(runtime_id, status))

    def _update(self, runtime_id: str, **changes: Any) -> None:
        self._move(runtime_id, None, **changes)

    # -- runtimes
    def backend_for(self, spec: RuntimeSpec) -> Backend:
        return self.backends.for_spec(spec)

    def _lock(self, runtime_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(runtime_id, threading.RLock())

    def attach_running(self) -> None:
        """Attach to this notebook's runtimes that are already running; record what ended unseen."""
        self.sync_ended()
        for spec in self.notebook.runtimes.values():
            try:
                backend, info = self._find(spec)
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
            # Waited for under the lock: reporting an end takes no runtime lock.
            self._wait_for_end_of(session)
            spec = self.notebook.runtimes[runtime_id]
            try:
                backend, info = self._find(spec)
                if info is not None:
                    try:
                        return self._open_session(spec, backend, info, attached=True)
                    except BackendError:
                        # Found as it was going away (stopped by another client): if it has
                        # gone, boot a new one; if it is still there, it is really unreachable.
                        if backend.find(self.path, spec.id) is not None:
                            raise
                if self.status(runtime_id).state == RuntimeState.RUNNING:
                    # The one this client last saw ended while it was detached from it.
                    self._move(runtime_id, RuntimeState.STOPPED, reason="ended while this client was detached", busy=False)
                return self._boot(spec, self.backend_for(spec))
            except BootCancelled as exc:
                self.log.info(runtime_id, str(exc))
                self._move(runtime_id, RuntimeState.STOPPED, reason=str(exc), phase=None)
                raise
            except BackendError as exc:
                reason = str(exc).splitlines()[0]
                self.log.error(runtime_id, f"failed to start: {exc}")
                self._move(runtime_id, RuntimeState.ERROR, reason=reason, phase=None)
                raise

    def _placed_elsewhere(self, spec: RuntimeSpec) -> Placement | None:
        """Where this runtime was last booted, if not where its settings place it now."""
        placed = self.placements.get(runtime_key(self.path, spec.id))
        return placed if placed is not None and placed != placement_of(spec) else None

    def _find(self, spec: RuntimeSpec) -> tuple[Backend, RuntimeInfo | None]:
        """The backend a runtime runs on, and the runtime if it runs: where its settings place
        it, else where it was last booted. One whose engine or environment was edited while it
        ran goes on running there until it restarts (as after any edit, which then shows as
        one to apply); booting a second one beside it would leave the first running unseen."""
        backend = self.backend_for(spec)
        info = backend.find(self.path, spec.id)
        placed = self._placed_elsewhere(spec) if info is None else None
        if placed is None:
            return backend, info
        where = f"{placed[0]} on {placed[1]}" if placed[1] is not None else f"the {placed[0]} backend"
        try:
            earlier = self.backends.at(*placed)
            earlier_info = earlier.find(self.path, spec.id)
        except EngineGone as exc:
            # Its engine's name names nothing now: nothing runs there for njtui to find. Said
            # once, then forgotten.
            self.log.warning(spec.id, f"it was last booted on {where}, which is gone ({exc}); njtui forgets it and goes by its settings now")
            self.placements.forget(runtime_key(self.path, spec.id), placed)
            return backend, None
        except (BackendError, KeyError) as exc:
            self.log.warning(spec.id, f"it was last booted on {where}, which can't be asked whether it still runs there ({exc}); `njtui runtimes` lists it once that engine answers; going by its settings now")
            return backend, None
        if earlier_info is None:
            self.placements.forget(runtime_key(self.path, spec.id), placed)
            return backend, None
        self.log.info(spec.id, f"still running on {where}, where it was booted; its settings place it elsewhere now: restart it to move it")
        return earlier, earlier_info

    @staticmethod
    def _wait_for_end_of(session: RuntimeSession | None) -> None:
        """A session whose runtime has ended reports it (state, lost cells) before anything
        else happens to the runtime, so its states follow each other in order."""
        if session is not None and session.closed.is_set():
            session.finished.wait(timeout=10)

    def _boot(self, spec: RuntimeSpec, backend: Backend) -> RuntimeSession:
        self._move(spec.id, RuntimeState.BOOTING, phase="Starting", reason=None, backend=backend.name)
        engine = engine_of(spec)
        self.log.info(spec.id, f"booting {spec.language} runtime in {spec.environment_label}{f' on {engine[0]}' if engine else ''}")
        board_key = runtime_key(self.path, spec.id)
        launch = resolve_launch(self.notebook, spec)
        if backend.supports(IMAGES) and not spec.is_host:
            launch.image = self.environments.boot_image(spec)
        if engine is not None:
            KnownEngines().add(backend.name, *engine)
        try:
            info = backend.start(self.path, spec, launch, self._boot_progress(spec, backend, board_key))
        finally:
            self.boot_board.clear(board_key)
            self._cancelling.discard(spec.id)
        self.placements.record(board_key, placement_of(spec))
        session = self._open_session(spec, backend, info, attached=False)
        session.mount_credentials = launch.mount_credentials
        if launch.secrets:
            # Over the agent connection only: not in the container's config, not journaled.
            session.send({"op": "secrets", "env": launch.secrets})
        return session

    def _boot_progress(self, spec: RuntimeSpec, backend: Backend, board_key: str):
        """What a backend calls with each boot phase: the runtime's status, the runner log once
        per phase, and the boot board (`njtui runtimes` in other processes), at most 5 times a second."""
        board_entry = {"notebook": self.path, "runtime": spec.id, "backend": backend.name, "environment": spec.environment_label, "language": spec.language, "engine": spec.engine}
        last: _LastProgress = {"phase": "Starting", "posted": 0.0}

        def progress(phase: str, detail: dict[str, Any]) -> None:
            if spec.id in self._cancelling:
                raise BootCancelled("boot cancelled")
            self._move(spec.id, RuntimeState.BOOTING, phase=phase, progress=dict(detail))
            if phase != last["phase"]:
                self.log.info(spec.id, f"{phase}{' ' + str(detail['image']) if detail.get('image') else ''}")
            now = time.monotonic()
            if phase != last["phase"] or now - last["posted"] > 0.2:
                self.boot_board.post(board_key, {**board_entry, "phase": phase, "progress": dict(detail)})
                last["posted"] = now
            last["phase"] = phase

        return progress

    def _open_session(self, spec: RuntimeSpec, backend: Backend, info: RuntimeInfo, *, attached: bool) -> RuntimeSession:
        session = RuntimeSession(self, spec, backend, info, booted=not attached)
        session.open()
        self.sessions[spec.id] = session
        self.log.info(spec.id, f"{'attached to' if attached else 'started'} {backend.name} runtime (pid {info.pid})")
        self._move(spec.id, RuntimeState.RUNNING, phase=None, progress={}, reason=None, backend=backend.name, pid=info.pid, node=info.details.get("node"))
        # Reading starts only once the runtime shows as running, so busy/idle updates land on it.
        session.start_reading()
        self._settle_unfinished(spec.id, info.instance)
        return session

    def _settle_unfinished(self, runtime_id: str, instance: str | None) -> None:
        """Ends this client's cells that an earlier instance of the runtime had when this client
        detached from it: as the store recorded them, else lost."""
        stale = self._unfinished.of_other_instances(runtime_id, instance)
        if not stale:
            return
        self.sync_ended()  # the journals of instances that ended unattended, into the store
        for exec_id, cell_id in stale:
            record = self.store.find_exec(cell_id, exec_id)
            done = {"seq": None, "exec": exec_id, "type": "done", "meta": {"cell": cell_id}, "t": time.time()}
            if record is not None and record.finished:
                done.update(status=record.status, reason=record.reason, count=record.count, duration=record.duration)
            else:
                done.update(status="lost", reason="lost: the runtime ended while this client was detached from it")
            self._emit(RuntimeMessage(runtime_id, done))

    def _report_session_end(self, session: RuntimeSession, reason: str, crashed: bool) -> None:
        if self.sessions.get(session.spec.id) is not session:
            return  # a newer session of the runtime has the panel now
        if crashed:
            self.log.error(session.spec.id, reason)
            self._move(session.spec.id, RuntimeState.ERROR, reason=reason, busy=False)
        else:
            self.log.info(session.spec.id, reason)
            self._move(session.spec.id, RuntimeState.STOPPED, reason=stopped_reason(reason), busy=False)

    def _forget_session(self, session: RuntimeSession) -> None:
        if self.sessions.get(session.spec.id) is session:
            del self.sessions[session.spec.id]

    def store_files(self, backend: Backend, info: RuntimeInfo, record: ExecutionRecord, done: dict[str, Any]) -> list[dict[str, Any]]:
        """Stores the files an execution wrote to /results (or $NJTUI_RESULTS) with its record:
        the copies its agent staged before `done`, so a later cell's writes are never taken
        for this one's; the entries stored. Raises OSError when the store cannot take them, and
        BackendError when the runtime's engine does not hand them over (the recorder stops, and
        records the `done` again from the journal, files and all); the agent lets its copies go
        only once the store has them (Recorder, `release`)."""
        staged = done.get("files")
        if not staged:
            return []
        files = self.store.save_files(record, backend.collect_files(info, staged))
        if files:
            self.log.info(info.runtime_id, f"collected {len(files)} file{'s' if len(files) != 1 else ''} from /results of cell {record.cell}")
        return files

    def write_back_mounts(self, session: RuntimeSession) -> None:
        """After a cell: read-write S3 mounts send their changed files back to the bucket."""
        spec = session.spec
        mounts = [mount for mount in spec.mounts if mount.kind == "s3" and not mount.read_only]
        if not mounts or not session.backend.supports(WRITE_BACK):
            return
        try:
            if session.mount_credentials is None:
                session.mount_credentials = resolve_launch(self.notebook, spec).mount_credentials
            for mount in mounts:
                keys = session.backend.write_back(session.info, mount, session.mount_credentials)
                if keys:
                    self.log.info(spec.id, f"wrote {len(keys)} changed file{'s' if len(keys) != 1 else ''} back to {mount.source}")
        except BackendError as exc:
            self.log.error(spec.id, f"could not write back to S3: {exc}")

    # -- environments, for the settings screen (the UI asks here, never the engine)
    def _images(self, engine: str | None = None, engine_tls: str | None = None) -> Backend | None:
        """The backend that runs image environments, if any is installed: on `engine` when a
        runtime names one (a Swarm's images are asked of its manager's engine)."""
        if engine is not None:
            return self.backends.on_engine("docker", parse_engine(engine).target, engine_tls)
        for name in self.backends:
            try:
                backend = self.backends[name]
            except BackendError:
                continue
            if backend.supports(IMAGES):
                return backend
        return None

    def local_images(self, engine: str | None = None, engine_tls: str | None = None) -> list[dict[str, Any]]:
        backend = self._images(engine, engine_tls)
        return backend.local_images() if backend is not None else []

    def check_environment(self, environment: str, engine: str | None = None, engine_tls: str | None = None) -> str:
        if environment == "host":
            return "this machine"
        backend = self._images(engine, engine_tls)
        if backend is None:
            raise BackendError("no installed backend runs images")
        return backend.check_image(environment)

    def image_env(self, environment: str, engine: str | None = None, engine_tls: str | None = None) -> dict[str, str]:
        if environment == "host":
            return {}
        try:
            backend = self._images(engine, engine_tls)
            return backend.image_env(environment) if backend is not None else {}
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
        changed = changed_settings(started_with, settings_of(self.notebook, spec))
        if "environment" in changed and spec.saved_version is not None and self.environments.saved_as(session.info) == spec.saved_version:
            # It started from an older environment, but what it boots from now is what it was
            # saved as: it already runs that.
            changed.remove("environment")
        return changed

    def runtime_for(self, cell: Cell) -> RuntimeSpec:
        return self.notebook.runtime_for(cell)

    def execute(self, cell: Cell, code: str | None = None) -> str:
        """Sends a code cell to its runtime (booting it if needed); returns the execution id."""
        spec = self.runtime_for(cell)
        exec_id = protocol.new_exec_id()
        source = cell.source if code is None else code
        meta = {"cell": cell.id, "source_hash": cell.source_hash}
        try:
            self._submit(self.ensure(spec.id), exec_id, source, meta)
        except SessionEnded:
            # It ended between finding it and sending: the next ensure boots a new one.
            self._submit(self.ensure(spec.id), exec_id, source, meta)
        return exec_id

    def _submit(self, session: RuntimeSession, exec_id: str, source: str, meta: dict[str, Any]) -> None:
        # Expected before it is sent: its `done` may come before `submit` returns.
        self._unfinished.expect(exec_id, session.spec.id, session.info.instance, meta["cell"])
        try:
            session.submit(exec_id, source, meta)
        except BaseException:
            self._unfinished.ended(exec_id)
            raise

    def interrupt(self, runtime_id: str) -> None:
        session = self.sessions.get(runtime_id)
        if session is not None:
            self.log.info(runtime_id, "interrupt")
            if session.connection is None:
                return
            try:
                session.backend.interrupt(session.connection)
            except (BackendError, OSError) as exc:
                # Its connection is going: the reader sees the end and reports it, cells and all.
                self.log.warning(runtime_id, f"the interrupt did not reach the runtime: {exc}")

    def complete(self, runtime_id: str, code: str, cursor: int, timeout: float = 2.0) -> Completion | None:
        """What the running runtime offers to complete in `code` at `cursor` (a character offset
        into it), waiting up to `timeout` seconds for its answer. None when the runtime is not
        running (a completion never boots one), when it does not answer in time or refuses (an
        agent that does not complete), or when its session ends or detaches meanwhile.

        Safe to call from a worker thread while cells run: it takes no runtime lock, so a boot,
        stop or restart never waits for it."""
        session = self.sessions.get(runtime_id)
        if session is None or session.closed.is_set() or not 0 <= cursor <= len(code):
            return None
        return session.complete(code, cursor, timeout)

    def stop(self, runtime_id: str) -> None:
        """Stops a runtime; returns once its end is reported (state, its open cells lost)."""
        spec = self.notebook.runtimes[runtime_id]
        if self.status(runtime_id).state == RuntimeState.BOOTING:
            # The boot holds the runtime's lock: it gives up at its next progress report (a
            # runtime waiting for a Swarm node reports every moment).
            self._cancelling.add(runtime_id)
        with self._lock(runtime_id):
            session = self.sessions.get(runtime_id)
            # Stopped where it runs, which its settings may no longer say (edited since it started).
            backend, info = (session.backend, session.info) if session is not None else self._find(spec)
            if info is None:
                return
            self.log.info(runtime_id, "stopping")
            backend.stop(info)
            if session is not None:
                session.finished.wait(timeout=10)

    def restart(self, runtime_id: str) -> RuntimeSession:
        """A stop, then a boot, with nothing in between: returns the new runtime's session once
        the old one is gone."""
        with self._lock(runtime_id):
            self.log.info(runtime_id, "restart")
            self.stop(runtime_id)
            return self.ensure(runtime_id)

    def stop_all(self) -> None:
        """Stops every runtime of this notebook; one that can't be stopped does not keep the
        others running. Raises afterwards with each failure."""
        failures: list[str] = []
        for runtime_id in list(self.notebook.runtimes):
            try:
                self.stop(runtime_id)
            except BackendError as exc:
                failures.append(f"{runtime_id}: {exc}")
        if failures:
            raise BackendError("; ".join(failures))

    def sync_ended(self) -> None:
        """Records what runtimes of this notebook did after their last client went away."""
        elsewhere = [placed for spec in self.notebook.runtimes.values() if (placed := self._placed_elsewhere(spec)) is not None]
        for _, backend_of in self.backends.of_notebook(self.notebook.runtimes.values(), also=elsewhere):
            try:
                backend = backend_of()
                ended = backend.ended(self.path)
            except (BackendError, KeyError):
                continue
            for info in ended:
                try:
                    self._record_ended(backend, info)
                except (BackendError, OSError, ValueError) as exc:
                    # Gone as we read it (removed by another client's stop), or unreadable: its
                    # journal, if any is left, stays for the next try.
                    self.log.warning(info.runtime_id, f"could not record the ended runtime: {exc}")

    def _record_ended(self, backend: Backend, info: RuntimeInfo) -> None:
        recorder = Recorder(self.store, info.key, info.runtime_id, store_files=lambda record, done: self.store_files(backend, info, record, done))
        if not recorder.try_activate():
            if recorder.failure is not None:
                self.log.error(info.runtime_id, f"{recorder.failure}: the ended runtime's outputs are not recorded; its journal is kept for the next try")
            return
        try:
            # A store that never recorded it (deleted since) does not take its past back.
            recorder.bind(info.instance, history=lambda: backend.journal(info), ended=True)
            for message in backend.journal(info):
                finished = recorder.handle(message)
                if not recorder.active:
                    break
                if finished is not None and finished.files:
                    self._emit(RuntimeMessage(info.runtime_id, {"seq": None, "exec": finished.record.exec_id, "type": "files", "files": finished.files, "version": finished.record.version, "t": time.time()}))
            recorder.close_open(info.exit_reason or "the runtime ended")
        finally:
            recorder.release()
        if recorder.failure is not None or recorder.behind:
            # Not recorded whole: the journal stays until the store can take it.
            self.log.error(info.runtime_id, f"{recorder.failure or 'its journal has a gap'}: the ended runtime's outputs are not all in {self.store.root}; its journal is kept for the next try")
            return
        backend.discard(info)

    def detach(self) -> None:
        """Lets go of every runtime; they keep running and shut themselves down when idle."""
        for runtime_id in list(self.sessions):
            # Under the runtime's lock: a session being opened there is whole (reading) first,
            # and the next one opens after this one has let go of the recording.
            with self._lock(runtime_id):
                session = self.sessions.pop(runtime_id, None)
                if session is not None:
                    session.detach()

    def wait_caught_up(self, timeout: float = 10.0) -> bool:
        """Waits until each attached runtime has replayed to this client what it did unseen (its
        answer to the status request sent on attach has come), at most `timeout` seconds for
        each; whether all of them did."""
        return all([session.caught_up.wait(timeout) for session in list(self.sessions.values())])

    # -- every runtime on this machine, of any notebook (`njtui runtimes`)
    @staticmethod
    def list_runtimes(*, backends: Mapping[str, Backend] | None = None, ask: bool = True) -> RuntimeListing:
        """See `listing.list_runtimes`: every installed backend unless `backends` are given."""
        return list_runtimes(Backends(backends), ask=ask)

    @staticmethod
    def stop_runtimes(selector: str | None = None, *, backends: Mapping[str, Backend] | None = None) -> RuntimeStops:
        """See `listing.stop_runtimes`."""
        return stop_runtimes(Backends(backends), selector)
