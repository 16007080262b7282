"""The Python agent speaking the protocol on its stdio, as the relay and Docker drive it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from njtui.runner.agents import AGENTS_DIR
from tests.helpers import AgentProcess


class Agent(AgentProcess):
    def __init__(self, journal: Path, idle_timeout: float = 60) -> None:
        super().__init__(
            [sys.executable, str(AGENTS_DIR / "agent.py"), "--journal", str(journal), "--idle-timeout", str(idle_timeout)],
            start_new_session=True,
        )
        self.journal = journal
        self.hello = self.next()

    def send(self, **request) -> None:
        super().send(request)

    def run(self, code: str, exec_id: str = "x", cell: str = "c1") -> list[dict]:
        self.send(op="execute", exec=exec_id, code=code, meta={"cell": cell})
        return self.until_done(exec_id)

    def until_done(self, exec_id: str) -> list[dict]:
        """Every message up to the done of `exec_id`, other executions' included."""
        messages = []
        while True:
            message = self.next()
            messages.append(message)
            if message["type"] == "done" and message["exec"] == exec_id:
                return messages


@pytest.fixture
def agent(tmp_path):
    running = Agent(tmp_path / "journal.jsonl")
    yield running
    running.close()


def streams(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["name"], m["text"]) for m in messages if m["type"] == "stream"]


def text_of(messages: list[dict], name: str = "stdout") -> str:
    return "".join(text for stream, text in streams(messages) if stream == name)


def test_hello_and_state_persists(agent):
    assert agent.hello["type"] == "hello" and agent.hello["agent"] == "python" and agent.hello["seq"] == 1
    agent.run("x = 40")
    messages = agent.run("x + 2", "y")
    result = next(m for m in messages if m["type"] == "result")
    assert result["data"] == {"text/plain": "42"}
    assert messages[-1]["status"] == "ok" and messages[-1]["count"] == 2


def test_trailing_semicolon_and_none_show_no_result(agent):
    assert not [m for m in agent.run("1 + 1;") if m["type"] == "result"]
    assert not [m for m in agent.run("None") if m["type"] == "result"]


def test_fd_level_capture_keeps_order(agent):
    code = (
        "import os, sys, subprocess, ctypes\n"
        "print('one')\n"
        "print('two', file=sys.stderr)\n"
        "os.system('echo three; echo four >&2')\n"
        "print('five')\n"
        "subprocess.run(['echo', 'six'])\n"
        "libc = ctypes.CDLL(None); libc.write(1, b'seven\\n', 6)\n"
        "print('eight')\n"
    )
    # A chunk may end mid-line (partial lines are sent at once): join runs of one stream first.
    runs: list[list[str]] = []
    for name, text in streams(agent.run(code)):
        if runs and runs[-1][0] == name:
            runs[-1][1] += text
        else:
            runs.append([name, text])
    flat = [(name, line) for name, text in runs for line in text.splitlines()]
    assert flat == [
        ("stdout", "one"),
        ("stderr", "two"),
        ("stdout", "three"),
        ("stderr", "four"),
        ("stdout", "five"),
        ("stdout", "six"),
        ("stdout", "seven"),
        ("stdout", "eight"),
    ]


def test_output_streams_while_the_cell_runs(agent):
    agent.send(op="execute", exec="s", code="import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.4)\n", meta={})
    arrivals = []
    while True:
        message = agent.next()
        if message["type"] == "stream":
            arrivals.append(time.monotonic())
        if message["type"] == "done":
            break
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] > 0.6


def test_traceback_shows_user_code_only(agent):
    messages = agent.run("def boom():\n    raise ValueError('bad value')\n\nboom()\n", cell="abc123")
    error = next(m for m in messages if m["type"] == "error")
    assert error["ename"] == "ValueError" and error["evalue"] == "bad value"
    assert 'File "<cell abc123>", line 4' in error["traceback"]
    assert "raise ValueError('bad value')" in error["traceback"]
    assert "agent.py" not in error["traceback"]
    assert messages[-1]["status"] == "error"


def test_syntax_error_is_reported(agent):
    messages = agent.run("def (:\n")
    error = next(m for m in messages if m["type"] == "error")
    assert error["ename"] == "SyntaxError" and "agent.py" not in error["traceback"]


