"""The Python agent speaking the protocol on its stdio, as the relay and Docker drive it."""

from __future__ import annotations

import importlib.util
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


def test_bytes_written_to_the_streams_buffers_join_the_text_in_order(agent):
    """Code that writes bytes (sys.stdout.buffer, as a real stdout has) works, in order with
    print, and a character split across two writes arrives whole."""
    code = (
        "import sys\n"
        "print('one')\n"
        "sys.stdout.buffer.write(b'two\\n')\n"
        "print('three')\n"
        "sys.stderr.buffer.write(b'four\\n'); sys.stderr.buffer.flush()\n"
        "sys.stdout.buffer.write('\u00e9'.encode()[:1]); sys.stdout.buffer.write('\u00e9'.encode()[1:] + b'\\n')\n"
        "sys.stdout.write('six\\n'); sys.stdout.flush()\n"
        "n = sys.stdout.buffer.write(memoryview(b'seven\\n'))\n"
        "print(n, sys.stdout.buffer.writable(), sys.stdout.buffer.isatty(), sys.stdout.buffer.fileno())\n"
    )
    messages = agent.run(code)
    assert messages[-1]["status"] == "ok", [m for m in messages if m["type"] == "error"]
    assert text_of(messages) == "one\ntwo\nthree\n\u00e9\nsix\nseven\n6 True False 1\n"
    assert text_of(messages, "stderr") == "four\n"
    runs = [name for name, _ in streams(messages)]
    assert runs.index("stderr") > 0 and "stdout" in runs[runs.index("stderr") + 1 :]


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


# -- rich outputs: MIME bundles (issue 14, docs/protocol.md "Rich outputs")


def outputs(messages: list[dict]) -> list[dict]:
    """The messages a cell's output is made of, in order, without the bookkeeping."""
    return [m for m in messages if m["type"] in ("stream", "result", "display", "update_display", "clear_output", "error")]


def result_of(messages: list[dict]) -> dict:
    return next(m for m in messages if m["type"] == "result")


