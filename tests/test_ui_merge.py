"""The TUI and changes made to its notebook file from outside: taken in while open, merged on
save, a conflict dialog when the same part changed on both sides. Driven with Textual's Pilot
(and the real app under tmux) against a real file changed by the real `njtui runtime set` and
by plain writes, as another editor or a `git pull` makes them."""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from njtui.store import load_notebook
from njtui.ui.cell import CellEditor
from njtui.ui.screens import ConflictScreen
from njtui.ui.settings_screen import RuntimeSettingsScreen
from tests.conftest import njtui
from tests.helpers import freeze_ui_clock, open_app, screen_settled, wait_for
from tests.test_ui_snapshots import NOW
from tests.test_ui_tmux import Tmux

SIZE = (100, 34)

NOTEBOOK = '''\
njtui = 1
title = "Merging"

# The runtime everything runs in.
[runtimes.py]
name = "Python"
language = "python"
environment = "host"
default = true

# loads the data
[[cells]]
id = "load"
kind = "code"
language = "python"
source = """
rows = [1, 2, 3]
"""

# sums it (keep this one short)
[[cells]]
id = "total"
kind = "code"
language = "python"
source = """
sum(rows)
"""
'''


def write_notebook(tmp_path, text: str = NOTEBOOK):
    path = tmp_path / "merge.toml"
    path.write_text(text)
    return path


def edit_outside(path, old: str, new: str) -> None:
    """Another editor's save: the text changed in place, comments and all."""
    text = path.read_text()
    assert old in text, f"{old!r} is not in the file"
    path.write_text(text.replace(old, new))


