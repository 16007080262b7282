"""The runner's public API: what `njtui.runner` exports, that the UI and the CLI use nothing
else of it, that importing the protocol stays cheap for the relay, the machine-wide runtime
listing and stopping the CLI is built on, and completions (`Runner.complete`)."""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

import njtui.runner
from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner import registry
from njtui.runner.backend import RuntimeInfo
from njtui.runner.paths import runtime_key
from njtui.store import load_notebook, save_notebook
from tests.conftest import PYTHON_IMAGE, REPO
from tests.helpers import make_notebook
from tests.subprocess_backend import SubprocessBackend

RUNNER_SUBMODULES = {module.name for module in pkgutil.iter_modules(njtui.runner.__path__)}


def test_importing_the_protocol_loads_nothing_heavy():
    # The host relay imports njtui.runner.protocol on every boot, which runs the package's
    # __init__ first: a fresh interpreter shows what that costs.
    probe = "import sys, json\nimport njtui.runner.protocol\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    heavy = {"textual", "docker", "rich", "njtui.runner.runner", "njtui.runner.backend", "njtui.store", "njtui.model"}
    assert not heavy & loaded, f"importing the protocol loaded {sorted(heavy & loaded)}"
    assert {name for name in loaded if name.startswith("njtui")} == {"njtui", "njtui.runner", "njtui.runner.protocol"}


def test_every_public_name_resolves_to_the_object_of_its_submodule():
    from njtui.runner.backend import BackendError, BootCancelled
    from njtui.runner.env_changes import EnvironmentChanges, PackageChange, PathChange, counts_words
    from njtui.runner.environments import EnvironmentReferenceError, LineageStep, VersionRow
    from njtui.runner.events import RuntimeChanged, RuntimeMessage
    from njtui.runner.launch import CONTAINER_ONLY
    from njtui.runner.listing import RuntimeEntry, RuntimeListing, RuntimeStops
    from njtui.runner.log import LogEntry, RunnerLog
    from njtui.runner.protocol import STOPPED_MID_CELL
    from njtui.runner.runner import Runner
    from njtui.runner.session import Completion
    from njtui.runner.state import RuntimeState, RuntimeStatus

    expected = {
        "Runner": Runner,
        "Completion": Completion,
        "RuntimeChanged": RuntimeChanged,
        "RuntimeMessage": RuntimeMessage,
        "RuntimeEntry": RuntimeEntry,
        "RuntimeListing": RuntimeListing,
        "RuntimeStops": RuntimeStops,
        "RuntimeState": RuntimeState,
        "RuntimeStatus": RuntimeStatus,
        "LogEntry": LogEntry,
        "RunnerLog": RunnerLog,
        "RunnerError": BackendError,  # one error type, under its public name
        "BootCancelled": BootCancelled,
        "STOPPED_MID_CELL": STOPPED_MID_CELL,
        "CONTAINER_ONLY": CONTAINER_ONLY,
        "EnvironmentChanges": EnvironmentChanges,
        "PathChange": PathChange,
        "PackageChange": PackageChange,
        "counts_words": counts_words,
        "VersionRow": VersionRow,
        "LineageStep": LineageStep,
        "EnvironmentReferenceError": EnvironmentReferenceError,
    }
    assert sorted(njtui.runner.__all__) == sorted(expected)
    for name, value in expected.items():
        assert getattr(njtui.runner, name) is value, name
    assert set(expected) <= set(dir(njtui.runner))


def test_unknown_names_are_attribute_errors_and_submodules_still_import():
    try:
        njtui.runner.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    # `from package import submodule` falls back to importing it only on an AttributeError.
    from njtui.runner import protocol

    assert protocol.__name__ == "njtui.runner.protocol"


