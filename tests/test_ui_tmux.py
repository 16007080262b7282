"""The real `njtui` under tmux, driven as a person would: send-keys in, capture-pane out.

tmux with default settings delivers Shift+Enter and Ctrl+Enter as plain Enter, so this test runs
the cells with the run actions' second bindings (Ctrl+N, Ctrl+R), which arrive intact.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from njtui.store import load_notebook
from tests.conftest import SAMPLES

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/provision installs it)")


def foreground_before(line: str, marker: str) -> tuple[int, int, int]:
    """The foreground colour (RGB) in force where `marker` is drawn, from capture-pane -e."""
    colour = (255, 255, 255)
    for match in re.finditer(r"\x1b\[([0-9;]*)m|" + re.escape(marker), line):
        if match.group(0) == marker:
            return colour
        codes = [int(code) for code in match.group(1).split(";") if code]
        index = 0
        while index < len(codes):
            if codes[index] == 38 and codes[index + 1] == 5:
                colour = xterm_rgb(codes[index + 2])
                index += 3
            elif codes[index] == 38 and codes[index + 1] == 2:
                colour = tuple(codes[index + 2 : index + 5])
                index += 5
            elif codes[index] in (48,) and index + 1 < len(codes):
                index += 3 if codes[index + 1] == 5 else 5
            else:
                if 30 <= codes[index] <= 37:
                    colour = xterm_rgb(codes[index] - 30)
                index += 1
    raise AssertionError(f"{marker!r} not in line")


def xterm_rgb(number: int) -> tuple[int, int, int]:
    basic = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128), (192, 192, 192)]
    if number < 8:
        return basic[number]
    if number < 16:
        return tuple(min(255, c + 127) for c in basic[number - 8])
    if number < 232:
        number -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[number // 36], steps[(number // 6) % 6], steps[number % 6])
    grey = 8 + 10 * (number - 232)
    return (grey, grey, grey)


def is_green(rgb: tuple[int, int, int]) -> bool:
    red, green, blue = rgb
    return green > 100 and green > red + 30 and green > blue + 30


class Tmux:
    def __init__(self, socket: Path, width: int = 100, height: int = 30) -> None:
        self.base = ["tmux", "-S", str(socket)]
        self.width, self.height = width, height

    def start(self, command: str, cwd: Path) -> None:
        env_args = []
        for name in ("NJTUI_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env_args += ["-e", f"{name}={os.environ[name]}"]
        subprocess.run(
            [*self.base, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(self.width), "-y", str(self.height), "-c", str(cwd), *env_args, command],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )

    def keys(self, *keys: str) -> None:
        """Sends keys in order, each once the app has read the one before from its terminal.
        That is all a terminal can tell: a key that changes what the next one does (Enter into
        edit mode, say) needs `press(key, until=...)`, which waits for the screen to show it."""
        for key in keys:
            if key == "Escape":
                # A lone ESC byte is only known to be the Escape key once nothing follows it for
                # a while (it also starts every escape sequence), so whether it is read as Escape
                # depends on timing. Sent as the kitty keyboard protocol's Escape (CSI 27 u),
                # which Textual asks terminals for and parses, it means Escape at once.
                subprocess.run([*self.base, "send-keys", "-t", "t", "-l", "\x1b[27u"], check=True)
            else:
                subprocess.run([*self.base, "send-keys", "-t", "t", key], check=True)
            self.wait_read(key)

    def press(self, key: str, until: str, timeout: float = 30) -> str:
        """A key whose effect the next key depends on: sent, then waited for on the screen."""
        self.keys(key)
        return self.wait_for(until, timeout=timeout)

    def wait_read(self, key: str, timeout: float = 30) -> None:
        """Until the program in the pane has read everything sent to its terminal (the pty's
        input queue is empty)."""
        import fcntl
        import struct
        import termios

        tty = subprocess.run([*self.base, "display-message", "-p", "-t", "t", "#{pane_tty}"], capture_output=True, text=True, check=True).stdout.strip()
        fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:

            def unread() -> int:
                return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]

            deadline = time.monotonic() + timeout
            while unread():
                if time.monotonic() > deadline:
                    raise AssertionError(f"the app never read {key!r}; the screen was:\n{self.screen()}")
                time.sleep(0.01)
        finally:
            os.close(fd)

    def screen(self, colours: bool = False) -> str:
        args = [*self.base, "capture-pane", "-p", "-t", "t"] + (["-e"] if colours else [])
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout

    def wait_for(self, pattern: str, timeout: float = 30, colours: bool = False) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen(colours)
            if re.search(pattern, screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never appeared; the screen was:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], check=False, capture_output=True)
        socket = Path(self.base[2])
        deadline = time.monotonic() + 5
        # kill-server returns before the server is gone; a new session needs it gone.
        while socket.exists() and time.monotonic() < deadline:
            if subprocess.run([*self.base, "has-session"], capture_output=True).returncode != 0:
                socket.unlink(missing_ok=True)
                break
            time.sleep(0.1)


@pytest.fixture
def tmux(tmp_path):
    session = Tmux(tmp_path / "tmux.sock")
    yield session
    session.kill()


def test_run_all_save_quit_reopen_under_tmux(tmux, tmp_path):
    notebook = tmp_path / "tour.toml"
    shutil.copy(SAMPLES / "python-tour.toml", notebook)
    command = f"{sys.executable} -m njtui {notebook.name}; echo NJTUI-EXITED $?; sleep 600"
    tmux.start(command, tmp_path)
    tmux.wait_for(r"Runtimes")
    tmux.wait_for(r"stopped")
    # Every cell, with the keyboard: Ctrl+N runs the selected cell and moves on (markdown too).
    # Each run is waited for before the next Ctrl+N: runs asked for faster than that (while the
    # runtime boots, say) are handed to the runtime by one worker thread each, in whatever order
    # those threads get there (NotebookApp._execute), and a cell can run before the one it needs.
    code_cells = 0
    for cell in load_notebook(notebook).cells:
        tmux.keys("C-n")
        if cell.kind == "code":
            code_cells += 1
            screen = tmux.wait_for(rf"\[{code_cells}\] ✓ ok", timeout=60)
    assert code_cells == 4
    screen = tmux.wait_for(r"'steps': 3")
    # The runtime is up: green dot, idle.
    coloured = tmux.wait_for(r"idle", colours=True)
    dot_line = next(line for line in coloured.splitlines() if "Python (py)" in re.sub(r"\x1b\[[0-9;]*m", "", line))
    assert is_green(foreground_before(dot_line, "●")), dot_line
    # Scrolling back up shows the earlier outputs.
    tmux.keys("g")
    screen = tmux.wait_for(r"runtime pid: \d+")
    assert "hello from the runtime's settings" in screen
    tmux.keys("C-s")
    tmux.wait_for(r"saved tour.toml")
    tmux.keys("C-q")
    screen = tmux.wait_for(r"NJTUI-EXITED 0")
    assert "left 1 runtime running (py)" in screen.replace("\n", "")
    assert len(load_notebook(notebook).code_cells()) == code_cells + 1  # Ctrl+N on the last cell adds one

    tmux.kill()
    tmux.start(command, tmp_path)
    screen = tmux.wait_for(r"runtime pid: \d+")
    assert "[1] ✓ ok" in screen
    tmux.keys("G")
    screen = tmux.wait_for(r"'steps': 3")
    tmux.wait_for(r"idle")  # re-attached to the runtime that kept running
    tmux.keys("C-q")
    tmux.wait_for(r"NJTUI-EXITED 0")


def test_unreadable_notebook_opens_nothing_and_stays_untouched(tmp_path):
    notebook = tmp_path / "broken.toml"
    notebook.write_text('njtui = 1\ntitle = "x"\n[[cells]]\nid = "a"\nkind = "code"\nlanguage = "cobol"\nsource = ""\n')
    before = notebook.read_bytes()
    result = subprocess.run([sys.executable, "-m", "njtui", str(notebook)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{notebook}:6" in result.stderr and "cobol" in result.stderr
    assert notebook.read_bytes() == before


def test_a_new_notebook_gets_a_default_python_runtime(tmux, tmp_path):
    tmux.start(f"{sys.executable} -m njtui fresh.toml; echo NJTUI-EXITED $?; sleep 600", tmp_path)
    tmux.wait_for(r"Python \(py\)")
    tmux.press("Enter", until="Esc command mode")  # what is typed next goes to the cell's editor
    tmux.keys("1 + 41")
    tmux.wait_for(r"1 \+ 41")
    tmux.press("Escape", until="⏎ edit")
    tmux.keys("C-r")
    tmux.wait_for(r"Out\[1\]: 42")
    tmux.keys("C-q")
    tmux.wait_for(r"Unsaved changes")
    tmux.keys("s")
    tmux.wait_for(r"NJTUI-EXITED 0")
    notebook = load_notebook(tmp_path / "fresh.toml")
    assert notebook.runtimes["py"].language == "python" and notebook.cells[0].source == "1 + 41\n"


def test_reattach_after_the_app_is_killed_with_sighup(tmux, tmp_path):
    from tests.helpers import make_notebook, wait_until

    # The cell waits at two points for the test, so each part of its output is printed when it
    # should be however slow the machine: ticks 10-29 while no app is attached, 30-39 to the
    # reopened app (its waits poll a file: the cell's own code, not the test's).
    cell = (
        "import os, time\n"
        "def wait_for_file(name):\n"
        "    while not os.path.exists(name):\n"
        "        time.sleep(0.02)\n"
        "for i in range(40):\n"
        "    print(f'tick {i:02d}', flush=True)\n"
        "    if i == 9:\n"
        "        wait_for_file('app-gone')\n"
        "    if i == 29:\n"
        "        open('printed-29', 'w').close()\n"
        "        wait_for_file('app-back')\n"
    )
    make_notebook(tmp_path, [("long", "python", cell)], name="long.toml")
    command = f"{sys.executable} -m njtui long.toml; echo NJTUI-EXITED $?; sleep 600"
    tmux.start(command, tmp_path)
    tmux.wait_for(r"Python \(py\)")
    tmux.keys("C-r")
    tmux.wait_for(r"tick 09")
    app_pid = subprocess.run([*tmux.base, "list-panes", "-t", "t", "-F", "#{pane_pid}"], capture_output=True, text=True, check=True).stdout.strip()
    njtui_pid = subprocess.run(["pgrep", "-P", app_pid, "-f", "njtui"], capture_output=True, text=True).stdout.split()[0]
    os.kill(int(njtui_pid), signal.SIGHUP)
    tmux.wait_for(r"NJTUI-EXITED")
    tmux.kill()
    (tmp_path / "app-gone").touch()
    wait_until(lambda: (tmp_path / "printed-29").exists(), timeout=60, what="the cell to print on with nobody attached")
    tmux.start(command, tmp_path)
    tmux.wait_for(r"\[1\] ● running")
    (tmp_path / "app-back").touch()
    tmux.wait_for(r"\[1\] ✓ ok", timeout=30)
    # Every tick is in the cell, in order: the ones printed before the kill, while nobody was
    # attached, and after reopening (the cell shows the last 30; the pager shows them all).
    tmux.keys("o")
    tmux.wait_for(r"40 lines")
    screen = tmux.wait_for(r"tick 00")
    ticks = [line.split()[0] + " " + line.split()[1] for line in screen.splitlines() if line.strip().startswith("tick")]
    assert ticks == [f"tick {i:02d}" for i in range(len(ticks))] and len(ticks) >= 20
    tmux.keys("G")
    screen = tmux.wait_for(r"tick 39")
    ticks = [line.split()[0] + " " + line.split()[1] for line in screen.splitlines() if line.strip().startswith("tick")]
    assert ticks == [f"tick {i:02d}" for i in range(40 - len(ticks), 40)]
