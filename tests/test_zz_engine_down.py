"""The Docker engine going away, for real: dockerd is stopped, then started again.

Named to run last: it stops the engine every other Docker test needs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from njtui.runner.runner import Runner, RuntimeChanged, RuntimeMessage
from njtui.store import load_notebook
from tests.conftest import PYTHON_IMAGE, REPO
from tests.test_docker_runtime import done_of, notebook_file, streamed

pytestmark = pytest.mark.docker


def dockerd_pids() -> list[int]:
    result = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True)
    return [int(pid) for pid in result.stdout.split()]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_engine_stopped_turns_docker_runtimes_red_and_host_runtimes_keep_working(docker_engine, tmp_path):
    if not dockerd_pids() or os.environ.get("DOCKER_HOST"):
        pytest.skip("the engine is not a local dockerd this test can stop and start")
    path = notebook_file(
        tmp_path,
        {"box": {"language": "python", "environment": PYTHON_IMAGE}, "local": {"language": "python", "default": True}},
        [("in_box", "box", "import time\nprint('working', flush=True)\ntime.sleep(120)\n"), ("on_host", "local", "6 * 7\n")],
    )
    notebook = load_notebook(path)
    runner = Runner(path, notebook)
    seen: list = []
    runner.subscribe(seen.append)
    try:
        runner.execute(notebook.cell("in_box"))
        wait_until(lambda: "working" in streamed(seen, RuntimeMessage), 60, "the container cell to run")
        for pid in dockerd_pids():
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: done_of(seen, RuntimeMessage) is not None, 60, "the container cell to end")
        done = done_of(seen, RuntimeMessage)
        assert done["status"] == "lost"
        box_states = [e.status for e in seen if isinstance(e, RuntimeChanged) and e.runtime_id == "box"]
        assert box_states[-1].state.value == "error"
        assert "Docker engine unreachable" in box_states[-1].reason or "container" in box_states[-1].reason
        wait_until(lambda: not dockerd_pids(), 60, "dockerd to exit")
        # Booting a Docker runtime now fails clearly, and the host runtime works on.
        seen.clear()
        runner.execute(notebook.cell("on_host"))
        wait_until(lambda: done_of(seen, RuntimeMessage) is not None, 30, "the host cell")
        assert done_of(seen, RuntimeMessage)["status"] == "ok"
        with pytest.raises(Exception, match="Docker engine unreachable"):
            runner.ensure("box")
        assert runner.status("box").state.value == "error" and "Docker engine unreachable" in runner.status("box").reason
    finally:
        provision = subprocess.run(["bash", str(REPO / "scripts" / "provision")], env={**os.environ, "NJTUI_PROVISION_NETCHECK": "0"}, capture_output=True, text=True)
        assert provision.returncode == 0, provision.stdout + provision.stderr
        runner.stop_all()
        runner.detach()
    # With the engine back, the same runtime boots again.
    runner = Runner(path, notebook)
    try:
        session = runner.ensure("box")
        assert session is not None and runner.status("box").state.value == "running"
    finally:
        runner.stop_all()
        runner.detach()