def file_shows(path, condition, timeout: float = 30) -> None:
    """Until the notebook in the file meets `condition` (another process writes it)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition(load_notebook(path)):  # never half-written: saves rename a whole file over it
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s the file still reads:\n{path.read_text()}")
        time.sleep(0.1)


def log_lines(app) -> list[str]:
    return [entry.text for entry in app.runner.log.history]


async def edit_cell(pilot, index: int, typed: str) -> None:
    app = pilot.app
    app.view.select(index)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.focused, CellEditor), what="the cell editor")
    await pilot.press("end", *typed)


async def test_runtime_set_from_outside_and_a_cell_edited_here_both_reach_the_file(tmp_path):
    path = write_notebook(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await edit_cell(pilot, 0, " + [4]")
        result = njtui("runtime", "set", str(path), "py", "idle_timeout=5m", "env.MODE=fast")
        assert result.returncode == 0, result.stderr
        # Not being edited here, the runtime is taken in at once, before any save.
        await wait_for(pilot, lambda: app.notebook.runtimes["py"].idle_timeout == "5m", what="the runtime taken in")
        assert any("notebook changed on disk: 1 runtime updated" in line for line in log_lines(app))
        assert app.notebook.cells[0].source == "rows = [1, 2, 3] + [4]\n", "the edit in progress is kept"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.dirty, what="the save")
    saved = load_notebook(path)
    assert saved.runtimes["py"].idle_timeout == "5m" and saved.runtimes["py"].env == {"MODE": "fast"}
    assert saved.cells[0].source == "rows = [1, 2, 3] + [4]\n"
    text = path.read_text()
    assert "# The runtime everything runs in." in text and "# sums it (keep this one short)" in text


async def test_a_save_merges_an_outside_change_it_has_not_seen_yet(tmp_path):
    path = write_notebook(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await edit_cell(pilot, 0, " + [4]")
        # Saved in the same turn of the event loop as the write: the file watcher cannot have
        # taken it in, the save's merge does.
        edit_outside(path, "sum(rows)", "sum(rows) / len(rows)")
        assert app.notebook.cell("total").source == "sum(rows)\n"
        assert app.notebook_screen.action_save()
        assert not app.dirty and app.notebook.cell("total").source == "sum(rows) / len(rows)\n"
        await pilot.pause()
        assert "sum(rows) / len(rows)" in app.view.widgets["total"].query_one("#source").content.code
        assert any(line == "saved, merged with changes on disk: 1 cell updated" for line in log_lines(app))
    saved = load_notebook(path)
    assert [cell.source for cell in saved.cells] == ["rows = [1, 2, 3] + [4]\n", "sum(rows) / len(rows)\n"]


@pytest.mark.parametrize("choice", ["keep mine", "take theirs", "show both, then keep mine", "cancel"])
async def test_the_same_cell_changed_here_and_in_the_file_asks_first(tmp_path, choice):
    path = write_notebook(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await edit_cell(pilot, 1, " * 2")
        edit_outside(path, "sum(rows)", "sum(rows) * 10")
        # Also a change nobody made here: it merges whatever the choice.
        edit_outside(path, "rows = [1, 2, 3]", "rows = [5, 6]")
        on_disk = path.read_bytes()
        await wait_for(pilot, lambda: app.notebook.cell("load").source == "rows = [5, 6]\n", what="the other cell taken in")
        assert app.notebook.cell("total").source == "sum(rows) * 2\n", "the cell being edited waits for the save"
        await pilot.press("ctrl+s")
        await screen_settled(pilot, ConflictScreen)
        summary = str(app.screen.query_one("#conflict-summary").content)
        assert "cell total: source" in summary
        for _ in range(3):  # the file waits for the answer, however long it takes
            await pilot.pause(0.1)
            assert path.read_bytes() == on_disk
        if choice == "show both, then keep mine":
            await pilot.press("b")
            versions = str(app.screen.query_one("#conflict-versions").content)
            assert app.screen.query_one("#conflict-both").display
            assert versions.index("sum(rows) * 2") < versions.index("sum(rows) * 10"), "mine, then theirs"
            assert path.read_bytes() == on_disk
        await pilot.press({"keep mine": "m", "take theirs": "t", "show both, then keep mine": "m", "cancel": "escape"}[choice])
        await wait_for(pilot, lambda: not isinstance(app.screen, ConflictScreen), what="the dialog to close")
        await pilot.pause()
        if choice == "cancel":
            assert path.read_bytes() == on_disk and app.dirty
            assert app.notebook.cell("total").source == "sum(rows) * 2\n"
            return
        assert not app.dirty
        expected = "sum(rows) * 10\n" if choice == "take theirs" else "sum(rows) * 2\n"
        assert app.notebook.cell("total").source == expected
        if choice == "take theirs":
            # The editor showed mine; it is closed so the cell shows what it holds now.
            await wait_for(pilot, lambda: not app.view.widgets["total"].editing, what="the editor closed")
            assert "sum(rows) * 10" in str(app.view.widgets["total"].query_one("#source").content.code)
    saved = load_notebook(path)
    assert [cell.source for cell in saved.cells] == ["rows = [5, 6]\n", expected]
    assert "# sums it (keep this one short)" in path.read_text()


async def test_a_comment_in_the_file_survives_a_save_from_the_app(tmp_path):
    path = write_notebook(tmp_path, NOTEBOOK.replace("default = true", "default = true   # the one cells use"))
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await edit_cell(pilot, 1, " + 1")
        await pilot.press("escape", "b")  # and a new cell below it
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.dirty, what="the save")
    text = path.read_text()
    for comment in ("# The runtime everything runs in.", "default = true   # the one cells use", "# loads the data", "# sums it (keep this one short)"):
        assert comment in text
    assert 'sum(rows) + 1\n"""' in text
    assert len(load_notebook(path).cells) == 3


