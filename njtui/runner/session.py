"""One client's attachment to one running runtime: reading its messages, recording them.

A session's reader thread turns the runtime's messages into runner events and records them in
the results store (see `recorder`); when the runtime ends it reports why and ends every cell
still open with a `lost` done. It also carries completion requests: their answers come on the
same stream, without a seq, and go to the caller waiting for them, not to the subscribers.

A `done` goes to the subscribers only once the store has the execution, record and /results
files, whichever client recorded it (`_held`): a client that reports a cell finished, and exits,
leaves it recorded. One whose store writes fail reports the cell not ok, with the reason.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from njtui.model import ExecutionRecord, RuntimeSpec
from njtui.runner import protocol
from njtui.runner.backend import Backend, BackendError, Connection, RuntimeInfo
from njtui.runner.events import RuntimeMessage
from njtui.runner.listing import StopNotes
from njtui.runner.recorder import Finished, Recorder, numbered

if TYPE_CHECKING:
    from njtui.runner.log import RunnerLog
    from njtui.runner.runner import Runner

RECORDER_RETRY_INTERVAL = 1.0
# After write errors the store is retried less and less often, up to this: each try replays the
# journal from the cursor, wasted work while the disk is still full.
RECORDER_RETRY_MAX = 30.0
# While a `done` waits for another client to record it, the store's cursor is looked at this
# often (from the first, growing to the second): the recording client saves it right after.
HELD_POLL_MIN = 0.005
HELD_POLL_MAX = 0.05
# A `done` another client has not recorded, with no progress of the store's cursor for this
# long, is reported not ok (that client may be suspended): its journal keeps it.
HELD_STALL = 60.0
# At the runtime's end, how long `done`s wait for the client recording it to record them.
HELD_END_WAIT = 5.0
# Why a `done` went out not ok: the store had not got it when ...
NOT_RECORDED_DETACHED = "not recorded yet: this client let go before the results store had it; the runtime's journal keeps it (`njtui show` records it)"
NOT_RECORDED_STALLED = "not recorded yet: the client recording this runtime has recorded nothing for a minute; the runtime's journal keeps it (`njtui show` records it once that client lets go)"
NOT_RECORDED_ENDED = "not recorded: the runtime ended before the client recording it had recorded this; its journal is kept (`njtui show` records it)"
# How a `done` was recorded (_verdict): by this client, or another.
_RECORDED = "recorded"
_RECORDED_ELSEWHERE = "recorded elsewhere"


# The agent's answer to a `complete` request, and its answer to a request with an id that it
# does not know: not journaled, so they have no seq.
# How long a detach waits for the agent to acknowledge (`queued`) cells just sent: closing the
# connection at once can drop a request the engine or relay had not yet passed on.
HEARD_WAIT = 5.0
COMPLETION = "completion"
UNSUPPORTED = "unsupported"


class SessionEnded(BackendError):
    """The runtime ended before a cell could be sent to it."""


@dataclass
class Completion:
    """What a runtime offers to complete at a cursor: `code[start:end]` is the text each of
    `matches` would replace (character offsets into the code asked about)."""

    matches: list[str]
    start: int
    end: int


def _completion_of(reply: dict[str, Any], code: str) -> Completion | None:
    """The completion an agent's reply holds; None for an error, or a reply that does not fit the
    code it answers (it comes from inside the runtime: checked, not trusted)."""
    matches, start, end = reply.get("matches"), reply.get("start"), reply.get("end")
    if reply.get("error") or not isinstance(matches, list):
        return None
    if not all(isinstance(offset, int) and not isinstance(offset, bool) for offset in (start, end)):
        return None
    assert isinstance(start, int) and isinstance(end, int)
    if not 0 <= start <= end <= len(code):
        return None
    return Completion([match for match in matches if isinstance(match, str)], start, end)


# Output with exec null (a background process or thread writing after its cell ended,
# docs/protocol.md "Output capture") is no cell's: it shows in the runner log, at most this much
# of one message (the runtime's journal keeps all of it).
BACKGROUND_LOG_LINES = 20
BACKGROUND_LOG_CHARS = 500


def _log_background_output(log: RunnerLog, runtime_id: str, message: dict[str, Any]) -> None:
    text = message.get("text")
    if not isinstance(text, str) or not text:
        return
    name = "stderr" if message.get("name") == "stderr" else "stdout"
    lines = text.splitlines()
    for line in lines[:BACKGROUND_LOG_LINES]:
        cut = f"… ({len(line) - BACKGROUND_LOG_CHARS} more characters)" if len(line) > BACKGROUND_LOG_CHARS else ""
        log.write(runtime_id, f"background {name}: {line[:BACKGROUND_LOG_CHARS]}{cut}", "output")
    if len(lines) > BACKGROUND_LOG_LINES:
        log.write(runtime_id, f"background {name}: … {len(lines) - BACKGROUND_LOG_LINES} more lines (in the runtime's journal)", "output")


def _refuses_completion(log: dict[str, Any]) -> bool:
    """Whether an agent's `log` message is its refusal of a `complete` request: an agent from
    before completions (and before `unsupported` answers) answers an op it does not know with a
    log line, which names no request."""
    text = log.get("text")
    return isinstance(text, str) and ("unknown op 'complete'" in text or ("bad request" in text and '"op":"complete"' in text))


class _Waiting:
    """A caller waiting for the answer to one completion request."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.reply: dict[str, Any] | None = None


