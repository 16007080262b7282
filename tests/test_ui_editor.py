"""The editor people expect, through Pilot: indentation, completion from the real runtime,
find, moving cells, run above/below, line numbers, wrap, and the small-terminal behaviour."""

from __future__ import annotations

from njtui.runner.state import RuntimeState
from njtui.store import load_notebook
from njtui.ui.cell import CellEditor, next_line_indent
from njtui.ui.completion import CompletionMenu
from tests.helpers import make_notebook, open_app, stop_own_runtimes, wait_for

SIZE = (100, 40)


def ids(app) -> list[str]:
    return [cell.id for cell in app.notebook.cells]


def test_next_line_indent_opens_and_closes_blocks():
    assert next_line_indent("def f(x):", "python") == "    "
    assert next_line_indent("    if x:  # note", "python") == "        "
    assert next_line_indent("        return x", "python") == "    "
    assert next_line_indent("    pass", "python") == ""
    assert next_line_indent("    y = 1", "python") == "    "
    assert next_line_indent("for f in *; do", "bash") == "    "
    assert next_line_indent("if true; then", "bash") == "    "
    assert next_line_indent("  echo hi", "bash") == "  "


async def test_enter_keeps_and_opens_indentation(tmp_path):
    app = open_app(make_notebook(tmp_path, [("c1", "python", "")]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.focused, CellEditor), what="edit mode")
        await pilot.press(*"def f(x):", "enter", *"if x:", "enter", *"return 1", "enter", *"y = 2", "escape")
        await pilot.pause()
        assert app.notebook.cells[0].source == "def f(x):\n    if x:\n        return 1\n    y = 2\n"


async def test_tab_completes_from_the_running_runtime(tmp_path):
    app = open_app(make_notebook(tmp_path, [("setup", "python", "import os\nmy_long_variable = 1\n"), ("use", "python", "")]))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.outputs.get("setup") is not None and app.outputs["setup"].finished, what="setup")
            await pilot.press("j", "enter")
            await wait_for(pilot, lambda: isinstance(app.focused, CellEditor), what="edit mode")
            await pilot.press(*"my_lo", "tab")
            await wait_for(pilot, lambda: app.notebook.cells[1].source == "my_long_variable\n", what="the one match inserted")
            await pilot.press(*" + os.pa", "tab")
            await wait_for(pilot, lambda: bool(app.screen.query(CompletionMenu)), what="a menu of several matches")
            menu = app.screen.query_one(CompletionMenu)
            assert "path" in menu.matches and "pardir" in menu.matches  # what replaces "pa"
            while menu.matches[menu.highlighted] != "path":
                await pilot.press("down")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.notebook.cells[1].source == "my_long_variable + os.path\n", what="the chosen match")
            assert isinstance(app.focused, CellEditor)
            await pilot.press("escape")
    finally:
        stop_own_runtimes(tmp_path)


