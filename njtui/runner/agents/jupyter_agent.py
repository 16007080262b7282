#!/usr/bin/env python3
"""The njtui Jupyter bridge (protocol 1, see docs/protocol.md, "The Jupyter bridge").

Speaks the agent protocol on its stdin/stdout for one Jupyter kernel, which it starts beside
itself through jupyter_client and whose channels it holds: what the kernel produces while no
client is attached is journaled like any agent's output, and nothing but this process's
stdin/stdout crosses to the client (a remote engine's containers need no reachable ports).
It needs jupyter_client and agent.py (beside it); the kernel's own packages are the kernel's.
Usage: python3 jupyter_agent.py --journal PATH --kernel NAME [--idle-timeout SECONDS] [--await-secrets]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from queue import Empty
from typing import Any

# agent.py lies beside this script (on the host and in a container alike). Run as a script, its
# directory is on sys.path already; imported from elsewhere (a tool walking the package), not.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from agent import ENDED_BY, PROTOCOL, SHUTDOWN_GRACE, Channel, _results_snapshot, keep_secrets, release_staged, stage_results  # noqa: E402

# The kernel's first kernel_info reply: a kernel that has not answered by then never will.
KERNEL_READY_TIMEOUT = 120.0
# A completion the kernel has not answered by then (it is running a cell) offers nothing.
COMPLETION_TIMEOUT = 2.0
# An interrupt that came before the kernel began the request (its SIGINT handler is only in
# place while it handles one) is sent again this often, this many times at most.
INTERRUPT_RETRIES, INTERRUPT_RETRY_INTERVAL = 20, 0.1
# A kernel sends its execute_reply (shell) and its idle status (iopub) together; the second of
# the two is awaited this long after the first before the cell ends without it (a message lost
# to a full queue, a kernel whose handler raised instead of replying).
PAIRED_MESSAGE_TIMEOUT = 5.0
# How often the shell socket is looked at while a cell runs, so that the wait above can end.
REPLY_WAIT_SLICE = 1.0
# Output the kernel wrote just before it died may still be on its way through the sockets.
DEATH_DRAIN_TIMEOUT = 0.2
# After `shutdown_request`, how long a kernel may take to exit before it is killed.
KERNEL_SHUTDOWN_WAIT = 1.0

# How to get a kernelspec that is not installed, for the ones people ask for most.
INSTALL_HINTS = {
    "python3": "`pip install ipykernel` for python3",
    "python": "`pip install ipykernel` for python3",
    "bash": "`pip install bash_kernel && python -m bash_kernel.install --sys-prefix` for bash",
    "ir": "`install.packages('IRkernel'); IRkernel::installspec()` in R for ir",
    "julia": '`using Pkg; Pkg.add("IJulia")` in Julia for julia',
}


# IPython leaves the working directory off sys.path under -P; cells get it back, where IPython
# would have put it (after the standard library), once the kernel has loaded. One expression:
# it leaves no name in the cells' namespace.
IPYTHON_CELLS_PATH = "--IPKernelApp.exec_lines=[\"__import__('sys').path.insert(next((i for i, p in enumerate(__import__('sys').path) if p.endswith(('site-packages', 'dist-packages'))), len(__import__('sys').path)), '')\"]"


def safe_kernel_argv(argv: list[str]) -> list[str]:
    """A kernel started as `python -m launcher` with -P: `-m` puts the working directory (the
    notebook's) first on sys.path, so a module planted there would run as the kernel starts,
    before ipykernel takes it off again. An IPython kernel gives it back to cells, as Jupyter
    does. An interpreter that does not know -P (before 3.11) is started as its spec says."""
    if len(argv) < 3 or argv[1] != "-m":
        return argv
    own = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}", sys.executable}
    if argv[0] in own:
        knows_safe_path = sys.version_info >= (3, 11)
    else:
        try:
            knows_safe_path = subprocess.run([argv[0], "-P", "-c", ""], cwd="/", stdin=subprocess.DEVNULL, capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            knows_safe_path = False
    if not knows_safe_path:
        return argv
    return [argv[0], "-P", *argv[1:], *((IPYTHON_CELLS_PATH,) if argv[2] == "ipykernel_launcher" else ())]


class KernelUnavailable(Exception):
    """The kernel can't be had here: its sentence says why and what to do."""


def find_kernel_language(kernel_name: str) -> str:
    """The language of the kernelspec `kernel_name`, or KernelUnavailable saying how to get it."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        raise KernelUnavailable("jupyter_client is not installed in this environment (pip install jupyter_client)") from None
    manager = KernelSpecManager()
    try:
        return str(manager.get_kernel_spec(kernel_name).language or "")
    except NoSuchKernel:
        installed = ", ".join(sorted(manager.find_kernel_specs())) or "none"
        hint = INSTALL_HINTS.get(kernel_name.lower(), f"`pip install ipykernel` for python3, `python -m bash_kernel.install` for bash, or the {kernel_name} kernel's own package")
        raise KernelUnavailable(f"no Jupyter kernel {kernel_name!r} here (installed: {installed}): install the kernel in this environment, e.g. {hint}") from None


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "its process is gone"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Execution:
    """One cell, from its `start` to its `done`; the bridge's lock guards every field."""

    def __init__(self, exec_id: str, meta: dict, count: int) -> None:
        self.exec_id = exec_id
        self.meta = meta
        self.count = count
        self.msg_id: str | None = None  # the kernel's execute_request
        self.reply: dict | None = None  # its execute_reply's content
        self.idle_at: float | None = None  # when iopub said the kernel is idle after it
        self.input_seen = False  # the kernel has begun it (execute_input): its SIGINT handler is in place
        self.keyboard_interrupt = False
        self.interrupt_requested = False
        self.interrupting = False  # a thread is sending the interrupt
        self.started = time.perf_counter()
        self.snapshot: dict[str, tuple[int, int, int]] = {}  # $NJTUI_RESULTS as it began

    def took_interrupt(self) -> bool:
        return self.reply is not None or self.idle_at is not None or self.keyboard_interrupt


class HelloFirst:
    """The agent's channel, holding every numbered message back until `hello` has gone out.
    The bridge says hello once its kernel is ready (the runtime is booting until then, as a
    native one is until its agent runs), or at once when the client must send secrets before
    the kernel can start; what it says meanwhile (a `queued`, an `exit`) follows the hello in
    the order it was said. Answers (`reply`) are not numbered and go at once."""

    def __init__(self, channel: Channel, hello: dict[str, object]) -> None:
        self.channel = channel
        self.hello = hello
        self._lock = threading.Lock()
        self._held: list[tuple[str, str | None, dict[str, object]]] | None = []

    def emit(self, type_: str, exec_id: str | None = None, **fields: object) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append((type_, exec_id, fields))
            else:
                self.channel.emit(type_, exec_id, **fields)

    def reply(self, message: dict[str, object]) -> None:
        self.channel.reply(message)

    def say_hello(self) -> None:
        with self._lock:
            if self._held is None:
                return
            self.channel.emit("hello", **self.hello)
            for type_, exec_id, fields in self._held:
                self.channel.emit(type_, exec_id, **fields)
            self._held = None


class Bridge:
    def __init__(self, channel: HelloFirst, kernel_name: str, idle_timeout: float, connection_file: str, stage_dir: str) -> None:
        self.channel = channel
        self.kernel_name = kernel_name
        self.idle_timeout = idle_timeout
        self.connection_file = connection_file
        # Where the files a cell wrote to $NJTUI_RESULTS are copied as it ends (agent.py's way).
        self.stage_dir = stage_dir
        self.secrets: dict[str, str] = {}
        self.secrets_arrived = threading.Event()
        self.kernel_launched = False  # its environment is fixed from then on
        # Guards the queue, the running execution, the kernel's news of it and every numbered
        # message: output is emitted under it, so nothing of a cell can follow its `done`, and
        # nothing at all the `exit`.
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.pending: collections.deque[dict] = collections.deque()
        self.current: Execution | None = None
        self.count = 0  # the kernel's execution_count, as its last reply said
        self.drop_pending = False  # after the running cell's `done`: an interrupt came
        self.shutdown_reason: str | None = None
        self.last_activity = time.monotonic()
        self._ending = threading.Lock()  # one reason to end wins; the others wait for the exit
        self._closed = False  # the bridge is ending: nothing but its `exit` is written any more
        # jupyter_client's KernelManager is not made for several threads at once.
        self._kernel_lock = threading.Lock()
        self.km: Any = None
        self.kc: Any = None  # shell: the main thread's; iopub: the watcher thread's
        self._completion_client: Any = None
        self._completion_lock = threading.Lock()

    def emit(self, type_: str, exec_id: str | None = None, **fields: object) -> None:
        """A numbered message from a thread that holds no lock."""
        with self.lock:
            if not self._closed:
                self.channel.emit(type_, exec_id, **fields)

    # -- requests, read on their own thread so an interrupt comes through while a cell runs
    def read_requests(self, stream: Any) -> None:
        for raw in stream:
            try:
                request = json.loads(raw)
                op = request["op"]
            except (ValueError, KeyError, TypeError):
                self.emit("log", level="error", text=f"bad request: {raw[:200]!r}")
                continue
            if op == "execute":
                with self.lock:
                    if not self._closed:
                        ahead = len(self.pending) + (self.current is not None)
                        self.channel.emit("queued", request.get("exec"), meta=request.get("meta") or {}, position=ahead)
                        self.pending.append(request)
                        self.changed.notify_all()
            elif op == "interrupt":
                self.interrupt()
            elif op == "status":
                self.emit_status()
            elif op == "shutdown":
                self.shutdown("shutdown")
                return
            elif op == "secrets":
                self.take_secrets(request.get("env") or {})
            elif op == "release":
                release_staged(self.stage_dir, request.get("exec"))
            elif op == "complete":
                # On a thread of its own: the kernel answers when it can, and this reader must
                # stay free to take an interrupt.
                deadline = time.monotonic() + COMPLETION_TIMEOUT
                threading.Thread(target=self.answer_completion, args=(request, deadline), name="njtui-complete", daemon=True).start()
            elif "id" in request:
                self.channel.reply({"type": "unsupported", "id": request["id"], "op": op})
            else:
                self.emit("log", level="error", text=f"unknown op {op!r}")
        self.shutdown("stdin closed")

    def take_secrets(self, secrets: object) -> None:
        """They become the kernel's environment variables (with --await-secrets it starts only
        once they are here) and files in $NJTUI_SECRETS_DIR (keep_secrets)."""
        if not isinstance(secrets, dict):
            return
        self.secrets.update(keep_secrets(secrets, self._log))
        if self.kernel_launched:
            # A process's environment is fixed when it starts.
            self.emit("log", level="warning", text="secrets came after the kernel started: its cells see them as environment variables after a restart")
        self.secrets_arrived.set()

    def _log(self, level: str, text: str) -> None:
        self.emit("log", level=level, text=text)

    def emit_status(self) -> None:
        with self.lock:
            if self._closed:
                return
            running = self.current.exec_id if self.current is not None else None
            self.channel.emit(
                "status",
                running,
                state="busy" if running else "idle",
                running=running,
                queued=len(self.pending),
                count=self.count,
                idle_for=0.0 if running else round(time.monotonic() - self.last_activity, 3),
            )

    # -- completion: the kernel's complete_request, on a client of its own (a socket is used by
    # one thread at a time)
    def answer_completion(self, request: dict, deadline: float) -> None:
        code = request.get("code")
        code = code if isinstance(code, str) else ""
        cursor = request.get("cursor")
        cursor = min(max(cursor, 0), len(code)) if isinstance(cursor, int) and not isinstance(cursor, bool) else len(code)
        matches: list[str] = []
        start, end = cursor, cursor
        try:
            answer = self._ask_completion(code, cursor, deadline)
        except Exception:  # noqa: BLE001 - a completion that fails offers nothing; the kernel goes on
            answer = None
        if answer is not None and answer.get("status") == "ok":
            found = answer.get("matches")
            matches = [match for match in found if isinstance(match, str)] if isinstance(found, list) else []
            begin, finish = answer.get("cursor_start"), answer.get("cursor_end")
            if isinstance(begin, int) and isinstance(finish, int) and 0 <= begin <= finish <= len(code):
                start, end = begin, finish
        self.channel.reply({"type": "completion", "id": request.get("id"), "matches": matches, "start": start, "end": end})

    def _ask_completion(self, code: str, cursor: int, deadline: float) -> dict | None:
        # One request at a time on the client's socket; waiting for it counts against this
        # request's own time, so a burst of them while a cell runs ends together.
        if not self._completion_lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
            return None
        try:
            client = self._completion_client
            if client is None:
                return None  # the kernel is not ready yet
            msg_id = client.complete(code, cursor)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    message = client.shell_channel.get_msg(timeout=remaining)
                except Empty:
                    return None
                # Answers to earlier requests that timed out come late: they are dropped here.
                if message.get("parent_header", {}).get("msg_id") == msg_id:
                    content = message.get("content")
                    return content if isinstance(content, dict) else None
        finally:
            self._completion_lock.release()

    # -- interrupts
    def interrupt(self) -> None:
        with self.lock:
            execution = self.current
            if execution is None:
                # Nothing runs: the queued cells (the kernel may still be starting) go now.
                self._drop_pending()
                return
            self.drop_pending = True
            execution.interrupt_requested = True
            if execution.interrupting:
                return
            execution.interrupting = True
        threading.Thread(target=self._interrupt_until_taken, args=(execution,), name="njtui-interrupt", daemon=True).start()

    def _interrupt_until_taken(self, execution: Execution) -> None:
        """A kernel takes SIGINT only while it handles a request (ipykernel ignores it between
        them), so one sent as the request is on its way is lost. It is sent again while the
        execution has not taken it and the kernel has not yet said it began the request; once
        it has (execute_input), the signal reaches its handler, and is the last one sent: one
        that comes as the kernel handles the first in its own code makes it drop its reply."""
        try:
            for _ in range(INTERRUPT_RETRIES):
                with self.lock:
                    if self.current is not execution or execution.took_interrupt():
                        return
                    begun = execution.input_seen
                self._signal_kernel()
                if begun:
                    return
                deadline = time.monotonic() + INTERRUPT_RETRY_INTERVAL
                with self.changed:
                    while self.current is execution and not execution.took_interrupt() and time.monotonic() < deadline:
                        self.changed.wait(deadline - time.monotonic())
        finally:
            with self.lock:
                execution.interrupting = False  # a next interrupt request (a cell that caught this one) signals again

    def _signal_kernel(self) -> None:
        with self._kernel_lock:
            if self.km is None or not self.km.has_kernel:
                return
            try:
                self.km.interrupt_kernel()
            except Exception as exc:  # noqa: BLE001 - a kernel that just died: the watcher reports its end
                self.emit("log", level="warning", text=f"could not interrupt the kernel: {exc}")

    # -- ending
    def shutdown(self, reason: str) -> None:
        with self.lock:
            if self.shutdown_reason is not None:
                return
            self.shutdown_reason = reason
            self.changed.notify_all()
        self.interrupt()
        self.secrets_arrived.set()  # a bridge still waiting for its secrets ends too
        threading.Thread(target=self._end_after_grace, name="njtui-shutdown", daemon=True).start()

    def _end_after_grace(self) -> None:
        """A running cell normally takes its interrupt at once; one that ignores it (catches
        KeyboardInterrupt, blocks in C code) is abandoned after the grace, its kernel killed."""
        deadline = time.monotonic() + SHUTDOWN_GRACE
        with self.changed:
            while self.current is not None and time.monotonic() < deadline:
                self.changed.wait(deadline - time.monotonic())
            abandoned = self.current is not None
        reason = self.shutdown_reason or "shutdown"
        self.end(reason, kill=abandoned, running_done={"status": "interrupted", "reason": ENDED_BY.get(reason, reason)})

    def end(self, reason: str, error: bool = False, kill: bool = False, running_done: dict | None = None, status: int = 0) -> None:
        """The bridge's one way out: the running cell's `done` (if it still runs), the queued
        cells' (dropped), the kernel stopped, `exit`, and the process gone. A second caller
        waits here for the exit."""
        self.channel.say_hello()
        with self._ending:
            with self.lock:
                execution, self.current = self.current, None
                if execution is not None:
                    self.channel.emit("done", execution.exec_id, count=execution.count, duration=None, files=[], **(running_done or {"status": "interrupted"}))
                self._drop_pending()
                # What the kernel says while it is stopped (a traceback of the request it was
                # interrupted in) is no cell's and no news: only `exit` follows.
                self._closed = True
                self.changed.notify_all()
            self._stop_kernel(now=kill or error)
            failure: dict[str, object] = {"error": True} if error else {}
            self.channel.emit("exit", None, reason=reason, **failure)
            os._exit(status)

    def _drop_pending(self) -> None:
        """Under the lock: each queued cell ends unrun."""
        while self.pending:
            request = self.pending.popleft()
            self.channel.emit("done", request.get("exec"), status="interrupted", count=None, duration=0.0)

    def _stop_kernel(self, now: bool) -> None:
        with self._kernel_lock:
            if self.km is None or not self.km.has_kernel:
                return
            try:
                self.km.shutdown_wait_time = KERNEL_SHUTDOWN_WAIT
                self.km.shutdown_kernel(now=now)
            except Exception as exc:  # noqa: BLE001 - the bridge ends whatever the kernel does
                print(f"njtui: stopping the kernel: {exc}", file=sys.stderr)

    # -- the kernel
    def start_kernel(self) -> None:
        from jupyter_client import KernelManager

        with self._kernel_lock:
            if self.shutdown_reason is not None:
                return
            self.km = KernelManager(kernel_name=self.kernel_name, connection_file=self.connection_file)
            if self.km.kernel_spec is not None:
                self.km.kernel_spec.argv = safe_kernel_argv(self.km.kernel_spec.argv)
            self.kernel_launched = True
            # The kernel's log (its stdout and stderr) goes to the bridge's stderr, never into
            # the protocol stream: fd 1 of this process is stderr already (see main).
            self.km.start_kernel(cwd=os.getcwd(), env={**os.environ, **self.secrets})
        client = self.km.client()
        # No heartbeat (a thread that wakes every few seconds: the kernel's process is watched
        # instead) and no stdin channel (cells get no input: allow_stdin is False).
        client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        client.wait_for_ready(timeout=KERNEL_READY_TIMEOUT)
        # A session of its own: a client's shell socket is known to the kernel by its session
        # id, and two sockets under one id would get each other's replies.
        session = self.km.session.clone()
        session.session = uuid.uuid4().hex
        completion = self.km.client(session=session)
        completion.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        self.kc = client
        self._completion_client = completion

    def watch_iopub(self) -> None:
        """Emits the kernel's output as it comes, and ends the bridge when the kernel dies."""
        import zmq

        process = getattr(self.km.provisioner, "process", None)
        socket = self.kc.iopub_channel.socket
        # Only waits: messages are read through jupyter_client's channel.
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        pidfd: int | None = None
        if process is not None and hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(process.pid)
                poller.register(pidfd, zmq.POLLIN)
            except OSError:
                pidfd = None
        # With a pidfd (Linux 5.3, Python 3.9) the poll blocks until output comes or the kernel
        # ends; without one it wakes once a second to look whether the kernel still lives.
        timeout_ms = None if pidfd is not None else 1000
        while True:
            ready = dict(poller.poll(timeout_ms))
            if socket in ready:
                self._drain_iopub(0)
            if (pidfd in ready) if pidfd is not None else not self._kernel_alive(process):
                self._drain_iopub(DEATH_DRAIN_TIMEOUT)
                self._kernel_died(process)
                return

    def _kernel_alive(self, process: Any) -> bool:
        if process is not None:
            return process.poll() is None
        with self._kernel_lock:
            return bool(self.km.is_alive())

    def _drain_iopub(self, timeout: float) -> None:
        while True:
            try:
                message = self.kc.iopub_channel.get_msg(timeout=timeout)
            except Empty:
                return
            self.on_iopub(message)

    def _kernel_died(self, process: Any) -> None:
        if self.shutdown_reason is not None:
            return  # the bridge stopped it: its own ending reports that
        how = describe_exit(process.poll() if process is not None else None)
        self.end(f"the Jupyter kernel {self.kernel_name} died ({how})", error=True, running_done={"status": "error", "reason": f"the kernel died ({how})"}, status=1)

    def on_iopub(self, message: dict) -> None:
        kind = message.get("msg_type") or message.get("header", {}).get("msg_type")
        content = message.get("content") or {}
        parent_header = message.get("parent_header") or {}
        parent = parent_header.get("msg_id")
        if parent_header.get("msg_type") == "complete_request":
            return  # a completion shows nothing (an interrupt meant for a cell may land in one and print a traceback)
        with self.lock:
            if self._closed:
                return
            execution = self.current if self.current is not None and parent is not None and self.current.msg_id == parent else None
            # Output of no running request (a thread printing after its cell ended) is the runtime's.
            exec_id = execution.exec_id if execution is not None else None
            if kind == "status":
                if execution is not None and content.get("execution_state") == "idle":
                    execution.idle_at = time.monotonic()
                    self.changed.notify_all()
            elif kind == "execute_input":
                if execution is not None:
                    execution.input_seen = True
                    if isinstance(content.get("execution_count"), int):
                        execution.count = content["execution_count"]
                    self.changed.notify_all()
            elif kind == "stream":
                self.channel.emit("stream", exec_id, name=str(content.get("name") or "stdout"), text=str(content.get("text", "")))
            elif kind == "execute_result":
                self.channel.emit("result", exec_id, count=content.get("execution_count"), data=content.get("data") or {}, metadata=content.get("metadata") or {})
            elif kind in ("display_data", "update_display_data"):
                display_id = (content.get("transient") or {}).get("display_id")
                type_ = "display" if kind == "display_data" else "update_display"
                self.channel.emit(type_, exec_id, data=content.get("data") or {}, metadata=content.get("metadata") or {}, display_id=display_id)
            elif kind == "clear_output":
                self.channel.emit("clear_output", exec_id, wait=bool(content.get("wait")))
            elif kind == "error":
                lines = content.get("traceback") or []
                traceback = "\n".join(str(line) for line in lines) if isinstance(lines, list) else str(lines)
                ename = str(content.get("ename", ""))
                self.channel.emit("error", exec_id, ename=ename, evalue=str(content.get("evalue", "")), traceback=traceback)
                if execution is not None and ename == "KeyboardInterrupt":
                    execution.keyboard_interrupt = True
                    self.changed.notify_all()

    # -- the main thread: waits for the kernel, then runs cells one at a time
    def serve(self, await_secrets: bool) -> None:
        if await_secrets:
            self.channel.say_hello()  # the client sends the secrets once it has it
            self.secrets_arrived.wait()
        try:
            self.start_kernel()
        except Exception as exc:  # noqa: BLE001 - whatever keeps the kernel from starting ends the runtime
            if self.shutdown_reason is None:
                process = getattr(getattr(self.km, "provisioner", None), "process", None)
                ended = process.poll() if process is not None else None
                how = f" ({describe_exit(ended)})" if ended is not None else ""
                self.end(f"the Jupyter kernel {self.kernel_name} could not start: {exc}{how}", error=True, running_done={"status": "error"}, status=1)
            return  # else the shutdown thread ends the bridge
        if self.shutdown_reason is not None:
            return
        self.channel.say_hello()
        self.last_activity = time.monotonic()
        threading.Thread(target=self.watch_iopub, name="njtui-iopub", daemon=True).start()
        while True:
            with self.changed:
                # The idle timeout is this wait's: an idle bridge sleeps here, woken by a request.
                deadline = self.last_activity + self.idle_timeout
                while not self.pending and self.shutdown_reason is None and time.monotonic() < deadline:
                    self.changed.wait(deadline - time.monotonic())
                if self.shutdown_reason is not None or self._closed:
                    return  # the bridge is ending, on the thread that began it
                if not self.pending:
                    idle = True
                else:
                    idle = False
                    execution = self._start_next()
            if idle:
                self.end("idle")
                return
            self.run_cell(execution)
            self.last_activity = time.monotonic()

    def _start_next(self) -> Execution:
        """Under the lock: the next cell's `start`, and its request sent to the kernel."""
        request = self.pending.popleft()
        meta = request.get("meta") or {}
        execution = Execution(str(request.get("exec")), meta, self.count + 1)
        execution.snapshot = _results_snapshot()
        self.current = execution
        self.channel.emit("start", execution.exec_id, meta=meta, count=execution.count)
        # Under the lock: the kernel's first output must find the request's id set.
        execution.msg_id = self.kc.execute(str(request.get("code", "")), silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        return execution

    def run_cell(self, execution: Execution) -> None:
        # The reply comes on shell, read on this thread only. Waiting in slices lets the cell
        # end when the kernel went idle without replying.
        while True:
            with self.lock:
                if self.current is not execution:
                    return  # the bridge is ending: its `done` is written
                if execution.idle_at is not None and time.monotonic() - execution.idle_at > PAIRED_MESSAGE_TIMEOUT:
                    break
            try:
                message = self.kc.shell_channel.get_msg(timeout=REPLY_WAIT_SLICE)
            except Empty:
                continue
            if message.get("parent_header", {}).get("msg_id") == execution.msg_id:
                with self.lock:
                    execution.reply = message.get("content") or {}
                    self.changed.notify_all()
                break
        # Then the idle status, after which the kernel sends nothing more for this request.
        with self.changed:
            self.changed.wait_for(lambda: execution.idle_at is not None or self.current is not execution, timeout=PAIRED_MESSAGE_TIMEOUT)
        files = stage_results(self.stage_dir, execution.exec_id, execution.snapshot, self._log)
        with self.lock:
            if self.current is not execution:
                return
            reply = execution.reply or {}
            if isinstance(reply.get("execution_count"), int):
                execution.count = reply["execution_count"]
            self.count = max(self.count, execution.count)
            # bash_kernel answers an interrupted cell with "abort", ipykernel with an error.
            status = {"ok": "ok", "error": "error"}.get(str(reply.get("status")), "interrupted") if reply else "error"
            if execution.interrupt_requested or execution.keyboard_interrupt:
                status = "interrupted"
            extra = {"reason": ENDED_BY.get(self.shutdown_reason, self.shutdown_reason)} if status == "interrupted" and self.shutdown_reason else {}
            duration = time.perf_counter() - execution.started
            self.channel.emit("done", execution.exec_id, status=status, count=execution.count, duration=duration, files=files, **extra)
            self.current = None
            if self.drop_pending:
                self.drop_pending = False
                self._drop_pending()
            self.changed.notify_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--idle-timeout", type=float, default=1200.0)
    parser.add_argument("--await-secrets", action="store_true")
    args = parser.parse_args(argv)

    # The protocol keeps the original stdin and stdout. Anything else that writes to fd 1 (a
    # library's print; the kernel, which inherits it, and its log) goes to stderr instead.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    journal_dir = os.path.dirname(os.path.abspath(args.journal))
    channel = Channel(proto_out, args.journal)
    hello = {"agent": "jupyter", "protocol": PROTOCOL, "instance": uuid.uuid4().hex, "pid": os.getpid(), "kernel": args.kernel, "idle_timeout": args.idle_timeout}
    try:
        language = find_kernel_language(args.kernel)
    except KernelUnavailable as exc:
        channel.emit("hello", language=None, **hello)
        channel.emit("exit", reason=str(exc), error=True)
        return 1

    # Beside the journal, in the runtime's private directory: it holds the kernel's key.
    connection_file = os.path.join(journal_dir, "kernel-connection.json")
    try:
        os.unlink(connection_file)  # an earlier instance's
    except OSError:
        pass
    bridge = Bridge(HelloFirst(channel, {"language": language, **hello}), args.kernel, args.idle_timeout, connection_file, os.path.join(journal_dir, "files"))
    # As the host relay does with its SIGTERM, and what `docker stop` sends the container's main
    # process: a stop. On a thread of its own: the handler runs on the main thread, which may
    # hold the bridge's lock.
    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=bridge.shutdown, args=("shutdown",), daemon=True).start())
    threading.Thread(target=bridge.read_requests, args=(os.fdopen(proto_in, "rb"),), name="njtui-requests", daemon=True).start()
    bridge.serve(args.await_secrets)
    # serve returns once the bridge's end has begun on another thread, which exits the process.
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
