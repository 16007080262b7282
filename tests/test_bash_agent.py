"""The Bash agent on its own, speaking the protocol over stdin/stdout.

It runs under `env -i PATH=/nonexistent`: any external command it used would fail, which is how
these tests hold it to bash builtins (the Docker tests run it in an image without Python).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from njtui.runner import protocol
from njtui.runner.agents import AGENTS_DIR
from tests.helpers import AgentProcess

AGENT = AGENTS_DIR / "agent.sh"
BASH = "/bin/bash"


class BashAgent(AgentProcess):
    def __init__(self, tmp_path: Path, idle_timeout: float = 60) -> None:
        self.journal = tmp_path / "journal.jsonl"
        super().__init__(
            ["env", "-i", "PATH=/nonexistent", f"HOME={tmp_path}", "LANG=C.UTF-8", BASH, str(AGENT), "--journal", str(self.journal), "--idle-timeout", str(idle_timeout)],
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        self.hello = self.next(timeout=10)

    def execute(self, exec_id: str, code: str, cell: str = "c") -> None:
        self.send({"op": "execute", "exec": exec_id, "code": code, "meta": {"cell": cell}})

    def until_done(self, exec_id: str, timeout: float = 30) -> list[dict]:
        got = []
        while True:
            message = self.next(timeout)
            if message.get("exec") == exec_id:
                got.append(message)
                if message["type"] == "done":
                    return got

    def run(self, exec_id: str, code: str) -> list[dict]:
        self.execute(exec_id, code)
        return self.until_done(exec_id)


@pytest.fixture
def agent(tmp_path):
    running = BashAgent(tmp_path)
    yield running
    running.close()


def text(messages: list[dict], name: str = "stdout") -> str:
    return "".join(m["text"] for m in messages if m["type"] == "stream" and m["name"] == name)


def done(messages: list[dict]) -> dict:
    return messages[-1]


def test_hello(agent):
    assert agent.hello["type"] == "hello" and agent.hello["seq"] == 1 and agent.hello["exec"] is None
    assert agent.hello["agent"] == "bash" and agent.hello["protocol"] == 1 and agent.hello["language"] == "bash"
    assert agent.hello["instance"] and agent.hello["pid"] == agent.proc.pid


def test_state_persists_between_cells(agent):
    agent.run("a", "cd /tmp\nV=kept\ndeclare -A M=([k]=v)\nf() { echo \"f:$1\"; }\nalias hi='echo alias-hi'\n")
    out = agent.run("b", "shopt -s expand_aliases\necho $PWD $V ${M[k]}\nf x\n")
    assert text(out) == "/tmp kept v\nf:x\n"
    assert done(out)["status"] == "ok" and done(out)["exit_code"] == 0 and done(out)["count"] == 2


def test_messages_of_an_execution_in_order(agent):
    out = agent.run("e", "echo one\n")
    assert [m["type"] for m in out] == ["queued", "start", "stream", "done"]
    assert out[0]["meta"] == {"cell": "c"} and out[1]["meta"] == {"cell": "c"} and out[1]["count"] == 1


def test_exit_status_is_reported(agent):
    out = agent.run("e", "echo before\nfalse\n")
    error = next(m for m in out if m["type"] == "error")
    assert error["ename"] == "ExitStatus" and error["evalue"] == "exit status 1"
    assert done(out)["status"] == "error" and done(out)["exit_code"] == 1


def test_exit_in_a_cell_ends_the_cell_not_the_runtime(agent):
    out = agent.run("a", "KEEP=1\necho one\nexit 3\necho never\n")
    assert text(out) == "one\n" and done(out)["exit_code"] == 3 and done(out)["status"] == "error"
    out = agent.run("b", "echo $KEEP\n( exit 4 )\necho sub $?\n")
    assert text(out) == "1\nsub 4\n"


def test_set_e_ends_the_cell_and_keeps_the_runtime(agent):
    out = agent.run("a", "set -e\necho one\nfalse\necho never\n")
    assert text(out) == "one\n" and done(out)["status"] == "error"
    assert text(agent.run("b", "echo alive\n")) == "alive\n"


def test_stdout_and_stderr_are_separate_streams(agent):
    out = agent.run("e", "echo out\necho err >&2\n")
    assert text(out, "stdout") == "out\n" and text(out, "stderr") == "err\n"


def test_a_partial_line_arrives_before_the_cell_ends(agent):
    agent.execute("e", "printf 'abc'\nread -t 3 <> <(:)\necho def\n")
    started = time.monotonic()
    while True:
        message = agent.next()
        if message["type"] == "stream":
            break
    assert message["text"] == "abc" and time.monotonic() - started < 1.5
    out = agent.until_done("e")
    assert text(out) == "def\n"


def test_cell_input_is_empty(agent):
    out = agent.run("e", 'read -r line; echo "rc=$? [$line]"\n')
    assert text(out) == "rc=1 []\n"
    assert done(agent.run("f", "echo still-fine\n"))["status"] == "ok"


def test_escaping_round_trips(agent):
    tricky = 'quote " backslash \\ tab \t bell \a unicode é ✓ 😀 cr \r end'
    out = agent.run("e", "printf '%s\\n' " + "'" + tricky.replace("'", "'\\''") + "'\n")
    assert text(out) == tricky + "\n"
    out = agent.run("f", 's=\'with "json" {"a": [1, 2]} \\\\n not a newline\'\necho "$s"\n')
    assert text(out) == 'with "json" {"a": [1, 2]} \\\\n not a newline\n'


def test_a_large_output_arrives_complete_and_in_order(agent):
    started = time.monotonic()
    out = agent.run("e", 'for ((i = 0; i < 100000; i++)); do echo "line $i"; done\n')
    elapsed = time.monotonic() - started
    lines = text(out).splitlines()
    assert lines == [f"line {i}" for i in range(100000)]
    print(f"100,000 lines through the bash agent in {elapsed:.2f}s")


def test_a_cell_sent_while_another_runs_is_queued_behind_it(agent):
    agent.execute("slow", "read -t 0.5 <> <(:)\necho slow-done\n")
    while not any(m.get("type") == "start" and m.get("exec") == "slow" for m in agent.messages):
        agent.next()
    agent.execute("next", "echo next-ran\n")
    queued = next(m for m in iter(agent.next, None) if m.get("exec") == "next")
    assert queued["type"] == "queued" and queued["position"] == 1
    assert text(agent.until_done("slow")) == "slow-done\n"
    assert text(agent.until_done("next")) == "next-ran\n"


def test_interrupt_stops_the_cell_keeps_state_and_drops_the_queue(agent):
    agent.run("a", "KEEP=yes\n")
    agent.execute("loop", "echo started\nwhile :; do :; done\necho never\n")
    agent.execute("queued", "echo queued-ran\n")
    while not any(m.get("type") == "stream" and m.get("exec") == "loop" for m in agent.messages):
        agent.next()
    agent.send({"op": "interrupt"})
    out = agent.until_done("loop")
    assert done(out)["status"] == "interrupted" and "never" not in text(out)
    dropped = agent.until_done("queued")
    assert done(dropped)["status"] == "interrupted" and "queued-ran" not in text(dropped)
    assert text(agent.run("b", "echo $KEEP\n")) == "yes\n"


def test_interrupt_stops_a_foreground_child_process(agent):
    agent.execute("child", "echo go\n" + BASH + " -c 'while :; do read -t 1 <> <(:); done'\necho after\n")
    while not any(m.get("type") == "stream" and m.get("exec") == "child" for m in agent.messages):
        agent.next()
    time.sleep(0.3)
    agent.send({"op": "interrupt"})
    out = agent.until_done("child", timeout=10)
    assert done(out)["status"] == "interrupted" and "after" not in text(out)


def test_status_while_busy(agent):
    agent.execute("slow", "read -t 1 <> <(:)\n")
    agent.until_start = [m for m in []]
    while not any(m.get("type") == "start" for m in agent.messages):
        agent.next()
    agent.send({"op": "status"})
    while True:
        message = agent.next()
        if message["type"] == "status":
            break
    assert message["state"] == "busy" and message["running"] == "slow"
    agent.until_done("slow")
    agent.send({"op": "status"})
    while (message := agent.next())["type"] != "status":
        pass
    assert message["state"] == "idle" and message["count"] == 1 and message["idle_for"] >= 0


def test_shutdown(agent):
    agent.send({"op": "shutdown"})
    message = agent.next()
    assert message["type"] == "exit" and message["reason"] == "shutdown"
    assert agent.proc.wait(timeout=5) == 0


def test_stdin_closed_ends_the_agent(agent):
    agent.proc.stdin.close()
    assert agent.next()["reason"] == "stdin closed"
    assert agent.proc.wait(timeout=5) == 0


def test_idle_timeout(tmp_path):
    idle = BashAgent(tmp_path, idle_timeout=2)
    try:
        idle.run("a", "echo hi\n")
        finished = time.monotonic()
        message = idle.next(timeout=10)
        assert message["type"] == "exit" and message["reason"] == "idle"
        assert 1.8 <= time.monotonic() - finished <= 4
    finally:
        idle.close()


def test_journal_holds_exactly_what_was_sent_and_seq_has_no_gaps(agent):
    agent.run("a", "echo one\necho two >&2\n")
    agent.send({"op": "status"})
    while agent.next()["type"] != "status":
        pass
    agent.send({"op": "shutdown"})
    agent.next()
    agent.proc.wait(timeout=5)
    journal = [json.loads(line) for line in agent.journal.read_text().splitlines()]
    assert journal == agent.messages
    assert [m["seq"] for m in journal] == list(range(1, len(journal) + 1))
    assert all(list(m)[:4] == ["seq", "exec", "type", "t"] for m in journal)


# -- completion (issue 12)


def complete(agent: BashAgent, code: str, cursor: int | None = None, request_id: str = "q") -> dict:
    """The answer to a `complete` request; messages that come before it stay in agent.messages."""
    agent.send(protocol.complete_request(request_id, code, len(code) if cursor is None else cursor))
    while True:
        message = agent.next()
        if "seq" not in message:
            assert message["type"] == protocol.COMPLETION and message["id"] == request_id, message
            return message


def test_completion_of_variables_commands_and_files_in_the_cells_state(agent, tmp_path):
    (tmp_path / "work" / "sub dir").mkdir(parents=True)
    (tmp_path / "work" / "report.txt").write_text("")
    agent.run("a", f"cd {tmp_path}/work\nMY_SETTING=1\nmy_helper() {{ :; }}\nalias my_alias=true\n")
    answer = complete(agent, "echo $MY_SE")
    assert answer == {"type": "completion", "id": "q", "matches": ["$MY_SETTING"], "start": 5, "end": 11}
    assert complete(agent, "echo ${MY_SE")["matches"] == ["${MY_SETTING}"]
    assert complete(agent, "my_he")["matches"] == ["my_helper"]  # functions, in a command's place
    assert complete(agent, "my_al")["matches"] == ["my_alias"]
    assert "echo" in complete(agent, "true && ech")["matches"]  # builtins
    assert complete(agent, "cat rep")["matches"] == ["report.txt"]  # files, from the cell's directory
    answer = complete(agent, "ls su")
    assert answer["matches"] == ["sub\\ dir/"] and answer["start"] == 3  # as bash inserts it
    assert complete(agent, "ls sub\\ d")["matches"] == ["sub\\ dir/"]
    assert complete(agent, "ls $HOME/wo")["matches"] == ["$HOME/work/"]
    assert complete(agent, "__njt")["matches"] == []  # the agent's own functions are not offered
    # The cursor inside the code, and offsets in characters whatever precedes it.
    code = "x='é 🎉'; cat rep | wc -l"
    answer = complete(agent, code, cursor=code.index(" |"))
    assert answer["matches"] == ["report.txt"] and (answer["start"], answer["end"]) == (code.index("rep"), code.index(" |"))


def test_completion_while_a_cell_runs_answers_at_once_with_nothing(agent):
    agent.run("a", "MY_SETTING=1\n")
    agent.execute("slow", "echo started\nread -t 60 <> <(:)\necho after\n")
    while not any(m.get("type") == "stream" and m.get("exec") == "slow" for m in agent.messages):
        agent.next()
    # Only main has the cell's variables, and main is running the cell: nothing, without waiting.
    assert complete(agent, "echo $MY_SE") == {"type": "completion", "id": "q", "matches": [], "start": 11, "end": 11}
    agent.send({"op": "interrupt"})
    assert done(agent.until_done("slow"))["status"] == "interrupted"
    assert complete(agent, "echo $MY_SE", request_id="again")["matches"] == ["$MY_SETTING"]
    agent.send({"op": "shutdown"})
    while agent.next()["type"] != "exit":
        pass
    agent.proc.wait(timeout=5)
    # Answers are nobody else's business: the journal holds the numbered messages only.
    journal = [json.loads(line) for line in agent.journal.read_text().splitlines()]
    assert journal == [m for m in agent.messages if "seq" in m]
    assert [m["seq"] for m in journal] == list(range(1, len(journal) + 1))


def test_an_unknown_request_is_answered(agent):
    agent.send({"op": "frobnicate", "id": "r1"})
    assert agent.next() == {"type": protocol.UNSUPPORTED, "id": "r1", "op": "frobnicate"}
    agent.send({"op": "complete", "id": "not a token!", "code": "", "cursor": 0})
    message = agent.next()
    assert message["type"] == "log" and "bad request" in message["text"]
