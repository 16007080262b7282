"""Snapshots of every screen a user sees (pytest-textual-snapshot; textual is pinned exactly).

The state shown (outputs, runtime states, log lines) is set directly on the app, with fixed
times, so a snapshot does not depend on how fast a runtime answers. The live behaviour behind
each of these screens is tested against real runtimes in test_ui_keys.py and test_ui_tmux.py.
Regenerate after an intended change: `pytest tests/test_ui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner.log import LogEntry
from njtui.runner.state import RuntimeState, RuntimeStatus
from njtui.store import save_notebook
from njtui.ui.cell import CellEditor
from njtui.ui.cell_output import CellOutput
from njtui.ui.completion import CompletionMenu
from njtui.ui.pager import PagerScreen
from njtui.ui.screens import HelpScreen, PickerScreen, SavePromptScreen
from tests.helpers import freeze_ui_clock, screen_settled, steady_cursors, wait_for

NOW = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC


@pytest.fixture(autouse=True)
def frozen_ui_clock(monkeypatch):
    """Every clock on these screens reads NOW (elapsed and idle times, the tick that redraws a
    running cell each second, log times): a snapshot taken a second later, or on a busy machine,
    is the same picture."""
    freeze_ui_clock(monkeypatch, NOW)
    yield
    monkeypatch.undo()
    time.tzset()


def tour_notebook() -> Notebook:
    notebook = Notebook(title="Snapshot tour")
    notebook.runtimes["py"] = RuntimeSpec("py", "python", name="Python", default=True)
    notebook.runtimes["sh"] = RuntimeSpec("sh", "bash", name="Bash", default=True)
    notebook.runtimes["gpu"] = RuntimeSpec("gpu", "python", name="Training", environment="njtui/python:3.11")
    notebook.runtimes["old"] = RuntimeSpec("old", "python", name="Legacy", environment="njtui/python:3.9")
    notebook.cells = [
        Cell("intro", "markdown", "# Snapshot tour\n\nCells of one language share its **default runtime**.\n"),
        Cell("load", "code", "import sys\nrows = [1, 2, 3]\nprint('loaded', len(rows), 'rows')\nprint('careful', file=sys.stderr)\nsum(rows)\n", "python"),
        Cell("boom", "code", "1 / 0\n", "python"),
        Cell("shell", "code", "ls /results\nfalse\n", "bash"),
        Cell("train", "code", "train(epochs=3)\n", "python", runtime="gpu"),
        Cell("edited", "code", "rows.append(4)  # changed since it ran\n", "python"),
    ]
    return notebook


def output(*messages: dict) -> CellOutput:
    result = CellOutput()
    result.begin("e", None)
    for seq, message in enumerate(messages, start=1):
        result.apply({"seq": seq, "exec": "e", "t": NOW - 5, **message})
    return result


def tour_outputs(notebook: Notebook) -> dict[str, CellOutput]:
    outputs = {
        "load": output(
            {"type": "start", "count": 1},
            {"type": "stream", "name": "stdout", "text": "loaded 3 rows\n"},
            {"type": "stream", "name": "stderr", "text": "careful\n"},
            {"type": "result", "count": 1, "data": {"text/plain": "6"}},
            {"type": "done", "status": "ok", "duration": 0.012},
        ),
        "boom": output(
            {"type": "start", "count": 2},
            {"type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": "Traceback (most recent call last):\n  Cell boom, line 1, in <module>\n    1 / 0\nZeroDivisionError: division by zero"},
            {"type": "done", "status": "error", "duration": 0.003},
        ),
        "shell": output(
            {"type": "start", "count": 1},
            {"type": "stream", "name": "stderr", "text": "ls: cannot access '/results': No such file or directory\n"},
            {"type": "error", "ename": "ExitStatus", "evalue": "exit status 1", "traceback": ""},
            {"type": "done", "status": "error", "duration": 0.004, "exit_code": 1},
        ),
        "train": output(
            {"type": "start", "count": 3},
            *[{"type": "stream", "name": "stdout", "text": f"epoch {i} loss {1 / (i + 1):.3f}\n"} for i in range(40)],
        ),
        "edited": output({"type": "start", "count": 4}, {"type": "done", "status": "ok", "duration": 0.001}),
    }
    outputs["edited"].source_hash = "0" * 16  # ran an older source: stale
    for cell_id, cell_output in outputs.items():
        if cell_id != "edited":
            cell_output.source_hash = notebook.cell(cell_id).source_hash
    return outputs


STATUSES = {
    "py": RuntimeStatus(RuntimeState.RUNNING, busy=False, idle_since=NOW - 95, backend="host"),
    "sh": RuntimeStatus(RuntimeState.STOPPED, reason="idle timeout"),
    "gpu": RuntimeStatus(RuntimeState.BOOTING, phase="Downloading", progress={"done": 41_000_000, "total": 97_000_000}),
    "old": RuntimeStatus(RuntimeState.ERROR, reason="image not found: njtui/python:3.9"),
}

LOG = [
    LogEntry(NOW - 120, "py", "info", "booting python runtime in host"),
    LogEntry(NOW - 119, "py", "info", "started host runtime (pid 4242)"),
    LogEntry(NOW - 60, "sh", "info", "stopped: idle timeout"),
    LogEntry(NOW - 30, "old", "error", "failed to start: image not found: njtui/python:3.9"),
    LogEntry(NOW - 10, "gpu", "info", "Downloading njtui/python:3.11"),
    LogEntry(NOW - 5, "py", "agent", "warning: something the agent printed on stderr"),
]


@pytest.fixture
def tour_app(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notebook = tour_notebook()
    save_notebook(notebook, Path("tour.toml"))

    from njtui.runner.runner import Runner
    from njtui.ui.app import NotebookApp

    app = NotebookApp(Path("tour.toml"), notebook, Runner(Path("tour.toml"), notebook))

    async def show_state(pilot) -> None:
        await pilot.pause()
        app.outputs.update(tour_outputs(notebook))
        app.statuses.update(STATUSES)
        app.notebook_screen.show_runtimes()
        app.runner_log_panel.entries.clear()  # what attaching logged, with today's times
        app.runner_log_panel.add(LOG)
        app.runner_log_panel.set_filter(None)
        app.view.refresh_all()
        await pilot.pause()

    return app, show_state


def test_notebook_with_mixed_cells_and_outputs(tour_app, snap_compare):
    app, show_state = tour_app
    assert snap_compare(app, terminal_size=(80, 24), run_before=show_state)


def test_notebook_wide_with_every_runtime_state(tour_app, snap_compare):
    app, show_state = tour_app
    assert snap_compare(app, terminal_size=(130, 40), run_before=show_state)


def test_big_terminal_200_by_60(tour_app, snap_compare):
    """The side panel takes its share of a wide terminal, not a fixed width."""
    app, show_state = tour_app
    assert snap_compare(app, terminal_size=(200, 60), run_before=show_state)


def test_progress_bars_and_colours_show_as_a_terminal_would(tour_app, snap_compare):
    """tqdm redraws one line with \r; pip colours its words; neither may break the cell's box."""
    app, show_state = tour_app

    async def progress(pilot):
        await show_state(pilot)
        chunks = [{"type": "start", "count": 5}, {"type": "stream", "name": "stderr", "text": "\x1b[?25l"}]
        for step in range(0, 11):
            bar = "█" * step + " " * (10 - step)
            chunks.append({"type": "stream", "name": "stderr", "text": f"\r{step * 10:3d}%|{bar}| {step}/10 [00:0{step // 4}<00:01, 9.8it/s]"})
        chunks.append({"type": "stream", "name": "stderr", "text": "\n\x1b[?25h"})
        chunks.append({"type": "stream", "name": "stdout", "text": "\x1b[1;32mSuccessfully installed\x1b[0m rich-15.0.0 \x1b[33m(cached)\x1b[0m\n"})
        chunks.append({"type": "stream", "name": "stdout", "text": "\x1b[31mERROR:\x1b[0m one \x1b[7mreverse\x1b[27m and \x1b[4munderlined\x1b[24m word, then plain text to the end\n"})
        chunks.append({"type": "stream", "name": "stdout", "text": "Downloading 45.2/97.0 MB\x1b[K\rDownloaded 97.0 MB\x1b[K\n"})
        chunks.append({"type": "done", "status": "ok", "duration": 1.5})
        app.outputs["load"] = output(*chunks)
        app.outputs["load"].source_hash = app.notebook.cell("load").source_hash
        app.view.select(1)
        app.view.refresh_all()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=progress)