async def test_move_cells_and_undo_the_move(tmp_path):
    app = open_app(make_notebook(tmp_path, [("a", "python", "1\n"), ("b", "python", "2\n"), ("c", "python", "3\n")]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("J")
        assert ids(app) == ["b", "a", "c"] and app.view.selected == 1
        await pilot.press("alt+down")
        assert ids(app) == ["b", "c", "a"] and app.view.selected == 2
        await pilot.press("K", "K")
        assert ids(app) == ["a", "b", "c"] and app.view.selected == 0
        await pilot.press("z")
        assert ids(app) == ["b", "a", "c"]
        await pilot.press("Z")
        assert ids(app) == ["a", "b", "c"]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.dirty, what="saved")
    assert [cell.id for cell in load_notebook(tmp_path / "nb.toml").cells] == ["a", "b", "c"]


async def test_run_above_and_below(tmp_path):
    app = open_app(make_notebook(tmp_path, [("a", "python", "x = 1\n"), ("b", "python", "x += 10\n"), ("c", "python", "x\n")]))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("j", "U")
            await wait_for(pilot, lambda: app.outputs.get("a") is not None and app.outputs["a"].finished, what="the cell above")
            assert app.outputs["b"].status is None
            await pilot.press("D")
            await wait_for(pilot, lambda: app.outputs.get("c") is not None and app.outputs["c"].finished, what="this and the cells below")
            assert app.outputs["c"].visible_lines()[-1][1].endswith("11")
    finally:
        stop_own_runtimes(tmp_path)


async def test_find_n_and_n_back(tmp_path):
    app = open_app(make_notebook(tmp_path, [("a", "python", "alpha = 1\n"), ("b", "python", "beta = 2\n"), ("c", "markdown", "# Alpha notes\n"), ("d", "python", "alphabet\n")]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "slash", *"alpha", "enter")
        await wait_for(pilot, lambda: app.view.selected == 2, what="the next match after the selection")
        assert app.focused is app.view and app.view.widgets["c"].highlight == "alpha"
        await pilot.press("n")
        assert app.view.selected == 3
        await pilot.press("n")
        assert app.view.selected == 0  # wraps around
        await pilot.press("N")
        assert app.view.selected == 3
        await pilot.press("escape")
        assert not app.view.highlights


async def test_ctrl_f_in_edit_mode_selects_the_match_in_the_cell(tmp_path):
    app = open_app(make_notebook(tmp_path, [("a", "python", "x = 1\ny = needle\n")]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.focused, CellEditor), what="edit mode")
        await pilot.press("ctrl+f", *"needle", "enter")
        await wait_for(pilot, lambda: isinstance(app.focused, CellEditor), what="back in the editor")
        assert app.focused.selected_text == "needle"


async def test_line_numbers_and_wrap_toggle(tmp_path):
    long_line = "print('" + "x" * 200 + "')\n"
    app = open_app(make_notebook(tmp_path, [("a", "python", long_line)]))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("L")
            assert app.view.widgets["a"].line_numbers
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.outputs.get("a") is not None and app.outputs["a"].finished, what="run")
            widget = app.view.widgets["a"]
            height = widget.outer_size.height
            await pilot.press("w")
            await wait_for(pilot, lambda: widget.outer_size.height > height, what="the wrapped output to take more rows")
    finally:
        stop_own_runtimes(tmp_path)


async def test_a_new_cell_takes_the_language_of_the_cell_it_came_from(tmp_path):
    app = open_app(make_notebook(tmp_path, [("p", "python", "1\n"), ("s", "bash", "echo hi\n"), ("m", "markdown", "# text\n")]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "b")
        assert app.notebook.cells[2].language == "bash"
        await pilot.press("G", "b")  # below a markdown cell: the nearest code cell above
        assert app.notebook.cells[-1].language == "bash"


async def test_a_language_tried_and_undone_leaves_no_runtime_listed(tmp_path):
    app = open_app(make_notebook(tmp_path, [("p", "python", "1\n")]))
    async with app.run_test(size=SIZE) as pilot:
        app.notebook_screen._language_picked(app.notebook.cells[0], "bash")
        await pilot.pause()
        assert "sh" in app.notebook_screen.listed_runtimes()
        app.notebook_screen._language_picked(app.notebook.cells[0], "python")
        await pilot.pause()
        assert app.notebook_screen.listed_runtimes() == ["py"]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.dirty, what="saved")
    assert list(load_notebook(tmp_path / "nb.toml").runtimes) == ["py"]


async def test_narrow_terminal_hides_the_side_panel_and_shows_a_status_line(tmp_path):
    app = open_app(make_notebook(tmp_path, [("p", "python", "1\n")]))
    try:
        async with app.run_test(size=(60, 20)) as pilot:
            await pilot.pause()
            screen = app.notebook_screen
            assert not screen.query_one("#sidebar").display
            line = screen.query_one("#status-line")
            assert line.display and "py stopped" in str(line.render())
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.statuses.get("py") is not None and app.statuses["py"].state == RuntimeState.RUNNING, what="running")
            await wait_for(pilot, lambda: "py idle" in str(line.render()) or "py busy" in str(line.render()), what="the status line to follow")
            await pilot.resize_terminal(120, 30)
            await pilot.pause()
            assert screen.query_one("#sidebar").display and not line.display  # back once there is room
            width = screen.query_one("#sidebar").outer_size.width
            await pilot.resize_terminal(200, 30)
            await pilot.pause()
            assert screen.query_one("#sidebar").outer_size.width > width  # follows this resize, not the last
    finally:
        stop_own_runtimes(tmp_path)


async def test_the_runner_log_keeps_following_after_a_resize(tmp_path):
    from njtui.runner.log import LogEntry

    app = open_app(make_notebook(tmp_path, [("p", "python", "1\n")]))
    async with app.run_test(size=(100, 30)) as pilot:
        panel = app.runner_log_panel
        panel.add([LogEntry(0.0, "py", "info", f"a long line of the runner log, number {i}, that wraps in a narrow panel") for i in range(200)])
        await pilot.pause()
        log = panel.query_one("RichLog")
        await wait_for(pilot, lambda: log.is_vertical_scroll_end, what="the log at its end")
        await pilot.resize_terminal(140, 30)
        await wait_for(pilot, lambda: log.is_vertical_scroll_end, what="the log at its end after the resize")
        await pilot.resize_terminal(90, 24)
        await wait_for(pilot, lambda: log.is_vertical_scroll_end, what="the log at its end after a second resize")
