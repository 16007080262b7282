"""The editing side under tmux, as the bug reports had it: the key sequences that crashed the
app (and lost unsaved work with exit status 0), and output that tried to drive the terminal."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from njtui.store import load_notebook
from tests.helpers import make_notebook, stop_own_runtimes
from tests.test_ui_tmux import Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/provision installs it)")

BORDER = re.compile(r"^ ?[│╭╰]")


@pytest.fixture
def tmux(tmp_path):
    session = Tmux(tmp_path / "tmux.sock", width=100, height=30)
    yield session
    session.kill()
    stop_own_runtimes(tmp_path)


def start(tmux: Tmux, tmp_path, name: str) -> None:
    tmux.start(f"{sys.executable} -m njtui {name}; echo NJTUI-EXITED $?; sleep 600", tmp_path)
    tmux.wait_for(r"Runtimes")


def quit_saving(tmux: Tmux) -> None:
    tmux.keys("C-s")
    tmux.wait_for(r"saved ")
    tmux.keys("C-q")
    tmux.wait_for(r"NJTUI-EXITED 0")


def test_delete_after_moving_down_a_long_notebook(tmux, tmp_path):
    make_notebook(tmp_path, [(f"c{i:03d}", "python", f"x = {i}\n") for i in range(200)], name="long.toml")
    start(tmux, tmp_path, "long.toml")
    tmux.keys(*["j"] * 30)
    tmux.wait_for(r"x = 30")
    tmux.keys("b", "d", "d")
    screen = tmux.wait_for(r"x = 31")
    assert "Traceback" not in screen and "NoMatches" not in screen
    quit_saving(tmux)
    cells = load_notebook(tmp_path / "long.toml").cells
    assert [cell.id for cell in cells] == [f"c{i:03d}" for i in range(200)]


def test_end_while_run_all_is_queued(tmux, tmp_path):
    make_notebook(tmp_path, [(f"c{i:02d}", "python", f"import time; time.sleep(0.05); {i}\n") for i in range(40)], name="queued.toml")
    start(tmux, tmp_path, "queued.toml")
    tmux.keys("C-p")
    tmux.wait_for(r"Search")
    subprocess.run([*tmux.base, "send-keys", "-t", "t", "-l", "run all"], check=True)
    tmux.wait_for(r"notebook: run all")
    tmux.keys("Enter")
    tmux.wait_for(r"queued|running")
    tmux.keys("G")
    screen = tmux.wait_for(r"time.sleep\(0.05\); 39")
    assert "NoMatches" not in screen
    tmux.wait_for(r"Out\[40\]: 39", timeout=120)
    tmux.keys("C-q")
    tmux.wait_for(r"NJTUI-EXITED 0")


def test_error_cells_end_insert_then_markdown_and_delete(tmux, tmp_path):
    cells = [(f"e{i}", "python", f"raise ValueError('boom {i}')\n") for i in range(8)]
    make_notebook(tmp_path, cells, name="errors.toml")
    start(tmux, tmp_path, "errors.toml")
    tmux.keys("R", "G")  # run all, then to the last cell
    tmux.wait_for(r"ValueError: boom 7", timeout=120)  # its traceback: every cell has ended
    tmux.keys("G", "b", "m")
    tmux.wait_for(r"empty markdown cell")
    tmux.keys("d", "d")
    screen = tmux.wait_for(r"boom 7")
    assert "NoMatches" not in screen
    quit_saving(tmux)
    assert [cell.id for cell in load_notebook(tmp_path / "errors.toml").cells] == [cell_id for cell_id, _, _ in cells]


def test_output_cannot_draw_outside_its_cell_or_retitle_the_terminal(tmux, tmp_path):
    evil = (
        "import sys\n"
        "sys.stdout.write('\\x1b]0;pwned title\\x07')\n"
        "sys.stdout.write('\\x1b[8A\\x1b[41mINJECTED\\x1b[0m\\n')\n"
        "sys.stdout.write('\\x1b]52;c;ZGF0YQ==\\x07\\x1b[2J\\x1b[H\\x1bP+q544e\\x1b\\\\ after\\n')\n"
        "sys.stdout.write('\\x1b[31mred\\x1b[0m and plain\\n')\n"
    )
    make_notebook(tmp_path, [("above", "python", "print('the cell above')\n"), ("evil", "python", evil), ("below", "python", "print('the cell below')\n")], name="evil.toml")
    start(tmux, tmp_path, "evil.toml")
    title_before = subprocess.run([*tmux.base, "display-message", "-p", "-t", "t", "#{pane_title}"], capture_output=True, text=True, check=True).stdout
    tmux.keys("R")
    screen = tmux.wait_for(r"the cell below\s*│", timeout=60)
    screen = tmux.wait_for(r"red and plain")
    # The notebook's column: what is left of the side panel.
    sidebar = next(line.find("╭─ Runtimes") for line in screen.splitlines() if "╭─ Runtimes" in line)
    lines = [line[:sidebar] for line in screen.splitlines()]
    for line in lines:
        if "INJECTED" in line or "after" in line:
            # Inside the evil cell's box, on its own line: nothing moved the cursor or cleared.
            assert BORDER.match(line) and line.rstrip().endswith("│"), line
    assert "the cell above" in screen
    injected = next(i for i, line in enumerate(lines) if "INJECTED" in line)
    above = next(i for i, line in enumerate(lines) if "the cell above" in line and "print" not in line)
    assert above < injected
    # The coloured line keeps its full text and the cell border stays in its column.
    red = next(line for line in lines if "red and plain" in line)
    border_column = next(line for line in lines if "the cell above" in line and "print" not in line).rstrip().rfind("│")
    assert red.rstrip().rfind("│") == border_column
    title_after = subprocess.run([*tmux.base, "display-message", "-p", "-t", "t", "#{pane_title}"], capture_output=True, text=True, check=True).stdout
    assert title_after == title_before and "pwned" not in title_after
    tmux.keys("C-q")
    tmux.wait_for(r"NJTUI-EXITED 0")
