"""The backend contract (njtui.runner.backend.Backend), held by every backend alike: the host and
Docker backends and the one-module test backend of docs/backends.md (tests/subprocess_backend.py),
each driven through the Runner as the UI and the CLI drive it."""

from __future__ import annotations

import queue
import time

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner import Runner, RunnerError, RuntimeChanged, RuntimeMessage, RuntimeState, registry
from njtui.runner.protocol import STOPPED_MID_CELL
from njtui.runner.state import ALLOWED
from njtui.store import save_notebook
from tests.conftest import PYTHON_IMAGE
from tests.subprocess_backend import SubprocessBackend

BACKENDS = ["host", "docker", "subprocess"]


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    if request.param == "subprocess":
        registry.register("subprocess", SubprocessBackend)
        request.addfinalizer(lambda: registry.unregister("subprocess"))
    return request.param


class Driven:
    """A runner on a one-runtime notebook, with every event it emits kept in order."""

    def __init__(self, tmp_path, backend_name: str, cells: dict[str, str], spec: RuntimeSpec | None = None) -> None:
        environment = PYTHON_IMAGE if backend_name == "docker" else "host"
        notebook = Notebook(title="contract")
        spec = spec or RuntimeSpec("py", "python", environment=environment, backend=backend_name, default=True)
        notebook.runtimes[spec.id] = spec
        notebook.cells = [Cell(id=cell_id, kind="code", language=spec.language, source=source) for cell_id, source in cells.items()]
        self.path = tmp_path / "nb.toml"
        save_notebook(notebook, self.path)
        self.notebook = notebook
        self.runner = Runner(self.path, notebook)
        self.events: queue.Queue = queue.Queue()
        self.seen: list = []
        self.runner.subscribe(self.events.put)

    def run(self, cell_id: str) -> str:
        return self.runner.execute(self.notebook.cell(cell_id))

    def next(self, matches, what: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"never came: {what}") from None
            self.seen.append(event)
            if matches(event):
                return event

    def message(self, exec_id: str, kind: str) -> dict:
        return self.next(lambda e: isinstance(e, RuntimeMessage) and e.message.get("exec") == exec_id and e.message.get("type") == kind, f"{kind} of {exec_id}").message

    def done(self, exec_id: str) -> dict:
        return self.message(exec_id, "done")

    def output(self, exec_id: str) -> tuple[str, dict]:
        """(stdout, done) of an execution."""
        text = []
        while True:
            event = self.next(lambda e: isinstance(e, RuntimeMessage) and e.message.get("exec") == exec_id, f"output of {exec_id}")
            if event.message["type"] == "stream":
                text.append(event.message.get("text", ""))
            elif event.message["type"] in ("result", "error"):
                text.append(str(event.message))
            elif event.message["type"] == "done":
                return "".join(text), event.message

    def state(self, wanted: RuntimeState):
        return self.next(lambda e: isinstance(e, RuntimeChanged) and e.status.state == wanted, f"state {wanted.value}").status

    def states(self) -> list[RuntimeState]:
        """The states of the events seen so far, repeats folded."""
        states: list[RuntimeState] = []
        for event in self.seen:
            if isinstance(event, RuntimeChanged) and (not states or states[-1] != event.status.state):
                states.append(event.status.state)
        return states

    def close(self) -> None:
        try:
            self.runner.stop_all()
        finally:
            self.runner.detach()


@pytest.fixture
def driven(tmp_path, backend_name):
    made: list[Driven] = []

    def make(cells: dict[str, str]) -> Driven:
        made.append(Driven(tmp_path, backend_name, cells))
        return made[-1]

    yield make
    for each in made:
        each.close()


def assert_valid_moves(states: list[RuntimeState]) -> None:
    for before, after in zip(states, states[1:], strict=False):
        assert after in ALLOWED[before], f"{before.value} → {after.value} in {[s.value for s in states]}"


def test_boots_runs_a_cell_and_stops(driven, backend_name):
    runtime = driven({"hello": "print('hi')\n6 * 7\n"})
    stdout, done = runtime.output(runtime.run("hello"))
    assert done["status"] == "ok" and "hi" in stdout and "42" in stdout
    backend = runtime.runner.backends[backend_name]
    info = backend.find(runtime.runner.path, "py")
    assert info is not None and info.backend == backend_name
    assert info.key in {each.key for each in backend.list()}
    runtime.runner.stop("py")
    runtime.state(RuntimeState.STOPPED)
    assert backend.find(runtime.runner.path, "py") is None
    assert runtime.states()[:3] == [RuntimeState.BOOTING, RuntimeState.RUNNING, RuntimeState.STOPPED]
    assert_valid_moves(runtime.states())