async def test_an_outside_change_to_a_cell_not_being_edited_shows_without_saving(tmp_path):
    path = write_notebook(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        edit_outside(path, "sum(rows)", "max(rows)")
        on_disk = path.read_bytes()
        await wait_for(pilot, lambda: app.notebook.cell("total").source == "max(rows)\n", what="the change taken in")
        await pilot.pause()
        shown = app.view.widgets["total"].query_one("#source").content
        assert "max(rows)" in shown.code
        assert any(line == "notebook changed on disk: 1 cell updated" for line in log_lines(app))
        assert not app.dirty and path.read_bytes() == on_disk
        # A cell added and one removed there are taken in too.
        edit_outside(path, '[[cells]]\nid = "load"', '[[cells]]\nid = "intro"\nkind = "markdown"\nsource = "# Intro"\n\n[[cells]]\nid = "load"')
        await wait_for(pilot, lambda: [cell.id for cell in app.notebook.cells] == ["intro", "load", "total"], what="the new cell")
        assert "intro" in app.view.widgets


async def test_an_outside_change_to_the_cell_in_the_editor_waits_until_it_closes(tmp_path):
    path = write_notebook(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await edit_cell(pilot, 1, "")
        edit_outside(path, "sum(rows)", "min(rows)")
        await wait_for(pilot, lambda: any("being edited here" in line for line in log_lines(app)), what="the change held")
        assert app.notebook.cell("total").source == "sum(rows)\n"
        await pilot.press("escape")  # nothing typed: the file's version comes in now
        await wait_for(pilot, lambda: app.notebook.cell("total").source == "min(rows)\n", what="the change taken in")
        assert not app.dirty


async def test_a_file_made_unreadable_outside_is_reported_and_not_overwritten(tmp_path):
    path = write_notebook(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await edit_cell(pilot, 0, " + [4]")
        path.write_text(NOTEBOOK + "[[cells]\n")  # someone's half-finished edit
        on_disk = path.read_bytes()
        line = NOTEBOOK.count("\n") + 1
        await wait_for(pilot, lambda: any(f"merge.toml:{line}:" in text and "is not a notebook now" in text for text in log_lines(app)), what="the report")
        assert app.notebook.cell("total").source == "sum(rows)\n"
        assert not app.notebook_screen.action_save()
        assert path.read_bytes() == on_disk and app.dirty
        # Fixed there, the next save merges as usual.
        path.write_text(NOTEBOOK.replace("sum(rows)", "max(rows)"))
        await wait_for(pilot, lambda: app.notebook.cell("total").source == "max(rows)\n", what="the fixed file taken in")
        assert app.notebook_screen.action_save()
    assert [cell.source for cell in load_notebook(path).cells] == ["rows = [1, 2, 3] + [4]\n", "max(rows)\n"]


async def test_the_settings_screen_saves_through_the_same_merge(tmp_path):
    path = write_notebook(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await screen_settled(pilot, RuntimeSettingsScreen)
        screen = app.screen
        screen.query_one("#idle_timeout").value = "7m"
        await pilot.pause()
        result = njtui("runtime", "set", str(path), "py", "env.MODE=fast")
        assert result.returncode == 0, result.stderr
        # The runtime whose settings are open is not changed under them: its change waits.
        await wait_for(pilot, lambda: any("being edited here" in line and "runtime py" in line for line in log_lines(app)), what="the change held")
        assert app.notebook.runtimes["py"].env == {}
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.notebook.runtimes["py"].env == {"MODE": "fast"}, what="the merged save")
        assert not isinstance(app.screen, ConflictScreen)
        # The screen goes on from the merged runtime: saving it again keeps MODE.
        assert screen.spec.env == {"MODE": "fast"}
        screen.query_one("TabbedContent").active = "tab-machine"
        await pilot.pause()
        screen.query_one("#memory").value = "512MB"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.notebook.runtimes["py"].memory == "512MB", what="the second save")
    saved = load_notebook(path)
    assert saved.runtimes["py"].idle_timeout == "7m" and saved.runtimes["py"].env == {"MODE": "fast"} and saved.runtimes["py"].memory == "512MB"
    assert "# The runtime everything runs in." in path.read_text()


def test_conflict_dialog(tmp_path, monkeypatch, snap_compare):
    freeze_ui_clock(monkeypatch, NOW)  # every clock a screen shows, the runner log's included
    monkeypatch.chdir(tmp_path)
    path = write_notebook(tmp_path)
    app = open_app(path.relative_to(tmp_path))

    async def conflicting(pilot):
        await wait_for(pilot, app.notebook_screen.loaded.is_set, what="the app to attach")
        await edit_cell(pilot, 1, " * 2")
        edit_outside(path, "sum(rows)", "sum(rows) * 10")
        await wait_for(pilot, lambda: any("being edited here" in line for line in log_lines(app)), what="the watcher to hold the change")
        # Out of edit mode before the dialog: an editor's blinking cursor under it would be a
        # clock in the picture.
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.focused is app.view, what="command mode")
        await pilot.press("ctrl+s")
        await screen_settled(pilot, ConflictScreen)
        await pilot.press("b")
        app.runner_log_panel.entries.clear()  # what it logged while attaching is not what this snapshot shows
        app.runner_log_panel.set_filter(None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 34), run_before=conflicting)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/provision installs it)")
