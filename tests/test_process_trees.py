"""A runtime's processes end with it (issue 23, docs/security.md "Processes end with their
runtime"): after `kill -9` of the agent, of the host relay, or of the container (`docker kill`),
nothing the runtime started runs on: a Bash `&` job, a Python `subprocess.Popen` child, a child
that called setsid, a daemon that double-forked away from the cell, a cell still running, the
Jupyter bridge's kernel, and in Docker a process `docker exec` started. And a Bash runtime whose
relay was killed mid-cell boots again at once (its dying agent once re-made the removed runtime
directory with the umask's mode, and the next start refused it as not private).

Each process of the runtime is held by a pidfd opened while it ran, so a pid reused meanwhile is
never taken for it; the tests wait for each pidfd to turn readable (the process has ended), with
a generous bound for a loaded machine, and never sleep a fixed time."""

from __future__ import annotations

import os
import select
import signal
import time

import pytest

from njtui.model import RuntimeSpec
from njtui.runner import RuntimeChanged, RuntimeMessage, RuntimeState
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE
from tests.test_backend_contract import Driven

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the runtime's processes are found in /proc (Linux)")

# How long the processes of a killed runtime may take to end on a loaded machine: the agent
# whose relay died ends its cell by itself first (a second, or the agent's grace), then its
# processes go.
ENDED_WITHIN = 60.0

# A cell that leaves processes behind: a child, a child in a session of its own, and a daemon
# (double fork, setsid) whose parent has already gone; it prints their pids.
SPAWN = {
    "python": (
        "import subprocess\n"
        "kids = [subprocess.Popen(['sleep', '1000']), subprocess.Popen(['sleep', '1000'], start_new_session=True)]\n"
        "daemon = subprocess.run(['sh', '-c', 'setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!'], capture_output=True, text=True).stdout.split()[0]\n"
        "print('PIDS', *[kid.pid for kid in kids], daemon, flush=True)\n"
    ),
    "bash": ("sleep 1000 &\nfirst=$!\nsetsid sleep 1000 </dev/null >/dev/null 2>&1 &\nsecond=$!\ndaemon=$(sh -c 'setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!')\necho \"PIDS $first $second $daemon\"\n"),
}
# A cell that is still running (its own child in the foreground) when the runtime is killed.
BUSY = {
    "python": "import subprocess\nprint('busy', flush=True)\nsubprocess.run(['sleep', '1000'])\n",
    "bash": "echo busy\nsleep 1000\n",
}


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()  # after the command name, which may hold anything
    return fields[0].decode(), int(fields[1]), int(fields[19])


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        found = proc_stat(pid)
        if found is not None:
            children.setdefault(found[1], []).append(pid)
    seen: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class Processes:
    """Processes held by pidfds: each one is the process that had its pid when it was taken."""

    def __init__(self, pids) -> None:
        self.held: dict[int, tuple[int, str]] = {}
        for pid in set(pids):
            before = proc_stat(pid)
            try:
                handle = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            after = proc_stat(pid)
            if before is None or after is None or before[2] != after[2] or after[0] == "Z":
                os.close(handle)  # ended (or replaced) as it was taken: nothing to wait for
                continue
            self.held[pid] = (handle, command_line(pid))

    def __contains__(self, pid: int) -> bool:
        return pid in self.held

    def close(self) -> None:
        for handle, _ in self.held.values():
            os.close(handle)
        self.held.clear()

    def running(self) -> list[int]:
        return [pid for pid, (handle, _) in self.held.items() if not select.select([handle], [], [], 0)[0]]

    def wait_ended(self, timeout: float = ENDED_WITHIN) -> None:
        """Until every one has ended (its pidfd turns readable), `timeout` at most."""
        deadline = time.monotonic() + timeout
        waiting = {handle: pid for pid, (handle, _) in self.held.items()}
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                left = ", ".join(f"{pid} ({self.held[pid][1]})" for pid in sorted(waiting.values()))
                raise AssertionError(f"still running {timeout:.0f}s after the runtime was killed: {left}")
            for handle in select.select(list(waiting), [], [], remaining)[0]:
                del waiting[handle]


def spawned_pids(text: str) -> list[int]:
    (line,) = [line for line in text.splitlines() if line.startswith("PIDS ")]
    return [int(pid) for pid in line.split()[1:]]


def start_leaving_processes(runtime: Driven) -> list[int]:
    """Runs SPAWN (it ends, its processes stay), then BUSY (it runs on); SPAWN's pids."""
    text, done = runtime.output(runtime.run("spawn"))
    assert done["status"] == "ok", text
    busy = runtime.run("busy")
    runtime.next(lambda e: isinstance(e, RuntimeMessage) and e.message.get("exec") == busy and e.message.get("type") == "stream", "the busy cell's output")
    pids = spawned_pids(text)
    assert len(pids) == 3
    return pids


def host_runtime(tmp_path, language: str, jupyter: bool = False) -> Driven:
    if jupyter:
        spec = RuntimeSpec("k", "python", environment="host", type="jupyter", kernel="python3", default=True)
    else:
        spec = RuntimeSpec({"python": "py", "bash": "sh"}[language], language, environment="host", default=True)
    return Driven(tmp_path, "host", {"spawn": SPAWN[language], "busy": BUSY[language]}, spec=spec)


