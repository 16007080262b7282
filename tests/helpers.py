"""Helpers shared by test modules: notebooks on disk, apps on them, waiting for conditions."""

from __future__ import annotations

import asyncio
import time
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
