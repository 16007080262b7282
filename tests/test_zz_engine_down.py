"""The Docker engine going away, for real: a dockerd is stopped or killed under a running
container, then started again.

The engine is a private one (the `private_docker_engine` fixture), so this runs beside every
other Docker test and any other program using the machine's engine.
"""

from __future__ import annotations

import signal

import pytest

from njtui.runner.runner import Runner, RuntimeChanged, RuntimeMessage
from njtui.store import load_notebook
from tests.conftest import PYTHON_IMAGE
from tests.helpers import Recorder
from tests.test_docker_runtime import done_of, notebook_file, streamed

pytestmark = pytest.mark.docker


def box_states(seen) -> list:
    return [e.status for e in seen if isinstance(e, RuntimeChanged) and e.runtime_id == "box"]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_engine_gone_turns_docker_runtimes_red_and_host_runtimes_keep_working(private_docker_engine, monkeypatch, tmp_path, how):
    engine = private_docker_engine
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    path = notebook_file(
        tmp_path,
        {"box": {"language": "python", "environment": PYTHON_IMAGE}, "local": {"language": "python", "default": True}},
        [
            ("in_box", "box", "import time\nprint('working', flush=True)\ntime.sleep(600)\n"),
            ("on_host", "local", "6 * 7\n"),
            ("in_box_again", "box", "6 * 7\n"),
        ],
    )
    notebook = load_notebook(path)
    runner = Runner(path, notebook)
    seen = Recorder()
    runner.subscribe(seen)
    try:
        runner.execute(notebook.cell("in_box"))
        seen.wait(lambda s: "working" in streamed(s, RuntimeMessage), 120, "the container cell to run")
        engine.signal(how)
        seen.wait(lambda s: done_of(s, RuntimeMessage) is not None, 120, "the container cell to end")
        assert done_of(seen, RuntimeMessage)["status"] == "lost"
        # The runtime's state changes right after its open cell is closed as lost.
        seen.wait(lambda s: box_states(s)[-1].state.value != "running", 60, "the runtime to leave running")
        final = box_states(seen)[-1]
        assert final.state.value == "error"
        assert "Docker engine unreachable" in final.reason or "container" in final.reason, final.reason
        engine.wait_exited(timeout=120)
        # Booting a Docker runtime now fails clearly, and the host runtime works on.
        seen.clear()
        runner.execute(notebook.cell("on_host"))
        seen.wait(lambda s: done_of(s, RuntimeMessage) is not None, 60, "the host cell")
        assert done_of(seen, RuntimeMessage)["status"] == "ok"
        with pytest.raises(Exception, match="Docker engine unreachable"):
            runner.ensure("box")
        assert runner.status("box").state.value == "error" and "Docker engine unreachable" in runner.status("box").reason
    finally:
        # Not stop_all: with the engine gone it raises at the Docker runtime before reaching the
        # host one. The container is the fixture's to remove.
        runner.stop("local")
        runner.detach()
    # With the engine back, the same runtime boots again and runs cells.
    engine.start()
    runner = Runner(path, notebook)
    seen = Recorder()
    runner.subscribe(seen)
    try:
        session = runner.ensure("box")
        assert session is not None and runner.status("box").state.value == "running"
        runner.execute(notebook.cell("in_box_again"))
        seen.wait(lambda s: done_of(s, RuntimeMessage) is not None, 120, "a cell in the rebooted runtime")
        assert done_of(seen, RuntimeMessage)["status"] == "ok"
        result = next(e.message for e in seen if isinstance(e, RuntimeMessage) and e.message.get("type") == "result")
        assert result["data"]["text/plain"] == "42"
    finally:
        runner.stop_all()
        runner.detach()