def test_merge_and_conflict_with_the_real_app_under_tmux(tmp_path):
    path = write_notebook(tmp_path)
    tmux = Tmux(tmp_path / "tmux.sock", width=110, height=34)
    try:
        tmux.start(f"{sys.executable} -m njtui {path.name}; echo NJTUI-EXITED $?; sleep 600", tmp_path)
        tmux.wait_for(r"Python \(py\)")
        # Edit the first cell; meanwhile `njtui runtime set` changes the runtime.
        tmux.keys("Enter")
        tmux.wait_for(r"Esc command mode")  # in the editor: what follows is typed
        tmux.keys("End", " + [4]")
        tmux.wait_for(r"\+ \[4\]")
        result = njtui("runtime", "set", str(path), "py", "idle_timeout=5m")
        assert result.returncode == 0, result.stderr
        tmux.wait_for(r"notebook changed on")  # the runner log line, wrapped in its panel
        tmux.keys("C-s")
        tmux.wait_for(r"saved merge\.toml")
        file_shows(path, lambda saved: saved.cells[0].source == "rows = [1, 2, 3] + [4]\n")
        assert load_notebook(path).runtimes["py"].idle_timeout == "5m"
        # The same cell changed there and here: the dialog, the file untouched, then mine.
        edit_outside(path, "rows = [1, 2, 3] + [4]", "rows = [7]")
        on_disk = path.read_bytes()
        tmux.keys(" + [5]")
        tmux.wait_for(r"\+ \[5\]")
        tmux.keys("C-s")
        tmux.wait_for(r"Changed on disk")
        screen = tmux.wait_for(r"cell load: source")
        assert "keep mine" in screen and path.read_bytes() == on_disk
        tmux.keys("b")
        tmux.wait_for(r"theirs \(in the file now\)")
        assert path.read_bytes() == on_disk
        tmux.keys("m")
        # (The first save's "saved" may still be on screen: the file says when this one is done.)
        file_shows(path, lambda saved: saved.cells[0].source == "rows = [1, 2, 3] + [4] + [5]\n")
        assert "# sums it (keep this one short)" in path.read_text()
        tmux.keys("Escape", "C-q")
        tmux.wait_for(r"NJTUI-EXITED 0")
    finally:
        tmux.kill()


async def test_undo_does_not_reach_back_past_a_change_on_disk(tmp_path):
    """Undo after the file changed outside would bring back cells as they were before it, beside
    the file's own (with the same ids): the history starts again at the change."""
    from njtui.model import Cell
    from njtui.store import load_notebook, save_notebook
    from tests.helpers import make_notebook, open_app, wait_for

    path = make_notebook(tmp_path, [("a", "python", "1\n"), ("b", "python", "2\n")])
    app = open_app(path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("d", "d")
        # The file is read only once the deletion is in it: "not dirty" alone also holds before
        # the keys are handled, on a busy machine.
        await wait_for(pilot, lambda: [cell.id for cell in app.notebook.cells] == ["b"], what="cell a deleted")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.dirty and [cell.id for cell in load_notebook(path).cells] == ["b"], what="saved")
        outside = load_notebook(path)
        outside.cells.insert(0, Cell("a", "code", "1\n", "python"))
        save_notebook(outside, path)
        await wait_for(pilot, lambda: [cell.id for cell in app.notebook.cells] == ["a", "b"], what="the change on disk taken in")
        await pilot.press("z")
        assert [cell.id for cell in app.notebook.cells] == ["a", "b"]