def test_an_interrupt_ends_the_running_cell_and_keeps_the_runtime(driven):
    runtime = driven({"set": "kept = 'yes'\n", "loop": "import time\nprint('looping', flush=True)\nwhile True:\n    time.sleep(0.05)\n", "get": "print(kept)\n"})
    assert runtime.done(runtime.run("set"))["status"] == "ok"
    loop = runtime.run("loop")
    runtime.message(loop, "stream")
    runtime.runner.interrupt("py")
    assert runtime.done(loop)["status"] == "interrupted"
    stdout, done = runtime.output(runtime.run("get"))
    assert done["status"] == "ok" and stdout == "yes\n"


def test_a_stop_ends_the_running_cell_as_stopped(driven):
    runtime = driven({"long": "import time\nprint('started', flush=True)\ntime.sleep(60)\n"})
    long = runtime.run("long")
    runtime.message(long, "stream")
    runtime.runner.stop("py")
    done = runtime.done(long)
    assert done["status"] == "interrupted" and done["reason"] == STOPPED_MID_CELL
    assert runtime.state(RuntimeState.STOPPED).reason is None  # a plain stop: the state says it all


def test_a_restart_returns_a_fresh_runtime_once_the_old_one_is_gone(driven, backend_name):
    runtime = driven({"set": "kept = 'yes'\n", "get": "print(kept)\n"})
    assert runtime.done(runtime.run("set"))["status"] == "ok"
    old = runtime.runner.sessions["py"].info
    new = runtime.runner.restart("py").info
    assert new.instance != old.instance
    assert runtime.runner.backends[backend_name].find(runtime.runner.path, "py").instance == new.instance
    stdout, done = runtime.output(runtime.run("get"))
    assert done["status"] == "error" and "NameError" in stdout
    assert RuntimeState.STOPPED in runtime.states()
    assert_valid_moves(runtime.states())


def test_a_crashed_runtime_turns_red_with_its_reason_and_loses_its_cell(driven):
    runtime = driven({"crash": "import os, signal\nprint('going', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"})
    crash = runtime.run("crash")
    done = runtime.done(crash)
    assert done["status"] == "lost"
    red = [event.status for event in runtime.seen if isinstance(event, RuntimeChanged) and event.status.state == RuntimeState.ERROR]
    assert red and red[-1].reason, "red, with its reason in words"
    assert_valid_moves(runtime.states())


def test_files_a_cell_writes_to_results_are_stored_with_it(driven):
    runtime = driven({"write": "import os\nopen(os.environ['NJTUI_RESULTS'] + '/out.txt', 'w').write('made here')\n"})
    write = runtime.run("write")
    files = runtime.message(write, "files")["files"]
    assert [entry["name"] for entry in files] == ["out.txt"]
    store = runtime.runner.store
    stored = store.files(store.latest("write"))
    assert [entry["name"] for entry in stored] == ["out.txt"]
    assert store.blob_path(stored[0]["sha256"]).read_bytes() == b"made here"


def test_a_runtime_naming_a_backend_that_is_not_installed_fails_with_what_to_do(tmp_path):
    notebook = Notebook(title="missing")
    notebook.runtimes["py"] = RuntimeSpec("py", "python", backend="nowhere", default=True)
    notebook.cells = [Cell(id="c", kind="code", language="python", source="1\n")]
    runner = Runner(tmp_path / "nb.toml", notebook)
    with pytest.raises(RunnerError, match=r"no backend named 'nowhere' is installed \(installed: docker, host, swarm\)"):
        runner.execute(notebook.cell("c"))
    assert runner.status("py").state == RuntimeState.ERROR


def test_a_backend_is_found_through_its_entry_point(tmp_path, monkeypatch):
    """Registration as docs/backends.md shows it: an entry point in the package's metadata."""
    dist = tmp_path / "njtui_subprocess_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: njtui-subprocess-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[njtui.backends]\nsubprocess = tests.subprocess_backend:SubprocessBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "subprocess" in registry.factories()
    assert isinstance(registry.Backends()["subprocess"], SubprocessBackend)


def test_a_backend_that_fails_to_load_is_an_error_in_words(monkeypatch):
    def broken():
        raise ImportError("No module named 'their_sdk'")

    registry.register("broken", broken)
    try:
        with pytest.raises(RunnerError, match=r"the backend 'broken' could not be loaded: ImportError: No module named 'their_sdk'"):
            registry.Backends()["broken"]
        # The others still list: one broken plug-in does not take `njtui runtimes` down.
        listing = Runner.list_runtimes(ask=False)
        assert any("broken runtimes not listed" in problem for problem in listing.problems)
    finally:
        registry.unregister("broken")