def test_sys_exit_does_not_end_the_runtime(agent):
    assert agent.run("import sys; sys.exit(3)")[-1]["status"] == "error"
    assert agent.run("1")[-1]["status"] == "ok"


def test_interrupt_stops_the_cell_and_keeps_state(agent):
    agent.run("kept = 'yes'")
    for code in ("import time\ntime.sleep(30)\nprint('after')", "import os\nos.system('sleep 30')\nprint('after')", "while True:\n    pass"):
        agent.send(op="execute", exec="long", code=code, meta={})
        assert agent.next()["type"] == "queued"
        assert agent.next()["type"] == "start"
        time.sleep(0.3)
        started = time.monotonic()
        agent.send(op="interrupt")
        messages = agent.until_done("long")
        assert time.monotonic() - started < 3
        assert messages[-1]["status"] == "interrupted"
        assert "after" not in text_of(messages)
        error = next(m for m in messages if m["type"] == "error")
        assert error["ename"] == "KeyboardInterrupt" and "agent.py" not in error["traceback"]
    assert next(m for m in agent.run("kept") if m["type"] == "result")["data"]["text/plain"] == "'yes'"


def test_a_cell_sent_while_another_runs_is_queued_behind_it(agent):
    agent.send(op="execute", exec="slow", code="import time; time.sleep(0.5); print('slow-done')", meta={})
    while agent.next()["type"] != "start":
        pass
    agent.send(op="execute", exec="next", code="print('next-ran')", meta={})
    messages = agent.until_done("next")
    queued = next(m for m in messages if m["type"] == "queued" and m["exec"] == "next")
    assert queued["position"] == 1
    assert text_of([m for m in messages if m["exec"] == "slow"]) == "slow-done\n"
    assert text_of([m for m in messages if m["exec"] == "next"]) == "next-ran\n"


def test_interrupt_drops_queued_cells(agent):
    agent.send(op="execute", exec="a", code="import time; time.sleep(30)", meta={})
    agent.send(op="execute", exec="b", code="print('never')", meta={})
    time.sleep(0.3)
    agent.send(op="interrupt")
    messages = agent.until_done("b")
    done = {m["exec"]: m["status"] for m in messages if m["type"] == "done"}
    assert done == {"a": "interrupted", "b": "interrupted"}
    assert "never" not in text_of(messages)


def test_status_and_shutdown(agent):
    agent.send(op="status")
    status = agent.next()
    assert status["type"] == "status" and status["state"] == "idle" and status["running"] is None
    agent.send(op="shutdown")
    agent.proc.stdin.close()  # a client that asks, then hangs up: the reason stays "shutdown"
    farewell = agent.next()
    assert farewell["type"] == "exit" and farewell["reason"] == "shutdown"
    assert agent.proc.wait(timeout=5) == 0


def test_journal_is_byte_identical_and_gapless(agent):
    agent.run("print('a' * 100000)")
    agent.run("1/0", "e")
    agent.send(op="shutdown")
    while agent.next()["type"] != "exit":
        pass
    agent.proc.wait(timeout=5)
    journal = agent.journal.read_bytes()
    assert journal == agent.raw
    seqs = [json.loads(line)["seq"] for line in journal.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_idle_timeout(tmp_path):
    started = time.monotonic()
    idle = Agent(tmp_path / "j.jsonl", idle_timeout=1.5)
    try:
        assert idle.next()["reason"] == "idle"
        assert idle.proc.wait(timeout=5) == 0
        assert 1.4 < time.monotonic() - started < 4
    finally:
        idle.close()


def test_a_cell_longer_than_the_idle_timeout_is_not_cut_off(tmp_path):
    idle = Agent(tmp_path / "j.jsonl", idle_timeout=1)
    try:
        messages = idle.run("import time; time.sleep(3); print('finished')")
        assert messages[-1]["status"] == "ok" and "finished" in text_of(messages)
    finally:
        idle.close()


def test_unicode_and_invalid_bytes(agent):
    messages = agent.run("import os\nprint('héllo 🎉 \\t \"q\" \\\\')\nos.write(1, b'bad \\xff byte\\n')")
    out = text_of(messages)
    assert 'héllo 🎉 \t "q" \\' in out and "bad \ufffd byte" in out


def test_input_is_refused_clearly(agent):
    error = next(m for m in agent.run("input('name? ')") if m["type"] == "error")
    assert "no standard input" in error["evalue"]