def _runner_submodule_imports(path: Path) -> list[str]:
    """Every import in `path` that reaches into njtui.runner's submodules, as `file:line: import`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("njtui.runner.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("njtui.runner."):
                names = [node.module]
            elif node.module == "njtui.runner":
                names = [f"njtui.runner.{alias.name}" for alias in node.names if alias.name in RUNNER_SUBMODULES]
            else:
                names = []
        else:
            names = []
        found += [f"{path.name if REPO not in path.parents else path.relative_to(REPO)}:{node.lineno}: {name}" for name in names]
    return found


def test_the_ui_and_the_cli_import_only_the_runner_package():
    sources = sorted((REPO / "njtui" / "ui").glob("*.py")) + sorted((REPO / "njtui" / "commands").glob("*.py")) + [REPO / "njtui" / "cli.py"]
    assert len(sources) > 5
    reaching = [found for path in sources for found in _runner_submodule_imports(path)]
    assert reaching == [], "import these from njtui.runner instead:\n" + "\n".join(reaching)


def test_the_import_check_sees_each_way_of_reaching_a_submodule(tmp_path):
    # The check above passes vacuously if it cannot see an import: each form it must catch.
    sample = tmp_path / "sample.py"
    sample.write_text("import njtui.runner.host\nfrom njtui.runner.backend import BackendError\nfrom njtui.runner import protocol, Runner\ndef lazy():\n    from njtui.runner.runner import Runner\n")
    found = _runner_submodule_imports(sample)
    assert [line.split(": ", 1)[1] for line in found] == ["njtui.runner.host", "njtui.runner.backend", "njtui.runner.protocol", "njtui.runner.runner"]


def test_list_and_stop_runtimes_across_notebooks(tmp_path):
    """Runner.list_runtimes asks each runtime what it does; Runner.stop_runtimes stops by key
    prefix, and the cell it stopped ends with the exported reason."""
    from njtui.runner import STOPPED_MID_CELL, Runner, RuntimeMessage

    busy_path = make_notebook(tmp_path, [("long", "python", "import time\nprint('started', flush=True)\ntime.sleep(120)\n")], name="busy.toml")
    idle_path = make_notebook(tmp_path, [("quick", "bash", "true\n")], name="idle.toml")
    runners = []
    exec_ids = []
    messages: queue.Queue = queue.Queue()
    try:
        for path in (busy_path, idle_path):
            notebook = load_notebook(path)
            runner = Runner(path, notebook)
            runner.subscribe(lambda event: messages.put(event) if isinstance(event, RuntimeMessage) else None)
            runners.append(runner)
            exec_ids.append(runner.execute(notebook.code_cells()[0]))
        seen = []
        while not ({"started\n", "done"} <= {m.get("text") or m.get("type") for m in seen}):
            seen.append(messages.get(timeout=60).message)
        listing = Runner.list_runtimes()
        assert listing.problems == [] or all(problem.startswith("docker") for problem in listing.problems)
        mine = {entry.notebook: entry for entry in listing.runtimes}
        busy, idle = mine[str(busy_path.resolve())], mine[str(idle_path.resolve())]
        assert (busy.state, busy.busy, busy.runtime, busy.backend) == ("running", True, "py", "host")
        assert (idle.state, idle.busy, idle.runtime) == ("running", False, "sh")
        assert idle.idle_for is not None and busy.pid and not busy.notebook_missing
        assert list(busy.to_dict()) == ["id", "notebook", "runtime", "backend", "environment", "language", "state", "busy", "pid", "idle_for", "uptime"]

        stops = Runner.stop_runtimes(busy.key[:6])
        assert [entry.key for entry in stops.stopped] == [busy.key] and stops.failed == []
        while True:
            message = messages.get(timeout=30).message
            if message.get("type") == "done" and message.get("exec") == exec_ids[0]:
                break
        assert message["status"] == "interrupted" and message["reason"] == STOPPED_MID_CELL
        # Other programs may have runtimes on this machine's engine: only this test's count.
        ours = {str(busy_path.resolve()), str(idle_path.resolve())}
        assert [entry.key for entry in Runner.list_runtimes(ask=False).runtimes if entry.notebook in ours] == [idle.key]
        assert Runner.stop_runtimes("no-such-runtime").stopped == []
    finally:
        for runner in runners:
            runner.detach()


# -- completions: Runner.complete, over the agent protocol

# An agent that speaks just enough of the protocol to answer completions as each test needs,
# chosen by the code asked about: the routing of answers is tested whatever the real agents do.
SCRIPTED_AGENT = r"""
import json, os, sys, time, uuid

