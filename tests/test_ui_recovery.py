"""Unsaved work survives a crash of the app: journaled as it is made, kept on an unexpected
error (exit status 1, and `njtui open` says where), offered back on the next open.

The crash is a fake: a method of a widget is made to raise, because no real bug can be called
up on demand (the ones this guards against are fixed once found).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from njtui.store import load_notebook
from njtui.store.recovery import find_recovery, recovery_path
from njtui.ui.screens import RecoveryScreen
from tests.helpers import make_notebook, open_app, wait_for

SIZE = (100, 30)


def two_cells(tmp_path):
    return make_notebook(tmp_path, [("c1", "python", "x = 1\n"), ("c2", "markdown", "# notes\n")])


async def test_edits_are_journaled_as_they_are_made(tmp_path):
    path = two_cells(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "end", *"  # typed", "escape")
        await wait_for(pilot, lambda: recovery_path(path).exists() and "typed" in recovery_path(path).read_text(), what="the edit in the recovery file")
        recovery = find_recovery(path)
        assert recovery is not None and recovery.notebook.cells[0].source == "x = 1  # typed\n"
        assert recovery_path(path).stat().st_mode & 0o077 == 0  # the user's own
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not recovery_path(path).exists(), what="the recovery file removed by the save")


async def test_an_unexpected_error_keeps_the_work_and_exits_1(tmp_path, monkeypatch):
    path = two_cells(tmp_path)
    app = open_app(path)
    with pytest.raises(RuntimeError, match="a bug in a widget"):  # Pilot hands the app's error on
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("b", "enter", *"y = 2", "escape")
            await pilot.pause()

            def broken(self, *args, **kwargs):
                raise RuntimeError("a bug in a widget")

            monkeypatch.setattr(type(app.view), "action_move_cell", broken)
            await pilot.press("K")
            await pilot.pause()
    assert app.return_code == 1
    assert app.recovery_file == recovery_path(path)
    envelope = json.loads(recovery_path(path).read_text())
    assert "y = 2" in envelope["text"] and "RuntimeError" in envelope["reason"]
    assert "y = 2" not in path.read_text()  # the notebook file is as it was


async def test_the_next_open_offers_the_work_back(tmp_path):
    path = two_cells(tmp_path)
    first = open_app(path)
    async with first.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "end", *" + 1", "escape")
        await wait_for(pilot, lambda: recovery_path(path).exists() and "x = 1 + 1" in recovery_path(path).read_text(), what="the journal")
        first.notebook_screen.journal.flush()
    # The file changes meanwhile (another tool): restoring merges, as a save would.
    path.write_text(path.read_text().replace("# notes", "# notes from git"))
    second = open_app(path)
    async with second.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(second.screen, RecoveryScreen), what="the offer to restore")
        await pilot.press("r")
        await wait_for(pilot, lambda: second.notebook.cells[0].source == "x = 1 + 1\n", what="the restored edit")
        await wait_for(pilot, lambda: second.notebook.cells[1].source == "# notes from git\n", what="the file's change merged")
        assert second.dirty
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not second.dirty, what="the save")
    saved = load_notebook(path)
    assert [cell.source for cell in saved.cells] == ["x = 1 + 1\n", "# notes from git\n"]
    assert find_recovery(path) is None


async def test_discarding_the_offer_removes_the_journal(tmp_path):
    path = two_cells(tmp_path)
    first = open_app(path)
    async with first.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "end", *" + 5", "escape")
        await wait_for(pilot, lambda: recovery_path(path).exists() and "+ 5" in recovery_path(path).read_text(), what="the journal")
    second = open_app(path)
    async with second.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(second.screen, RecoveryScreen), what="the offer to restore")
        await pilot.press("d")
        await wait_for(pilot, lambda: not recovery_path(path).exists(), what="the journal removed")
        assert second.notebook.cells[0].source == "x = 1\n" and not second.dirty


def test_njtui_open_says_where_the_work_went_and_exits_non_zero(tmp_path):
    path = two_cells(tmp_path)
    # The app under a pseudo-terminal is not needed: Textual's headless driver runs it, with a
    # method made to raise after an edit (the fake fault), through the real `njtui open` path.
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from njtui.ui import app as app_module
        from njtui.ui.notebook_view import NotebookView

        def broken(self, delta):
            raise RuntimeError("a bug in a widget")

        NotebookView.action_move_cell = broken
        original_run = app_module.NotebookApp.run

        def run_headless(self, *args, **kwargs):
            async def drive():
                async with self.run_test(size=(100, 30)) as pilot:
                    await pilot.press("enter", "end", *" + 7", "escape", "K")
                    await pilot.pause()
            try:
                asyncio.run(drive())
            except RuntimeError:
                pass
            return None

        app_module.NotebookApp.run = run_headless
        from njtui.cli import main
        sys.exit(main(["open", {str(path)!r}]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert str(recovery_path(path)) in result.stderr and "unexpected error" in result.stderr
    assert "+ 7" in recovery_path(path).read_text()
