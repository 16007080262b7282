"""The Python agent speaking the protocol on its stdio, as the relay and Docker drive it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from njtui.runner import protocol
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


# -- completion (issue 12)


def complete(agent: Agent, code: str, cursor: int | None = None, request_id: str = "q") -> dict:
    """The answer to a `complete` request; messages that come before it stay in agent.messages."""
    agent.send(**protocol.complete_request(request_id, code, len(code) if cursor is None else cursor))
    while True:
        message = agent.next()
        if "seq" not in message:
            assert message["type"] == protocol.COMPLETION and message["id"] == request_id, message
            return message


def test_completion_of_names_attributes_keys_and_modules(agent):
    agent.run("import os\nlocal_value = 1\nsettings = {'alpha': 1, 'beta': 2, 3: 4}\nclass Shape:\n    sides = 4\n    _hidden = 0\nshape = Shape()\n")
    answer = complete(agent, "x = local_v")
    assert answer == {"type": "completion", "id": "q", "matches": ["local_value"], "start": 4, "end": 11}
    assert complete(agent, "pri")["matches"] == ["print"]  # builtins
    assert "while" in complete(agent, "whi")["matches"]  # keywords
    answer = complete(agent, "os.pa")
    assert {"path", "pardir"} <= set(answer["matches"]) and (answer["start"], answer["end"]) == (3, 5)
    assert complete(agent, "os.path.jo")["matches"] == ["join"]
    assert complete(agent, "shape.")["matches"] == ["sides"]  # private names only when asked for
    assert complete(agent, "shape._h")["matches"] == ["_hidden"]
    answer = complete(agent, "settings['a")
    assert answer["matches"] == ["alpha"] and answer["start"] == len("settings['")
    assert complete(agent, "settings[")["matches"] == ["'alpha'", "'beta'", "3"]
    assert "json" in complete(agent, "import js")["matches"]
    assert "path" in complete(agent, "from os import pa")["matches"]
    # The cursor inside the code: only the text before it counts.
    code = "print(local_v)\nnext_line = 2\n"
    answer = complete(agent, code, cursor=code.index(")"))
    assert answer["matches"] == ["local_value"] and (answer["start"], answer["end"]) == (6, 13)
    # Offsets are characters: text before the cursor that is not ASCII does not shift them.
    answer = complete(agent, "é = '🎉'; local_v")
    assert answer["matches"] == ["local_value"] and answer["start"] == len("é = '🎉'; ")
    assert complete(agent, "no_such_thing.x")["matches"] == []


def test_completion_runs_no_user_code_but_a_dotted_lookup(agent):
    agent.run(
        "calls = []\n"
        "def make():\n    calls.append('make')\n    return 'x'\n"
        "class Lazy:\n    @property\n    def costly(self):\n        calls.append('costly')\n        return 'x'\n"
        "class Keys(dict):\n    def keys(self):\n        calls.append('keys')\n        return []\n    def __iter__(self):\n        calls.append('iter')\n        return iter([])\n"
        "lazy = Lazy()\nkeys = Keys(real=1)\n"
    )
    assert complete(agent, "make().up")["matches"] == []  # a call is never evaluated
    assert "costly" in complete(agent, "lazy.")["matches"]  # listed, not evaluated
    assert complete(agent, "keys['r")["matches"] == ["real"]  # the dict's own keys, not the subclass's
    assert "upper" in complete(agent, "lazy.costly.up")["matches"]  # the one thing allowed: the dotted name
    calls = next(m for m in agent.run("calls") if m["type"] == "result")["data"]["text/plain"]
    assert calls == "['costly']"


def test_completion_is_answered_while_a_cell_runs_and_is_not_journaled(agent):
    agent.run("ready_name = 1")
    agent.send(op="execute", exec="long", code="import time\nprint('running', flush=True)\ntime.sleep(60)\n", meta={})
    while agent.next()["type"] != "stream":
        pass
    assert complete(agent, "ready_n")["matches"] == ["ready_name"]
    agent.send(op="interrupt")
    assert agent.until_done("long")[-1]["status"] == "interrupted"
    agent.send(op="shutdown")
    while agent.next()["type"] != "exit":
        pass
    agent.proc.wait(timeout=10)
    # Answers are for the client that asked: the journal (the record every client replays) has
    # the numbered messages only, byte for byte, without a gap.
    journaled = b"".join(line + b"\n" for line in agent.raw.splitlines() if line.startswith(b'{"seq":'))
    assert agent.journal.read_bytes() == journaled
    seqs = [json.loads(line)["seq"] for line in journaled.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_an_unknown_request_is_answered(agent):
    agent.send(op="frobnicate", id="r1")
    assert agent.next() == {"type": protocol.UNSUPPORTED, "id": "r1", "op": "frobnicate"}
    agent.send(op="frobnicate")  # nobody waits for an answer: a log line says it
    message = agent.next()
    assert message["type"] == "log" and "frobnicate" in message["text"]


def test_a_syntax_error_shows_the_line_and_caret_only(agent):
    error = next(m for m in agent.run("x = 1\ndef (:\n", cell="syn") if m["type"] == "error")
    assert error["traceback"] == '  File "<cell syn>", line 2\n    def (:\n        ^\nSyntaxError: invalid syntax\n'
    # Found by the compiler, not the parser: the line is shown too.
    error = next(m for m in agent.run("if True:\n    return 5\n", cell="ret") if m["type"] == "error")
    assert error["traceback"].startswith('  File "<cell ret>", line 2\n    return 5\n')
    assert error["traceback"].endswith("SyntaxError: 'return' outside function\n")
    # A SyntaxError the cell's code raises while it runs keeps the cell's frame.
    error = next(m for m in agent.run("exec('1 +')", cell="dyn") if m["type"] == "error")
    assert error["traceback"].startswith("Traceback (most recent call last):\n") and '"<cell dyn>", line 1' in error["traceback"]
    assert "agent.py" not in error["traceback"] and "ast.py" not in error["traceback"]


def test_completion_through_the_host_relay_goes_to_the_client_that_asked(tmp_path):
    """The relay numbers nothing itself: it keeps the agent's unjournaled answers out of its
    journal offsets, so a client attaching later replays exactly from the seq it asks for."""
    from njtui.model import RuntimeSpec
    from njtui.runner.host import HostBackend
    from njtui.runner.launch import Launch

    backend = HostBackend()
    info = backend.start(str(tmp_path / "nb.toml"), RuntimeSpec("py", "python"), Launch())
    clients: list[RelayClient] = []
    try:
        asking, other = RelayClient(info), RelayClient(info)
        clients += [asking, other]
        asking.send({"op": "attach", "since": 1})
        other.send({"op": "attach", "since": 1})
        asking.send(protocol.execute_request("e1", "relay_name = 1", {}))
        asking.until(lambda m: m.get("type") == "done")
        asking.send(protocol.complete_request("r1", "relay_n", 7))
        answer = asking.until(lambda m: "seq" not in m)
        assert answer == {"type": protocol.COMPLETION, "id": "r1", "matches": ["relay_name"], "start": 0, "end": 7}
        asking.send({"op": "status"})
        last = asking.until(lambda m: m.get("type") == "status")["seq"]
        other.until(lambda m: m.get("seq") == last)
        assert not [m for m in other.messages if "seq" not in m]
        late = RelayClient(info)
        clients.append(late)
        # From a message the relay took in after the answer: the offsets it keeps still hold.
        late.send({"op": "attach", "since": last})
        assert late.until(lambda m: True)["seq"] == last
    finally:
        for client in clients:
            client.sock.close()
        backend.stop(info)


class RelayClient:
    def __init__(self, info) -> None:
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(info.details["socket"])
        self.sock.settimeout(30)  # a bound for a hung test
        self.reader = self.sock.makefile("rb")
        self.messages: list[dict] = []

    def send(self, request: dict) -> None:
        self.sock.sendall(protocol.encode(request))

    def until(self, predicate) -> dict:
        while True:
            line = self.reader.readline()
            assert line, f"the relay closed; so far: {self.messages[-5:]}"
            message = json.loads(line)
            self.messages.append(message)
            if predicate(message):
                return message