journal = open(sys.argv[sys.argv.index("--journal") + 1], "a")
seq = 0


def emit(kind, exec_id=None, **fields):
    global seq
    seq += 1
    line = json.dumps({"seq": seq, "exec": exec_id, "type": kind, "t": time.time(), **fields}) + "\n"
    journal.write(line)
    journal.flush()
    sys.stdout.write(line)
    sys.stdout.flush()


def answer(request, **fields):
    # Not journaled: no seq, like every agent's answer to a completion.
    sys.stdout.write(json.dumps({"type": "completion", "id": request["id"], **fields}) + "\n")
    sys.stdout.flush()


emit("hello", agent="scripted", protocol=1, instance=uuid.uuid4().hex, pid=os.getpid(), language="python", idle_timeout=600)
running = None
for raw in sys.stdin:
    request = json.loads(raw)
    op = request.get("op")
    if op == "status":
        emit("status", state="busy" if running else "idle", running=running, queued=0, count=0, idle_for=0)
    elif op == "execute":
        running = request["exec"]
        emit("queued", running, meta=request.get("meta"), position=0)
        emit("start", running, meta=request.get("meta"), count=1)  # and runs until the runtime stops
    elif op == "complete":
        code = request["code"]
        if code == "hold":
            emit("log", level="info", text="holding " + request["id"])
        elif code == "refuse":
            # As an agent from before completions does.
            emit("log", level="error", text="unknown op 'complete'")
        elif code == "unsupported":
            # As an agent does that knows requests with an id, but not this one.
            sys.stdout.write(json.dumps({"type": "unsupported", "id": request["id"], "op": op}) + "\n")
            sys.stdout.flush()
        elif code == "outside":
            answer(request, matches=["far"], start=0, end=99)
        else:
            if code == "elsewhere":
                answer({"id": "not-" + request["id"]}, matches=["not yours"], start=0, end=0)
            answer(request, matches=[code + "_one", code + "_two", 7], start=0, end=request["cursor"])
    elif op == "shutdown":
        break
if running:
    emit("done", running, status="interrupted", reason="the runtime was stopped", count=1, duration=0.0, files=[])
emit("exit", reason="shutdown")
"""


class ScriptedBackend(SubprocessBackend):
    name = "scripted"

    def start(self, notebook_path, spec, launch, progress=None):
        home = tempfile.mkdtemp(prefix="njtui-scripted-")
        agent = os.path.join(home, "agent.py")
        with open(agent, "w") as script:
            script.write(SCRIPTED_AGENT)
        process = subprocess.Popen([sys.executable, agent, "--journal", f"{home}/journal.jsonl"], cwd=home, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        info = RuntimeInfo(runtime_key(notebook_path, spec.id), notebook_path, spec.id, self.name, spec.language, spec.environment, 600, time.time(), pid=process.pid, instance=uuid.uuid4().hex, details={"home": home})
        self.runtimes[info.instance] = (info, process)
        return info


@pytest.fixture
def scripted(tmp_path):
    """A runner on a notebook whose runtime `py` runs the scripted agent, and its events."""
    from njtui.runner import Runner

    registry.register("scripted", ScriptedBackend)
    notebook = Notebook(title="completions")
    notebook.runtimes["py"] = RuntimeSpec("py", "python", backend="scripted", default=True)
    notebook.cells = [Cell(id="long", kind="code", language="python", source="runs until stopped\n")]
    path = tmp_path / "nb.toml"
    save_notebook(notebook, path)
    runner = Runner(path, notebook)
    events = EventLog()
    runner.subscribe(events)
    yield runner, events
    try:
        runner.stop_all()
        runner.detach()
    finally:
        registry.unregister("scripted")


class EventLog(list):
    """A runner's events; `wait` wakes on the one that makes its predicate true."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Condition()

    def __call__(self, event) -> None:
        with self.arrived:
            self.append(event)
            self.arrived.notify_all()

    def wait(self, predicate, what: str, timeout: float = 60.0):
        with self.arrived:
            assert self.arrived.wait_for(lambda: next((event for event in self if predicate(event)), None), timeout), f"never came: {what}"
            return next(event for event in self if predicate(event))