def one_png() -> bytes:
    """A real 1×1 PNG, made with the standard library."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def test_a_result_carries_every_repr_the_object_offers(agent):
    code = (
        "class Rich:\n"
        "    def __repr__(self): return 'Rich()'\n"
        "    def _repr_html_(self): return '<b>rich</b>'\n"
        "    def _repr_markdown_(self): return '**rich**'\n"
        "    def _repr_svg_(self): return '<svg/>'\n"
        "    def _repr_png_(self): return b'\\x89PNG\\x00\\xff'\n"
        "    def _repr_jpeg_(self): return b'\\xff\\xd8\\xff'\n"
        "    def _repr_latex_(self): return '$x^2$'\n"
        "    def _repr_json_(self): return {'a': [1, 2]}\n"
        "    def _repr_javascript_(self): return 'alert(1)'\n"
        "Rich()\n"
    )
    result = result_of(agent.run(code))
    assert result["data"] == {
        "text/plain": "Rich()",
        "text/html": "<b>rich</b>",
        "text/markdown": "**rich**",
        "image/svg+xml": "<svg/>",
        "image/png": b64(b"\x89PNG\x00\xff"),  # bytes travel as base64
        "image/jpeg": b64(b"\xff\xd8\xff"),
        "text/latex": "$x^2$",
        "application/json": {"a": [1, 2]},  # JSON is the value itself
    }
    assert result["metadata"] == {}
    # A plain value: its repr, as before, and empty metadata.
    result = result_of(agent.run("[1, 'two']"))
    assert result["data"] == {"text/plain": "[1, 'two']"} and result["metadata"] == {}
    # A class is not its instances: its unbound _repr_html_ is not called.
    assert result_of(agent.run("Rich"))["data"] == {"text/plain": "<class '__main__.Rich'>"}


def test_mimebundle_with_metadata_comes_first_and_other_reprs_fill_in(agent):
    code = (
        "calls = []\n"
        "class Bundled:\n"
        "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        calls.append((include, exclude))\n"
        "        return {'text/plain': 'bundled', 'text/markdown': '# from the bundle', 'image/png': b'\\x01\\x02', 'application/vnd.custom+json': {'k': 1}}, {'image/png': {'width': 320}}\n"
        "    def _repr_markdown_(self): return 'not used: the bundle has markdown'\n"
        "    def _repr_html_(self): return ('<i>html</i>', {'isolated': True})\n"
        "Bundled()\n"
    )
    result = result_of(agent.run(code))
    assert result["data"] == {
        "text/plain": "bundled",
        "text/markdown": "# from the bundle",
        "image/png": b64(b"\x01\x02"),
        "application/vnd.custom+json": {"k": 1},
        "text/html": "<i>html</i>",
    }
    assert result["metadata"] == {"image/png": {"width": 320}, "text/html": {"isolated": True}}
    assert result_of(agent.run("calls"))["data"]["text/plain"] == "[(None, None)]"
    # Data only, without the metadata tuple.
    result = result_of(agent.run("class Plain:\n    def _repr_mimebundle_(self, include=None, exclude=None):\n        return {'text/html': '<p>'}\nPlain()\n"))
    assert result["data"]["text/html"] == "<p>" and result["data"]["text/plain"].startswith("<__main__.Plain object") and result["metadata"] == {}


def test_a_repr_returning_none_is_left_out_and_one_that_raises_is_reported(agent):
    code = (
        "class Partial:\n"
        "    def __repr__(self): return 'Partial()'\n"
        "    def _repr_html_(self): return None\n"
        "    def _repr_markdown_(self): raise ValueError('no\\nmarkdown')\n"
        "    def _repr_png_(self): return 42\n"
        "    def _repr_latex_(self): return '$ok$'\n"
        "print('before')\n"
        "Partial()\n"
    )
    messages = agent.run(code)
    assert messages[-1]["status"] == "ok"
    shown = outputs(messages)
    assert [m["type"] for m in shown] == ["stream", "stream", "result"]
    assert shown[0] == {**shown[0], "name": "stdout", "text": "before\n"}
    # One line per failure on the cell's stderr, before the result: the cell goes on.
    warnings = shown[1]["text"].splitlines()
    assert shown[1]["name"] == "stderr" and len(warnings) == 2
    assert "_repr_markdown_" in warnings[0] and "ValueError: no markdown" in warnings[0]
    assert "_repr_png_" in warnings[1] and "int" in warnings[1]
    assert shown[2]["data"] == {"text/plain": "Partial()", "text/latex": "$ok$"}


def test_a_failing_repr_still_fails_the_cell(agent):
    messages = agent.run("class Bad:\n    def __repr__(self): raise RuntimeError('no repr')\nBad()\n")
    assert messages[-1]["status"] == "error" and not [m for m in messages if m["type"] == "result"]
    assert next(m for m in messages if m["type"] == "error")["evalue"] == "no repr"


def test_display_update_and_clear_keep_their_place_among_prints(agent):
    code = "import os, sys\nprint('one')\nos.system('echo two')\ndisplay('three', {'four': 4})\nprint('five', file=sys.stderr)\nclear_output(wait=True)\nprint('six')\nclear_output()\nprint('seven')\n"
    shown = [(m["type"], m.get("name"), m.get("text") or m.get("data") or m.get("wait")) for m in outputs(agent.run(code))]
    assert shown == [
        ("stream", "stdout", "one\n"),
        ("stream", "stdout", "two\n"),
        ("display", None, {"text/plain": "'three'"}),
        ("display", None, {"text/plain": "{'four': 4}"}),
        ("stream", "stderr", "five\n"),
        ("clear_output", None, True),
        ("stream", "stdout", "six\n"),
        ("clear_output", None, False),
        ("stream", "stdout", "seven\n"),
    ]
    display_message = next(m for m in agent.messages if m["type"] == "display")
    assert display_message["display_id"] is None and display_message["metadata"] == {} and display_message["exec"] == "x"


def test_display_ids_handles_and_updates(agent):
    code = (
        "handle = display('first', display_id=True)\n"
        "handle.update('second')\n"
        "named = display('a', display_id='progress', metadata={'text/plain': {'note': 1}})\n"
        "update_display('b', display_id='progress')\n"
        "named.display('again')\n"
        "plain = display('no id')\n"
        "display({'text/plain': 'raw text', 'image/png': b'\\x00'}, raw=True)\n"
        "empty = display(display_id='later')\n"
        "print(type(handle).__name__, handle.display_id == handle.display_id.strip(), named.display_id, plain, empty.display_id)\n"
    )
    messages = outputs(agent.run(code))
    generated = messages[0]["display_id"]
    assert isinstance(generated, str) and generated
    shown = [(m["type"], m.get("display_id"), m.get("data"), m.get("metadata")) for m in messages]
    assert shown == [
        ("display", generated, {"text/plain": "'first'"}, {}),
        ("update_display", generated, {"text/plain": "'second'"}, {}),
        ("display", "progress", {"text/plain": "'a'"}, {"text/plain": {"note": 1}}),
        ("update_display", "progress", {"text/plain": "'b'"}, {}),
        ("display", "progress", {"text/plain": "'again'"}, {}),
        ("display", None, {"text/plain": "'no id'"}, {}),
        ("display", None, {"text/plain": "raw text", "image/png": b64(b"\x00")}, {}),
        ("display", "later", {}, {}),  # an empty output to fill in later, as IPython's
        ("stream", None, None, None),
    ]
    assert messages[-1]["text"] == "DisplayHandle True progress None later\n"
    # Builtins, as in IPython: a module the cells import sees them too.
    assert result_of(agent.run("import builtins\nbuiltins.display is display and builtins.clear_output is clear_output"))["data"]["text/plain"] == "True"
    # Misuse is the caller's error, raised in the cell.
    error = next(m for m in agent.run("update_display('x', display_id=None)") if m["type"] == "error")
    assert error["ename"] == "TypeError" and "display_id" in error["evalue"]


def test_an_object_that_displays_itself(agent):
    code = "class Widget:\n    def _ipython_display_(self):\n        display({'text/plain': 'widget', 'text/html': '<w/>'}, raw=True)\ndisplay(Widget())\nWidget()\n"
    messages = agent.run(code)
    assert [(m["type"], m["data"]) for m in outputs(messages)] == [("display", {"text/plain": "widget", "text/html": "<w/>"})] * 2
    assert not [m for m in messages if m["type"] == "result"]


def test_ipython_display_objects_and_functions(agent):
    # The agent imports neither IPython nor matplotlib itself: only what the cells import.
    assert result_of(agent.run("import sys\nsorted(name for name in ('IPython', 'matplotlib') if name in sys.modules)"))["data"]["text/plain"] == "[]"
    png = one_png()
    code = (
        "from IPython.display import display, update_display, clear_output, Markdown, Image, DisplayHandle\n"
        "print('start')\n"
        "display(Markdown('**bold**'))\n"
        f"handle = display(Image(data={png!r}), display_id='img')\n"
        "update_display(Markdown('_updated_'), display_id='img')\n"
        "DisplayHandle('other').display(Markdown('x'))\n"
        "clear_output(wait=True)\n"
        "Markdown('# last')\n"
    )
    messages = agent.run(code)
    assert messages[-1]["status"] == "ok", messages
    shown = [(m["type"], m.get("display_id"), m.get("data") or m.get("text") or m.get("wait")) for m in outputs(messages)]
    assert shown == [
        ("stream", None, "start\n"),
        ("display", None, {"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "**bold**"}),
        ("display", "img", {"text/plain": "<IPython.core.display.Image object>", "image/png": b64(png)}),
        ("update_display", "img", {"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "_updated_"}),
        ("display", "other", {"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "x"}),
        ("clear_output", None, True),
        ("result", None, {"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "# last"}),
    ]
    # IPython's own display functions, however they are reached, are the agent's.
    same = "import IPython.display, IPython.core.display_functions as functions\nIPython.display.display is display is functions.display"
    assert result_of(agent.run(same))["data"]["text/plain"] == "True"


def test_an_image_from_a_stand_in_figure(agent):
    png = one_png()
    code = f"class Figure:\n    def __repr__(self): return '<Figure>'\n    def _repr_png_(self): return {png!r}\nfig = Figure()\ndisplay(fig)\nfig\n"
    messages = outputs(agent.run(code))
    assert [(m["type"], m["data"]) for m in messages] == [("display", {"text/plain": "<Figure>", "image/png": b64(png)})] + [("result", {"text/plain": "<Figure>", "image/png": b64(png)})]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed in this environment")
def test_a_matplotlib_figure_is_a_png(agent):
    import base64

    setup = "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nlines = ax.plot([1, 3, 2])\n"
    # Left open at the cell's end, a figure is not shown: no magic in a plain Python runtime.
    messages = agent.run(setup)
    assert messages[-1]["status"] == "ok" and not [m for m in outputs(messages) if m["type"] != "stream"]
    messages = outputs(agent.run("display(fig)\nfig"))
    assert [m["type"] for m in messages] == ["display", "result"]
    for message in messages:
        assert message["data"]["text/plain"] == "<Figure size 640x480 with 1 Axes>"
        assert base64.b64decode(message["data"]["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_bundle_over_the_limit_is_replaced_by_its_text(agent):
    code = "class Huge:\n    def __repr__(self): return 'Huge()'\n    def _repr_png_(self): return bytes(25 << 20)\n    def _repr_html_(self): return '<p>small</p>'\n"
    agent.run(code)
    for cell in ("Huge()", "display(Huge())"):
        message = outputs(agent.run(cell))[0]
        assert set(message["data"]) == {"text/plain"} and message["metadata"] == {}
        text = message["data"]["text/plain"]
        assert text.startswith("Huge()\n") and "32 MiB" in text and len(text) < 1000
    # Under the limit, the same kind of output is kept whole.
    message = result_of(agent.run("class Big:\n    def _repr_png_(self): return bytes(1 << 20)\nBig()"))
    assert len(message["data"]["image/png"]) == len(b64(bytes(1 << 20)))
