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
        for key in keys:
            subprocess.run([*self.base, "send-keys", "-t", "t", key], check=True)
            time.sleep(0.15)

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
    code_cells = 4
    for _ in range(len(load_notebook(notebook).cells)):
        tmux.keys("C-n")
    screen = tmux.wait_for(r"\[4\] ✓ ok", timeout=60)
    assert "'steps': 3" in screen
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
    tmux.keys("Enter", "1 + 41", "Escape", "C-r")
    tmux.wait_for(r"Out\[1\]: 42")
    tmux.keys("C-q")
    tmux.wait_for(r"Unsaved changes")
    tmux.keys("s")
    tmux.wait_for(r"NJTUI-EXITED 0")
    notebook = load_notebook(tmp_path / "fresh.toml")
    assert notebook.runtimes["py"].language == "python" and notebook.cells[0].source == "1 + 41\n"


def test_reattach_after_the_app_is_killed_with_sighup(tmux, tmp_path):
    from tests.helpers import make_notebook

    make_notebook(tmp_path, [("long", "python", "import time\nfor i in range(40):\n    print(f'tick {i:02d}', flush=True)\n    time.sleep(0.1)\n")], name="long.toml")
    command = f"{sys.executable} -m njtui long.toml; echo NJTUI-EXITED $?; sleep 600"
    tmux.start(command, tmp_path)
    tmux.wait_for(r"Python \(py\)")
    tmux.keys("C-r")
    tmux.wait_for(r"tick 05")
    app_pid = subprocess.run([*tmux.base, "list-panes", "-t", "t", "-F", "#{pane_pid}"], capture_output=True, text=True, check=True).stdout.strip()
    njtui_pid = subprocess.run(["pgrep", "-P", app_pid, "-f", "njtui"], capture_output=True, text=True).stdout.split()[0]
    os.kill(int(njtui_pid), signal.SIGHUP)
    tmux.wait_for(r"NJTUI-EXITED")
    tmux.kill()
    time.sleep(0.5)  # the cell prints on while nobody is attached
    tmux.start(command, tmp_path)
    screen = tmux.wait_for(r"\[1\] ● running")
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
