"""Shared by the benchmarks: a throwaway notebook and runtime dir, a Runner, a Jupyter kernel."""

from __future__ import annotations

import os
import queue
import resource
import statistics
import tempfile
from contextlib import contextmanager
from pathlib import Path

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner.runner import Runner, RuntimeMessage
from njtui.store import save_notebook


@contextmanager
def scratch_runner(language: str = "python", environment: str = "host", **settings):
    """A Runner on a new one-runtime notebook; its runtime is stopped afterwards. `settings`:
    more of the runtime's (type="jupyter", kernel="python3" for a Jupyter-type one)."""
    with tempfile.TemporaryDirectory(prefix="njtui-bench-") as tmp:
        os.environ["NJTUI_RUNTIME_DIR"] = str(Path(tmp) / "rt")
        notebook = Notebook(title="bench", runtimes={"rt": RuntimeSpec("rt", language, environment=environment, default=True, **settings)})
        path = Path(tmp) / "bench.toml"
        save_notebook(notebook, path)
        runner = Runner(path, notebook)
        try:
            yield runner, notebook
        finally:
            runner.stop_all()
            runner.detach()


def remove_images(client, images: list[str]) -> None:
    """The images a bench made; one already gone is no matter."""
    import docker

    for image in images:
        try:
            client.api.remove_image(image, force=True)
        except docker.errors.APIError:
            pass


class Executor:
    """Runs code in a Runner and waits for its `done`, as the CLI and the UI do."""

    def __init__(self, runner: Runner, notebook: Notebook) -> None:
        self.runner = runner
        self.notebook = notebook
        self.events: queue.Queue = queue.Queue()
        runner.subscribe(self.events.put)
        self.cell = Cell(id="bench", kind="code", language=notebook.runtimes["rt"].language, source="")
        notebook.cells.append(self.cell)

    def run(self, code: str, on_message=None) -> dict:
        self.cell.source = code
        exec_id = self.runner.execute(self.cell)
        while True:
            event = self.events.get(timeout=120)
            if isinstance(event, RuntimeMessage) and event.message.get("exec") == exec_id:
                if on_message is not None:
                    on_message(event.message)
                if event.message["type"] == "done":
                    return event.message


@contextmanager
def jupyter_kernel(kernel_name: str = "python3"):
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name=kernel_name)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def jupyter_execute(client, code: str, on_stream=None) -> None:
    """execute_request until the kernel is idle again and the reply is in: a full round trip."""
    msg_id = client.execute(code)
    while True:
        message = client.get_iopub_msg(timeout=120)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream" and on_stream is not None:
            on_stream(message["content"]["text"])
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    client.get_shell_msg(timeout=120)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
