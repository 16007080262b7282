"""The real `njtui` in a tmux session: what a person sees, polled with capture-pane."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path


class TmuxApp:
    def __init__(self, workdir: Path, width: int = 100, height: int = 30) -> None:
        self.socket = workdir / "tmux.sock"
        self.base = ["tmux", "-S", str(self.socket)]
        self.width, self.height = width, height
        self.workdir = workdir

    def launch(self, *args: str) -> float:
        """Starts `njtui ARGS`; returns the perf_counter time just before the launch."""
        return self.launch_command(" ".join([sys.executable, "-m", "njtui", *args]))

    def launch_command(self, command: str) -> float:
        """Starts a shell command line (another notebook program, to compare with)."""
        command += "; sleep 600"
        env_args: list[str] = []
        for name in ("NJTUI_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            if name in os.environ:
                env_args += ["-e", f"{name}={os.environ[name]}"]
        started = time.perf_counter()
        subprocess.run(
            [*self.base, "-f", "/dev/null", "new-session", "-d", "-s", "b", "-x", str(self.width), "-y", str(self.height), "-c", str(self.workdir), *env_args, command],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        return started

    def screen(self) -> str:
        return subprocess.run([*self.base, "capture-pane", "-p", "-t", "b"], capture_output=True, text=True).stdout

    def wait_for(self, pattern: str, timeout: float = 60) -> float:
        """perf_counter time at which `pattern` was first seen on the screen."""
        deadline = time.perf_counter() + timeout
        regex = re.compile(pattern)
        while time.perf_counter() < deadline:
            if regex.search(self.screen()):
                return time.perf_counter()
        raise TimeoutError(f"{pattern!r} not on screen after {timeout}s:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "b", *keys], check=True)

    def app_pid(self) -> int:
        pane = subprocess.run([*self.base, "list-panes", "-t", "b", "-F", "#{pane_pid}"], capture_output=True, text=True).stdout.strip()
        children = subprocess.run(["pgrep", "-P", pane, "-f", "njtui"], capture_output=True, text=True).stdout.split()
        return int(children[0])

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)
        for _ in range(50):
            if subprocess.run([*self.base, "has-session"], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
        self.socket.unlink(missing_ok=True)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