class RuntimeSession:
    """One client's attachment to one running runtime."""

    def __init__(self, runner: Runner, spec: RuntimeSpec, backend: Backend, info: RuntimeInfo, *, booted: bool = False) -> None:
        self.runner = runner
        self.spec = spec
        self.backend = backend
        self.info = info
        # This client booted the runtime just now: its journal holds nothing older than us.
        self.booted = booted
        self.recorder = Recorder(runner.store, info.key, spec.id, store_files=self._store_files, release=self._release_staged)
        # How far this client's recorder recorded this instance's journal (done seqs up to it
        # are in the store), kept when its recorder lets go.
        self._own_upto = 0
        # Fresh `done`s (and their cell) not passed on yet: the store does not have them yet.
        self._held: list[tuple[dict[str, Any], str | None]] = []
        self._held_lock = threading.Lock()
        self._held_delay = HELD_POLL_MIN
        # The store's cursor seq last seen while waiting, and since when it has not moved.
        self._held_progress: tuple[int, float] = (0, 0.0)
        self.last_seq = runner.seen_seq.get((spec.id, info.instance), 0)
        self.open_execs: dict[str, str] = {}  # exec id → cell id, for executions not yet done
        self.running_exec: str | None = None
        self.connection: Connection | None = None
        # Set when the session stops reading: detached, or the runtime ended.
        self.closed = threading.Event()
        # Set once an ended runtime's end is reported, its open cells ended and its remains let go.
        self.finished = threading.Event()
        # Guards `open_execs` with `closed`: a cell is either submitted before the end, and
        # ended as lost by it, or refused after it; never both, never neither.
        self._execs_lock = threading.Lock()
        self._detached = False
        # Cells sent through this connection that the agent has not acknowledged yet.
        self._unheard: set[str] = set()
        self._heard = threading.Condition()
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
        # Completion requests waiting for their answer, by request id; with the lock, a request
        # either waits before the session ends, and is woken by it, or sees it ended.
        self._completions: dict[str, _Waiting] = {}
        self._completions_lock = threading.Lock()
        # False once the agent refused a completion: it is not asked again.
        self._completes = True

    def open(self) -> None:
        self._opened_at = time.time()
        with self._recording:
            if self.recorder.try_activate():
                self.recorder.bind(self.info.instance, history=None if self.booted else self._journal)
                self._note_recorded()
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
        """Sends a cell. Raises SessionEnded if the runtime ended first; once accepted, the cell
        gets exactly one `done`: its own, or `lost` when the runtime ends before it."""
        assert self.connection is not None
        with self._execs_lock:
            if self.closed.is_set():
                raise SessionEnded(f"runtime {self.spec.id} ended before the cell was sent")
            self.open_execs[exec_id] = meta.get("cell", "")
            with self._heard:
                self._unheard.add(exec_id)
        try:
            self.connection.send(protocol.execute_request(exec_id, code, meta))
        except (BackendError, OSError) as exc:
            with self._heard:
                self._unheard.discard(exec_id)
            with self._execs_lock:
                if self._detached:
                    # This client let go as it sent: the runtime never got the cell, and no
                    # end of this session will report it. The caller sends it again.
                    self.open_execs.pop(exec_id, None)
                    raise SessionEnded(f"runtime {self.spec.id}: detached before the cell was sent") from None
            # The connection is going: the reader sees it end and reports this cell lost.
            self.runner.log.warning(self.spec.id, f"could not send the cell: {exc}")

    def send(self, request: dict[str, Any]) -> None:
        if self.connection is not None:
            self.connection.send(request)

    def complete(self, code: str, cursor: int, timeout: float) -> Completion | None:
        """Asks the agent for completions and waits up to `timeout` for its answer; None without
        one (timed out, refused, or the session ended or detached meanwhile)."""
        if not self._completes:
            return None
        request_id = secrets.token_hex(6)
        waiting = _Waiting()
        with self._completions_lock:
            if self.closed.is_set():
                return None
            self._completions[request_id] = waiting
        try:
            try:
                self.send({"op": "complete", "id": request_id, "code": code, "cursor": cursor})
            except (BackendError, OSError):
                return None  # the connection is going: the reader reports the end
            waiting.answered.wait(timeout)
        finally:
            with self._completions_lock:
                self._completions.pop(request_id, None)
        return _completion_of(waiting.reply, code) if waiting.reply is not None else None

    def _answer(self, reply: dict[str, Any]) -> None:
        """A completion's answer, to its caller; one nobody waits for (timed out, or another
        client's: every client of a runtime sees every answer) goes nowhere."""
        request_id = reply.get("id")
        if not isinstance(request_id, str):
            return
        with self._completions_lock:
            waiting = self._completions.get(request_id)
            if waiting is not None:
                waiting.reply = reply
                waiting.answered.set()

    def _stop_completions(self, refused: bool = False) -> None:
        """Wakes every caller still waiting for a completion: the session ended, or the agent
        does not complete."""
        with self._completions_lock:
            if refused:
                self._completes = False
            waiting, self._completions = list(self._completions.values()), {}
        for each in waiting:
            each.answered.set()

    def _read(self) -> None:
        try:
            self._read_messages()
        except Exception as exc:  # noqa: BLE001 - a bug here must turn the runtime red, not hang its clients
            self.runner.log.error(self.spec.id, f"reading the runtime failed: {type(exc).__name__}: {exc}")
            self._ended(f"njtui failed reading the runtime: {exc}", True)

    def _read_messages(self) -> None:
        assert self.connection is not None
        exit_reason = "the connection to the runtime closed"
        crashed = True
        # The agent's own word on why it ends: it outranks what the backend can tell afterwards
        # (a container already removed by the stop that ended it reads as removed from outside).
        said: str | None = None
        failed = False
        for message in self.connection:
            if message.get("type") == "exit" and "seq" in message:
                said = protocol.exit_words(message)
                failed = message.get("error") is True  # red, with the agent's own sentence
            if "seq" not in message:
                kind = message.get("type")
                if kind == protocol.AGENT_STDERR:
                    for line in message.get("text", "").splitlines():
                        self.runner.log.write(self.spec.id, line, "agent")
                elif kind == protocol.RUNTIME_EXIT:
                    exit_reason = message.get("reason") or "stopped"
                    crashed = not exit_reason.startswith("stopped")
                elif kind == COMPLETION:
                    self._answer(message)
                elif kind == UNSUPPORTED and message.get("op") == "complete":
                    self._stop_completions(refused=True)
                continue
            fresh = message["seq"] > self.last_seq
            done = message.get("type") == "done"
            exec_id = message.get("exec")
            cell = self.open_execs.get(exec_id) if done and fresh and isinstance(exec_id, str) else None
            if fresh:
                # Numbered before anyone sees it: the listeners, the store and other clients
                # get the notebook's count (the recorder numbers what it records the same way).
                message = numbered(self.runner.store, message)
                self.last_seq = message["seq"]
                self.runner.seen_seq[(self.spec.id, self.info.instance)] = self.last_seq
                self._track(message)
                if not done:
                    self.runner._emit(RuntimeMessage(self.spec.id, message))
            # Recorded after the listeners have it, so file writes stay off the latency path; a
            # `done` goes out once the store has it, /results files and all (by this client or
            # another), as its status must say whether the store has it all.
            finished = self._record(message)
            if finished is not None:
                self._files_stored(finished)
            if fresh and done:
                self._hold(message, cell)
            if done:
                with self._recording:
                    self.recorder.flush()
                    self._after_recording()
                    unrecorded = not self.recorder.active
                self._watch_if(unrecorded)
            if self._held:
                self._settle_held()
            if finished is not None:
                self.runner.write_back_mounts(self)
        if said is not None:
            exit_reason, crashed = said, failed
        # Stopped on purpose from another command: however the agent went (its own exit, or
        # killed once the stop's time ran out), that is what happened, not a crash.
        stopped_by = StopNotes().reason_for(self.info)
        if stopped_by is not None:
            exit_reason, crashed = stopped_by, False
        self._ended(exit_reason, crashed)

    def _record(self, message: dict[str, Any]) -> Finished | None:
        with self._recording:
            finished = self.recorder.handle(message)
            self._note_recorded()
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

    def _note_recorded(self) -> None:
        """(Under the recording lock.) Keeps how far this client's recorder has recorded."""
        if self.recorder.active and self.recorder.cursor.get("instance") == self.info.instance:
            self._own_upto = max(self._own_upto, self.recorder.recorded_seq)

    def _journal(self) -> Iterator[dict[str, Any]]:
        return self.backend.journal(self.info)

    def _store_files(self, record: ExecutionRecord, done: dict[str, Any]) -> list[dict[str, Any]]:
        return self.runner.store_files(self.backend, self.info, record, done)

    def _release_staged(self, exec_id: str) -> None:
        """The store has the execution's files: the agent may let its staged copies go."""
        try:
            self.send({"op": "release", "exec": exec_id})
        except (BackendError, OSError):
            pass  # the connection is going: the runtime's end takes the copies with it

    def _files_stored(self, finished: Finished) -> None:
        """Tells the listeners which /results files the store has for an execution."""
        record, files = finished.record, finished.files
        if files:
            self.runner._emit(RuntimeMessage(self.spec.id, {"seq": None, "exec": record.exec_id, "type": "files", "files": files, "version": record.version, "t": time.time()}))

    def _hold(self, done: dict[str, Any], cell: str | None) -> None:
        """A fresh `done` waits until the store has its execution (_settle_held)."""
        with self._held_lock:
            if not self._held:
                self._held_delay = HELD_POLL_MIN
                self._held_progress = (0, time.monotonic())
            self._held.append((done, cell))
        self._settle_held()
        if self._held:
            self._watch_if(True)

    def _verdict(self, seq: int) -> str | None:
        """(Under the recording lock.) Whether the store has the execution whose `done` is `seq`:
        _RECORDED (by this client), _RECORDED_ELSEWHERE, the failure that keeps this client
        from recording it, or None: not yet."""
        if self._own_upto >= seq:
            return _RECORDED
        cursor = self.runner.store.cursor(self.info.key)
        if cursor.get("instance") == self.info.instance and cursor.get("seq", 0) >= seq:
            return _RECORDED_ELSEWHERE
        return self.recorder.failure

    def _settle_held(self, ending: str | None = None) -> None:
        """Passes on the held `done`s the store has, in order: as they are when recorded, not ok
        with the reason when this client's writes fail; with `ending`, all of them (why the
        rest went out unrecorded)."""
        with self._held_lock:
            while self._held:
                done, cell = self._held[0]
                with self._recording:
                    verdict = self._verdict(done["seq"])
                if verdict is None:
                    if ending is None:
                        return
                    verdict = ending
                self._held.pop(0)
                self._pass_on(done, cell, verdict)

    def _pass_on(self, done: dict[str, Any], cell: str | None, verdict: str) -> None:
        if verdict == _RECORDED_ELSEWHERE and cell:
            # The recording client stored its files: this client's listeners hear of them too.
            try:
                record = self.runner.store.find_exec(cell, done["exec"])
                if record is not None:
                    self._files_stored(Finished(record, self.runner.store.files(record)))
            except (OSError, ValueError):
                pass
        if verdict not in (_RECORDED, _RECORDED_ELSEWHERE):
            status = done.get("status", "ok")
            reason = verdict if verdict.startswith("not recorded") else f"{verdict} (the runtime's journal keeps the output, and the runtime its /results files, until the store takes them: `njtui show` or the next run records them)"
            done = {**done, "status": "error" if status == "ok" else status, "reason": reason}
        self.runner._emit(RuntimeMessage(self.spec.id, done))

    def _held_wait(self) -> float:
        """How long the watcher waits before it looks again: briefly while `done`s wait for the
        store (reporting them not ok once another client has recorded nothing for HELD_STALL),
        else the retry pacing of a failed store."""
        if not self._held or self.recorder.failure is not None:
            return self._retry_delay
        cursor = self.runner.store.cursor(self.info.key)
        seq = cursor.get("seq", 0) if cursor.get("instance") == self.info.instance else 0
        now = time.monotonic()
        if seq != self._held_progress[0]:
            self._held_progress = (seq, now)
            self._held_delay = HELD_POLL_MIN
        elif now - self._held_progress[1] > HELD_STALL:
            self._settle_held(ending=NOT_RECORDED_STALLED)
        delay = self._held_delay
        self._held_delay = min(self._held_delay * 2, HELD_POLL_MAX)
        return delay

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
                f"{failure}: outputs are not recorded in {self.runner.store.root}; the runtime's journal keeps them, and recording resumes from it once the store can be written (`njtui show` does it too)",
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
            settled = self._maybe_take_recording() or self._recorded_elsewhere()
            if self._held:
                self._settle_held()
            # Recording here now, the reader passes on what is held as it records it.
            if settled and (not self._held or self.recorder.active):
                continue
            self._unrecorded.set()
            if self.closed.wait(self._held_wait()):
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
                self.recorder.bind(self.info.instance, history=self._journal)
                self._note_recorded()
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

    def _await_acknowledged(self) -> None:
        """Until the agent has acknowledged the cells sent through this connection (or the
        reader ended, or HEARD_WAIT passed): a request still on its way when the connection
        closes may never reach the agent, and no session would report it."""
        reader = self._thread
        if reader is None or reader is threading.current_thread():
            return
        deadline = time.monotonic() + HEARD_WAIT
        with self._heard:
            while self._unheard and reader.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._heard.wait(min(remaining, 0.1))

    def _track(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        exec_id = message.get("exec")  # a string in every queued, start and done message
        if isinstance(exec_id, str) and exec_id in self._unheard:
            with self._heard:
                self._unheard.discard(exec_id)
                self._heard.notify_all()
        if kind == "queued" and isinstance(exec_id, str):
            with self._execs_lock:
                self.open_execs[exec_id] = (message.get("meta") or {}).get("cell", "")
        elif kind == "start":
            self.running_exec = exec_id
            if isinstance(exec_id, str):
                with self._execs_lock:
                    self.open_execs.setdefault(exec_id, (message.get("meta") or {}).get("cell", ""))
            self.runner._update(self.spec.id, busy=True)
        elif kind == "done":
            with self._execs_lock:
                if isinstance(exec_id, str):
                    self.open_execs.pop(exec_id, None)
                idle = not self.open_execs
            if self.running_exec == exec_id:
                self.running_exec = None
            if idle:
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
        elif kind == "stream" and exec_id is None:
            _log_background_output(self.runner.log, self.spec.id, message)
        elif kind == "log":
            if _refuses_completion(message):
                # Asked by njtui, not by the user: no error of the runtime's to log.
                self._stop_completions(refused=True)
                return
            self.runner.log.write(self.spec.id, message.get("text", ""), message.get("level", "info"))

    def _ended(self, reason: str, crashed: bool) -> None:
        with self._execs_lock:
            if self.closed.is_set():
                return  # detached on purpose: the runtime runs on
            self.closed.set()
            open_execs = dict(self.open_execs)
            self.open_execs.clear()
        self._stop_completions()
        try:
            self._report_end(reason, crashed, open_execs)
        finally:
            self.finished.set()

    def _report_end(self, reason: str, crashed: bool, open_execs: dict[str, str]) -> None:
        # Red (or grey) with its reason first: the clean-up below can be slow, most of all when
        # the engine itself has gone.
        self.runner._report_session_end(self, reason, crashed)
        lost = f"lost: {reason}"
        for exec_id, cell in open_execs.items():
            self.runner._emit(RuntimeMessage(self.spec.id, {"seq": None, "exec": exec_id, "type": "done", "status": "lost", "reason": lost, "meta": {"cell": cell}, "t": time.time()}))
        self._unrecorded.set()  # the watcher sees `closed` and stops
        # `done`s still held wait (a little) for the client recording them, or for its lock.
        deadline = time.monotonic() + HELD_END_WAIT
        delay = HELD_POLL_MIN
        while True:
            with self._recording:
                recorded = self._record_rest_of_journal()
                self.recorder.close_open(reason)
                recorded = recorded and self.recorder.active
                self.recorder.release()
                recorded = recorded and self.recorder.failure is None
                self._after_recording()
            self._settle_held()
            if recorded or not self._held or time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, HELD_POLL_MAX)
        self._settle_held(ending=NOT_RECORDED_ENDED)
        # Before `finished`: a restart, or a boot after this end, waits for it, so what is
        # discarded is this runtime's, never its successor's.
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
            self.recorder.bind(self.info.instance, history=self._journal)
            self._note_recorded()
            if not self.recorder.active:
                return False
        if self.recorder.cursor.get("seq", 0) >= self.last_seq and not self.recorder.behind:
            self.recorder.failure = None
            return True  # it recorded all this client saw: the journal holds nothing more
        try:
            for message in self.backend.journal(self.info):
                finished = self.recorder.handle(message)
                self._note_recorded()
                if not self.recorder.active:
                    return False
                if finished is not None:
                    self._files_stored(finished)
        except (BackendError, OSError, ValueError) as exc:
            self.runner.log.warning(self.spec.id, f"could not read the journal of the ended runtime: {exc}")
            return False
        if self.recorder.behind:
            return False
        self.recorder.failure = None
        return True

    def detach(self) -> None:
        with self._execs_lock:
            self._detached = True
            self.closed.set()
        self._await_acknowledged()
        self._stop_completions()
        self._unrecorded.set()  # the watcher sees `closed` and stops
        if self.connection is not None:
            self.connection.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._recording:
            self.recorder.release()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        # What the store does not have yet goes out, said to be not recorded: this client
        # will not see it recorded.
        self._settle_held(ending=NOT_RECORDED_DETACHED)
        self.finished.set()
