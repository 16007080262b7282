"""Both agents at the edges of a cell (issue 10): a cell's output and files end with it, and an
agent ends with its connection.

Each test runs against the Python agent and the Bash agent, the latter twice: with the host's
tools on PATH (it then uses `cp`, `rm`, `mkdir`) and with builtins only, as in an image that has
nothing but bash.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from njtui.runner.agents import AGENTS_DIR
from njtui.runner.protocol import STOPPED_MID_CELL
from tests.helpers import AgentProcess

AGENTS = ["python", "bash", "bash-builtins"]

# Per agent: a long cell, one that ignores interrupts, and one that writes two results files.
LONG = {"python": "import time\ntime.sleep(60)\n", "bash": "/bin/sleep 60\n"}
STUBBORN = {
    "python": "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except BaseException:\n        pass\n",
    "bash": "trap '' INT\n/bin/sleep 60\n",
}
WRITE_FILES = {
    "python": "import os\nroot = os.environ['NJTUI_RESULTS']\nopen(root + '/data.bin', 'wb').write({data!r})\nopen(root + '/sub/note.txt', 'w').write('note {n}')\n",
    "bash": "printf '{printf}' > \"$NJTUI_RESULTS/data.bin\"\nprintf 'note {n}' > \"$NJTUI_RESULTS/sub/note.txt\"\n",
}
MIXED_OUTPUT = {
    "python": "import os, sys\nprint('out{i} a')\nos.system('/bin/echo out{i} b')\nsys.stderr.write('err{i} a\\n')\nos.system('/bin/echo err{i} b >&2')\n",
    "bash": "echo out{i} a\n/bin/echo out{i} b\necho err{i} a >&2\n/bin/echo err{i} b >&2\n",
}


class Agent(AgentProcess):
    def __init__(self, kind: str, home: Path, extra_env: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.language = "python" if kind == "python" else "bash"
        self.journal = home / "journal.jsonl"
        self.results = home / "results"
        (self.results / "sub").mkdir(parents=True)
        if kind == "bash-builtins":
            (home / "files").mkdir()  # no mkdir in such an image: njtui's image archive makes it
        env = {"HOME": str(home), "LANG": "C.UTF-8", "NJTUI_RESULTS": str(self.results)}
        env["PATH"] = "/nonexistent" if kind == "bash-builtins" else os.environ["PATH"]
        env.update(extra_env or {})
        if self.language == "python":
            argv = [sys.executable, str(AGENTS_DIR / "agent.py")]
        else:
            argv = ["/bin/bash", str(AGENTS_DIR / "agent.sh")]
        # As the relay starts it: the leader of its own process group.
        super().__init__([*argv, "--journal", str(self.journal)], env=env, cwd=home, stderr=subprocess.DEVNULL, start_new_session=True)
        assert self.next()["type"] == "hello"

    def execute(self, exec_id: str, code: str) -> None:
        self.send({"op": "execute", "exec": exec_id, "code": code, "meta": {"cell": "c"}})

    def until(self, exec_id: str | None, kind: str, timeout: float = 20) -> dict:
        while True:
            message = self.next(timeout)
            if message["type"] == kind and (exec_id is None or message["exec"] == exec_id):
                return message

    def journaled(self) -> list[str]:
        import json

        return [json.loads(line)["type"] for line in self.journal.read_bytes().splitlines()]


@pytest.fixture(params=AGENTS)
def agent(request, tmp_path):
    running = Agent(request.param, tmp_path)
    yield running
    running.close()


def test_input_closed_mid_cell_ends_the_cell_records_it_and_exits(agent):
    agent.execute("long", LONG[agent.language])
    agent.until("long", "start")
    agent.proc.stdin.close()
    done = agent.until("long", "done")
    assert done["status"] == "interrupted" and done["reason"] == "the runtime's connection closed"
    assert agent.until(None, "exit")["reason"] == "stdin closed"
    assert agent.proc.wait(timeout=10) is not None
    assert agent.journaled()[-2:] == ["done", "exit"]  # on record for the next client


@pytest.mark.parametrize("kind", AGENTS)
def test_shutdown_of_a_busy_runtime_ends_it_by_itself(kind, request, tmp_path):
    # A grace longer than any stall of a loaded machine: the cell must end by its interrupt.
    agent = Agent(kind, tmp_path, {"NJTUI_SHUTDOWN_GRACE_MS": "60000"})
    request.addfinalizer(agent.close)
    agent.execute("long", LONG[agent.language])
    agent.until("long", "start")
    agent.send({"op": "shutdown"})
    messages = []
    while not messages or messages[-1]["type"] != "exit":
        messages.append(agent.next())
    done = next(m for m in messages if m["type"] == "done")
    assert done["status"] == "interrupted" and done["reason"] == STOPPED_MID_CELL
    assert done["duration"] is not None, "the interrupt ended the cell, not the grace period"
    # The reason says it: no KeyboardInterrupt traceback as if someone had pressed Ctrl-C.
    assert not [m for m in messages if m["type"] == "error"]
    assert messages[-1]["reason"] == "shutdown"
    assert agent.proc.wait(timeout=10) == 0  # it exited on its own: nothing had to kill it


def test_a_cell_ignoring_its_interrupt_does_not_keep_a_stopped_runtime_alive(agent):
    agent.execute("stubborn", STUBBORN[agent.language])
    agent.until("stubborn", "start")
    agent.send({"op": "shutdown"})
    done = agent.until("stubborn", "done")
    assert done["status"] == "interrupted" and done["reason"] == STOPPED_MID_CELL
    assert agent.until(None, "exit")["reason"] == "shutdown"
    assert agent.proc.wait(timeout=10) is not None


def test_results_files_are_copied_as_the_cell_ends_and_released_once_stored(agent):
    first = b"\x00first\x00\xff\xfe binary\x00\x00"
    second = b"second, longer \x00 than the first"

    def cell(data: bytes, n: int) -> str:
        printf = "".join(f"\\{byte:03o}" for byte in data)
        return WRITE_FILES[agent.language].format(data=data, printf=printf, n=n)

    agent.execute("one", cell(first, 1))
    agent.execute("two", cell(second, 2))  # queued: it starts the moment "one" ends
    done_one, done_two = agent.until("one", "done"), agent.until("two", "done")
    stage = agent.journal.parent / "files"
    for done, data, n in ((done_one, first, 1), (done_two, second, 2)):
        staged = {entry["name"]: (stage / entry["staged"]).read_bytes() for entry in done["files"]}
        assert staged == {"data.bin": data, "sub/note.txt": f"note {n}".encode()}, done
    agent.execute("three", "x=1\n" if agent.language == "bash" else "x = 1\n")
    assert agent.until("three", "done")["files"] == []  # nothing written: nothing staged

    agent.send({"op": "release", "exec": "one"})
    agent.send({"op": "status"})
    agent.until(None, "status")  # requests are taken in order: the release is done
    left = {path.name: path.read_bytes() for path in stage.iterdir() if path.name.startswith("one.")}
    # Removed, or emptied where the image has no `rm`.
    assert all(content == b"" for content in left.values()) and (agent.kind == "bash-builtins" or not left)
    assert all((stage / entry["staged"]).read_bytes() for entry in done_two["files"])


def test_output_never_moves_into_the_next_execution(agent):
    count = 300
    for i in range(count):
        agent.execute(f"e{i}", MIXED_OUTPUT[agent.language].format(i=i))
    output: dict[str, dict[str, str]] = {}
    finished = 0
    while finished < count:
        message = agent.next(timeout=60)
        if message["type"] == "stream":
            streams = output.setdefault(message["exec"], {"stdout": "", "stderr": ""})
            streams[message["name"]] += message["text"]
        finished += message["type"] == "done"
    wrong = {i: output.get(f"e{i}") for i in range(count) if output.get(f"e{i}") != {"stdout": f"out{i} a\nout{i} b\n", "stderr": f"err{i} a\nerr{i} b\n"}}
    assert not wrong, f"{len(wrong)} of {count} executions got another's output: {list(wrong.items())[:3]}"


def test_every_interrupt_wakes_a_sleeping_cell(agent):
    """A signal to the process lands on any of its threads; the Python agent's main thread,
    asleep in time.sleep(), slept on when the signal hit the request reader instead. Twenty
    tries make that race show."""
    code = {"python": "print('asleep', flush=True)\nimport time\ntime.sleep(60)\n", "bash": "echo asleep\n/bin/sleep 60\n"}[agent.language]
    for attempt in range(20):
        agent.execute(f"s{attempt}", code)
        agent.until(f"s{attempt}", "stream")
        agent.send({"op": "interrupt"})
        done = agent.until(f"s{attempt}", "done")
        assert done["status"] == "interrupted", done


def _wakeups(group: int) -> int:
    """Context switches so far of every thread of every process in the agent's process group."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            for task in os.listdir(f"/proc/{entry}/task"):
                status = Path(f"/proc/{entry}/task/{task}/status").read_text()
                total += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
        except (OSError, IndexError, ValueError):
            continue  # a process that ended as it was read
    return total


def test_an_agent_at_rest_does_not_wake_up(agent):
    """Issue 12: an idle runtime blocks in reads (no polling), so it costs no CPU time at all.
    Counted in context switches, which a loaded machine does not add to a blocked process."""
    agent.execute("warm", "echo warm\n" if agent.language == "bash" else "print('warm')\n")
    agent.until("warm", "done")
    agent.send({"op": "status"})
    agent.until(None, "status")  # every process has handled its last request
    before = _wakeups(agent.proc.pid)
    time.sleep(2)  # the window observed, not a wait for something
    # A few at most: the last request's tail (a process going back to its read, the flusher's
    # one 20 ms batch). Polling, as the agents did, is a hundred and more in this window.
    assert _wakeups(agent.proc.pid) - before <= 5