def message_of(kind: str, text: str | None = None):
    from njtui.runner import RuntimeMessage

    return lambda event: isinstance(event, RuntimeMessage) and event.message.get("type") == kind and (text is None or text in event.message.get("text", ""))


def test_a_completion_answers_its_caller_only(scripted):
    from njtui.runner import Completion, RuntimeMessage

    runner, events = scripted
    runner.ensure("py")
    assert runner.complete("py", "pri", 3) == Completion(["pri_one", "pri_two"], 0, 3)
    # Answers meant for another request (every client of a runtime sees every answer) are not taken.
    assert runner.complete("py", "elsewhere", 4) == Completion(["elsewhere_one", "elsewhere_two"], 0, 4)
    # An answer that does not fit the code asked about is not passed on.
    assert runner.complete("py", "outside", 7) is None
    # Nor is a cursor outside the code sent.
    assert runner.complete("py", "pri", 4) is None
    assert not [event for event in events if isinstance(event, RuntimeMessage) and event.message.get("type") == "completion"]
    assert not (runner.store.root / "cells").exists(), "nothing of a completion is recorded"


def test_a_completion_while_a_cell_runs_and_none_from_a_runtime_that_is_not_running(scripted):
    runner, events = scripted
    assert runner.complete("py", "pri", 3) is None
    assert runner.sessions == {} and runner.status("py").state.value == "stopped", "a completion never boots a runtime"
    exec_id = runner.execute(runner.notebook.cell("long"))
    events.wait(lambda event: message_of("start")(event) and event.message["exec"] == exec_id, "the cell to start")
    assert runner.complete("py", "x", 1).matches == ["x_one", "x_two"]


@pytest.mark.parametrize("refusal", ["refuse", "unsupported"])
def test_an_agent_that_does_not_complete_is_asked_once(scripted, refusal):
    from njtui.runner import RuntimeMessage

    runner, events = scripted
    logged = []
    runner.log.subscribe(logged.append)
    runner.ensure("py")
    assert runner.complete("py", refusal, len(refusal), timeout=600) is None, "the refusal answers: no waiting for the timeout"
    # Not asked again: the agent would answer this one.
    assert runner.complete("py", "pri", 3, timeout=600) is None
    assert len([event for event in events if isinstance(event, RuntimeMessage) and "unknown op" in event.message.get("text", "")]) == (refusal == "refuse")
    assert not [entry for entry in logged if "unknown op" in entry.text], "njtui's own question is no error of the runtime"


def test_a_completion_nobody_answers_times_out(scripted):
    runner, _ = scripted
    runner.ensure("py")
    assert runner.complete("py", "hold", 4, timeout=0.2) is None
    assert runner.complete("py", "pri", 3) is not None, "a late answer to the one before is not taken for this one"


@pytest.mark.parametrize("end", ["detach", "stop"])
def test_waiting_callers_are_woken_when_the_session_ends(scripted, end):
    """A caller waits outside the runtime's lock: a stop goes ahead meanwhile, and it or a detach
    wakes the caller at once with None."""
    runner, events = scripted
    runner.ensure("py")
    answers: queue.Queue = queue.Queue()
    caller = threading.Thread(target=lambda: answers.put(runner.complete("py", "hold", 4, timeout=600)), daemon=True)
    caller.start()
    events.wait(message_of("log", "holding"), "the request to reach the agent")
    if end == "detach":
        runner.detach()
    else:
        runner.stop("py")
    assert answers.get(timeout=60) is None
    caller.join(timeout=60)


