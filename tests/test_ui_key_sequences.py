"""Random key sequences on random notebooks, through Pilot: no exception, the selected cell on
screen after every key, and the saved file equal to the notebook in the app.

One app runs for all examples (starting one per example would cost most of the time); each
example opens its notebook in a fresh NotebookScreen, which also checks that a screen's timers
and subscriptions end with it. The notebooks' code cells share one host Python runtime, so runs
happen for real while the keys go on.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual import _wait as textual_wait

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner.runner import Runner
from njtui.store import load_notebook, save_notebook
from njtui.store.notebook_layout import notebook_document
from njtui.ui.app import NotebookApp
from njtui.ui.cell import CellEditor
from tests.helpers import stop_own_runtimes

EXAMPLES = int(os.environ.get("NJTUI_KEY_EXAMPLES", "500"))
# Most examples take their notebook in as a change on disk; every so often a fresh screen opens it.
FRESH_SCREEN_EVERY = 20
SIZES = [(80, 24), (100, 40), (60, 20), (200, 60)]

# Each step: keys pressed together (a chord, an edit), or a resize.
KEYS = st.sampled_from(
    [
        ("j",),
        ("k",),
        ("down",),
        ("up",),
        ("g",),
        ("G",),
        ("end",),
        ("home",),
        ("pagedown",),
        ("pageup",),
        ("a",),
        ("b",),
        ("d", "d"),
        ("z",),
        ("Z",),
        ("c",),
        ("x",),
        ("v",),
        ("K",),
        ("J",),
        ("alt+up",),
        ("alt+down",),
        ("m",),
        ("y",),
        ("L",),
        ("w",),
        ("ctrl+r",),
        ("ctrl+n",),
        ("enter", "x", "=", "1", "escape"),
        ("enter", "enter", "p", "a", "s", "s", "escape"),
        ("enter", "ctrl+r"),
        ("slash", "x", "enter"),
        ("n",),
        ("N",),
        ("escape",),
    ]
)
STEPS = st.lists(st.one_of(KEYS, st.sampled_from(SIZES)), min_size=1, max_size=10)
CELLS = st.lists(st.tuples(st.sampled_from(["code", "markdown"]), st.integers(0, 12)), min_size=1, max_size=300)


def notebook_of(shape: list[tuple[str, int]]) -> Notebook:
    notebook = Notebook(title="keys")
    notebook.runtimes["py"] = RuntimeSpec("py", "python", default=True)
    for index, (kind, lines) in enumerate(shape):
        if kind == "code":
            source = "".join(f"x = {index} + {line}\n" for line in range(lines)) or "x\n"
            notebook.cells.append(Cell(id=f"c{index}", kind="code", language="python", source=source))
        else:
            source = "".join(f"# heading {index}\n\ntext line {line}\n" for line in range(lines))
            notebook.cells.append(Cell(id=f"c{index}", kind="markdown", source=source))
    return notebook


async def _selection_shown(pilot, app, step) -> None:
    """The selected cell is on screen once the app has settled (a reveal takes a refresh or
    two); waited for, not slept for, so a loaded machine only makes it slower."""
    view = app.view
    for _ in range(200):
        if view.is_selected_in_view():
            return
        await pilot.pause()
    raise AssertionError(f"after {step}: cell {view.selected} of {len(view.cells)} is not on screen (scroll {view.scroll_y}, window {view.window})")


async def _settled(pilot) -> None:
    # The reveal measures mounted cells after a refresh or two.
    for _ in range(3):
        await pilot.pause()


class AppHost:
    """Runs one app under Pilot in a task of its own, and coroutines sent to it inside that
    task (Textual's context variables belong to the task that entered `run_test`)."""

    def __init__(self, app: NotebookApp, size: tuple[int, int]) -> None:
        self.app = app
        self.size = size
        self.loop = asyncio.new_event_loop()
        self.work: asyncio.Queue | None = None
        self.pilot = None
        self.task = None

    async def _host(self, started: asyncio.Future) -> None:
        self.work = asyncio.Queue()
        async with self.app.run_test(size=self.size) as pilot:
            self.pilot = pilot
            started.set_result(None)
            while (item := await self.work.get()) is not None:
                coroutine_function, done = item
                try:
                    done.set_result(await coroutine_function(pilot))
                except BaseException as exc:  # noqa: BLE001 - handed to the example that sent it
                    done.set_exception(exc)

    def start(self) -> None:
        started = self.loop.create_future()
        self.task = self.loop.create_task(self._host(started))
        self.loop.run_until_complete(started)

    def run(self, coroutine_function):
        done = self.loop.create_future()
        self.work.put_nowait((coroutine_function, done))
        return self.loop.run_until_complete(done)

    def stop(self) -> None:
        try:
            if self.task is not None and not self.task.done():
                self.work.put_nowait(None)
                self.loop.run_until_complete(self.task)
        finally:
            self.loop.close()


@pytest.mark.timeout(1800)  # 500 examples: several minutes, more on a loaded machine
def test_random_key_sequences_keep_work_and_selection(tmp_path, monkeypatch):
    path = tmp_path / "keys.toml"
    save_notebook(notebook_of([("code", 1)]), path)
    app = NotebookApp(path, load_notebook(path), Runner(path, load_notebook(path)))
    host = AppHost(app, (80, 24))
    examples = 0
    # An example that failed (Hypothesis runs it again while shrinking) left its edits unsaved:
    # the next one opens its notebook on a fresh screen instead of merging into those.
    clean = True

    async def drive(pilot, shape, steps):
        nonlocal clean
        save_notebook(notebook_of(shape), path)
        await pilot.resize_terminal(80, 24)
        while app.screen is not app.notebook_screen:
            await pilot.press("escape")
        if examples % FRESH_SCREEN_EVERY == 1 or not clean or app.dirty:
            app.notebook_screen.journal.discard()
            notebook = load_notebook(path)
            await app.show_notebook(path, notebook, Runner(path, notebook))
        else:
            # The notebook changed on disk while open (as a `git pull` would change it): taken in.
            app.notebook_screen.check_file()
        clean = False
        notebook = app.notebook
        assert [cell.id for cell in notebook.cells] == [f"c{index}" for index in range(len(shape))]
        await _settled(pilot)
        for step in steps:
            if isinstance(step[0], int):
                await pilot.resize_terminal(*step)
            else:
                await pilot.press(*step)
            if app.screen is app.notebook_screen and notebook.cells:
                await _selection_shown(pilot, app, step)
        if isinstance(app.focused, CellEditor):
            await pilot.press("escape")
        while app.screen is not app.notebook_screen:
            await pilot.press("escape")
        await pilot.press("ctrl+s")
        await _settled(pilot)
        assert not app.dirty
        assert notebook_document(load_notebook(path)) == notebook_document(app.notebook)
        clean = True

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(shape=CELLS, steps=STEPS)
    def one_example(shape, steps):
        nonlocal examples
        examples += 1
        host.run(lambda pilot: drive(pilot, shape, steps))

    # Pilot waits for the app to go idle in steps of 20 ms; 500 examples need finer steps.
    monkeypatch.setattr(textual_wait, "SLEEP_GRANULARITY", 0.004)
    monkeypatch.setattr(textual_wait, "SLEEP_IDLE", 0.0004)
    host.start()
    try:
        one_example()
    finally:
        try:
            host.stop()
        finally:
            stop_own_runtimes(tmp_path)
    assert examples >= EXAMPLES
