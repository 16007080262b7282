"""Rich outputs in the real `njtui` under tmux: a notebook whose stored execution has a PNG and a
Markdown heading opens with the picture drawn in colour half blocks and the heading drawn as a
heading (tmux passes no pixel graphics by default: half blocks are what it shows); and a kitty
terminal, given the picture in real pixels."""

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


def test_a_kitty_terminal_is_sent_the_picture_and_shows_it_in_placeholders(tmp_path):
    """In a terminal that says it is kitty, the real app sends the PNG once as an APC sequence
    (a virtual placement) and draws its cells as U+10EEEE placeholders whose foreground colour is
    the image's id: what kitty needs to draw real pixels inside a Textual screen."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import termios
    import time

    from njtui.ui.kitty import PLACEHOLDER

    path = make_notebook(tmp_path, [("plot", "python", "show()\n")], name="kitty.toml")
    messages = [
        {"type": "start", "count": 1, "meta": {"cell": "plot"}},
        {"type": "display", "data": {"image/png": picture("PNG", (24, 12)), "text/plain": "<Figure size 24x12>"}, "metadata": {}, "display_id": None},
        {"type": "done", "status": "ok", "count": 1, "duration": 0.1},
    ]
    store_execution(path, "plot", "e-plot", messages)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    environment = {key: value for key, value in os.environ.items() if key not in ("TMUX", "NJTUI_GRAPHICS")}
    app = subprocess.Popen([sys.executable, "-m", "njtui", path.name], cwd=tmp_path, stdin=terminal, stdout=terminal, stderr=terminal, env={**environment, "TERM": "xterm-kitty"}, start_new_session=True)
    os.close(terminal)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while PLACEHOLDER.encode() not in seen or b"\x1b_Ga=T,U=1" not in seen:
            assert time.monotonic() < deadline, f"no kitty picture after 60 s; the terminal got: {seen[-2000:]!r}"
            if select.select([controller], [], [], 1)[0]:
                seen += os.read(controller, 1 << 16)
        transmission = seen[seen.index(b"\x1b_Ga=T,U=1") :]
        assert b"f=100" in transmission.split(b";", 1)[0] and b"q=2" in transmission.split(b";", 1)[0]
        # The placement is sent before the cells that show it.
        assert seen.index(b"\x1b_Ga=T,U=1") < seen.index(PLACEHOLDER.encode())
    finally:
        os.write(controller, b"\x11")  # Ctrl+Q
        # Read on while it quits: a terminal that stops reading would block its last writes.
        quit_by = time.monotonic() + 20
        while app.poll() is None and time.monotonic() < quit_by:
            if select.select([controller], [], [], 0.5)[0]:
                try:
                    os.read(controller, 1 << 16)
                except OSError:
                    break
        if app.poll() is None:
            app.kill()
        app.wait()
        os.close(controller)
