"""Output a background process or thread writes after its cell ended (issue 23).

A cell that leaves a background job (`(…; echo late) &` in Bash, `subprocess.Popen` or a
`threading.Thread` in Python) has that job's later output emitted with `exec: null`, never under
the next cell, even one running at that moment (docs/protocol.md, "Output capture" and "The Bash
agent's cell boundary"); a client shows it in the runner log, never in a cell. Before, it was
filed under the next cell (Bash 47 of 50 runs, Python 27 to 32 of 50).

No test sleeps: each late writer blocks on a FIFO that the test opens only once the next cell
runs, and that cell in turn blocks on a FIFO the test opens once the late output has come. The
rounds where a background burst of output crosses the end of its cell at a point of the
machine's choosing also hold the next cell until some of it has come, or all of it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from njtui.model.settings import Mount
from njtui.runner.agents import AGENTS_DIR
from njtui.runner.log import LogEntry, RunnerLog
from njtui.runner.runner import Runner, RuntimeMessage
from njtui.store import load_notebook
from njtui.store.results import ResultsStore
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE
from tests.helpers import AgentProcess, make_notebook

ROUNDS = 8  # each round shows the finding on its own: the late output comes while the next cell waits
BURST = 3000  # lines of a background burst that crosses the end of its cell
BURST_ROUNDS = 12
WAIT = 60.0  # for one message, on a loaded machine


class Fifo:
    """A named pipe the test releases: opening it for writing waits for the cell's reader."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        os.chmod(path, 0o666)  # a container's user too

    def release(self, timeout: float = WAIT) -> None:
        def write() -> None:
            with open(self.path, "w") as fifo:
                fifo.write("go\n")

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(timeout)
        if writer.is_alive():
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))  # frees the writer
            raise AssertionError(f"nothing opened {self.path.name} to read within {timeout}s")


# -- the agents on their own, as the relay and Docker drive them


class Agent(AgentProcess):
    def __init__(self, language: str, tmp_path: Path) -> None:
        journal = tmp_path / f"journal-{language}.jsonl"
        if language == "python":
            argv = [sys.executable, str(AGENTS_DIR / "agent.py"), "--journal", str(journal)]
        else:
            # Builtins only, as test_bash_agent holds it to.
            argv = ["env", "-i", "PATH=/nonexistent", f"HOME={tmp_path}", "LANG=C.UTF-8", "/bin/bash", str(AGENTS_DIR / "agent.sh"), "--journal", str(journal)]
        super().__init__(argv, cwd=tmp_path, start_new_session=True)
        self.hello = self.next(WAIT)
        assert self.hello["type"] == "hello"

    def execute(self, exec_id: str, code: str) -> None:
        self.send({"op": "execute", "exec": exec_id, "code": code, "meta": {"cell": exec_id}})

    def until(self, condition, what: str) -> None:
        """Reads messages until `condition(self.messages)` holds."""
        while not condition(self.messages):
            try:
                self.next(WAIT)
            except AssertionError:
                last = [{**m, "text": m["text"][-300:]} if "text" in m else m for m in self.messages[-6:]]
                raise AssertionError(f"{what} never came within {WAIT}s; the last messages: {last}") from None

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the cells' background processes too
        except ProcessLookupError:
            pass
        super().close()


def texts(messages: list[dict], exec_id: str | None, name: str | None = None) -> str:
    return "".join(m["text"] for m in messages if m["type"] == "stream" and m["exec"] == exec_id and (name is None or m["name"] == name))


def done(messages: list[dict], exec_id: str) -> bool:
    return any(m["type"] == "done" and m["exec"] == exec_id for m in messages)


def streams(messages: list[dict]) -> list[str]:
    """The text of each stream of each execution, or of none (a line may come in pieces)."""
    by_exec: dict[tuple[object, str], str] = {}
    for m in messages:
        if m["type"] == "stream":
            by_exec[(m["exec"], m["name"])] = by_exec.get((m["exec"], m["name"]), "") + m["text"]
    return list(by_exec.values())


def shown(messages: list[dict], text: str) -> bool:
    """`text` in the streams of any execution, or of none."""
    return any(text in joined for joined in streams(messages))


def late_writer(language: str, kind: str, fifo: Path, round_: int) -> str:
    """A cell that leaves a job behind: it waits for `fifo`, then writes a line to each stream."""
    if language == "bash":
        return f"( read -r _ < {shlex.quote(str(fifo))}; echo late-out-{round_}; echo late-err-{round_} >&2 ) &\necho one-{round_}\n"
    if kind == "thread":  # Python-level writes from a thread the cell started
        return f"import sys, threading\ndef late():\n    open({str(fifo)!r}).read()\n    print('late-out-{round_}')\n    print('late-err-{round_}', file=sys.stderr)\nthreading.Thread(target=late, daemon=True).start()\nprint('one-{round_}')\n"
    # Writes to the fds a subprocess inherited, long after the cell that started it ended.
    child = f"import sys; open({str(fifo)!r}).read(); print('late-out-{round_}'); print('late-err-{round_}', file=sys.stderr)"
    return f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {child!r}])\nprint('one-{round_}')\n"


