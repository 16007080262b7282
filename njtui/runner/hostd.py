"""The host runtime relay: keeps an agent alive without any client, and serves it on a socket.

A host runtime must outlive the client that started it (a dropped SSH session, a SIGKILL), so
the agent's pipes are held by this small detached process, in its own session. Clients connect
to a unix socket, send `attach` with the first sequence number they lack, and get the agent's
journal from there followed by its live messages; every other request goes to the agent as is.

Each client is a cursor into the journal: messages just read from the agent are copied to
clients that are caught up, and a client that lags reads on from the file, so a slow or late
client costs no memory and never sees a gap or a duplicate.

The relay makes every file of the runtime without following symlinks, in a directory it
checks is private (njtui.runner.private), and removes the agent's secret files when the agent
ends: it outlives the agent and every client.

The agent is started through a guard (njtui.runner.guard): every process of the runtime, a
cell's background and setsid'd ones included, ends with the agent or the relay, however they
end; the guard tells the relay when the agent has ended, and then when the rest has.

Only the standard library, njtui.runner.protocol, njtui.runner.private and njtui.runner.guard
(standard library only themselves) are imported: this starts on every boot.
"""

from __future__ import annotations

import argparse
import array
import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from njtui.runner.guard import GUARD_END_TIMEOUT, ORPHAN_GRACE, GuardedAgent, become_subreaper
from njtui.runner.private import NotPrivateError, PrivateDir, check_private_dir
from njtui.runner.protocol import AGENT_STDERR, RUNTIME_EXIT, exit_words

CLIENT_BUFFER_LIMIT = 4 << 20
JOURNAL_READ_CHUNK = 1 << 18
HELLO_TIMEOUT = 60.0
DRAIN_TIMEOUT = 5.0


# What starts every journaled line (both agents write `seq` first); the agent's other lines
# answer one client's request (a completion) and are neither journaled nor replayed.
JOURNALED = b'{"seq":'
# Requests that wait for an answer, remembered by id until it comes (or their client goes).
MAX_AWAITED = 1024


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.out = bytearray()
        self.pos: int | None = None  # journal offset of the next byte to queue; None: not attached
        # Lines that are not the journal's (answers, the relay's own messages) wait here while
        # `out` ends inside a journal line, and go out at the next line boundary.
        self.side = bytearray()
        self.mid_line = False

    def queue_line(self, line: bytes) -> None:
        if self.mid_line:
            self.side += line
        else:
            self.out += line


