"""Host runtimes that end mid-cell (issue 10, findings 6 and 7): a killed agent turns its
runtime red with the reason instead of leaving it busy forever, and a runtime stopped from
another command ends by itself, its cell recorded, the attached client told who stopped it."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import time

import pytest

from njtui.runner.runner import Runner, RuntimeChanged, RuntimeMessage
from njtui.runner.state import RuntimeState
from njtui.store import load_notebook
from njtui.store.results import ResultsStore
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE, REPO, njtui
from tests.helpers import make_notebook

LONG = {"python": "print('started', flush=True)\nimport time\ntime.sleep(60)\n", "bash": "echo started\nsleep 60\n"}


def next_event(events: queue.Queue, matches, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the event never came"
        try:
            event = events.get(timeout=remaining)
        except queue.Empty:
            continue
        if matches(event):
            return event


def long_cell_running(tmp_path, language) -> tuple:
    """A host runtime running a long cell that has begun to print: (path, runner, events,
    exec id, the runtime's info)."""
    path = make_notebook(tmp_path, [("long", language, LONG[language])])
    notebook = load_notebook(path)
    runner = Runner(path, notebook)
    events: queue.Queue = queue.Queue()
    runner.subscribe(events.put)
    exec_id = runner.execute(notebook.cell("long"))
    next_event(events, lambda e: isinstance(e, RuntimeMessage) and e.message.get("type") == "stream")
    return path, runner, events, exec_id, runner.sessions[next(iter(notebook.runtimes))].info


@pytest.mark.parametrize("language", ["python", "bash"])
def test_a_killed_host_agent_turns_its_runtime_red_and_loses_the_cell(tmp_path, language):
    path, runner, events, exec_id, info = long_cell_running(tmp_path, language)
    try:
        os.kill(info.pid, signal.SIGKILL)
        red = next_event(events, lambda e: isinstance(e, RuntimeChanged) and e.status.state != RuntimeState.RUNNING)
        assert red.status.state == RuntimeState.ERROR and red.status.reason == "agent killed by SIGKILL"
        lost = next_event(events, lambda e: isinstance(e, RuntimeMessage) and e.message.get("exec") == exec_id and e.message.get("type") == "done")
        assert lost.message["status"] == "lost"
    finally:
        runner.detach()
    assert ResultsStore(path).latest("long").status == "lost"
    listed = njtui("runtimes", "--json")
    assert listed.returncode == 0 and str(path) not in listed.stdout  # nothing left running, or busy


@pytest.mark.parametrize("language", ["python", "bash"])
@pytest.mark.parametrize("where", ["host", "docker"])
def test_a_busy_runtime_stopped_from_another_command(request, tmp_path, language, where):
    environment = "host"
    if where == "docker":
        request.getfixturevalue("docker_engine")
        environment = PYTHON_IMAGE if language == "python" else BASH_IMAGE
    path = make_notebook(tmp_path, [("long", language, LONG[language])], environment=environment)
    run = subprocess.Popen([str(REPO / ".venv" / "bin" / "njtui"), "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline() == "started\n"
        # Only this notebook's runtime: other programs may have runtimes on the machine's engine.
        listed = [json.loads(line) for line in njtui("runtimes", "--json").stdout.splitlines()]
        (mine,) = [row["id"] for row in listed if row["notebook"] == str(path.resolve())]
        stop = njtui("runtimes", "stop", mine)
        assert stop.returncode == 0, stop.stderr
        out, err = run.communicate(timeout=30)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == 1, err  # a failed cell, not 130: nobody pressed Ctrl-C here
    assert "stopped by another client" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err + out
    # The agent ended by itself: the stop needed no SIGKILL.
    assert "SIGKILL" not in err
    record = ResultsStore(path).latest("long")
    assert record.status == "interrupted" and record.reason == "the runtime was stopped"


@pytest.mark.parametrize("language", ["python", "bash"])
def test_an_agent_whose_relay_died_ends_instead_of_running_on(tmp_path, language):
    """The relay holds the agent's input: once it is gone nobody can reach the agent, whose
    journal may already be collected; the agent must end, not wait for its idle timeout."""
    import select

    _, runner, _, _, info = long_cell_running(tmp_path, language)
    try:
        agent = os.pidfd_open(info.pid)
        os.kill(info.details["relay_pid"], signal.SIGKILL)
        # A pidfd turns readable when its process has ended.
        assert select.select([agent], [], [], 30)[0], f"the agent (pid {info.pid}) still runs without its relay"
        os.close(agent)
    finally:
        runner.detach()


@pytest.mark.parametrize("language", ["python", "bash"])
def test_a_client_that_ignores_sigint_still_starts_interruptible_runtimes(tmp_path, language):
    """Started from a background job of a script, a client ignores SIGINT, and children inherit
    that: a Bash agent could neither trap it nor pass it to the cell's commands."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        path, runner, events, exec_id, _ = long_cell_running(tmp_path, language)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        runner.interrupt(next(iter(runner.notebook.runtimes)))
        done = next_event(events, lambda e: isinstance(e, RuntimeMessage) and e.message.get("exec") == exec_id and e.message.get("type") == "done")
        assert done.message["status"] == "interrupted"
    finally:
        runner.stop_all()
        runner.detach()


@pytest.mark.parametrize("where", ["host", "docker"])
def test_an_attached_client_learns_its_runtime_was_stopped_by_the_runtimes_command(request, tmp_path, where):
    """Stopped from another process, a runtime ends for its attached clients as stopped, saying
    by what, not as a crash; the note the command left is about that runtime alone, so the next
    one, stopped by the client itself, ends as a plain stop (no reason: the state says it)."""
    environment = "host"
    if where == "docker":
        request.getfixturevalue("docker_engine")
        environment = PYTHON_IMAGE
    path = make_notebook(tmp_path, [("quick", "python", "1\n")], environment=environment)
    runner = Runner(path, load_notebook(path))
    events: queue.Queue = queue.Queue()
    runner.subscribe(events.put)

    def ended(event) -> bool:
        return isinstance(event, RuntimeChanged) and event.status.state not in (RuntimeState.RUNNING, RuntimeState.BOOTING)

    try:
        info = runner.ensure("py").info
        stop = njtui("runtimes", "stop", info.key)
        assert stop.returncode == 0, stop.stderr
        status = next_event(events, ended, timeout=60).status
        assert (status.state, status.reason) == (RuntimeState.STOPPED, "stopped by njtui runtimes stop")
        assert runner.ensure("py").info.instance != info.instance
        runner.stop("py")
        status = next_event(events, ended, timeout=60).status
        assert (status.state, status.reason) == (RuntimeState.STOPPED, None)
    finally:
        runner.stop_all()
        runner.detach()


def test_a_runtime_that_idles_out_says_so_once(tmp_path):
    path = make_notebook(tmp_path, [("quick", "bash", "true\n")], idle_timeout="2s")
    runner = Runner(path, load_notebook(path))
    events: queue.Queue = queue.Queue()
    runner.subscribe(events.put)
    try:
        runner.ensure("sh")
        status = next_event(events, lambda e: isinstance(e, RuntimeChanged) and e.status.state == RuntimeState.STOPPED, timeout=60).status
        # The panel shows the state, then the reason: "stopped", "idle timeout".
        assert status.reason == "idle timeout" and status.describe() == "stopped: idle timeout"
    finally:
        runner.detach()