def waiting_cell(language: str, hold: Path, round_: int) -> str:
    """The next cell: it prints, waits for `hold` (the late output comes meanwhile), prints."""
    if language == "bash":
        return f"echo begin-{round_}; read -r _ < {shlex.quote(str(hold))}; echo end-{round_}\n"
    return f"print('begin-{round_}')\nopen({str(hold)!r}).read()\nprint('end-{round_}')\n"


# A subprocess's writes to the fds it inherited; a thread's Python-level writes; a Bash job's.
CASES = [("python", "subprocess"), ("python", "thread"), ("bash", "job")]


@pytest.mark.parametrize(("language", "kind"), CASES)
def test_late_output_of_a_background_job_is_no_later_cells(tmp_path, language, kind):
    play_rounds(late_output_round, ROUNDS, language, kind, tmp_path)


def play_rounds(play, rounds: int, language: str, kind: str, tmp_path: Path) -> None:
    """`play(agent, language, kind, tmp_path, round)` for each round, on one agent."""
    agent = Agent(language, tmp_path)
    try:
        for r in range(rounds):
            play(agent, language, kind, tmp_path, r)
    finally:
        agent.close()


def late_output_round(agent: Agent, language: str, kind: str, tmp_path: Path, r: int) -> None:
    late, hold = Fifo(tmp_path / f"late-{r}"), Fifo(tmp_path / f"hold-{r}")
    first, second = f"a{r}", f"b{r}"
    agent.execute(first, late_writer(language, kind, late.path, r))
    agent.execute(second, waiting_cell(language, hold.path, r))
    agent.until(lambda messages: shown(messages, f"begin-{r}"), "the next cell's first line")
    late.release()  # the job writes now, while the next cell runs
    agent.until(lambda messages: shown(messages, f"late-out-{r}\n") and shown(messages, f"late-err-{r}\n"), "the late output")
    hold.release()
    agent.until(lambda messages: done(messages, second), "the next cell's end")
    messages = agent.messages
    assert texts(messages, second) == f"begin-{r}\nend-{r}\n", f"round {r}: the next cell got {texts(messages, second)!r}"
    assert texts(messages, first) == f"one-{r}\n", messages
    assert texts(messages, None, "stdout") == f"late-out-{r}\n"
    assert texts(messages, None, "stderr") == f"late-err-{r}\n"
    late_at = min(i for i, m in enumerate(messages) if m["type"] == "stream" and m["exec"] is None)
    assert late_at > next(i for i, m in enumerate(messages) if m["type"] == "done" and m["exec"] == first)
    agent.messages.clear()


def burst_cell(language: str, kind: str, round_: int) -> str:
    """A cell that starts a burst of numbered lines and ends at once: the burst crosses its end.
    Its own line comes first, whole (the burst would come between a print's text and newline)."""
    prefix = f"bg{round_}-"
    if language == "bash":
        return f"echo one-{round_}\nfor ((i = 0; i < {BURST}; i++)); do echo {prefix}$i; done &\n"
    if kind == "thread":
        return f"import threading\nprint('one-{round_}')\nthreading.Thread(target=lambda: [print(f'{prefix}{{i}}') for i in range({BURST})], daemon=True).start()\n"
    child = f"import sys\nfor i in range({BURST}):\n    sys.stdout.write(f'{prefix}{{i}}\\n'); sys.stdout.flush()"
    return f"import subprocess, sys\nprint('one-{round_}')\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"


@pytest.mark.parametrize(("language", "kind"), CASES)
def test_a_burst_crossing_the_end_of_its_cell_is_split_exactly(tmp_path, language, kind):
    """Each line of the burst is its cell's (before its `done`) or exec null (after), once and in
    order; none is the next cell's, which runs until some of the burst came while it ran, or
    all of it had come."""
    play_rounds(burst_round, BURST_ROUNDS, language, kind, tmp_path)