def test_find_bar(tour_app, snap_compare):
    app, show_state = tour_app

    async def finding(pilot):
        await show_state(pilot)
        await pilot.press("slash", *"rows", "enter")
        await wait_for(pilot, lambda: app.view.selected == 1, what="the first match selected")
        await pilot.press("slash")
        steady_cursors(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=finding)


def test_completion_menu(tour_app, snap_compare, monkeypatch):
    """The matches are fixed here (the picture is the point); tests/test_ui_keys.py asks a real runtime."""
    from njtui.runner import Completion

    app, show_state = tour_app
    monkeypatch.setattr(app.runner, "complete", lambda runtime_id, code, cursor, timeout=2.0: Completion(["rows", "round", "range", "repr", "reversed"], cursor - 1, cursor))

    async def completing(pilot):
        await show_state(pilot)
        await pilot.press("j", "enter")
        await wait_for(pilot, lambda: isinstance(app.focused, CellEditor), what="edit mode")
        await pilot.press("ctrl+end", "enter", "r", "tab")
        await wait_for(pilot, lambda: bool(app.screen.query(CompletionMenu)), what="the menu")
        steady_cursors(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=completing)


def test_lower_cells_long_output_and_stale_mark(tour_app, snap_compare):
    app, show_state = tour_app

    async def scrolled(pilot):
        await show_state(pilot)
        await pilot.press("G")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 36), run_before=scrolled)


