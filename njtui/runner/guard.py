"""The guard: every process of a host runtime ends with it, however it ends.

A cell's processes outlive the agent that started them unless something ends them: a Bash `&`
job, a `subprocess.Popen` child, a child that called setsid (out of the agent's process group),
a daemon that double-forked away, the Jupyter bridge's kernel. Killed with SIGKILL, the agent
can end none of them, and they were re-parented to init and ran on; killed with SIGKILL, the
relay could not either.

So the relay (njtui.runner.hostd) starts the agent through a guard: a fork of the relay that
sits between them, relay → guard → agent → the cells' processes. The guard

- is a child subreaper (Linux, prctl PR_SET_CHILD_SUBREAPER): a descendant whose parent dies is
  re-parented to the guard, not to init, so every process of the runtime stays its descendant,
  and it reaps those that end while the agent runs;
- watches the agent (SIGCHLD) and the relay (a pipe only the relay holds open, whose end it
  sees when the relay ends, SIGKILL included);
- once the agent has ended, gives what is left ORPHAN_GRACE to end by itself (a Bash agent's
  helpers finish writing), then kills every descendant (SIGKILL) and reaps them, again until
  none is left, and ends;
- once the relay has ended, lets the agent end by itself (its input has closed: it ends its
  cell, records it, and exits within its grace), then does the same; an agent that has not
  ended within RELAY_GONE_GRACE is killed with the rest.

The guard runs in a process group of its own, so a SIGKILL to the relay's or the agent's group
(njtui's last resort when a stop does not end a runtime) leaves it to end the rest. It tells
the relay the agent's pid, then its exit status, on a status pipe, and ends after the runtime's
last process; the relay, a subreaper too, ends the tree itself if the guard is ever killed.

The agent keeps its own pid and session (it leads its process group, as interrupts need). In a
Docker container none of this is needed: the container's init is PID 1 of the container's PID
namespace, and when it ends the kernel kills every process in the namespace.

Only the standard library: the relay imports this on every boot.
"""

from __future__ import annotations

import fcntl
import gc
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

# When the agent has ended but other processes of the runtime have not, what they do within
# this long is theirs to finish (a Bash agent's helpers write the last messages); then they go.
ORPHAN_GRACE = 0.2
# When the relay has gone, the agent ends by itself (its input closed) within its own grace
# (NJTUI_SHUTDOWN_GRACE_MS, 1 s by default); after that and this much more it is killed.
RELAY_GONE_GRACE = 5.0
# How long the relay waits, once the agent has ended, for the guard to end the rest.
GUARD_END_TIMEOUT = 10.0
# How often the kill loop looks again when no child's end woke it (one adopted as it died).
KILL_LOOP_POLL = 0.05
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Makes this process a child subreaper: orphans among its descendants are re-parented to
    it rather than to init, so they stay within its reach. Linux only; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    # After the command name, which may hold spaces and parentheses: state, then ppid.
    fields = data[data.rfind(b")") + 2 :].split(maxsplit=2)
    return int(fields[1]) if len(fields) >= 2 else None


def _parents() -> dict[int, int]:
    """The parent of every process on the machine, by pid."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return _parents_from_ps()
    parents = {}
    for name in names:
        if name.isdigit():
            parent = _parent_of(int(name))
            if parent is not None:
                parents[int(name)] = parent
    return parents


def _parents_from_ps() -> dict[int, int]:
    """Where there is no /proc (macOS)."""
    try:
        listing = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    parents = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            parents[int(fields[0])] = int(fields[1])
    return parents


def descendants(root: int) -> dict[int, int]:
    """Every descendant of `root` (zombies included), each with its parent."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for child in children.get(parent, ()):
            if child != root and child not in found:
                found[child] = parent
                todo.append(child)
    return found


