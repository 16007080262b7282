"""Helpers shared by test modules: notebooks on disk, apps on them, waiting for conditions."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import save_notebook


def make_notebook(tmp_path: Path, cells: list[tuple[str, str, str]], name: str = "nb.toml", **runtime_settings) -> Path:
    """cells: (id, language or "markdown", source); one host runtime per language."""
    notebook = Notebook(title="test")
    for language in sorted({language for _, language, _ in cells if language != "markdown"}):
        runtime_id = {"python": "py", "bash": "sh"}[language]
        notebook.runtimes[runtime_id] = RuntimeSpec(runtime_id, language, default=True, **runtime_settings)
    for cell_id, language, source in cells:
        if language == "markdown":
            notebook.cells.append(Cell(id=cell_id, kind="markdown", source=source))
        else:
            notebook.cells.append(Cell(id=cell_id, kind="code", language=language, source=source))
    path = tmp_path / name
    save_notebook(notebook, path)
    return path


def open_app(path: Path, **kwargs):
    from njtui.runner.runner import Runner
    from njtui.store import load_notebook
    from njtui.ui.app import NotebookApp

    notebook = load_notebook(path)
    return NotebookApp(path, notebook, Runner(path, notebook), **kwargs)


async def wait_for(pilot, condition, timeout: float = 30.0, what: str = "condition") -> None:
    """Lets the app run until `condition()` holds (runtimes answer on their own time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


async def screen_settled(pilot, screen_type=None, timeout: float = 30.0) -> None:
    """Waits until the screen on top (of `screen_type`, if given) has no worker still running
    (a pager loading, a palette searching, a settings screen asking the engine), then lets it
    draw once: a snapshot waits for what it shows, not for a time."""
    app = pilot.app

    def settled() -> bool:
        screen = app.screen
        if screen_type is not None and not isinstance(screen, screen_type):
            return False
        return not any(worker.node is screen and worker.is_running for worker in app.workers)

    await wait_for(pilot, settled, timeout=timeout, what=f"{screen_type.__name__ if screen_type else 'the screen'} to settle")
    await pilot.pause()


# -- real servers on loopback (a Docker registry, an S3 API)

# Marks images the tests build, so the end of the session removes them (conftest); the value
# is the test session's pid, so a session never removes images another one is using.
TEST_IMAGE_LABEL = "org.njtui.test-image"


def session_image_label() -> str:
    return f"{TEST_IMAGE_LABEL}={os.getpid()}"


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(server: subprocess.Popen, url: str, timeout: float = 20.0) -> None:
    """Until `url` answers over HTTP; kills `server` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.1)


def push_image_only_the_registry_has(client, base_image: str, reference: str, megabytes: int) -> None:
    """An image with a layer of its own (random bytes, so nothing compresses it away) pushed to a
    registry and removed locally: booting it makes the engine download it."""
    builder = client.containers.run(base_image, ["bash", "-c", f"head -c {megabytes * 1_000_000} /dev/urandom > /blob"], detach=True)
    builder.wait(timeout=60)
    repository, tag = reference.rsplit(":", 1)
    builder.commit(repository=repository, tag=tag, changes=f"LABEL {session_image_label()}")
    builder.remove()
    for line in client.api.push(reference, stream=True, decode=True):
        assert "error" not in line, line
    client.images.remove(reference)


# -- an agent on its stdio, as the relay and Docker drive it


class AgentProcess:
    """Requests in, messages out; every wait is bounded, so an agent that goes silent fails its
    test with what it said last instead of hanging the suite."""

    def __init__(self, argv: list[str], **popen) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, **popen)
        self.buffer = b""
        self.raw = b""  # every complete line the agent wrote, as written
        self.messages: list[dict] = []

    def send(self, request: dict) -> None:
        self.proc.stdin.write((json.dumps(request, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
        self.proc.stdin.flush()

    def next(self, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message within {timeout}s; so far: {self.messages[-5:]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                data = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not data:
                    raise AssertionError(f"the agent exited; its last messages: {self.messages[-5:]}")
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.raw += line + b"\n"
        message = json.loads(line)
        self.messages.append(message)
        return message

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