def test_edit_mode(tour_app, snap_compare):
    app, show_state = tour_app

    async def editing(pilot):
        await show_state(pilot)
        await pilot.press("j", "enter")
        await wait_for(pilot, lambda: isinstance(app.focused, CellEditor), what="edit mode")
        steady_cursors(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=editing)


def test_runner_log_filtered_to_one_runtime(tour_app, snap_compare):
    app, show_state = tour_app

    async def filtered(pilot):
        await show_state(pilot)
        await pilot.press("f2")  # hide the runtimes panel: the log takes the side
        app.runner_log_panel.set_filter("py")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=filtered)


def test_runtime_picker(tour_app, snap_compare):
    app, show_state = tour_app

    async def picking(pilot):
        await show_state(pilot)
        await pilot.press("j", "r")
        await screen_settled(pilot, PickerScreen)

    assert snap_compare(app, terminal_size=(80, 24), run_before=picking)


def test_help(tour_app, snap_compare):
    app, show_state = tour_app

    async def helping(pilot):
        await show_state(pilot)
        await pilot.press("question_mark")
        await screen_settled(pilot, HelpScreen)

    assert snap_compare(app, terminal_size=(100, 50), run_before=helping)


def test_save_prompt(tour_app, snap_compare):
    app, show_state = tour_app

    async def prompting(pilot):
        await show_state(pilot)
        await pilot.press("a", "ctrl+q")
        await screen_settled(pilot, SavePromptScreen)

    assert snap_compare(app, terminal_size=(80, 24), run_before=prompting)


def test_pager(tour_app, snap_compare):
    app, show_state = tour_app

    async def paging(pilot):
        await show_state(pilot)
        writer = app.store.begin("train", "e", "gpu", count=3, started_at=NOW - 5, source_hash=app.notebook.cell("train").source_hash)
        for i in range(400):
            writer.add({"seq": i + 1, "exec": "e", "type": "stream", "t": NOW, "name": "stdout", "text": f"epoch {i} loss {1 / (i + 1):.3f}\n"})
        writer.finish(status="ok", ended_at=NOW, duration=5.0)
        app.outputs["train"] = CellOutput()
        app.outputs["train"].load(writer.record, [], True)
        app.view.select(4)
        await pilot.press("o")
        await screen_settled(pilot, PagerScreen)

    assert snap_compare(app, terminal_size=(80, 24), run_before=paging)


def gradient_png() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 48))
    image.putdata([(x * 255 // 95, y * 255 // 47, 160) for y in range(48) for x in range(96)])
    ImageDraw.Draw(image).ellipse((30, 8, 66, 40), fill=(250, 250, 250))
    buffer = BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_image_in_results_drawn_under_the_cell(tour_app, snap_compare):
    app, show_state = tour_app

    async def with_image(pilot):
        await show_state(pilot)
        writer = app.store.begin("load", "e", "py", count=1, started_at=NOW - 5, source_hash=app.notebook.cell("load").source_hash)
        writer.finish(status="ok", ended_at=NOW, duration=0.5)
        files = app.store.save_files(writer.record, [("plot.png", BytesIO(gradient_png())), ("rows.csv", BytesIO(b"a,b\n1,2\n"))])
        app.outputs["load"].set_files(files)
        app.view.refresh_all()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 40), run_before=with_image)


def test_command_palette(tour_app, snap_compare):
    app, show_state = tour_app

    async def palette(pilot):
        await show_state(pilot)
        await pilot.press("ctrl+p", *"runtime: re")
        from textual.command import CommandPalette

        await screen_settled(pilot, CommandPalette)
        steady_cursors(app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=palette)


def test_error_notification_when_a_runtime_cannot_start(tour_app, snap_compare):
    app, show_state = tour_app

    async def failing(pilot):
        await show_state(pilot)
        app.view.select(4)
        app.notebook_screen.execute_failed(app.notebook.cell("train"), "image not found: njtui/python:3.11 (pull it or pick another environment)")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=failing)


def test_light_theme(tour_app, snap_compare):
    app, show_state = tour_app

    async def light(pilot):
        await show_state(pilot)
        app.theme = "njtui-light"
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=light)