def kill_host_runtime_and_wait(runtime: Driven, language: str, kill: str) -> None:
    spawned = start_leaving_processes(runtime)
    info = runtime.runner.sessions[next(iter(runtime.notebook.runtimes))].info
    relay = info.details["relay_pid"]
    tree = Processes([relay, *descendants(relay), *spawned])
    try:
        assert all(pid in tree for pid in spawned), f"the cell's processes {spawned} ended before the kill"
        assert info.pid in tree
        os.kill(info.pid if kill == "agent" else relay, signal.SIGKILL)
        tree.wait_ended()
    finally:
        tree.close()


@pytest.mark.parametrize("kill", ["agent", "relay"])
@pytest.mark.parametrize("language", ["python", "bash"])
def test_a_killed_host_runtime_leaves_no_process_behind(tmp_path, language, kill):
    runtime = host_runtime(tmp_path, language)
    try:
        kill_host_runtime_and_wait(runtime, language, kill)
    finally:
        runtime.close()


@pytest.mark.parametrize("kill", ["agent", "relay"])
def test_a_killed_jupyter_bridge_leaves_neither_kernel_nor_its_children(tmp_path, kill):
    runtime = host_runtime(tmp_path, "python", jupyter=True)
    try:
        kill_host_runtime_and_wait(runtime, "python", kill)
    finally:
        runtime.close()


def test_a_runtime_stopped_normally_takes_its_background_processes_along(tmp_path):
    runtime = host_runtime(tmp_path, "bash")
    try:
        spawned = start_leaving_processes(runtime)
        info = runtime.runner.sessions["sh"].info
        relay = info.details["relay_pid"]
        tree = Processes([relay, *descendants(relay), *spawned])
        try:
            runtime.runner.stop("sh")
            tree.wait_ended()
        finally:
            tree.close()
    finally:
        runtime.close()


# -- Docker: the agent runs under the container's init (PID 1 of its PID namespace)


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def in_namespace(namespace: str) -> set[int]:
    return {pid for pid in all_pids() if pid_namespace(pid) == namespace}


def host_pid_of(namespace_pid: int, members: set[int]) -> int | None:
    for pid in members:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("NSpid:") and int(line.split()[-1]) == namespace_pid:
                        return pid
        except OSError:
            continue
    return None


@pytest.mark.parametrize("kill", ["agent", "container"])
@pytest.mark.parametrize("language", ["python", "bash"])
def test_a_killed_container_runtime_leaves_no_process_behind(request, tmp_path, language, kill):
    client = request.getfixturevalue("docker_engine")
    image = PYTHON_IMAGE if language == "python" else BASH_IMAGE
    spec = RuntimeSpec({"python": "py", "bash": "sh"}[language], language, environment=image, backend="docker", default=True)
    runtime = Driven(tmp_path, "docker", {"spawn": SPAWN[language], "busy": BUSY[language]}, spec=spec)
    try:
        spawned = start_leaving_processes(runtime)
        info = runtime.runner.sessions[spec.id].info
        init = info.pid
        container = client.containers.get(info.details["container"])
        namespace = pid_namespace(init)
        assert namespace is not None
        # A process `docker exec` started: in the container, but no child of its init.
        container.exec_run(["sleep", "1000"], detach=True)
        deadline = time.monotonic() + 60
        while not any((proc_stat(pid) or ("", 0, 0))[1] not in in_namespace(namespace) for pid in in_namespace(namespace) - {init}):
            assert time.monotonic() < deadline, "the exec'd process never showed"
            select.select([], [], [], 0.05)
        members = in_namespace(namespace)
        tree = Processes(members)
        try:
            for pid in spawned:
                assert host_pid_of(pid, members) in tree, f"the cell's process {pid} (in the container) is not running"
            (hello,) = [e.message for e in runtime.seen if isinstance(e, RuntimeMessage) and e.message.get("type") == "hello"]
            agent = host_pid_of(hello["pid"], members)  # the agent's pid in the container, on the host
            assert agent in tree and proc_stat(agent)[1] == init
            if kill == "agent":
                os.kill(agent, signal.SIGKILL)
            else:
                container.kill()
            tree.wait_ended()
        finally:
            tree.close()
    finally:
        runtime.close()


# -- a Bash runtime whose relay was killed mid-cell boots again


def test_a_bash_runtime_whose_relay_was_killed_boots_again_at_once(tmp_path):
    runtime = Driven(tmp_path, "host", {"busy": BUSY["bash"]}, spec=RuntimeSpec("sh", "bash", environment="host", default=True))

    def ended(event) -> bool:
        return isinstance(event, RuntimeChanged) and event.status.state not in (RuntimeState.RUNNING, RuntimeState.BOOTING)

    try:
        for attempt in range(10):
            busy = runtime.run("busy")  # boots the runtime, again after the first time
            runtime.next(lambda e, busy=busy: isinstance(e, RuntimeMessage) and e.message.get("exec") == busy and e.message.get("type") == "stream", f"attempt {attempt}: the cell's output")
            info = runtime.runner.sessions["sh"].info
            runtime_dir = info.details["dir"]
            os.kill(info.details["relay_pid"], signal.SIGKILL)
            runtime.next(ended, f"attempt {attempt}: the runtime's end")
            # Booted again as soon as it is seen gone, while its agent may still be ending.
        runtime_dir_mode = os.stat(runtime_dir).st_mode & 0o777
        assert runtime_dir_mode == 0o700
    finally:
        runtime.close()