class Relay:
    def __init__(self, runtime_dir: Path, socket_path: Path, agent: GuardedAgent, directory: PrivateDir | None = None) -> None:
        self.dir = runtime_dir
        # Its files are opened at the descriptor of the directory main() checked.
        self.directory = directory or PrivateDir.at(runtime_dir)
        self.socket_path = socket_path
        self.agent = agent
        self.journal_path = runtime_dir / "journal.jsonl"
        self.journal = os.fdopen(self.directory.open_existing("journal.jsonl"), "rb")  # open for the relay's lifetime
        self.offsets = array.array("q")  # offsets[seq - 1]: where message `seq` starts
        self.end = 0  # journal offset after the last complete line seen on the agent's stdout
        self.partial = bytearray()
        self.clients: dict[int, Client] = {}
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.agent_log = os.fdopen(self.directory.open("agent.log", os.O_WRONLY | os.O_APPEND), "ab")
        self.agent_gone_at: float | None = None  # when the guard said the agent had ended
        self.guard_gone_at: float | None = None  # when the guard ended: no process of the runtime is left
        self.open_streams = 2  # the agent's stdout and stderr, until each reads its end
        self.awaited: dict[object, Client] = {}  # request id → the client that asked

    # -- agent side
    def on_agent_stdout(self, data: bytes) -> None:
        self.partial += data
        cut = self.partial.rfind(b"\n") + 1
        if not cut:
            return
        complete = bytes(self.partial[:cut])
        del self.partial[:cut]
        offset = self.end
        answers = []
        for line in complete.splitlines(keepends=True):
            if not line.startswith(JOURNALED):
                answers.append(line)
                continue
            self.offsets.append(offset)
            offset += len(line)
        if answers:
            complete = b"".join(line for line in complete.splitlines(keepends=True) if line.startswith(JOURNALED))
            for line in answers:
                self.on_agent_answer(line)
        old_end, self.end = self.end, offset
        for client in self.clients.values():
            if client.pos == old_end and len(client.out) < CLIENT_BUFFER_LIMIT:
                client.out += complete
                client.pos = self.end
            self._want_write(client)

    def on_agent_answer(self, line: bytes) -> None:
        """A line the agent did not journal: the answer to the client whose request has its id."""
        try:
            request_id = json.loads(line).get("id")
            client = self.awaited.pop(request_id, None) if isinstance(request_id, (str, int, float)) else None
        except (ValueError, AttributeError):
            client = None
        if client is not None and client.sock.fileno() in self.clients:
            client.queue_line(line)
            self._want_write(client)
        elif client is None:
            for attached in self.clients.values():
                if attached.pos is not None:
                    attached.queue_line(line)
                    self._want_write(attached)

    def on_agent_stderr(self, data: bytes) -> None:
        self.agent_log.write(data)
        self.agent_log.flush()
        self.broadcast({"type": AGENT_STDERR, "text": data.decode("utf-8", "replace")})

    def broadcast(self, message: dict) -> None:
        line = (json.dumps(message, ensure_ascii=False) + "\n").encode()
        for client in self.clients.values():
            if client.pos is not None:
                client.queue_line(line)
                self._want_write(client)

    # -- client side
    def accept(self, listener: socket.socket) -> None:
        sock, _ = listener.accept()
        sock.setblocking(False)
        client = Client(sock)
        self.clients[sock.fileno()] = client
        self.selector.register(sock, selectors.EVENT_READ, ("client", client))

    def on_client_readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(client)
            return
        client.inbox += data
        while b"\n" in client.inbox:
            line, _, rest = bytes(client.inbox).partition(b"\n")
            client.inbox = bytearray(rest)
            self.on_request(client, line + b"\n")

    def on_request(self, client: Client, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError:
            request = {}
        if request.get("op") == "attach":
            since = int(request.get("since") or 1)
            client.pos = self.offsets[since - 1] if 1 <= since <= len(self.offsets) else (0 if since < 1 else self.end)
            client.mid_line = False
            self._want_write(client)
            return
        request_id = request.get("id") if isinstance(request, dict) else None
        if isinstance(request_id, (str, int, float)):
            if len(self.awaited) >= MAX_AWAITED:
                del self.awaited[next(iter(self.awaited))]  # unanswered for long: an older agent
            self.awaited[request_id] = client
        try:
            stdin = _pipe(self.agent.stdin)
            stdin.write(line)
            stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def on_client_writable(self, client: Client) -> None:
        if not client.out and client.pos is not None and client.pos < self.end:
            self.journal.seek(client.pos)
            chunk = self.journal.read(min(JOURNAL_READ_CHUNK, self.end - client.pos))
            # Whole lines where the chunk holds one, so that answers can go out between them.
            cut = chunk.rfind(b"\n") + 1
            if cut:
                chunk = chunk[:cut]
            client.out += chunk
            client.pos += len(chunk)
            client.mid_line = not chunk.endswith(b"\n")
        if client.side and not client.mid_line:
            client.out += client.side
            client.side.clear()
        if client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.drop(client)
                return
            del client.out[:sent]
        self._want_write(client)

    def _want_write(self, client: Client) -> None:
        pending = bool(client.out) or bool(client.side) or (client.pos is not None and client.pos < self.end)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
        try:
            self.selector.modify(client.sock, events, ("client", client))
        except (KeyError, ValueError):
            pass

    def drop(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        for request_id in [key for key, asker in self.awaited.items() if asker is client]:
            del self.awaited[request_id]
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def caught_up(self) -> bool:
        return all(not c.out and not c.side and (c.pos is None or c.pos >= self.end) for c in self.clients.values())

    # -- the loop
    def run(self, listener: socket.socket) -> int:
        self.selector.register(listener, selectors.EVENT_READ, ("listen", None))
        self.selector.register(_pipe(self.agent.stdout), selectors.EVENT_READ, ("stdout", None))
        self.selector.register(_pipe(self.agent.stderr), selectors.EVENT_READ, ("stderr", None))
        # The agent's own end, told by its guard even while other processes keep its pipes open
        # (a bash agent's helpers outlive a killed main process), and then the guard's, once it
        # has ended every other process of the runtime.
        self.selector.register(self.agent.status, selectors.EVENT_READ, ("guard", None))
        drain_deadline = None
        while True:
            for key, events in self.selector.select(self._select_timeout(drain_deadline)):
                self._on_ready(key, events, listener)
            self._stop_reading_after_grace()
            if self.open_streams == 0 and drain_deadline is None:
                drain_deadline = time.monotonic() + DRAIN_TIMEOUT
            if drain_deadline is not None and (self.caught_up() or time.monotonic() >= drain_deadline):
                break
        # Once the guard has ended the runtime's last process (GUARD_END_TIMEOUT at most).
        code = self.agent.wait()
        self._report_exit(code)
        return 0

    def _streams_deadline(self) -> float | None:
        """When the agent's pipes stop being read though still open: held by no process of the
        runtime (the guard has ended them all), or by one that would not die."""
        if not self.open_streams:
            return None
        if self.guard_gone_at is not None:
            return self.guard_gone_at + ORPHAN_GRACE
        if self.agent_gone_at is not None:
            return self.agent_gone_at + ORPHAN_GRACE + GUARD_END_TIMEOUT
        return None

    def _select_timeout(self, drain_deadline: float | None) -> float | None:
        deadlines = [deadline for deadline in (drain_deadline, self._streams_deadline()) if deadline is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _on_ready(self, key: selectors.SelectorKey, events: int, listener: socket.socket) -> None:
        kind, client = key.data
        if kind == "listen":
            self.accept(listener)
        elif kind == "guard":
            if not self.agent.on_status():
                self.selector.unregister(key.fileobj)
                self.guard_gone_at = time.monotonic()
            if self.agent.returncode is not None and self.agent_gone_at is None:
                self.agent_gone_at = time.monotonic()
        elif kind in ("stdout", "stderr"):
            data = os.read(key.fd, 1 << 16)
            if not data:
                self.selector.unregister(key.fileobj)
                self.open_streams -= 1
            elif kind == "stdout":
                self.on_agent_stdout(data)
            else:
                self.on_agent_stderr(data)
        else:
            if events & selectors.EVENT_READ and client.sock.fileno() in self.clients:
                self.on_client_readable(client)
            if events & selectors.EVENT_WRITE and client.sock.fileno() in self.clients:
                self.on_client_writable(client)

    def _stop_reading_after_grace(self) -> None:
        deadline = self._streams_deadline()
        if deadline is not None and time.monotonic() >= deadline:
            for stream in (self.agent.stdout, self.agent.stderr):
                try:
                    self.selector.unregister(_pipe(stream))
                except (KeyError, ValueError):
                    pass
            self.open_streams = 0

    def _report_exit(self, code: int) -> None:
        reason = exit_reason(self.journal, code)
        self.directory.write("exit.json", json.dumps({"code": code, "reason": reason, "at": time.time()}).encode())
        self.broadcast({"type": RUNTIME_EXIT, "code": code, "reason": reason})
        for client in list(self.clients.values()):
            client.sock.setblocking(True)
            try:
                client.sock.sendall(client.out + (b"" if client.mid_line else client.side))
            except OSError:
                pass
            client.sock.close()


def exit_reason(journal: IO[bytes], code: int) -> str:
    """Why the agent ended, in words: its own `exit` message (the last line of the `journal`
    the relay holds open), else how it died."""
    try:
        journal.seek(max(0, os.fstat(journal.fileno()).st_size - 4096))
        tail = journal.read().splitlines()
        last = json.loads(tail[-1]) if tail else {}
    except (OSError, ValueError):
        last = {}
    if last.get("type") == "exit":
        return exit_words(last)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return f"agent killed by {name}"
    return f"agent exited with status {code}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="njtui host runtime relay")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--cwd", type=Path, default=None)
    parser.add_argument("agent", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    agent_argv = args.agent[1:] if args.agent[:1] == ["--"] else args.agent
    ready = os.fdopen(args.ready_fd, "w")

    def fail(message: str) -> int:
        ready.write(f"error {message}\n")
        ready.close()
        return 1

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Should the agent's guard ever be killed, the runtime's processes become the relay's, which
    # ends them (njtui.runner.guard).
    become_subreaper()
    # The agent must take SIGINT (an interrupt) whatever its starter did: started from a
    # background job of a script, the client ignores SIGINT and a child would inherit that, and
    # bash can't trap, nor its commands take, a signal ignored when it started. The relay runs in
    # a session of its own: no terminal's Ctrl-C reaches it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Checked again here, not only by the client that started us: this is where the files are made.
    try:
        directory = PrivateDir.at(args.dir)
        made = json.loads(directory.read("info.json")).get("dir_id")
        if made != directory.identity():
            raise NotPrivateError(args.dir, "it is not the directory njtui made for this runtime (it was replaced or re-created)", f"start the runtime again; if this persists, remove it (rm -rf {args.dir})")
        check_private_dir(args.socket.parent)
        alive = directory.open("alive.lock", os.O_RDWR)  # held for the relay's lifetime
    except NotPrivateError as exc:
        return fail(str(exc))
    except (OSError, ValueError, AttributeError) as exc:
        return fail(f"cannot use the runtime directory {args.dir}: {getattr(exc, 'strerror', None) or exc}")
    try:
        fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fail("this runtime is already running")
    try:
        return _serve(args, directory, agent_argv, ready, fail)
    finally:
        # The agent has ended (or never ran): its secret files go now, not at the next njtui
        # command. Before the process exits, so whoever waits on alive.lock finds them gone.
        directory.remove_tree("secrets")


class StartFailed(Exception):
    """The agent could not be started and served; the message, for the ready pipe, says why."""


def _serve(args: argparse.Namespace, directory: PrivateDir, agent_argv: list[str], ready: IO[str], fail: Callable[[str], int]) -> int:
    """Starts the agent and serves it until it ends (main holds the runtime's lock)."""
    try:
        _fresh_journal(directory)
        agent = _start_agent(agent_argv, args.cwd)
        relay = _relay_for(args, directory, agent)
        hello = _await_hello(agent, relay)
    except StartFailed as exc:
        return fail(str(exc))
    listener = _listen(args.socket)
    _forward_sigterm(agent)
    directory.write(
        "relay.json",
        json.dumps({"relay_pid": os.getpid(), "agent_pid": agent.pid, "instance": hello.get("instance"), "socket": str(args.socket)}).encode(),
    )
    ready.write("ok\n")
    ready.close()
    try:
        return relay.run(listener)
    finally:
        listener.close()
        args.socket.unlink(missing_ok=True)


def _fresh_journal(directory: PrivateDir) -> None:
    for stale in ("exit.json", "journal.jsonl"):
        directory.unlink(stale)
    try:
        os.close(directory.open("journal.jsonl", os.O_WRONLY, exclusive=True))
    except (NotPrivateError, OSError) as exc:
        raise StartFailed(f"cannot create the journal: {exc}") from None


def _start_agent(agent_argv: list[str], cwd: Path | None) -> GuardedAgent:
    # Its own session (the guard starts it so): the agent leads its process group, as interrupts need.
    try:
        return GuardedAgent(agent_argv, cwd)
    except OSError as exc:
        raise StartFailed(f"cannot start the agent: {exc}") from None


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    """One of the agent's pipes: `_start_agent` opens stdin, stdout and stderr as pipes."""
    assert stream is not None
    return stream


def _relay_for(args: argparse.Namespace, directory: PrivateDir, agent: GuardedAgent) -> Relay:
    try:
        return Relay(args.dir, args.socket, agent, directory)
    except (NotPrivateError, OSError) as exc:
        agent.kill()
        agent.wait()
        raise StartFailed(str(exc)) from None


def _await_hello(agent: GuardedAgent, relay: Relay) -> dict:
    """The agent's hello, from its first line; the relay takes that line in like every later one."""
    # Booted means the agent said hello; its first line proves it runs.
    deadline = time.monotonic() + HELLO_TIMEOUT
    first = b""
    while b"\n" not in first:
        remaining = deadline - time.monotonic()
        readable = selectors.DefaultSelector()
        readable.register(_pipe(agent.stdout), selectors.EVENT_READ)
        if remaining <= 0 or not readable.select(remaining):
            agent.kill()
            raise StartFailed("the agent did not start within a minute")
        chunk = os.read(_pipe(agent.stdout).fileno(), 1 << 16)
        if not chunk:
            err = _pipe(agent.stderr).read().decode("utf-8", "replace").strip()
            raise StartFailed(f"the agent exited at start (status {agent.wait()}): {err[-500:]}")
        first += chunk
    hello = json.loads(first.split(b"\n", 1)[0])
    relay.on_agent_stdout(first)
    return hello


def _listen(socket_path: Path) -> socket.socket:
    # A name in a directory checked private: nothing else can be at it or replace it.
    socket_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    os.chmod(socket_path, 0o600)
    listener.listen(16)
    listener.setblocking(False)
    return listener


def _forward_sigterm(agent: GuardedAgent) -> None:
    stdin = _pipe(agent.stdin)

    def forward_stop(signum: int, frame: object) -> None:
        try:
            stdin.write(b'{"op":"shutdown"}\n')
            stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    signal.signal(signal.SIGTERM, forward_stop)


if __name__ == "__main__":
    sys.exit(main())