# Real agents. The Python agent answers while a cell runs (on a thread of its own); the Bash
# agent's main process, which knows the session's functions and variables, answers between cells.


@pytest.mark.parametrize(
    ("language", "environment", "code", "wanted", "while_running"),
    [
        ("python", "host", "alpha_v", "alpha_value", True),
        ("bash", "host", "alpha_", "alpha_fn", False),
        ("python", "docker", "alpha_v", "alpha_value", True),
    ],
)
def test_real_agents_complete_what_the_session_defined(request, tmp_path, language, environment, code, wanted, while_running):
    from njtui.runner import Runner

    if environment == "docker":
        request.getfixturevalue("docker_engine")
        environment = PYTHON_IMAGE
    define = "alpha_value = 1\n" if language == "python" else "alpha_fn() { :; }\n"
    long = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    path = make_notebook(tmp_path, [("define", language, define), ("long", language, long)], environment=environment)
    notebook = load_notebook(path)
    runtime_id = next(iter(notebook.runtimes))
    runner = Runner(path, notebook)
    events = EventLog()
    runner.subscribe(events)
    try:
        defined = runner.execute(notebook.cell("define"))
        events.wait(lambda event: message_of("done")(event) and event.message["exec"] == defined, "the definition")
        if while_running:
            running = runner.execute(notebook.cell("long"))
            events.wait(lambda event: message_of("stream")(event) and event.message["exec"] == running, "the long cell")
        completion = runner.complete(runtime_id, code, len(code), timeout=30)
        assert completion is not None, "the agent did not answer the completion"
        assert wanted in completion.matches and completion.end == len(code)
        assert all(match.startswith(code[completion.start : completion.end]) for match in completion.matches)
    finally:
        runner.stop_all()
        runner.detach()


def test_a_client_attaching_after_a_completion_replays_the_journal_whole(tmp_path):
    """A completion's answer is not journaled: whatever carries the agent's output to a client
    that attaches later (the host relay's journal offsets) must not count it as journaled. The
    first client leaves mid-cell after a completion; the next replays the rest of that cell."""
    from njtui.runner import Runner, RuntimeChanged, RuntimeState

    gate = tmp_path / "gate"
    os.mkfifo(gate)
    gate_writer = os.open(gate, os.O_RDWR)  # held open: the cell's open never blocks
    gated = f"print('before', flush=True)\nopen({str(gate)!r}).readline()\nprint('after')\n"
    path = make_notebook(tmp_path, [("define", "python", "alpha_value = 1\n"), ("gated", "python", gated)])
    first = Runner(path, load_notebook(path))
    second = Runner(path, load_notebook(path))
    first_events, events = EventLog(), EventLog()
    first.subscribe(first_events)
    second.subscribe(events)
    try:
        defined = first.execute(first.notebook.cell("define"))
        first_events.wait(lambda event: message_of("done")(event) and event.message["exec"] == defined, "the definition")
        assert first.complete("py", "alpha_v", 7, timeout=30) is not None
        running = first.execute(first.notebook.cell("gated"))
        first_events.wait(message_of("stream", "before"), "the gated cell to print")
        first.detach()
        os.write(gate_writer, b"go\n")
        second.attach_running()
        done = events.wait(lambda event: message_of("done")(event) and event.message["exec"] == running, "the rest of the gated cell").message
        assert done["status"] == "ok"
        assert [event.message["text"] for event in events if message_of("stream")(event)] == ["after\n"]
        assert not [event for event in events if isinstance(event, RuntimeChanged) and event.status.state == RuntimeState.ERROR]
    finally:
        os.close(gate_writer)
        first.detach()
        second.stop_all()
        second.detach()