def _kill(pid: int, parent: int) -> None:
    """SIGKILL to `pid`, which the last look found a child of `parent`. A child of this process
    keeps its pid until it is reaped here; any other may have ended since, and its pid gone to
    a new process: it is held by a pidfd and signalled only if it is still `parent`'s child."""
    if parent != os.getpid() and hasattr(os, "pidfd_open"):
        try:
            handle = os.pidfd_open(pid)
        except OSError:
            return
        try:
            if _parent_of(pid) == parent:
                signal.pidfd_send_signal(handle, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(handle)
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def reap_children(reaped: Callable[[int, int], None]) -> None:
    """Reaps every child of this process that has ended; `reaped(pid, code)` hears of each
    (`code` as subprocess gives it: negative for a signal)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reaped(pid, os.waitstatus_to_exitcode(status))


def end_tree(reaped: Callable[[int, int], None], wake: int | None = None, deadline: float | None = None) -> bool:
    """Kills every descendant of this process and reaps them, looking again until none is left
    (a process forking as it was killed leaves a child; a subreaper adopts each orphan as its
    parent dies). `wake`: a descriptor readable when a child has ended (the SIGCHLD wakeup).
    False if some were still there at `deadline`."""
    me = os.getpid()
    while True:
        reap_children(reaped)
        left = descendants(me)
        if not left:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        for pid, parent in left.items():
            _kill(pid, parent)
        if wake is not None:
            if select.select([wake], [], [], KILL_LOOP_POLL)[0]:
                _drain(wake)
        else:
            time.sleep(KILL_LOOP_POLL)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _say(status: int, line: str) -> None:
    try:
        os.write(status, (line + "\n").encode())
    except OSError:
        pass  # the relay has gone: nobody to tell


def _close_all_but(keep: set[int]) -> None:
    """Closes every descriptor of this process but `keep` (and 0, 1 and 2)."""
    try:
        limit = os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        limit = 1 << 16
    start = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, max(start, limit))


def _relay_gone_grace() -> float:
    grace_ms = os.environ.get("NJTUI_SHUTDOWN_GRACE_MS", "")
    return RELAY_GONE_GRACE + (int(grace_ms) / 1000 if grace_ms.isdigit() and len(grace_ms) <= 7 else 1.0)


def _guard(argv: Sequence[str], cwd: str | os.PathLike[str] | None, stdin: int, stdout: int, stderr: int, status: int, lifeline: int) -> int:
    """The guard's life, in the child of the relay's fork (see the module's docstring)."""
    # What this copy of the relay holds is never finalized (its descriptors are closed below,
    # and their numbers may be reused here): the guard ends with os._exit.
    gc.disable()
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    _close_all_but({stdin, stdout, stderr, status, lifeline})
    become_subreaper()
    wake, wake_write = os.pipe()
    os.set_blocking(wake, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    ending: list[int] = []
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    # Told to end (a system going down): the runtime's processes end now, then the guard.
    signal.signal(signal.SIGTERM, lambda signum, frame: ending.append(signum))
    try:
        # Its own session: the agent leads its process group, which interrupts signal.
        agent = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True)
    except OSError as exc:
        _say(status, f"error cannot start the agent: {exc}")
        return 1
    for fd in (stdin, stdout, stderr):
        os.close(fd)
    _say(status, f"pid {agent.pid}")
    ended_at: float | None = None
    relay_gone_at: float | None = None

    def reaped(pid: int, code: int) -> None:
        nonlocal ended_at
        if pid == agent.pid:
            agent.returncode = code
            ended_at = time.monotonic()
            _say(status, f"exit {code}")

    while not ending:
        reap_children(reaped)
        now = time.monotonic()
        if ended_at is not None:
            if now >= ended_at + ORPHAN_GRACE or not descendants(os.getpid()):
                break
            timeout: float | None = ended_at + ORPHAN_GRACE - now
        elif relay_gone_at is not None:
            if now >= relay_gone_at + _relay_gone_grace():
                break
            timeout = relay_gone_at + _relay_gone_grace() - now
        else:
            timeout = None  # an idle runtime: blocked until something happens
        watched = [wake] if relay_gone_at is not None else [wake, lifeline]
        readable = select.select(watched, [], [], timeout)[0]
        if wake in readable:
            _drain(wake)
        if lifeline in readable and not os.read(lifeline, 1024):
            relay_gone_at = time.monotonic()
    end_tree(reaped, wake)
    return 0


PF_EXITING = 0x4  # a process's flags (/proc/PID/stat): it is ending, its files being closed


def exiting(pid: int) -> bool:
    """Whether process `pid` is ending: still there, but past its end (Linux; False where that
    can't be known, and for a process that is gone). A process killed with SIGKILL is there
    while the kernel closes its files, a few at a time: a lock it held is let go of meanwhile."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return False
    fields = data[data.rfind(b")") + 2 :].split()
    return len(fields) > 6 and (fields[0] in (b"Z", b"X") or bool(int(fields[6]) & PF_EXITING))


def released_as_it_exits(lock: int, pid: int, timeout: float = GUARD_END_TIMEOUT) -> bool:
    """Whether the flock on `lock` that process `pid` holds is let go of as `pid` ends: only
    when `pid` is ending, waiting `timeout` at most; the lock is then taken on `lock`. (A pid
    of a process gone long ago, reused by one that is ending, costs that process's end.)"""
    deadline = time.monotonic() + timeout
    while exiting(pid) and time.monotonic() < deadline:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.001)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it may have ended since the last try
        return True
    except BlockingIOError:
        return False


class GuardedAgent:
    """The agent as the relay holds it: its pipes and pid, and its exit status, which the guard
    that started it tells (see the module's docstring). Like subprocess.Popen, as far as the
    relay uses one: `stdin`, `stdout`, `stderr`, `pid`, `returncode`, `poll`, `wait`, `kill`."""

    def __init__(self, argv: Sequence[str], cwd: str | os.PathLike[str] | None = None) -> None:
        agent_in, self_in = os.pipe()
        self_out, agent_out = os.pipe()
        self_err, agent_err = os.pipe()
        self_status, guard_status = os.pipe()
        guard_lifeline, self._lifeline = os.pipe()
        guard_fds = (agent_in, agent_out, agent_err, guard_status, guard_lifeline)
        try:
            guard = os.fork()
        except OSError:
            for fd in (*guard_fds, self_in, self_out, self_err, self_status, self._lifeline):
                os.close(fd)
            raise
        if guard == 0:
            code = 1
            try:
                code = _guard(argv, cwd, agent_in, agent_out, agent_err, guard_status, guard_lifeline)
            finally:
                os._exit(code)
        for fd in guard_fds:
            os.close(fd)
        self.guard_pid = guard
        self.stdin: IO[bytes] = os.fdopen(self_in, "wb", buffering=0)
        self.stdout: IO[bytes] = os.fdopen(self_out, "rb", buffering=0)
        self.stderr: IO[bytes] = os.fdopen(self_err, "rb", buffering=0)
        self.status = self_status  # the guard's status pipe; the relay selects it
        self.returncode: int | None = None
        self._said = bytearray()
        self._guard_ended = False
        first = self._read_line()
        if first is None or not first.startswith("pid "):
            self.wait()
            raise OSError(first.removeprefix("error ") if first else "the agent's guard ended at start")
        self.pid = int(first.split()[1])
        self._take_lines()

    def _read_line(self) -> str | None:
        """The guard's next line, waiting for it; None once the guard has ended."""
        while b"\n" not in self._said:
            if not self.on_status():
                return None
        line, _, rest = bytes(self._said).partition(b"\n")
        self._said = bytearray(rest)
        return line.decode()

    def on_status(self) -> bool:
        """Reads what the guard said (the relay calls this when `status` is readable); False
        once the guard has ended."""
        if self._guard_ended:
            return False
        data = os.read(self.status, 4096)
        if not data:
            self._on_guard_end()
            return False
        self._said += data
        self._take_lines()
        return True

    def _take_lines(self) -> None:
        """What the guard said once the agent runs: its exit status."""
        while b"\n" in self._said and self.pid_known():
            line, _, rest = bytes(self._said).partition(b"\n")
            self._said = bytearray(rest)
            if line.startswith(b"exit "):
                self.returncode = int(line.split()[1])

    def pid_known(self) -> bool:
        return hasattr(self, "pid")

    def _on_guard_end(self) -> None:
        self._guard_ended = True
        os.close(self.status)
        try:
            os.waitpid(self.guard_pid, 0)
        except ChildProcessError:
            pass
        if self.returncode is None and self.pid_known():
            # The guard was killed before the agent ended: its processes are this relay's
            # (a subreaper) now, and end here.
            for kill in (os.killpg, os.kill):
                try:
                    kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass

            def reaped(pid: int, code: int) -> None:
                if pid == self.pid:
                    self.returncode = code

            end_tree(reaped, deadline=time.monotonic() + GUARD_END_TIMEOUT)
            if self.returncode is None:
                self.returncode = -signal.SIGKILL

    @property
    def guard_ended(self) -> bool:
        return self._guard_ended

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float = GUARD_END_TIMEOUT) -> int:
        """The agent's exit status, once the guard has ended the runtime's other processes
        (waiting `timeout` at most for that, after the agent has ended)."""
        deadline: float | None = None
        while not self._guard_ended:
            if self.returncode is not None and deadline is None:
                deadline = time.monotonic() + timeout
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.status], [], [], remaining)[0]:
                break  # the guard goes on killing on its own
            self.on_status()
        if self.returncode is None:
            self.returncode = -signal.SIGKILL  # the guard ended at start, without one
        return self.returncode

    def kill(self) -> None:
        if self.pid_known() and self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
