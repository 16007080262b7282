"""Jupyter-type runtimes through the Runner, as the UI and the CLI drive them, on the host and in
a container: the same states, interrupt, restart, idle shutdown, a crash turning red, and a
client that left mid-cell finding everything the kernel produced meanwhile when it comes back
(the bridge that holds the kernel's channels lives with the runtime, not with the app)."""

from __future__ import annotations

import os

import pytest

from njtui.model import RuntimeSpec
from njtui.runner import Runner, RuntimeChanged, RuntimeMessage, RuntimeState
from njtui.store import load_notebook
from tests.conftest import JUPYTER_IMAGE, PYTHON_IMAGE
from tests.test_backend_contract import Driven, assert_valid_moves
from tests.test_runner_api import EventLog

WHERE = ["host", "docker"]


@pytest.fixture(params=WHERE)
def where(request):
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return request.param


def jupyter_spec(where: str, kernel: str = "python3", language: str = "python", **settings) -> RuntimeSpec:
    environment = JUPYTER_IMAGE if where == "docker" else "host"
    return RuntimeSpec("k", language, environment=environment, type="jupyter", kernel=kernel, default=True, **settings)


@pytest.fixture
def jupyter(tmp_path, where):
    made: list[Driven] = []

    def make(cells: dict[str, str], kernel: str = "python3", language: str = "python", **settings) -> Driven:
        made.append(Driven(tmp_path, where, cells, spec=jupyter_spec(where, kernel, language, **settings)))
        return made[-1]

    yield make
    for each in made:
        each.close()


def outputs(runtime: Driven, exec_id: str) -> tuple[list[dict], dict]:
    """(the execution's output messages, its done)."""
    got = []
    while True:
        message = runtime.next(lambda e: isinstance(e, RuntimeMessage) and e.message.get("exec") == exec_id, f"output of {exec_id}").message
        if message["type"] == "done":
            return got, message
        if message["type"] not in ("queued", "start", "files"):
            got.append(message)


def test_a_python_kernel_boots_runs_and_stops_like_a_native_runtime(jupyter, where):
    runtime = jupyter({"hello": "print('hi')\nfrom IPython.display import display, Markdown\ndisplay(Markdown('# Title'))\n6 * 7\n"})
    got, done = outputs(runtime, runtime.run("hello"))
    assert done["status"] == "ok"
    assert [m["type"] for m in got] == ["stream", "display", "result"]
    assert got[0]["text"] == "hi\n" and got[1]["data"]["text/markdown"] == "# Title" and got[2]["data"]["text/plain"] == "42"
    assert runtime.runner.status("k").state == RuntimeState.RUNNING
    runtime.runner.stop("k")
    runtime.state(RuntimeState.STOPPED)
    assert runtime.states()[:3] == [RuntimeState.BOOTING, RuntimeState.RUNNING, RuntimeState.STOPPED]
    assert_valid_moves(runtime.states())
    # What the store keeps is what the cell showed.
    store = runtime.runner.store
    kinds = [event["type"] for event in store.events(store.latest("hello")) if event["type"] in ("stream", "display", "result")]
    assert kinds == ["stream", "display", "result"]


def test_an_interrupt_ends_the_cell_and_keeps_the_kernel(jupyter):
    runtime = jupyter({"set": "kept = 'yes'\n", "loop": "import time\nprint('looping', flush=True)\nwhile True:\n    time.sleep(0.05)\n", "get": "print(kept)\n"})
    assert runtime.done(runtime.run("set"))["status"] == "ok"
    loop = runtime.run("loop")
    runtime.message(loop, "stream")
    runtime.runner.interrupt("k")
    assert runtime.done(loop)["status"] == "interrupted"
    got, done = outputs(runtime, runtime.run("get"))
    assert done["status"] == "ok" and got[0]["text"] == "yes\n"


def test_a_restart_gives_a_fresh_kernel(jupyter):
    runtime = jupyter({"set": "kept = 'yes'\n", "get": "print(kept)\n"})
    assert runtime.done(runtime.run("set"))["status"] == "ok"
    old = runtime.runner.sessions["k"].info
    new = runtime.runner.restart("k").info
    assert new.instance != old.instance
    got, done = outputs(runtime, runtime.run("get"))
    assert done["status"] == "error" and any(m["type"] == "error" and m["ename"] == "NameError" for m in got)
    assert_valid_moves(runtime.states())