def burst_round(agent: Agent, language: str, kind: str, tmp_path: Path, r: int) -> None:
    hold = Fifo(tmp_path / f"hold-{r}")
    first, second = f"a{r}", f"b{r}"
    agent.execute(first, burst_cell(language, kind, r))
    agent.execute(second, waiting_cell(language, hold.path, r))
    prefix = f"bg{r}-"

    def burst_whole(messages: list[dict]) -> bool:
        # Its last line, to its end: a chunk may end in the middle of a line, so a count of the
        # lines begun (as this once was) can be whole while the last line's end is still on its way.
        return (texts(messages, first) + texts(messages, None)).endswith(f"{prefix}{BURST - 1}\n")

    def in_the_next(messages: list[dict]) -> bool:
        return prefix[:-1] in texts(messages, second)

    def came_while_the_next_ran(messages: list[dict]) -> bool:
        if not shown(messages, f"begin-{r}"):
            return False
        begun = next(i for i, m in enumerate(messages) if m["type"] == "start" and m["exec"] == second)
        return any(m["type"] == "stream" and prefix in m["text"] for m in messages[begun:]) or burst_whole(messages) or in_the_next(messages)

    agent.until(came_while_the_next_ran, "burst output while the next cell runs")
    hold.release()
    agent.until(lambda messages: done(messages, second) and (burst_whole(messages) or in_the_next(messages)), "the whole burst")
    messages = agent.messages
    assert texts(messages, second) == f"begin-{r}\nend-{r}\n", f"round {r}: the next cell got {texts(messages, second)!r}"
    ended = next(i for i, m in enumerate(messages) if m["type"] == "done" and m["exec"] == first)
    assert all(m["exec"] is None for m in messages[ended:] if m["type"] == "stream" and prefix in m["text"])
    own = texts(messages, first)
    assert own.startswith(f"one-{r}\n")
    assert own[len(f"one-{r}\n") :] + texts(messages, None) == "".join(f"{prefix}{i}\n" for i in range(BURST))
    agent.messages.clear()


QUEUED = 240  # cells queued at once
EVERY = 7  # of which every 7th leaves a job behind


def queued_cell(language: str, kind: str, fifo: Path, i: int) -> str:
    if i % EVERY == 0:
        return late_writer(language, kind, fifo, i)
    return f"echo one-{i}\necho two-{i} >&2\n" if language == "bash" else f"import sys\nprint('one-{i}')\nprint('two-{i}', file=sys.stderr)\n"


@pytest.mark.parametrize(("language", "kind"), CASES)
def test_cells_queued_back_to_back_keep_their_own_output(tmp_path, language, kind):
    """Cells that run the moment the one before ends, some leaving a job behind: each cell's
    output is its own, the next cell after a job gets new pipes (Bash: a new forwarder) and the
    others reuse theirs, and every job's line comes later, with exec null."""
    agent = Agent(language, tmp_path)
    try:
        fifos = {i: Fifo(tmp_path / f"late-{i}") for i in range(0, QUEUED, EVERY)}
        expected = sorted(f"late-{name}-{i}" for i in fifos for name in ("out", "err"))
        for i in range(QUEUED):
            agent.execute(f"e{i}", queued_cell(language, kind, tmp_path / f"late-{i}", i))
        agent.until(lambda messages: done(messages, f"e{QUEUED - 1}"), "the last cell's end")
        for fifo in fifos.values():
            fifo.release()
        # (Threads' lines may interleave: one print is two writes, the text and the newline.)
        agent.until(lambda messages: sorted(re.findall(r"late-\w+-\d+", "\n".join(streams(messages)))) == expected, "every job's line")
        messages = agent.messages
        for i in range(QUEUED):
            assert texts(messages, f"e{i}", "stdout") == f"one-{i}\n", (i, texts(messages, f"e{i}"))
            assert texts(messages, f"e{i}", "stderr") == ("" if i in fifos else f"two-{i}\n"), (i, texts(messages, f"e{i}"))
        assert sorted(re.findall(r"late-out-\d+", texts(messages, None, "stdout"))) == sorted(f"late-out-{i}" for i in fifos)
    finally:
        agent.close()


def test_a_bash_cells_last_job_stays_its_own(tmp_path):
    """The forwarders a cell's job makes necessary are no jobs of main's: `$!` in the next cell
    is still that job, and `wait $!` waits for it."""
    agent = Agent("bash", tmp_path)
    try:
        late = Fifo(tmp_path / "late")
        agent.execute("a", f"( read -r _ < {shlex.quote(str(late.path))}; echo late ) &\necho $!\n")
        agent.execute("b", "echo $!\nwait $!\necho waited $?\n")
        agent.until(lambda messages: done(messages, "a") and texts(messages, "b").count("\n") >= 1, "the next cell's first line")
        late.release()
        agent.until(lambda messages: done(messages, "b") and shown(messages, "late\n"), "the next cell's end and the job's line")
        job = texts(agent.messages, "a").strip()
        assert job.isdigit() and texts(agent.messages, "b") == f"{job}\nwaited 0\n"
        assert texts(agent.messages, None) == "late\n"
    finally:
        agent.close()


# -- through the runner, as njtui runs them: the runner log has it, no cell and no record does


