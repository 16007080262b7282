"""`njtui runtimes` and the command line's output, through the real command: the Rich table,
exited containers of notebooks that are gone, and a stdout whose reader went away."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner.docker_backend import LABEL_NOTEBOOK
from njtui.runner.paths import runtime_key
from njtui.store import save_notebook
from njtui.store.results import ResultsStore
from tests.conftest import PYTHON_IMAGE, njtui
from tests.helpers import make_notebook, own_runtimes

SGR = re.compile(r"\x1b\[([0-9;]*)m")
OLD_JSON_KEYS = ["id", "notebook", "runtime", "backend", "environment", "language", "state", "busy", "pid", "idle_for", "uptime"]


def rows(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class Terminal:
    """A command on a pseudo-terminal of a given size, as a person's shell runs it."""

    def __init__(self, argv: list[str], columns: int = 100, lines: int = 30, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env or os.environ.copy(), start_new_session=True)
        os.close(slave)
        self.output = b""

    def read_until(self, wanted: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{wanted!r} did not appear within {timeout}s; the screen got {self.output[-600:]!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    data = os.read(self.master, 1 << 16)
                except OSError:  # EIO: the command ended and the terminal closed
                    data = b""
                if not data:
                    raise AssertionError(f"the command ended before {wanted!r} appeared; it wrote {self.output[-600:]!r}")
                self.output += data

    def read_to_end(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"the command did not end within {timeout}s; it wrote {self.output[-600:]!r}")
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            self.output += data
        assert self.proc.wait(timeout=timeout) == 0, self.output
        return self.output.decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        os.close(self.master)


def runtimes_on_a_terminal(columns: int, **env: str) -> str:
    terminal = Terminal([sys.executable, "-m", "njtui", "runtimes"], columns=columns, env={**os.environ, **env})
    try:
        return terminal.read_to_end()
    finally:
        terminal.close()


def test_the_runtimes_table_is_drawn_by_rich(tmp_path):
    # A directory name with a terminal escape in it (a title change): paths are shown inert.
    odd = tmp_path / "nb\x1b]0;owned\x07dir"
    odd.mkdir()
    long_dir = odd / ("deep-" * 12)
    long_dir.mkdir()
    path = make_notebook(long_dir, [("p", "python", "1\n"), ("b", "bash", "true\n")])
    assert njtui("run", str(path)).returncode == 0
    # Only this test's runtimes: the machine's Docker engine may run others' at the same time.
    listed = own_runtimes(tmp_path)
    assert sorted(row["runtime"] for row in listed) == ["py", "sh"]
    assert all(list(row) == OLD_JSON_KEYS for row in listed), "--json rows keep their keys (an engine's name only where one is set)"
    keys = {row["runtime"]: row["id"] for row in listed}

    # A pipe: no colour, one line per runtime however long, for grep and awk.
    piped = njtui("runtimes")
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0].split() == ["ID", "NOTEBOOK", "RUNTIME", "BACKEND", "ENGINE", "STATE", "PID", "IDLE"]
    own = [line for line in lines[1:] if line.split() and line.split()[0] in keys.values()]
    assert len(own) == 2 and "\x1b" not in piped.stdout
    by_runtime = {line.split()[2]: line.split() for line in own}
    assert by_runtime["py"][0] == keys["py"] and by_runtime["py"][4:6] == ["local", "running"]
    assert by_runtime["sh"][1].endswith("/nbdir/" + "deep-" * 12 + "/nb.toml")  # the escape sequence removed, whole

    # A terminal: colours (green for running), within its width, the escape made inert.
    coloured = runtimes_on_a_terminal(60)
    assert "\x1b]" not in coloured and "\x07" not in coloured
    assert "\x1b[32mrunning" in coloured
    visible = [SGR.sub("", line) for line in coloured.splitlines()]
    assert all(len(line) <= 60 for line in visible), visible
    assert {keys["py"], keys["sh"]} <= {line.split()[0] for line in visible if line.split()}, "IDs are never broken over lines"

    # NO_COLOR: no colour at all (Rich may keep bold, which NO_COLOR allows).
    plain = runtimes_on_a_terminal(200, NO_COLOR="1")
    codes = {code for match in SGR.finditer(plain) for code in match.group(1).split(";") if code}
    assert codes <= {"0", "1"}, codes
    assert "running" in plain
    # This test's runtimes only, by ID: `stop --all` would stop other programs' runtimes too.
    for key in keys.values():
        stopped = njtui("runtimes", "stop", key)
        assert stopped.returncode == 0, stopped.stderr
    assert own_runtimes(tmp_path) == []


def docker_notebook(tmp_path: Path, name: str) -> Path:
    notebook = Notebook(title=name)
    notebook.runtimes["py"] = RuntimeSpec("py", "python", environment=PYTHON_IMAGE, default=True, idle_timeout="5s")
    notebook.cells.append(Cell("c", "code", f"print('from {name}')\n", "python", runtime="py"))
    path = tmp_path / f"{name}.toml"
    save_notebook(notebook, path)
    return path


@pytest.mark.docker
def test_an_exited_container_of_a_moved_notebook_is_listed_and_removed(docker_engine, tmp_path):
    import docker

    moved, kept = docker_notebook(tmp_path, "moved"), docker_notebook(tmp_path, "kept")
    runs = [subprocess.Popen([sys.executable, "-m", "njtui", "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for path in (moved, kept)]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    containers = {}
    for path in (moved, kept):
        found = docker_engine.containers.list(all=True, filters={"label": f"{LABEL_NOTEBOOK}={path.resolve()}"})
        assert len(found) == 1, f"no container kept for {path.name}: its client saw it end and removed it"
        containers[path.name] = found[0]
    # Idle with no client attached: each agent stops its container, which stays for its journal.
    for container in containers.values():
        assert container.wait(timeout=120)["StatusCode"] == 0
    moved_key, kept_key = runtime_key(moved, "py"), runtime_key(kept, "py")
    moved.rename(tmp_path / "elsewhere.toml")

    listed = {row["id"]: row for row in rows(njtui("runtimes", "--json"))}
    assert kept_key not in listed, "an exited container of a notebook that is there waits for its next client"
    row = listed[moved_key]
    assert (row["state"], row["backend"], row["notebook"], row["runtime"]) == ("exited", "docker", str(moved.resolve()), "py")
    assert row["notebook_missing"] is True and row["exit_reason"] == "stopped: idle timeout"
    table = njtui("runtimes")
    (line,) = [line for line in table.stdout.splitlines() if line.startswith(moved_key)]
    assert "(notebook missing)" in line and "exited" in line

    # `stop --all` is allowed here, though the machine's Docker engine is shared: that it removes
    # the exited container of a notebook that is gone is the behaviour under test.
    stopped = njtui("runtimes", "stop", "--all")
    assert stopped.returncode == 0, stopped.stderr
    assert f"removed {moved_key} (exited py of {moved.resolve()}, notebook missing)" in stopped.stdout.splitlines()
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(containers["moved.toml"].id)
    assert moved_key not in {row["id"] for row in rows(njtui("runtimes", "--json"))}

    # The other one was left for its notebook, whose next client records its journal and removes it.
    containers["kept.toml"].reload()
    assert containers["kept.toml"].status == "exited"
    shown = njtui("show", str(kept))
    assert shown.returncode == 0 and shown.stdout == "from kept\n", shown.stderr
    with pytest.raises(docker.errors.NotFound):
        docker_engine.containers.get(containers["kept.toml"].id)


LONG_OUTPUT = "for i in range(200_000):\n    print(i)\n"


def through_head(*args: str, tmp_path: Path) -> tuple[str, int, str]:
    """`njtui ARGS | head -1` in a shell: (what head printed, njtui's exit status, njtui's stderr)."""
    errors = tmp_path / "stderr"
    script = '"$0" -m njtui "$@" 2>"$ERRORS" | head -1; echo "status ${PIPESTATUS[0]}"'
    result = subprocess.run(["bash", "-c", script, sys.executable, *args], capture_output=True, text=True, timeout=120, env={**os.environ, "ERRORS": str(errors)})
    *printed, status = result.stdout.splitlines()
    return "\n".join(printed), int(status.split()[1]), errors.read_text()


def test_show_and_run_into_a_closed_pipe_end_quietly(tmp_path):
    path = make_notebook(tmp_path, [("long", "python", LONG_OUTPUT)])
    full = subprocess.run([sys.executable, "-m", "njtui", "run", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert full.returncode == 0, full.stderr
    assert ResultsStore(path).latest("long").status == "ok"

    for command in ("show", "run"):
        printed, status, errors = through_head(command, str(path), tmp_path=tmp_path)
        assert printed == "0", command
        assert status == 141, (command, errors)  # as if SIGPIPE had ended it, without being killed
        assert "Traceback" not in errors and "BrokenPipe" not in errors and "Exception ignored" not in errors, errors
        assert errors.startswith("── long · host · python"), errors
    # `run` let go of the runtime as it left: the cell runs on to its end there.
    # Other programs may have runtimes on the machine's engine: only this notebook's count.
    (row,) = [row for row in rows(njtui("runtimes", "--json")) if row["notebook"] == str(path.resolve())]
    assert row["runtime"] == "py" and row["state"] == "running"
    assert njtui("runtimes", "stop", row["id"]).returncode == 0


def sigpipe_ignored(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return bool(ignored & (1 << (signal.SIGPIPE - 1)))


def test_the_tui_keeps_sigpipe_ignored(tmp_path):
    """A write to a runtime's closed socket must be an error the TUI handles, never a signal
    that ends it: SIGPIPE stays ignored, as Python sets it."""
    path = make_notebook(tmp_path, [("c", "python", "1\n")])
    terminal = Terminal([sys.executable, "-m", "njtui", str(path)], env={**os.environ, "TERM": "xterm-256color"})
    try:
        # The app has taken the screen: main() and its set-up are behind it.
        terminal.read_until(b"\x1b[?1049h")
        assert sigpipe_ignored(terminal.proc.pid)
    finally:
        terminal.close()


def test_the_table_says_which_engine_each_runtime_runs_on(capsys, monkeypatch):
    """The ENGINE column: "local" for the default engine, else the runtime's `engine` setting as
    written. The entries are the ones a listing gives (a remote engine's runtimes are tested on the cluster)."""
    from njtui.commands.runtimes import _print_runtimes_table
    from njtui.runner import RuntimeEntry

    monkeypatch.delenv("COLUMNS", raising=False)
    common = {"notebook": "/srv/nb.toml", "environment": "njtui/python:3.11", "language": "python", "state": "running"}
    entries = [
        RuntimeEntry(key="aaaa1111", runtime="py", backend="docker", engine=None, **common),
        RuntimeEntry(key="bbbb2222", runtime="gpu", backend="swarm", engine="swarm:njtui-node1", **common),
        RuntimeEntry(key="cccc3333", runtime="far", backend="docker", engine="ssh://root@10.231.77.12", **common),
    ]
    _print_runtimes_table(entries)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NOTEBOOK", "RUNTIME", "BACKEND", "ENGINE", "STATE", "PID", "IDLE"]
    assert [line.split()[2:6] for line in lines[1:]] == [
        ["py", "docker", "local", "running"],
        ["gpu", "swarm", "swarm:njtui-node1", "running"],
        ["far", "docker", "ssh://root@10.231.77.12", "running"],
    ]


def test_a_remembered_engine_that_is_gone_is_said_once_and_then_forgotten(tmp_path, monkeypatch):
    from njtui.runner.listing import KnownEngines, Placements
    from njtui.runner.runner import Runner
    from njtui.store import load_notebook

    # The Docker context gone-ctx was removed after a runtime booted there: the docker CLI's
    # configuration has no context of that name (nor any other).
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    path = make_notebook(tmp_path, [("c", "python", "print('ran')\n")])
    key = runtime_key(path, "py")
    placement = ("docker", "gone-ctx", None)
    # What booting there remembered (Runner._boot): where to look when listing, and where it runs.
    KnownEngines().add(*placement)
    Placements().record(key, placement)

    listed = njtui("runtimes")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert listed.stderr.count("no Docker context named 'gone-ctx'") == 1, listed.stderr
    again = njtui("runtimes")
    assert again.returncode == 0 and "gone-ctx" not in again.stderr, again.stderr
    assert KnownEngines().entries() == [] and Placements().get(key) is None
    assert "njtui forgets that engine and the runtimes it placed there" in listed.stderr

    # A client opening the notebook says it once too (its runner log), and forgets it.
    Placements().record(key, placement)
    for expected in (1, 0):
        runner = Runner(path, load_notebook(path))
        runner.attach_running()
        said = [entry.text for entry in runner.log.history if "gone-ctx" in entry.text]
        assert len(said) == expected, said
        assert Placements().get(key) is None