def test_a_dead_kernel_turns_the_runtime_red_with_its_reason(jupyter):
    runtime = jupyter({"crash": "import os\nprint('going', flush=True)\nos._exit(3)\n"})
    done = runtime.done(runtime.run("crash"))
    assert done["status"] in ("lost", "error")
    red = runtime.state(RuntimeState.ERROR)
    assert "kernel" in red.reason and "died" in red.reason
    assert_valid_moves(runtime.states())


def test_an_idle_kernel_runtime_shuts_itself_down(jupyter):
    runtime = jupyter({"c": "1\n"}, idle_timeout="2s")
    assert runtime.done(runtime.run("c"))["status"] == "ok"
    stopped = runtime.state(RuntimeState.STOPPED)
    assert "idle" in (stopped.reason or "")


def test_a_bash_kernel_runs_and_is_interrupted(jupyter):
    runtime = jupyter({"a": "cd /tmp\nV=kept\necho start\n", "b": "echo $PWD $V\n", "long": "echo looping\nsleep 60\n"}, kernel="bash", language="bash")
    assert runtime.done(runtime.run("a"))["status"] == "ok"
    got, done = outputs(runtime, runtime.run("b"))
    assert done["status"] == "ok" and "".join(m.get("text", "") for m in got).strip() == "/tmp kept"
    long = runtime.run("long")
    runtime.message(long, "stream")
    runtime.runner.interrupt("k")
    assert runtime.done(long)["status"] == "interrupted"


def test_a_kernel_the_environment_lacks_is_an_error_naming_it(tmp_path, where):
    environment_lacking = PYTHON_IMAGE if where == "docker" else "host"
    if where == "docker":
        spec = RuntimeSpec("k", "python", environment=environment_lacking, type="jupyter", kernel="python3", default=True)
        wanted = "jupyter_client"  # the plain Python image has no Jupyter at all
    else:
        spec = RuntimeSpec("k", "r", environment="host", type="jupyter", kernel="ir", default=True)
        wanted = "'ir'"
    runtime = Driven(tmp_path, where, {"c": "1\n"}, spec=spec)
    try:
        runtime.run("c")
        red = runtime.state(RuntimeState.ERROR)
        assert wanted in red.reason and "install" in red.reason
    finally:
        runtime.close()


def test_output_made_while_no_client_is_attached_is_replayed(tmp_path, where):
    """The first client leaves mid-cell; the kernel goes on printing; the next client gets the
    rest of the cell, in order, and its done."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    gate_writer = os.open(gate, os.O_RDWR)
    code = f"print('before', flush=True)\nopen({str(gate)!r}).readline()\nfor i in range(3):\n    print('after', i, flush=True)\n"
    if where == "docker":
        # The container cannot open the test's fifo: it waits on a file the test creates inside.
        code = "import os, time\nprint('before', flush=True)\nwhile not os.path.exists('/tmp/go'):\n    time.sleep(0.02)\nfor i in range(3):\n    print('after', i, flush=True)\n"
    driven = Driven(tmp_path, where, {"gated": code}, spec=jupyter_spec(where))
    first = driven.runner
    second = None
    try:
        running = driven.run("gated")
        driven.next(lambda e: isinstance(e, RuntimeMessage) and e.message.get("type") == "stream" and e.message.get("text") == "before\n", "the cell to print")
        first.detach()
        if where == "docker":
            import docker

            from njtui.runner.paths import runtime_key

            (container,) = docker.from_env().containers.list(filters={"label": f"org.njtui.key={runtime_key(driven.path, 'k')}"})
            container.exec_run(["touch", "/tmp/go"])
        else:
            os.write(gate_writer, b"go\n")
        second = Runner(driven.path, load_notebook(driven.path))
        events = EventLog()
        second.subscribe(events)
        second.attach_running()
        done = events.wait(lambda e: isinstance(e, RuntimeMessage) and e.message.get("exec") == running and e.message.get("type") == "done", "the rest of the cell").message
        assert done["status"] == "ok"
        texts = [e.message["text"] for e in events if isinstance(e, RuntimeMessage) and e.message.get("type") == "stream"]
        assert "".join(texts) == "after 0\nafter 1\nafter 2\n"
        assert not [e for e in events if isinstance(e, RuntimeChanged) and e.status.state == RuntimeState.ERROR]
    finally:
        os.close(gate_writer)
        if second is not None:
            second.stop_all()
            second.detach()
        else:
            driven.close()
