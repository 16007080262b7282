"""Nothing reported ✓ that the results store does not have (issue 23).

- A `/results` file the store cannot take (a full disk) fails its cell with the reason; the
  agent's staged copy stays until the file is stored, which `njtui show` or the next run does
  once there is space again, and then the agent lets the copy go.
- Several `njtui run` at once on one runtime: a client that exits 0 has every one of its
  executions recorded, with its files, whichever client held the recorder (2, 3 and 10 clients).
- A results store deleted (`rm -rf NB.results`) does not come back from a runtime's journal:
  the next run records what it runs, not the old executions again.

Real `njtui` processes, a real tmpfs (we are root), real host runtimes; waits are on events or
on the state they produce, never on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from njtui.runner import session as session_module
from njtui.runner.host import HostBackend
from njtui.runner.runner import Runner, RuntimeMessage
from njtui.store import load_notebook
from njtui.store.results import ResultsStore
from tests.helpers import fill, make_notebook, open_app, stop_own_runtimes, wait_for, wait_until

RESULT_BYTES = 600_000  # more than the full disk has left, less than it holds once freed
FILE_CELL = f"import os\nopen(os.path.join(os.environ['NJTUI_RESULTS'], 'big.bin'), 'wb').write(b'r' * {RESULT_BYTES})\nprint('wrote')\n"


def njtui_command() -> str:
    command = Path(sys.executable).with_name("njtui")
    assert command.exists(), f"{command} is missing: install njtui into the test's virtual environment"
    return str(command)


def njtui(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The installed `njtui` command, as a user runs it (environment: the test's isolated one)."""
    return subprocess.run([njtui_command(), *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def json_events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def runtime_dir(path: Path, runtime_id: str = "py") -> Path:
    info = HostBackend().find(str(path), runtime_id)
    assert info is not None, f"runtime {runtime_id} is not running"
    return Path(info.details["dir"])


def staged_copies(path: Path) -> list[str]:
    stage = runtime_dir(path) / "files"
    return sorted(os.listdir(stage)) if stage.is_dir() else []


def wait_released(path: Path) -> None:
    """Until the agent has let every staged copy go: the state its handling of the clients'
    `release` requests produces (requests are not journaled, so there is no message to wait for)."""
    wait_until(lambda: not staged_copies(path), timeout=60, what=f"the agent to let its staged copies go (left: {staged_copies(path)})")


# -- a /results file lost to a full disk


def stored_files(path: Path, cell_id: str) -> list[tuple[str, bytes]]:
    store = ResultsStore(path)
    record = store.latest(cell_id)
    assert record is not None, f"no record of cell {cell_id}"
    return [(entry["name"], store.blob_path(entry["sha256"]).read_bytes()) for entry in store.files(record)]


def run_file_cell_on_a_full_disk(small_fs: Path) -> tuple[Path, Path, str]:
    """The notebook, the filler, and the exec id of the cell whose /results file did not fit."""
    path = make_notebook(small_fs, [("files", "python", FILE_CELL), ("other", "python", "print('other')\n")])
    filler = fill(small_fs)
    ran = njtui("run", str(path), "--cell", "files", "--json")
    no_traceback(ran)
    events = json_events(ran.stdout)
    done = [event for event in events if event["event"] == "done"]
    assert ran.returncode == 1, f"a file the store could not keep was reported ok: {done}"
    assert [event["status"] for event in done] == ["error"], done
    assert "results store: No space left on device" in done[0]["reason"], done
    exec_id = next(event["exec"] for event in events if event["event"] == "start")
    assert any(name.startswith(f"{exec_id}.") for name in staged_copies(path)), "the agent's staged copy is kept until the file is stored"
    text = njtui("run", str(path), "--cell", "files")
    # The text output says it too, with the reason, and exits 1 (the disk is still full).
    assert text.returncode == 1 and "✗ files error" in text.stderr and "No space left on device" in text.stderr, text.stderr
    return path, filler, exec_id


def test_a_results_file_lost_to_a_full_disk_fails_the_cell_and_show_stores_it_later(small_fs):
    path, filler, exec_id = run_file_cell_on_a_full_disk(small_fs)
    still_full = njtui("show", str(path))
    no_traceback(still_full)
    assert still_full.returncode == 1 and "No space left on device" in still_full.stderr
    assert any(name.startswith(f"{exec_id}.") for name in staged_copies(path))

    filler.unlink()
    shown = njtui("show", str(path), "--cell", "files", "--json")
    no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    assert [event["status"] for event in json_events(shown.stdout) if event["event"] == "done"] == ["ok"]
    assert stored_files(path, "files") == [("big.bin", b"r" * RESULT_BYTES)]
    listed = njtui("results", str(path), "files", "--json")
    assert listed.returncode == 0 and "big.bin" in listed.stdout, listed.stderr
    wait_released(path)


async def test_the_tui_shows_a_results_file_lost_to_a_full_disk_as_a_failed_cell(small_fs):
    path = make_notebook(small_fs, [("files", "python", FILE_CELL)])
    filler = fill(small_fs)
    app = open_app(path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: (output := app.outputs.get("files")) is not None and output.finished, what="the cell to finish")
        output = app.outputs["files"]
        assert output.status == "error", output.visible_lines()
        assert output.reason.startswith("results store: No space left on device"), output.reason
        assert any(kind == "note" and "No space left on device" in text for kind, text in output.visible_lines()), output.visible_lines()
    filler.unlink()
    shown = njtui("show", str(path))
    assert shown.returncode == 0, shown.stderr
    assert stored_files(path, "files") == [("big.bin", b"r" * RESULT_BYTES)]


def test_a_results_file_lost_to_a_full_disk_is_stored_by_the_next_run(small_fs):
    path, filler, _exec_id = run_file_cell_on_a_full_disk(small_fs)
    filler.unlink()
    ran = njtui("run", str(path), "--cell", "other")
    no_traceback(ran)
    assert ran.returncode == 0 and ran.stdout == "other\n", ran.stderr
    store = ResultsStore(path)
    records = [store.load("files", version) for version in store.versions("files")]
    assert [record.status for record in records] == ["ok", "ok"], records
    assert all(store.files(record) for record in records), "both executions' files are stored"
    assert stored_files(path, "files") == [("big.bin", b"r" * RESULT_BYTES)]
    wait_released(path)


def test_a_full_disk_before_the_runtime_ends_keeps_the_file_for_later(small_fs):
    """The runtime ends (stopped) with the file not stored: its journal and staged copy stay,
    and the first command after space returns stores the file."""
    path, filler, _exec_id = run_file_cell_on_a_full_disk(small_fs)
    assert [row["runtime"] for row in stop_own_runtimes(path)] == ["py"]
    assert [info.runtime_id for info in HostBackend().ended(str(path))] == ["py"]
    filler.unlink()
    shown = njtui("show", str(path), "--cell", "files", "--json")
    no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    assert stored_files(path, "files") == [("big.bin", b"r" * RESULT_BYTES)]
    assert HostBackend().ended(str(path)) == [], "recorded whole, the journal goes"


# -- several clients at once: each execution recorded before its client reports it

# Each cell works a little (50 ms), so that the clients' cells interleave and the recording
# client often leaves while another's cell still runs (the finding: 13 of 15 rounds).
CLIENT_CELLS = [
    ("c1", "python", "import os, time\nprint('one')\ntime.sleep(0.05)\nopen(os.path.join(os.environ['NJTUI_RESULTS'], 'one.txt'), 'w').write('one')\n"),
    ("c2", "python", "import os, time\nprint('two')\ntime.sleep(0.05)\nopen(os.path.join(os.environ['NJTUI_RESULTS'], 'two.txt'), 'w').write('two')\n"),
]


def check_recorded(path: Path, events: list[dict]) -> list[str]:
    """What the store lacks of the executions a client reported: each needs a finished, ok
    record with its output and its file."""
    store = ResultsStore(path)
    missing = []
    for start in (event for event in events if event["event"] == "start"):
        record = store.find_exec(start["cell"], start["exec"])
        if record is None or record.status != "ok":
            missing.append(f"{start['cell']} {start['exec']}: {record.status if record else 'no record'}")
            continue
        name = {"c1": "one", "c2": "two"}[start["cell"]]
        files = store.files(record)
        if [entry["name"] for entry in files] != [f"{name}.txt"]:
            missing.append(f"{start['cell']} {start['exec']}: files {files}")
        text = "".join(event.get("text", "") for event in store.events(record))
        if text != f"{name}\n":
            missing.append(f"{start['cell']} {start['exec']}: output {text!r}")
    return missing


@pytest.mark.parametrize(("clients", "booted_first"), [(2, True), (3, True), (10, True), (10, False)], ids=["2", "3", "10", "10-booting-together"])
def test_concurrent_clients_leave_every_execution_recorded_at_exit(tmp_path, clients, booted_first):
    path = make_notebook(tmp_path, CLIENT_CELLS)
    if booted_first:
        booted = njtui("run", str(path))  # the runtime they share
        assert booted.returncode == 0, booted.stderr
    # Else they all find it not running: one boots it, the others must wait for it to listen
    # (attaching while its relay still waited for the agent's hello failed 1 run in 30).
    processes = [subprocess.Popen([njtui_command(), "run", str(path), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for _ in range(clients)]
    problems: list[str] = []
    exits: list[tuple[int, str, list[dict]]] = []
    guard = threading.Lock()

    def follow(number: int, process: subprocess.Popen) -> None:
        out, err = process.communicate(timeout=300)
        events = json_events(out)
        # The moment it has exited, whatever the other clients still do.
        missing = check_recorded(path, events)
        with guard:
            exits.append((process.returncode, err, events))
            problems.extend(f"client {number}: {problem}" for problem in missing)

    followers = [threading.Thread(target=follow, args=(number, process)) for number, process in enumerate(processes)]
    for follower in followers:
        follower.start()
    for follower in followers:
        follower.join()
    assert len(exits) == clients
    for returncode, err, events in exits:
        assert "Traceback" not in err and returncode == 0, err
        assert [event["status"] for event in events if event["event"] == "done"] == ["ok", "ok"], err
    assert not problems, f"{len(problems)} of {2 * clients} executions reported ok were not in the store at their client's exit: {problems[:6]}"


# -- a deleted results store stays deleted


def versions(path: Path) -> dict[str, int]:
    store = ResultsStore(path)
    return {cell: len(store.versions(cell)) for cell in ("c1", "c2") if store.versions(cell)}


def test_a_deleted_store_does_not_come_back_from_a_running_runtimes_journal(tmp_path):
    path = make_notebook(tmp_path, CLIENT_CELLS)
    for _ in range(2):
        assert njtui("run", str(path)).returncode == 0
    assert versions(path) == {"c1": 2, "c2": 2}
    shutil.rmtree(ResultsStore(path).root)
    ran = njtui("run", str(path), "--cell", "c2")
    no_traceback(ran)
    assert ran.returncode == 0, ran.stderr
    assert versions(path) == {"c2": 1}, "old executions came back from the journal"
    shown = njtui("show", str(path), "--json")
    assert shown.returncode == 0, shown.stderr
    assert versions(path) == {"c2": 1}
    assert stored_files(path, "c2") == [("two.txt", b"two")]


def test_a_deleted_store_does_not_come_back_from_an_ended_runtimes_journal(tmp_path):
    path = make_notebook(tmp_path, CLIENT_CELLS)
    assert njtui("run", str(path)).returncode == 0
    assert njtui("run", str(path), "--cell", "c1").returncode == 0
    assert [row["runtime"] for row in stop_own_runtimes(path)] == ["py"]
    assert [info.runtime_id for info in HostBackend().ended(str(path))] == ["py"], "its journal waits to be recorded"
    shutil.rmtree(ResultsStore(path).root)
    ran = njtui("run", str(path), "--cell", "c2")
    no_traceback(ran)
    assert ran.returncode == 0, ran.stderr
    assert versions(path) == {"c2": 1}, "old executions came back from the ended runtime's journal"
    assert HostBackend().ended(str(path)) == [], "the ended runtime's journal is let go"


class Blocking:
    """A listener of the recording client that blocks its reader thread (listeners are called
    on it, before it records) once another client's cell starts, until the test lets go: that
    client records nothing meanwhile, as a suspended or slow client would."""

    def __init__(self, cell_id: str) -> None:
        self.cell_id = cell_id
        self.blocked = threading.Event()
        self.go = threading.Event()

    def __call__(self, event) -> None:
        if isinstance(event, RuntimeMessage) and event.message.get("type") == "start" and event.message.get("meta", {}).get("cell") == self.cell_id:
            self.blocked.set()
            self.go.wait(120)


class ReportedDone:
    """The `done` of one execution as a client reports it, and what the store had at that moment."""

    def __init__(self, runner: Runner, store: ResultsStore, cell_id: str) -> None:
        self.store = store
        self.cell_id = cell_id
        self.exec_id: str | None = None
        self.done: dict | None = None
        self.record_then = None
        self.files_then: list = []
        self.reported = threading.Event()
        runner.subscribe(self)

    def __call__(self, event) -> None:
        if not isinstance(event, RuntimeMessage) or event.message.get("type") != "done" or event.message.get("exec") != self.exec_id:
            return
        self.record_then = self.store.find_exec(self.cell_id, event.message["exec"])
        self.files_then = self.store.files(self.record_then) if self.record_then is not None else []
        self.done = event.message
        self.reported.set()


def two_clients(tmp_path: Path) -> tuple[Path, Runner, Runner]:
    path = make_notebook(tmp_path, CLIENT_CELLS)
    recording = Runner(path, load_notebook(path))
    recording.ensure("py")
    watching = Runner(path, load_notebook(path))
    watching.attach_running()
    assert watching.sessions["py"].caught_up.wait(60)
    assert recording.sessions["py"].recorder.active and not watching.sessions["py"].recorder.active
    return path, recording, watching


def test_a_client_reports_a_cell_only_once_the_recording_client_has_recorded_it(tmp_path):
    path, recording, watching = two_clients(tmp_path)
    blocking = Blocking("c2")
    recording.subscribe(blocking)
    reported = ReportedDone(watching, ResultsStore(path), "c2")
    try:
        session = watching.sessions["py"]
        reported.exec_id = watching.execute(watching.notebook.cell("c2"))
        assert blocking.blocked.wait(60), "the cell never started"
        # The cell ends; the recording client has recorded nothing of it. The watching client
        # has its `done` now: it reports it (the finding), or holds it until the store has it.
        wait_until(lambda: reported.reported.is_set() or any(done["exec"] == reported.exec_id for done, _ in list(session._held)), timeout=60, what="the watching client to get the cell's done", every=0.01)
        assert not reported.reported.is_set() or reported.record_then is not None, f"reported {reported.done['status']} with nothing in the store"
        blocking.go.set()
        assert reported.reported.wait(60), "the done was never reported"
        assert reported.done["status"] == "ok", reported.done
        assert reported.record_then is not None and reported.record_then.status == "ok", reported.record_then
        assert [entry["name"] for entry in reported.files_then] == ["two.txt"], "its /results file is in the store when it is reported"
    finally:
        blocking.go.set()
        watching.detach()
        recording.detach()


def test_a_client_that_records_nothing_for_long_does_not_make_another_report_ok(tmp_path, monkeypatch):
    """The recording client never gets to it (suspended): after HELD_STALL without progress the
    cell is reported not ok, with the reason, rather than ok or never."""
    monkeypatch.setattr(session_module, "HELD_STALL", 1.0)
    path, recording, watching = two_clients(tmp_path)
    blocking = Blocking("c2")
    recording.subscribe(blocking)
    reported = ReportedDone(watching, ResultsStore(path), "c2")
    try:
        reported.exec_id = watching.execute(watching.notebook.cell("c2"))
        assert reported.reported.wait(120), "the done was never reported"
        assert reported.done["status"] == "error" and reported.done["reason"] == session_module.NOT_RECORDED_STALLED, reported.done
        assert reported.record_then is None
        # Once the recording client goes on, the store has it.
        blocking.go.set()
        store = ResultsStore(path)
        wait_until(lambda: (record := store.find_exec("c2", reported.exec_id)) is not None and record.finished, timeout=60, what="the recording client to record the cell")
        assert store.find_exec("c2", reported.exec_id).status == "ok"
    finally:
        blocking.go.set()
        watching.detach()
        recording.detach()
