"""Host runtimes through the real command line: run, show, runtimes, reattach, idle shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import save_notebook
from njtui.store.results import KEEP_VERSIONS, ResultsStore
from tests.conftest import REPO, SAMPLES, njtui
from tests.helpers import make_notebook, output_on_a_terminal, own_runtimes, stop_own_runtimes, wait_until


def json_events(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def host_runtimes_only(tmp_path, monkeypatch):
    """For tests that list runtimes: the machine's Docker engine is shared, so `njtui runtimes`
    would also ask it for other programs' njtui containers (other test sessions'). These tests'
    runtimes are host ones (each test has its own runtime directory), so the CLI is pointed at
    an engine that is not there. Their listings are filtered to their own notebooks as well
    (own_runtimes), and they stop only their own runtimes (stop_own_runtimes), never `--all`."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_sample_runs(sample, tmp_path):
    copy = tmp_path / sample.name
    copy.write_text(sample.read_text())
    result = njtui("run", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr


def test_python_tour_output(tmp_path):
    copy = tmp_path / "tour.toml"
    copy.write_text((SAMPLES / "python-tour.toml").read_text())
    events = json_events(njtui("run", str(copy), "--json"))
    results = [e["data"]["text/plain"] for e in events if e["event"] == "result"]
    assert results[0] == "42.5"


def test_json_events_are_in_produced_order(tmp_path):
    code = "import sys, os\nfor i in range(3):\n    print(f'out{i}')\n    print(f'err{i}', file=sys.stderr)\nos.system('echo sub')\n'value'\n"
    path = make_notebook(tmp_path, [("c1", "python", code), ("c2", "python", "print('second')\n")])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    events = json_events(result)
    assert [e["event"] for e in events] == ["start"] + ["stream"] * 7 + ["result", "done", "start", "stream", "done"]
    lines = [(e["name"], e["text"].strip()) for e in events if e["event"] == "stream" and e["cell"] == "c1"]
    assert lines == [("stdout", "out0"), ("stderr", "err0"), ("stdout", "out1"), ("stderr", "err1"), ("stdout", "out2"), ("stderr", "err2"), ("stdout", "sub")]
    assert events[9] == {**events[9], "event": "done", "cell": "c1", "status": "ok"}


def test_state_persists_across_cells_and_runs(tmp_path):
    path = make_notebook(tmp_path, [("set", "python", "import os\nx = 41\nos.getpid()\n"), ("get", "python", "print(x + 1, os.getpid())\n")])
    first = json_events(njtui("run", str(path), "--json", "--cell", "set"))
    pid = next(e for e in first if e["event"] == "result")["data"]["text/plain"]
    second = njtui("run", str(path), "--cell", "get")
    assert second.returncode == 0
    assert second.stdout.strip() == f"42 {pid}"


def test_bash_state_persists(tmp_path):
    path = make_notebook(tmp_path, [("a", "bash", 'cd /tmp\nV=hello\nf() { echo "f:$1"; }\n'), ("b", "bash", "echo $PWD $V\nf x\n")])
    result = njtui("run", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["/tmp hello", "f:x"]


def test_failure_stops_unless_keep_going(tmp_path):
    path = make_notebook(tmp_path, [("bad", "python", "1/0\n"), ("after", "python", "print('ran')\n")])
    stopped = njtui("run", str(path))
    assert stopped.returncode == 1 and "ran" not in stopped.stdout and "ZeroDivisionError" in stopped.stderr
    kept = njtui("run", str(path), "--keep-going")
    assert kept.returncode == 1 and "ran" in kept.stdout


def test_bash_exit_status_fails_the_run(tmp_path):
    path = make_notebook(tmp_path, [("bad", "bash", "echo before\nfalse\n")])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 1
    done = json_events(result)[-1]
    assert done["status"] == "error" and done["exit_code"] == 1


def test_reattach_after_the_client_is_killed(tmp_path):
    """Acceptance: SIGKILL `njtui run` while a cell prints a line a second for 20 s; nothing is lost."""
    long_cell = "import os, time\nrunner_pid = os.getpid()\nfor i in range(20):\n    print(f'line {i}', flush=True)\n    time.sleep(1)\n"
    path = make_notebook(tmp_path, [("long", "python", long_cell), ("next", "python", "print('same process:', os.getpid() == runner_pid)\n")])
    client = subprocess.Popen([sys.executable, "-m", "njtui", "run", str(path), "--cell", "long"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for _ in range(3):
        assert client.stdout.readline().startswith("line")
    client.send_signal(signal.SIGKILL)
    client.wait()
    result = njtui("run", str(path), "--cell", "next", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same process: True"
    shown = json_events(njtui("show", str(path), "--cell", "long", "--json"))
    text = "".join(e["text"] for e in shown if e["event"] == "stream")
    assert text == "".join(f"line {i}\n" for i in range(20))
    assert shown[-1]["event"] == "done" and shown[-1]["status"] == "ok"


def test_show_collects_output_of_a_runtime_that_ended_unattended(tmp_path, host_runtimes_only):
    cell = "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)\n"
    path = make_notebook(tmp_path, [("c", "python", cell)], idle_timeout="1s")
    client = subprocess.Popen([sys.executable, "-m", "njtui", "run", str(path)], stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "0"
    client.kill()
    client.wait()
    # The cell finishes and the runtime idles out with nobody attached.
    wait_until(lambda: own_runtimes(tmp_path) == [], timeout=60, what="the runtime to end by itself")
    shown = json_events(njtui("show", str(path), "--json"))
    assert "".join(e["text"] for e in shown if e["event"] == "stream") == "0\n1\n2\n3\n4\n"
    assert shown[-1]["status"] == "ok"


def test_idle_runtime_shuts_itself_down(tmp_path, host_runtimes_only):
    from njtui.runner.host import HostBackend

    path = make_notebook(tmp_path, [("c", "python", "print('hi')\n")], idle_timeout="3s")
    assert njtui("run", str(path)).returncode == 0
    wait_until(lambda: own_runtimes(tmp_path) == [], timeout=60, what="the runtime to end by itself")
    # Why and when it ended, from its own journal (the agent stamps each message as it sends
    # it), not from when this test looked: a busy machine cannot shorten it. Only the lower
    # bound is checked (not ended early); that it ends at all is the wait above.
    backend = HostBackend()
    (ended,) = backend.ended(str(path))
    journal = list(backend.journal(ended))
    done = next(message for message in journal if message["type"] == "done")
    goodbye = next(message for message in journal if message["type"] == "exit")
    assert goodbye["reason"] == "idle"
    assert goodbye["t"] - done["t"] >= 3.0 - 0.01, goodbye["t"] - done["t"]


def test_a_long_cell_is_not_cut_off_by_the_idle_timeout(tmp_path):
    # The cell outlasts the idle timeout by sleeping: the behaviour under test, not a wait.
    path = make_notebook(tmp_path, [("c", "python", "import time\ntime.sleep(10)\nprint('done sleeping')\n")], idle_timeout="3s")
    result = njtui("run", str(path))
    assert result.returncode == 0 and "done sleeping" in result.stdout


def test_ctrl_c_interrupts_the_cell_records_it_and_exits_130(tmp_path):
    path = make_notebook(
        tmp_path,
        [("setup", "python", "kept = 1\n"), ("slow", "python", "import time\nprint('started', flush=True)\ntime.sleep(60)\n"), ("check", "python", "print(kept)\n")],
    )
    client = subprocess.Popen([sys.executable, "-m", "njtui", "run", str(path)], stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline().strip() == "started"
    client.send_signal(signal.SIGINT)
    assert client.wait(timeout=10) == 130
    shown = json_events(njtui("show", str(path), "--cell", "slow", "--json"))
    assert shown[-1]["status"] == "interrupted"
    result = njtui("run", str(path), "--cell", "check")
    assert result.returncode == 0 and result.stdout == "1\n"  # the runtime and its state survived


def test_runtimes_lists_and_stops(tmp_path, host_runtimes_only):
    path = make_notebook(tmp_path, [("p", "python", "1\n"), ("b", "bash", "true\n")])
    assert njtui("run", str(path)).returncode == 0
    rows = own_runtimes(tmp_path)
    assert sorted(r["runtime"] for r in rows) == ["py", "sh"]
    assert all(r["notebook"] == str(path.resolve()) and r["backend"] == "host" and r["state"] == "running" and r["pid"] for r in rows)
    table = njtui("runtimes").stdout
    assert "py" in table and "sh" in table and "IDLE" in table
    stopped = njtui("runtimes", "stop", rows[0]["id"])
    assert stopped.returncode == 0
    # `stop` returns once the runtime has ended: listed straight after, it is gone.
    after = own_runtimes(tmp_path)
    assert [r["id"] for r in after] == [rows[1]["id"]], (after, stopped.stdout + stopped.stderr)
    assert [r["id"] for r in stop_own_runtimes(tmp_path)] == [rows[1]["id"]]
    assert own_runtimes(tmp_path) == []
    assert njtui("runtimes", "stop", "nothing-like-this").returncode == 2


def test_a_killed_agent_ends_the_running_cell_as_lost(tmp_path):
    path = make_notebook(tmp_path, [("c", "python", "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n")])
    client = subprocess.Popen([sys.executable, "-m", "njtui", "run", str(path), "--json"], stdout=subprocess.PIPE, text=True)
    json.loads(client.stdout.readline())  # start
    pid = int(json.loads(client.stdout.readline())["text"])
    os.kill(pid, signal.SIGKILL)
    out, _ = client.communicate(timeout=15)
    assert client.returncode == 1
    done = json.loads(out.splitlines()[-1])
    assert done["status"] == "lost" and "SIGKILL" in done["reason"]
    record = ResultsStore(path).latest("c")
    assert record.status == "lost" and record.stdout_bytes > 0


def test_two_runtimes_of_one_language_keep_separate_state(tmp_path):
    notebook = Notebook(title="two")
    notebook.runtimes["a"] = RuntimeSpec("a", "python", default=True)
    notebook.runtimes["b"] = RuntimeSpec("b", "python")
    notebook.cells = [
        Cell("c1", "code", "x = 'a'\n", "python"),
        Cell("c2", "code", "x = 'b'\n", "python", runtime="b"),
        Cell("c3", "code", "print(x)\n", "python"),
        Cell("c4", "code", "print(x)\n", "python", runtime="b"),
    ]
    path = tmp_path / "two.toml"
    save_notebook(notebook, path)
    result = njtui("run", str(path))
    assert result.stdout.splitlines() == ["a", "b"]


def test_results_are_versioned_with_source_hash_and_stale_marking(tmp_path):
    path = make_notebook(tmp_path, [("c", "python", "print('v')\n")])
    for _ in range(3):
        assert njtui("run", str(path)).returncode == 0
    store = ResultsStore(path)
    assert store.versions("c") == [1, 2, 3]
    records = [store.load("c", v) for v in (1, 2, 3)]
    assert [r.count for r in records] == [1, 2, 3]
    assert all(r.status == "ok" and r.duration is not None and r.ended_at >= r.started_at for r in records)
    assert len({r.source_hash for r in records}) == 1
    assert not (tmp_path / "nb.toml").read_text().count("print('v')\n") > 1  # outputs are not in the notebook
    text = path.read_text().replace("print('v')", "print('changed')")
    path.write_text(text)
    shown = njtui("show", str(path))
    assert "stale" in shown.stderr


def test_counts_run_across_the_notebooks_runtimes_and_their_restarts(tmp_path, host_runtimes_only):
    """As Jupyter users read them: one counter for the notebook, not one per runtime (each would
    show [1] first), going on after the runtimes are stopped and the next command starts them."""
    path = make_notebook(tmp_path, [("a", "python", "'a'\n"), ("b", "bash", "echo b\n"), ("c", "python", "'c'\n"), ("d", "bash", "echo d\n")])
    store = ResultsStore(path)
    for first in (1, 5):
        ran = njtui("run", str(path), "--json")
        assert ran.returncode == 0, ran.stderr
        events = json_events(ran)
        assert [(e["cell"], e["count"]) for e in events if e["event"] == "start"] == [(cell, first + i) for i, cell in enumerate("abcd")]
        assert [(e["cell"], e["count"]) for e in events if e["event"] == "result"] == [("a", first), ("c", first + 2)]
        assert [store.latest(cell).count for cell in "abcd"] == list(range(first, first + 4))
        assert sorted(row["runtime"] for row in stop_own_runtimes(tmp_path)) == ["py", "sh"]


def test_old_versions_are_pruned_to_the_bound(tmp_path):
    store = ResultsStore(tmp_path / "nb.toml")
    for index in range(KEEP_VERSIONS + 5):
        writer = store.begin("c", f"e{index}", "py", status="running", started_at=time.time())
        writer.add({"seq": 1, "type": "stream", "name": "stdout", "text": f"{index}\n"})
        writer.finish(status="ok")
    versions = store.versions("c")
    assert len(versions) == KEEP_VERSIONS and versions[-1] == KEEP_VERSIONS + 5
    assert [e["text"] for e in store.events(store.latest("c"))] == [f"{KEEP_VERSIONS + 4}\n"]


def test_output_on_a_terminal_cannot_drive_it(tmp_path):
    """`njtui run`/`show` on a terminal drop the escape sequences that would move the cursor,
    retitle the window or write the clipboard (output may be someone else's); colours stay, and
    a pipe gets the bytes unchanged."""
    code = "import sys\nsys.stdout.write('\\x1b[31mred\\x1b[0m\\x1b[8A\\x1b]0;owned\\x07\\x1b]52;c;eA==\\x07done\\n')\n"
    path = make_notebook(tmp_path, [("evil", "python", code)])
    piped = njtui("run", str(path))
    assert piped.returncode == 0 and "\x1b[8A" in piped.stdout  # a pipe: the bytes as written
    for command in ("run", "show"):
        status, seen = output_on_a_terminal([str(REPO / ".venv" / "bin" / "njtui"), command, str(path)])
        assert status == 0
        assert b"\x1b[31mred\x1b[0mdone" in seen, seen
        assert b"\x1b[8A" not in seen and b"\x1b]" not in seen and b"owned" not in seen, seen


def test_json_events_carry_rich_outputs_whole(tmp_path):
    code = "class Page:\n    def _repr_markdown_(self):\n        return '# Title'\nhandle = display(Page(), display_id='p')\nupdate_display({'text/plain': 'new'}, display_id='p', raw=True)\nclear_output(wait=True)\nPage()\n"
    path = make_notebook(tmp_path, [("rich", "python", code)])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    events = [e for e in json_events(result) if e["event"] in ("display", "update_display", "clear_output", "result")]
    assert [e["event"] for e in events] == ["display", "update_display", "clear_output", "result"]
    assert events[0]["data"]["text/markdown"] == "# Title" and events[0]["display_id"] == "p" and events[0]["metadata"] == {}
    assert events[1]["data"] == {"text/plain": "new"} and events[2]["wait"] is True
    assert events[3]["data"]["text/markdown"] == "# Title" and "text/plain" in events[3]["data"]
