"""Rich outputs in the real `njtui` under tmux: a notebook whose stored execution has a PNG and a
Markdown heading opens with the picture drawn in colour half blocks and the heading drawn as a
heading (tmux passes no pixel graphics by default: half blocks are what it shows)."""

from __future__ import annotations

import re
import sys

from tests.helpers import make_notebook
from tests.test_ui_rich_outputs import picture, store_execution
from tests.test_ui_tmux import pytestmark, tmux  # noqa: F401 - the fixture, and the skip when tmux is missing


def test_a_png_and_a_markdown_heading_are_drawn_under_tmux(tmux, tmp_path):  # noqa: F811 - the fixture
    path = make_notebook(tmp_path, [("plot", "python", "show()\n")], name="rich.toml")
    messages = [
        {"type": "start", "count": 1, "meta": {"cell": "plot"}},
        {"type": "display", "data": {"text/markdown": "# Quarterly figures\n\nwith *emphasis*", "text/plain": "<Markdown>"}, "metadata": {}, "display_id": None},
        {"type": "display", "data": {"image/png": picture("PNG", (24, 12)), "text/plain": "<Figure size 24x12>"}, "metadata": {}, "display_id": None},
        {"type": "done", "status": "ok", "count": 1, "duration": 0.1},
    ]
    store_execution(path, "plot", "e-plot", messages)
    tmux.start(f"{sys.executable} -m njtui {path.name}; echo NJTUI-EXITED $?; sleep 600", tmp_path)
    screen = tmux.wait_for(r"Quarterly figures")
    screen = tmux.wait_for(r"▀{12}")
    assert "# Quarterly" not in screen and "with emphasis" in screen
    assert "<Figure size" not in screen  # the picture is drawn, not its text
    coloured = tmux.screen(colours=True)
    picture_line = next(line for line in coloured.splitlines() if "▀▀▀▀" in line)
    # Red over red on the left half, blue on the right: truecolor or the nearest 256 colours.
    assert re.search(r"\x1b\[[0-9;]*(38;2;220;40;40|38;5;\d+)", picture_line), picture_line
    tmux.keys("C-q")
    tmux.wait_for(r"NJTUI-EXITED 0")
