"""The keyboard model, driven with Textual's Pilot against real host runtimes."""

from __future__ import annotations

import threading
import time

from njtui.runner.runner import Runner
from njtui.runner.state import RuntimeState
from njtui.store import load_notebook
from njtui.ui.app import NotebookApp
from njtui.ui.cell import CellEditor
from njtui.ui.pager import PagerScreen
from njtui.ui.screens import ConfirmScreen, HelpScreen, PickerScreen, SavePromptScreen
from tests.helpers import make_notebook, open_app, wait_for, wait_until

SIZE = (100, 40)


def three_cells(tmp_path):
    return make_notebook(tmp_path, [("c1", "python", "x = 1\n"), ("c2", "python", "x += 1\nx\n"), ("c3", "python", "print(x)\n")])


def ids(app) -> list[str]:
    return [cell.id for cell in app.notebook.cells]


def output_of(app, cell_id):
    return app.outputs.get(cell_id)


def finished(app, cell_id) -> bool:
    output = output_of(app, cell_id)
    return output is not None and output.finished


async def test_moving_with_arrows_and_jk(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        assert app.view.selected == 0
        await pilot.press("j")
        assert app.view.selected == 1
        await pilot.press("down")
        assert app.view.selected == 2
        await pilot.press("down")
        assert app.view.selected == 2
        await pilot.press("k", "up")
        assert app.view.selected == 0
        assert app.view.widget_at(0).has_class("selected")


async def test_enter_edits_and_escape_leaves(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.focused, CellEditor)
        await pilot.press("end", "enter", *"y = 5")
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is app.view
        assert app.notebook.cells[0].source == "x = 1\ny = 5\n"
        assert app.dirty
        # In command mode letters are commands again: j moves, it is not typed.
        await pilot.press("j")
        assert app.view.selected == 1 and app.notebook.cells[0].source == "x = 1\ny = 5\n"


async def test_insert_above_and_below(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "a")
        assert len(app.notebook.cells) == 4 and app.view.selected == 1
        new_above = app.notebook.cells[1].id
        assert new_above not in ("c1", "c2", "c3")
        await pilot.press("b")
        assert len(app.notebook.cells) == 5 and app.view.selected == 2
        assert ids(app)[0] == "c1" and ids(app)[3:] == ["c2", "c3"]


async def test_dd_deletes_and_z_undoes(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "d")
        assert ids(app) == ["c1", "c2", "c3"], "one d alone deletes nothing"
        await pilot.press("d")
        assert ids(app) == ["c1", "c3"]
        await pilot.press("z")
        assert ids(app) == ["c1", "c2", "c3"] and app.view.selected == 1


async def test_copy_cut_paste(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c", "j", "j", "v")
        assert len(app.notebook.cells) == 4
        pasted = app.notebook.cells[3]
        assert pasted.source == "x = 1\n" and pasted.id != "c1" and app.view.selected == 3
        await pilot.press("k", "x")
        assert ids(app)[:2] == ["c1", "c2"] and "c3" not in ids(app)
        await pilot.press("v")
        assert app.notebook.cells[-1].source == "print(x)\n"


async def test_m_and_y_switch_kind(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        cell = app.notebook.cells[0]
        assert cell.kind == "markdown" and cell.language is None
        await pilot.press("y")
        assert cell.kind == "code" and cell.language == "python"


async def test_run_bindings_under_their_second_keys(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n")  # run and select next
        assert app.view.selected == 1
        await pilot.press("ctrl+r")  # run in place
        assert app.view.selected == 1
        await wait_for(pilot, lambda: finished(app, "c2"), what="c2 to finish")
        assert output_of(app, "c2").visible_lines() == [("result", "Out[2]: 2")]
        await pilot.press("j", "ctrl+b")  # run and insert below, in edit mode
        await wait_for(pilot, lambda: finished(app, "c3"), what="c3 to finish")
        assert output_of(app, "c3").visible_lines() == [("stdout", "2")]
        assert len(app.notebook.cells) == 4 and app.view.selected == 3
        assert isinstance(app.focused, CellEditor)
        assert app.statuses["py"].state == RuntimeState.RUNNING


async def test_run_bindings_shift_ctrl_alt_enter(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("shift+enter")
        assert app.view.selected == 1
        await pilot.press("ctrl+enter")
        assert app.view.selected == 1
        await wait_for(pilot, lambda: finished(app, "c2"), what="c2")
        await pilot.press("j", "alt+enter")
        assert len(app.notebook.cells) == 4 and isinstance(app.focused, CellEditor)
        await wait_for(pilot, lambda: finished(app, "c3"), what="c3")
        assert output_of(app, "c3").status == "ok"


async def test_running_from_edit_mode_runs_the_edited_source(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "end", "enter", *"print(x * 10)", "ctrl+r")
        await wait_for(pilot, lambda: finished(app, "c1"), what="c1")
        assert output_of(app, "c1").visible_lines() == [("stdout", "10")]
        assert app.focused is app.view


class OvertakingRunner(Runner):
    """Fault injection (a fake, because a scheduler's timing can't be ordered up): the first
    submission waits until a second one is under way, as a busy machine may make it, so a
    UI that submits from one thread per keypress sends the second cell first."""

    def __init__(self, path, notebook):
        super().__init__(path, notebook)
        self._calls = 0
        self._calls_lock = threading.Lock()
        self._second_arrived = threading.Event()
        self.overtaken = False

    def execute(self, cell, code=None):
        with self._calls_lock:
            self._calls += 1
            first = self._calls == 1
        if first:
            # In order, no second submission can come while this one waits: the wait runs out.
            self.overtaken = self._second_arrived.wait(timeout=1.0)
        else:
            self._second_arrived.set()
        return super().execute(cell, code)


async def test_cells_reach_the_runtime_in_the_order_they_were_run(tmp_path):
    path = make_notebook(tmp_path, [("first", "python", "seen = [0]\n"), ("second", "python", "seen.append(1)\n"), ("last", "python", "seen\n")])
    notebook = load_notebook(path)
    runner = OvertakingRunner(path, notebook)
    app = NotebookApp(path, notebook, runner)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("shift+enter", "shift+enter", "ctrl+r")
        await wait_for(pilot, lambda: finished(app, "last"), what="last cell")
        assert not runner.overtaken
        assert output_of(app, "last").visible_lines() == [("result", "Out[3]: [0, 1]")]


async def test_ii_interrupts_and_keeps_state(tmp_path):
    path = make_notebook(tmp_path, [("set", "python", "kept = 'yes'\n"), ("loop", "python", "import time\nwhile True:\n    time.sleep(0.05)\n"), ("get", "python", "kept\n")])
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+r")
        await wait_for(pilot, lambda: output_of(app, "loop") is not None and output_of(app, "loop").status == "running", what="loop running")
        await pilot.press("i", "i")
        await wait_for(pilot, lambda: finished(app, "loop"), what="interrupt")
        assert output_of(app, "loop").status == "interrupted"
        await pilot.press("j", "ctrl+r")
        await wait_for(pilot, lambda: finished(app, "get"), what="get")
        assert output_of(app, "get").visible_lines() == [("result", "Out[3]: 'yes'")]


async def test_00_restarts_the_runtime(tmp_path):
    path = make_notebook(tmp_path, [("pid", "python", "import os\nos.getpid()\n")])
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: finished(app, "pid"), what="first run")
        first_pid = app.statuses["py"].pid
        await pilot.press("0", "0")
        await wait_for(pilot, lambda: app.statuses["py"].state == RuntimeState.RUNNING and app.statuses["py"].pid != first_pid, what="restart")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: finished(app, "pid"), what="second run")
        assert output_of(app, "pid").count == 2, "counts are the notebook's, as Jupyter users read them: a restart does not start them again"


async def test_ctrl_s_saves_atomically_through_the_store(tmp_path):
    path = three_cells(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "end", *" + 1", "escape", "ctrl+s")
        assert not app.dirty
    assert load_notebook(path).cells[0].source == "x = 1 + 1\n"


async def test_r_picks_a_runtime_including_a_new_one(tmp_path):
    path = three_cells(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j", "r")
        assert isinstance(app.screen, PickerScreen)
        await pilot.press("down", "enter")  # "new runtime…"
        cell = app.notebook.cells[1]
        assert cell.runtime == "py2" and app.notebook.runtimes["py2"].language == "python"
        assert app.view.widget_at(1).border_subtitle == "host · python"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: finished(app, "c2"), what="c2 in py2")
        assert output_of(app, "c2").status == "error", "x is not defined in the new runtime"
        assert app.statuses["py2"].state == RuntimeState.RUNNING
        await pilot.press("ctrl+s")
    saved = load_notebook(path)
    assert saved.cells[1].runtime == "py2" and "py2" in saved.runtimes


async def test_l_changes_language(tmp_path):
    path = three_cells(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        assert isinstance(app.screen, PickerScreen)
        await pilot.press("down", "enter")
        cell = app.notebook.cells[0]
        assert cell.language == "bash" and app.notebook.runtime_for(cell).language == "bash"
        assert app.view.widget_at(0).border_subtitle == "host · bash"


async def test_quit_with_unsaved_changes_asks(tmp_path):
    path = three_cells(tmp_path)
    before = path.read_bytes()
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", "ctrl+q")
        assert isinstance(app.screen, SavePromptScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, SavePromptScreen) and app.is_running
        await pilot.press("ctrl+q", "d")
    assert path.read_bytes() == before
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", "ctrl+q", "s")
    assert len(load_notebook(path).cells) == 4


async def test_an_edit_saved_before_the_screen_hears_of_it_leaves_nothing_unsaved(tmp_path):
    # Typed fast (d d, then Ctrl+S), the save can run before the view's Edited message reaches
    # the screen: the file already holds the deletion, so quitting must not ask to save it.
    path = three_cells(tmp_path)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        app.view.action_delete_cell()  # posts Edited, which waits in the screen's queue
        assert app.notebook_screen.save()
        await pilot.pause()
        assert not app.notebook_screen.dirty
        await pilot.press("a")
        assert app.notebook_screen.dirty  # a later edit still counts
        await pilot.press("z", "ctrl+q")
        assert isinstance(app.screen, SavePromptScreen)
        await pilot.press("d")
    assert ids_in(path) == ["c2", "c3"]


def ids_in(path) -> list[str]:
    return [cell.id for cell in load_notebook(path).cells]


async def test_help_and_palette(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        names = [command.name for command in app.notebook_screen.palette_commands()]
        assert all(":" in name for name in names)
        for wanted in ("cell: run", "cell: delete", "runtime: restart Python (py)", "app: stop all runtimes and quit", "notebook: save"):
            assert wanted in names
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "CommandPalette"
        await pilot.press(*"run all", "enter")
        await wait_for(pilot, lambda: all(finished(app, c) for c in ("c1", "c2", "c3")), what="run all from the palette")
        assert output_of(app, "c3").visible_lines() == [("stdout", "2")]


async def test_pager_reads_the_full_output_from_the_store(tmp_path):
    path = make_notebook(tmp_path, [("many", "python", "for i in range(5000):\n    print('line', i)\n")])
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: finished(app, "many"), what="many")
        output = output_of(app, "many")
        assert output.hidden == 5000 - len(output.lines) and output.visible_lines()[-1] == ("stdout", "line 4999")
        await pilot.pause(0.5)  # the recorder flushes
        await pilot.press("o")
        assert isinstance(app.screen, PagerScreen)
        await wait_for(pilot, lambda: app.screen.lines_read == 5000, what="pager to load")
        assert app.screen.view.lines[0].plain == "line 0"


async def test_runtimes_panel_keys(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.runtimes_panel.query_one("OptionList").focus()
        await pilot.press("s")
        await wait_for(pilot, lambda: app.statuses.get("py") is not None and app.statuses["py"].state == RuntimeState.RUNNING, what="start")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="x to ask before it stops the runtime")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.statuses["py"].state == RuntimeState.STOPPED, what="stop")
        await pilot.press("L")
        assert app.runner_log_panel.filter == "py"
        assert any("stopping" in entry.text for entry in app.runner_log_panel.entries)


async def test_panels_toggle_and_resize(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f2")
        assert not app.runtimes_panel.display
        await pilot.press("f3")
        assert not app.notebook_screen.query_one("#sidebar").display
        await pilot.press("f2", "f3")
        width = app.notebook_screen.query_one("#sidebar").outer_size.width
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert app.notebook_screen.query_one("#sidebar").outer_size.width == width + 4
        height = app.runtimes_panel.outer_size.height
        await pilot.press("right_curly_bracket")
        await pilot.pause()
        assert app.runtimes_panel.outer_size.height == height + 2


async def test_a_huge_notebook_mounts_only_cells_near_the_viewport(tmp_path):
    cells = [(f"c{i:03d}", "python", f"value = {i}\nprint(value)\n") for i in range(500)]
    path = make_notebook(tmp_path, cells)
    started = time.perf_counter()
    app = open_app(path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert len(app.view.widgets) < 40
        await pilot.press("end")
        await pilot.pause()
        assert app.view.selected == 499
        assert app.view.widget_at(499) is not None and len(app.view.widgets) < 40
        await pilot.press("up", "up")
        assert app.view.selected == 497
    print(f"500 cells: opened, jumped to the end and back in {time.perf_counter() - started:.2f}s")


async def test_a_cell_printing_200000_lines_keeps_the_app_answering(tmp_path):
    path = make_notebook(tmp_path, [("flood", "python", "import time\nfor i in range(200_000):\n    print('line', i)\n    if i % 20_000 == 0:\n        time.sleep(0.2)\n"), ("after", "python", "1\n")])
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: output_of(app, "flood").status == "running", what="flood to start")
        moves = 0
        while output_of(app, "flood").status == "running" and moves < 20:
            await pilot.press("j" if moves % 2 == 0 else "k")  # each press is handled while output streams
            moves += 1
        assert moves >= 3, "keys were answered while the cell streamed"
        await wait_for(pilot, lambda: finished(app, "flood"), timeout=60, what="flood to finish")
        output = output_of(app, "flood")
        assert output.total_lines == 200_000 and output.visible_lines()[-1] == ("stdout", "line 199999")
        assert len(output.lines) <= 30


async def test_reopening_shows_a_cell_still_running_with_its_unattended_output(tmp_path):
    # The cell goes on only when the test says so (files it waits for), so a loaded machine
    # cannot finish it before the second app attaches, nor before the first one has quit.
    detached, printed, finish = tmp_path / "detached", tmp_path / "printed", tmp_path / "finish"
    code = (
        "import os, time\n"
        "def wait_for(path):\n"
        "    while not os.path.exists(path):\n"
        "        time.sleep(0.02)\n"
        "for i in range(3):\n"
        "    print('tick', i, flush=True)\n"
        f"wait_for({str(detached)!r})\n"
        "for i in range(3, 20):\n"
        "    print('tick', i, flush=True)\n"
        f"open({str(printed)!r}, 'w').close()\n"
        f"wait_for({str(finish)!r})\n"
        "for i in range(20, 30):\n"
        "    print('tick', i, flush=True)\n"
    )
    path = make_notebook(tmp_path, [("slow", "python", code)])
    first = open_app(path)
    async with first.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: any(line == ("stdout", "tick 2") for line in output_of(first, "slow").visible_lines()), what="some ticks")
        await pilot.press("ctrl+q")  # leaves the runtime running the cell
    detached.touch()
    wait_until(printed.exists, timeout=60, what="ticks printed while nobody is attached")
    second = open_app(path)
    async with second.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: output_of(second, "slow") is not None and output_of(second, "slow").status == "running", what="the cell shown running")
        finish.touch()
        await wait_for(pilot, lambda: finished(second, "slow"), what="the cell to finish while attached")
        output = output_of(second, "slow")
        assert output.status == "ok"
        assert [text for _, text in output.visible_lines()] == [f"tick {i}" for i in range(30)]


async def test_a_click_selects_a_cell(tmp_path):
    app = open_app(three_cells(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click(app.view.widget_at(2))
        assert app.view.selected == 2 and app.view.widget_at(2).has_class("selected")


# A PNG written with the standard library only (the runtime's Python may have nothing else).
PNG_CELL = """import os, struct, zlib
def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
width, height = 64, 32
rows = b"".join(b"\\x00" + bytes(v for x in range(width) for v in (x * 4, y * 8, 160)) for y in range(height))
with open(os.path.join(os.environ["NJTUI_RESULTS"], "gradient.png"), "wb") as f:
    f.write(b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
with open(os.path.join(os.environ["NJTUI_RESULTS"], "broken.png"), "wb") as f:
    f.write(b"not a png")
"""


async def test_an_image_a_cell_writes_to_results_is_drawn_under_it(tmp_path):
    app = open_app(make_notebook(tmp_path, [("plot", "python", PNG_CELL)]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: finished(app, "plot") and output_of(app, "plot").files, what="the cell and its files")
        await pilot.pause(0.2)
        assert output_of(app, "plot").status == "ok"
        screen = app.export_screenshot().replace("&#160;", " ")
        assert "gradient.png" in screen and "broken.png" in screen
        # 64×32 pixels fit in 32 columns × 8 rows of half blocks (two pixels a cell).
        assert screen.count("▀") >= 32 * 8
        assert "cannot draw broken.png" in screen
        app.runner.stop_all()


async def test_escape_sequences_in_output_cannot_drive_the_terminal(tmp_path):
    """Output is untrusted: a cursor move, a background colour, a window title and a clipboard
    write printed by a cell are shown as the text around them, in the cell and in the pager."""
    source = "import sys\nsys.stdout.write('before\\x1b[8A\\x1b[41mINJECTED\\x1b[0m\\n')\nsys.stdout.write('\\x1b]0;owned title\\x07title gone\\n')\nsys.stdout.write('\\x1b]52;c;ZGF0YQ==\\x1b\\\\clipboard gone\\x07\\x08\\n');\n"
    path = make_notebook(tmp_path, [("evil", "python", source)])
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: finished(app, "evil"), what="evil")
        shown = [line for _, line in output_of(app, "evil").visible_lines()]
        # Colours stay (as styles); everything else is gone.
        assert shown == ["before\x1b[41mINJECTED\x1b[0m", "title gone", "clipboard gone"]
        widget = app.view.widgets["evil"]
        assert "\x1b" not in widget._output_text().plain
        await wait_for(pilot, lambda: app.store.latest("evil") is not None and app.store.latest("evil").finished, what="record")
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, PagerScreen) and app.screen.lines_read == 3, what="pager")
        assert [line.plain for line in app.screen.view.lines] == ["beforeINJECTED", "title gone", "clipboard gone"]