class Seen:
    """Every runtime message and runner log entry, and waits on them."""

    def __init__(self, runner: Runner) -> None:
        self.messages: list[dict] = []
        self.log: list[LogEntry] = []
        self._changed = threading.Condition()
        runner.subscribe(self._event)
        runner.log.subscribe(self._entry)

    def _event(self, event) -> None:
        if isinstance(event, RuntimeMessage):
            with self._changed:
                self.messages.append(event.message)
                self._changed.notify_all()

    def _entry(self, entry: LogEntry) -> None:
        with self._changed:
            self.log.append(entry)
            self._changed.notify_all()

    def until(self, condition, what: str, stall: float = 120.0) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout=stall):
                raise AssertionError(f"{what} never came; last messages: {self.messages[-5:]}, log: {self.log[-5:]}")


def run_through_the_runner(tmp_path: Path, language: str, environment: str) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    sync.chmod(0o777)
    late, hold = Fifo(sync / "late"), Fifo(sync / "hold")
    inside = sync if environment == "host" else Path("/sync")
    kind = "subprocess" if language == "python" else "job"
    settings: dict[str, Any] = {} if environment == "host" else {"mounts": [Mount("dir", str(sync), "/sync", read_only=False)]}
    cells = [("c1", language, late_writer(language, kind, inside / "late", 0)), ("c2", language, waiting_cell(language, inside / "hold", 0))]
    path = make_notebook(tmp_path, cells, environment=environment, **settings)
    notebook = load_notebook(path)
    runner = Runner(path, notebook)
    seen = Seen(runner)
    try:
        runner.execute(notebook.cell("c1"))
        second = runner.execute(notebook.cell("c2"))
        seen.until(lambda: any(m.get("exec") == second and "begin-0" in m.get("text", "") for m in seen.messages), "the next cell's first line")
        late.release()
        seen.until(lambda: sum("late-" in entry.text for entry in seen.log) >= 2, "the late output in the runner log")
        hold.release()
        seen.until(lambda: any(m.get("exec") == second and m.get("type") == "done" for m in seen.messages), "the next cell's end")
    finally:
        runner.stop_all()
    logged = [entry for entry in seen.log if "late-" in entry.text]
    assert {(entry.level, entry.text) for entry in logged} == {("output", "background stdout: late-out-0"), ("output", "background stderr: late-err-0")}
    assert all(entry.runtime == next(iter(notebook.runtimes)) for entry in logged)
    # Passed on with exec null (no cell shows it: the app and `njtui run` place messages by exec).
    assert all(m.get("exec") is None for m in seen.messages if "late-" in (m.get("text") or ""))
    store = ResultsStore(path)
    for cell, expected in (("c1", "one-0\n"), ("c2", "begin-0\nend-0\n")):
        record = store.latest(cell)
        assert record is not None and record.status == "ok", record
        assert "".join(event.get("text", "") for event in store.events(record) if event.get("type") == "stream") == expected


@pytest.mark.parametrize("language", ["python", "bash"])
def test_host_runtimes_show_late_output_in_the_runner_log_only(tmp_path, language):
    run_through_the_runner(tmp_path, language, "host")


@pytest.mark.parametrize("language", ["python", "bash"])
def test_docker_runtimes_show_late_output_in_the_runner_log_only(docker_engine, tmp_path, language):
    run_through_the_runner(tmp_path, language, PYTHON_IMAGE if language == "python" else BASH_IMAGE)


def test_a_flood_of_late_output_is_logged_bounded():
    """A background process may write for hours: each message gives the runner log a bounded
    part of it (the runtime's journal keeps all of it)."""
    from njtui.runner.session import BACKGROUND_LOG_CHARS, BACKGROUND_LOG_LINES, _log_background_output

    log = RunnerLog()
    lines = "".join(f"line {i}\n" for i in range(BACKGROUND_LOG_LINES + 30))
    _log_background_output(log, "py", {"type": "stream", "exec": None, "name": "stdout", "text": lines})
    _log_background_output(log, "py", {"type": "stream", "exec": None, "name": "stderr", "text": "x" * (BACKGROUND_LOG_CHARS + 7)})
    entries = [(entry.runtime, entry.level, entry.text) for entry in log.history]
    assert entries[0] == ("py", "output", "background stdout: line 0")
    assert entries[BACKGROUND_LOG_LINES - 1][2] == f"background stdout: line {BACKGROUND_LOG_LINES - 1}"
    assert entries[BACKGROUND_LOG_LINES:] == [
        ("py", "output", "background stdout: … 30 more lines (in the runtime's journal)"),
        ("py", "output", f"background stderr: {'x' * BACKGROUND_LOG_CHARS}… (7 more characters)"),
    ]
