"""Every byte and file to its own execution (issue 10, findings 2 and 3).

Cells run back to back (all queued at once, so each starts the moment the one before ends),
each printing with builtins and with external programs on both streams and writing the same
/results file with its own text. Each stored version must hold exactly its own output and its
own file: before, files were collected after `done` while the next cell already ran (stored
under the wrong execution 10 of 10 times in Docker), and the Bash agent's end-of-cell boundary
could cut a line so that its end landed in the next execution.

Counts are the notebook's: each execution one of its own, 1, 2, 3 … in the order they ran, and
every client attached to the runtime sees the same one as the store records.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest

from njtui.runner.runner import Runner, RuntimeMessage
from njtui.store import load_notebook
from njtui.store.results import ResultsStore
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE
from tests.helpers import make_notebook

PYTHON_CELL = """import os, sys
print("out{i} builtin")
os.system("echo out{i} external")
sys.stderr.write("err{i} builtin\\n")
os.system("echo err{i} external >&2")
open(os.path.join(os.environ["NJTUI_RESULTS"], "plot.txt"), "w").write("plot of {i}")
"""
BASH_CELL = """echo out{i} builtin
/bin/echo out{i} external
echo err{i} builtin >&2
/bin/echo err{i} external >&2
printf 'plot of {i}' > "$NJTUI_RESULTS/plot.txt"
"""


def expected_output(i: int) -> dict[str, list[str]]:
    return {"stdout": [f"out{i} builtin", f"out{i} external"], "stderr": [f"err{i} builtin", f"err{i} external"]}


class Events:
    """One queue for the events of one or more runners, and waits on what arrives."""

    def __init__(self, *runners: Runner) -> None:
        self.queue: queue.Queue = queue.Queue()
        for runner in runners:
            runner.subscribe(self.queue.put)

    def until(self, wanted: set[tuple[str, str]], stall: float = 90) -> None:
        """Waits until a message of each (exec id, type) in `wanted` has arrived. A busy machine
        may make that slow; only a stall (nothing wanted for `stall` seconds) fails."""
        missing = set(wanted)
        deadline = time.monotonic() + stall
        while missing:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(missing)} messages never came, e.g. {sorted(missing)[:3]}"
            try:
                event = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if isinstance(event, RuntimeMessage):
                key = (event.message.get("exec"), event.message.get("type"))
                if key in missing:
                    missing.discard(key)
                    deadline = time.monotonic() + stall


class Counts:
    """The `count` of each start, result and done one runner passed on, by execution, and the
    journal seq of each start (the order the executions ran in)."""

    def __init__(self, runner: Runner) -> None:
        self.seen: dict[str, dict[str, int | None]] = {}
        self.started: dict[str, int] = {}
        runner.subscribe(self.on_event)

    def on_event(self, event) -> None:
        if isinstance(event, RuntimeMessage) and event.message.get("type") in ("start", "result", "done"):
            self.seen.setdefault(event.message["exec"], {})[event.message["type"]] = event.message.get("count")
            if event.message["type"] == "start":
                self.started[event.message["exec"]] = event.message["seq"]


def check_counts(path: Path, count: int, exec_ids: list[str], clients: list[Counts]) -> None:
    """Counted 1, 2, 3 … in the order they ran (two clients' cells reach the runtime in either
    order), the same in every message of an execution, for every client and in the store."""
    store = ResultsStore(path)
    stored = {store.latest(f"c{i}").exec_id: store.latest(f"c{i}").count for i in range(count)}
    in_order = sorted(exec_ids, key=clients[0].started.__getitem__)
    assert [stored[exec_id] for exec_id in in_order] == list(range(1, count + 1))
    for exec_id in exec_ids:
        for client in clients:
            assert set(client.seen[exec_id].values()) == {stored[exec_id]}, (exec_id, stored[exec_id], client.seen[exec_id])


def check_each_version_holds_its_own(path: Path, count: int) -> None:
    store = ResultsStore(path)
    wrong = []
    for i in range(count):
        record = store.latest(f"c{i}")
        assert record is not None and record.status == "ok", (i, record)
        streams: dict[str, str] = {"stdout": "", "stderr": ""}
        for event in store.events(record):
            if event.get("type") == "stream":
                streams[event["name"]] += event["text"]
        got = {name: sorted(text.splitlines()) for name, text in streams.items()}
        if got != {name: sorted(lines) for name, lines in expected_output(i).items()}:
            wrong.append((i, "output", streams))
        files = store.files(record)
        contents = [store.blob_path(entry["sha256"]).read_bytes() for entry in files]
        if [entry["name"] for entry in files] != ["plot.txt"] or contents != [f"plot of {i}".encode()]:
            wrong.append((i, "files", contents))
    assert not wrong, f"{len(wrong)} of {count} executions hold another's output or files: {wrong[:4]}"


def run_back_to_back(tmp_path: Path, language: str, environment: str, count: int, clients: int) -> None:
    template = PYTHON_CELL if language == "python" else BASH_CELL
    path = make_notebook(tmp_path, [(f"c{i}", language, template.format(i=i)) for i in range(count)], environment=environment)
    notebook = load_notebook(path)
    runners = [Runner(path, notebook)]
    try:
        runners[0].ensure(next(iter(notebook.runtimes)))
        for _ in range(clients - 1):
            other = Runner(path, load_notebook(path))
            other.attach_running()
            runners.append(other)
        events = Events(*runners)
        counts = [Counts(runner) for runner in runners]
        wanted = set()
        exec_ids = []
        for i, cell in enumerate(notebook.cells):
            # Alternating clients: each submits every other cell to the one runtime.
            exec_ids.append(runners[i % clients].execute(runners[i % clients].notebook.cell(cell.id)))
            wanted |= {(exec_ids[-1], "done"), (exec_ids[-1], "files")}
        events.until(wanted)
    finally:
        for runner in runners:
            runner.stop_all() if runner is runners[0] else runner.detach()
    check_each_version_holds_its_own(path, count)
    check_counts(path, count, exec_ids, counts)


@pytest.mark.parametrize("language", ["python", "bash"])
@pytest.mark.parametrize("clients", [1, 2])
def test_host_executions_keep_their_own_output_and_files(tmp_path, language, clients):
    run_back_to_back(tmp_path, language, "host", count=150, clients=clients)


@pytest.mark.parametrize("language", ["python", "bash"])
@pytest.mark.parametrize("clients", [1, 2])
def test_docker_executions_keep_their_own_output_and_files(docker_engine, tmp_path, language, clients):
    run_back_to_back(tmp_path, language, PYTHON_IMAGE if language == "python" else BASH_IMAGE, count=60, clients=clients)
