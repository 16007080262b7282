"""The results store as untrusted input and as a disk that can fill up, with two clients on it.

- A results directory is committed and shared: `njtui results --extract` writes only inside its
  directory whatever the manifest says, and no store reader follows names or links planted there.
- A store in a directory someone else can write: a subdirectory swapped for a link while njtui
  writes never takes a write outside the store (directories are used by descriptor).
- A write error to the store (a full disk, a read-only file system) fails the cell with the
  error as its reason, loses nothing (the runtime's journal keeps it), and `njtui show`, or the
  same client once the store takes writes again, records it from the journal.
- When the recording client of two leaves mid-cell, the other finishes the record on its own.

Real processes, a real tmpfs (we are root), real runtimes; waits are on events or on the state
they produce, never on a fixed sleep.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from njtui.model import ExecutionRecord
from njtui.runner.host import HostBackend
from njtui.runner.log import LogEntry, RunnerLog
from njtui.runner.paths import runtime_key
from njtui.runner.runner import Runner, RuntimeMessage
from njtui.store import load_notebook
from njtui.store.results import InvalidCellId, ResultsStore
from tests.helpers import fill, make_notebook, stop_own_runtimes

BIG_LINES = 10_000
BIG_CELL = f"for i in range({BIG_LINES}):\n    print('x' * 99)\n"
BIG_OUTPUT = ("x" * 99 + "\n") * BIG_LINES  # 1 MB: more than the full disk has, less than it holds when freed


def njtui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed `njtui` command, as a user runs it (environment: the test's isolated one)."""
    command = Path(sys.executable).with_name("njtui")
    assert command.exists(), f"{command} is missing: install njtui into the test's virtual environment"
    return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def json_events(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    """Until the state that an event produces is there (runtimes answer on their own time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def stored_text(store: ResultsStore, cell_id: str) -> str:
    record = store.latest(cell_id)
    assert record is not None, f"no record of cell {cell_id}"
    return "".join(event.get("text", "") for event in store.events(record) if event.get("type") == "stream")


def assert_recorded_once(store: ResultsStore, cell_id: str) -> None:
    """One record line, events in journal order without a repeat, one end line."""
    record = store.latest(cell_id)
    lines = [json.loads(line) for line in store.path_of(record).read_bytes().splitlines()]
    assert "record" in lines[0] and "end" in lines[-1]
    assert sum("end" in line for line in lines) == 1 and sum("record" in line for line in lines) == 1
    seqs = [line["seq"] for line in lines[1:-1]]
    assert seqs == sorted(set(seqs)), "an event was recorded twice or out of order"


# -- `njtui results --extract`: a manifest is untrusted input


def planted_store(tmp_path: Path) -> tuple[Path, ResultsStore, dict[str, str]]:
    """A notebook whose cell c1 has one version with two real files, and a manifest that also
    lists what an attacker would add. Returns the notebook, its store and the blob digests."""
    path = make_notebook(tmp_path, [("c1", "python", "print(1)\n")])
    store = ResultsStore(path)
    writer = store.begin("c1", "e1", "py", status="running", started_at=time.time())
    writer.finish(status="ok")
    record = store.latest("c1")
    with open(tmp_path / "ok-src", "wb+") as ok, open(tmp_path / "nested-src", "wb+") as nested:
        ok.write(b"fine\n")
        nested.write(b"nested\n")
        ok.seek(0)
        nested.seek(0)
        entries = store.save_files(record, [("ok.txt", ok), ("sub/nested.txt", nested)])
    digests = {entry["name"]: entry["sha256"] for entry in entries}
    return path, store, digests


def write_manifest(store: ResultsStore, entries: list) -> None:
    (store.cell_dir("c1") / "000001.files.json").write_text(json.dumps({"exec": "e1", "files": entries}))


def all_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file() and not p.is_symlink()}


def test_extract_refuses_names_hashes_and_blobs_that_reach_outside(tmp_path):
    path, store, digests = planted_store(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"the secret\n")
    absolute_target = tmp_path / "abs-target"
    linked_digest = hashlib.sha256(b"the secret\n").hexdigest()
    (store.root / "blobs" / linked_digest[:2]).mkdir(parents=True, exist_ok=True)
    (store.root / "blobs" / linked_digest[:2] / linked_digest).symlink_to(secret)
    forged_digest = hashlib.sha256(b"forged").hexdigest()  # a blob whose content is not its hash
    (store.root / "blobs" / forged_digest[:2]).mkdir(parents=True, exist_ok=True)
    (store.root / "blobs" / forged_digest[:2] / forged_digest).write_bytes(b"something else")
    ok = {"size": 5, "type": "text/plain"}
    write_manifest(
        store,
        [
            {**ok, "name": "ok.txt", "sha256": digests["ok.txt"]},
            {**ok, "name": "sub/nested.txt", "sha256": digests["sub/nested.txt"]},
            {**ok, "name": "../out-sibling/f", "sha256": digests["ok.txt"]},
            {**ok, "name": str(absolute_target), "sha256": digests["ok.txt"]},
            {**ok, "name": "a/../../x", "sha256": digests["ok.txt"]},
            {**ok, "name": "stolen", "sha256": "../../../../" + str(secret).lstrip("/")},
            {**ok, "name": "upper", "sha256": digests["ok.txt"].upper()},
            {**ok, "name": "linked", "sha256": linked_digest},
            {**ok, "name": "forged", "sha256": forged_digest},
            {**ok, "name": "missing", "sha256": "0" * 64},
            "not an entry",
        ],
    )
    out = tmp_path / "out"
    result = njtui("results", str(path), "--extract", str(out))
    no_traceback(result)
    assert result.returncode == 1, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("njtui: warning: not extracted:")]
    for name, why in [
        ("../out-sibling/f", "climbs out"),
        (str(absolute_target), "absolute"),
        ("a/../../x", "climbs out"),
        ("stolen", "not 64 lowercase hex"),
        ("upper", "not 64 lowercase hex"),
        ("linked", "symbolic link"),
        ("forged", "does not match its sha256"),
        ("missing", "not in the store"),
        ("entry 10", "not a file entry"),
    ]:
        assert any(repr(name) in line and why in line for line in warnings), f"no warning for {name!r} ({why}): {result.stderr}"
    assert len(warnings) == 9, result.stderr
    assert all_files(out) == {"c1/v1/ok.txt": b"fine\n", "c1/v1/sub/nested.txt": b"nested\n"}
    assert result.stdout.splitlines() == [str(out / "c1/v1/ok.txt"), str(out / "c1/v1/sub/nested.txt")]
    assert not (tmp_path / "out-sibling").exists() and not absolute_target.exists() and not (tmp_path / "x").exists()
    assert secret.read_bytes() == b"the secret\n"


def test_extract_writes_no_wider_mode_than_the_blob(tmp_path):
    path, store, digests = planted_store(tmp_path)
    os.chmod(store.blob_path(digests["ok.txt"]), 0o640)
    os.chmod(store.blob_path(digests["sub/nested.txt"]), 0o600)
    out = tmp_path / "out"
    result = njtui("results", str(path), "c1", "--extract", str(out))
    assert result.returncode == 0, result.stderr
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "v1/ok.txt").stat().st_mode & 0o7777 == 0o640 & ~umask
    assert (out / "v1/sub/nested.txt").stat().st_mode & 0o7777 == 0o600 & ~umask


def test_extract_never_follows_a_link_already_in_the_directory(tmp_path):
    path, store, digests = planted_store(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    out = tmp_path / "out"
    (out / "c1" / "v1").mkdir(parents=True)
    (out / "c1" / "v1" / "ok.txt").symlink_to(victim)
    (out / "c1" / "v1" / "sub").symlink_to(victim_dir)
    result = njtui("results", str(path), "--extract", str(out))
    no_traceback(result)
    assert result.returncode == 1
    assert victim.read_text() == "precious\n" and list(victim_dir.iterdir()) == []
    for name in ("ok.txt", "sub/nested.txt"):
        assert any(repr(name) in line and "outside" in line for line in result.stderr.splitlines()), result.stderr

    # Links that stay inside the directory: one in place of a file is replaced, not written
    # through; one on the way to a file is refused as a link.
    (out / "c1" / "v1" / "ok.txt").unlink()
    (out / "c1" / "v1" / "sub").unlink()
    inside_file = out / "inside.txt"
    inside_file.write_text("mine\n")
    inside_dir = out / "elsewhere"
    inside_dir.mkdir()
    (out / "c1" / "v1" / "ok.txt").symlink_to(inside_file)
    (out / "c1" / "v1" / "sub").symlink_to(inside_dir)
    result = njtui("results", str(path), "--extract", str(out))
    no_traceback(result)
    assert result.returncode == 1
    ok = out / "c1" / "v1" / "ok.txt"
    assert not ok.is_symlink() and ok.read_bytes() == b"fine\n" and inside_file.read_text() == "mine\n"
    assert any("'sub/nested.txt'" in line and "symbolic link" in line for line in result.stderr.splitlines()), result.stderr
    assert list(inside_dir.iterdir()) == []


def test_cell_ids_that_are_not_names_never_become_paths(tmp_path):
    store = ResultsStore(tmp_path / "nb.toml")
    for bad in ("../../x", "/abs/path", "a/b", "..", "", "x" * 65, "a.b", "a\nb"):
        with pytest.raises(InvalidCellId):
            store.cell_dir(bad)
        with pytest.raises(InvalidCellId):
            store.begin(bad, "e1", "py")
        assert store.versions(bad) == [] and store.latest(bad) is None
    assert not store.root.exists()
    # The notebook loader refuses such an id before any command gets to the store.
    path = make_notebook(tmp_path, [("c1", "python", "print(1)\n")], name="bad.toml")
    path.write_text(path.read_text().replace('id = "c1"', 'id = "../../x"'))
    result = njtui("results", str(path), "--extract", str(tmp_path / "out"))
    no_traceback(result)
    assert result.returncode == 2 and "not a valid cell id" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()


def test_store_readers_do_not_trust_names_or_links_from_disk(tmp_path):
    path = make_notebook(tmp_path, [("c1", "python", "print('mine')\n")])
    store = ResultsStore(path)
    cells = store.root / "cells" / "c1"
    cells.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text(json.dumps({"record": {"cell": "c1", "version": 1, "exec_id": "x", "runtime": "py", "status": "running"}}) + "\n" + json.dumps({"seq": 1, "type": "stream", "name": "stdout", "text": "planted secret\n"}) + "\n")
    (cells / "000001.link.jsonl").symlink_to(elsewhere)  # a record that is a link: not read
    (cells / "000002.garbage.jsonl").write_text('{"record": "nope"}\nnot json\n[1, 2]\n')
    (cells / "000003.typed.jsonl").write_text(
        json.dumps({"record": {"cell": "../../x", "version": "9", "exec_id": "../y", "runtime": 5, "status": "pwned", "count": "1"}})
        + "\n"
        + json.dumps({"seq": "1", "type": "stream", "name": "stdout", "text": "typed\n"})
        + "\n"
        + '{"end": {"status": "ok", "duration": "long"}}\n'
    )
    (cells / "99999999999999999999.big.jsonl").write_text("{}\n")  # not a version number njtui writes
    os.mkfifo(cells / "000004.fifo.jsonl")  # opening it must not hang a reader
    (cells / "000003.files.json").write_text(json.dumps({"files": [{"name": "../x", "sha256": "0" * 64, "size": 1}, 7]}))
    assert store.versions("c1") == [2, 3]
    record = store.latest("c1")
    assert (record.cell, record.version, record.exec_id, record.runtime, record.status, record.count, record.duration) == ("c1", 3, "typed", "", "ok", None, None)
    assert [event["text"] for event in store.events(record)] == ["typed\n"]
    assert store.load("c1", 2).status == "error" and list(store.events(store.load("c1", 2))) == []

    shown = njtui("show", str(path), "--json")
    no_traceback(shown)
    assert "planted secret" not in shown.stdout
    listed = njtui("results", str(path))
    no_traceback(listed)
    assert listed.returncode == 1 and "'../x'" in listed.stderr and "entry 1" in listed.stderr

    # A lock file planted as a link to one of the user's files: neither truncated nor written.
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    key = runtime_key(path, "py")
    (store.root / "cursors").mkdir()
    (store.root / "cursors" / f"{key}.lock").symlink_to(victim)
    (store.root / "cursors" / f"{key}.jsonl").write_text('{"instance": 1, "seq": -4}\n{"instance": null, "seq": 0, "open": {"e": "../../x"}}\n')
    ran = njtui("run", str(path))
    no_traceback(ran)
    assert ran.returncode == 1 and "symbolic link" in ran.stderr and ran.stdout == "mine\n", ran.stderr
    assert victim.read_text() == "keep me\n"
    # Without the link, the malformed cursor log is read for what is valid in it, and the run records.
    (store.root / "cursors" / f"{key}.lock").unlink()
    assert njtui("run", str(path)).returncode == 0
    shown = njtui("show", str(path), "--json")
    assert shown.returncode == 0 and [e["text"] for e in json_events(shown) if e["event"] == "stream"] == ["mine\n"]


# -- write errors: a full disk, a read-only file system


# -- a store in a directory someone else can write: its subdirectories swapped for links


# Swaps each pair of names (a directory of the store and a link to outside it) with
# renameat2(RENAME_EXCHANGE), over and over: one atomic step, so there is always a directory
# or a link under each name, never nothing. "ready" once each pair was swapped; on SIGTERM it
# puts every pair back as it found it and prints how many swaps it made.
SWAPPER = r"""
import ctypes, os, platform, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if hasattr(libc, "renameat2"):
    renameat2 = libc.renameat2
else:  # glibc before 2.28: the system call itself
    number = {"x86_64": 316, "aarch64": 276}[platform.machine()]
    renameat2 = lambda *args: libc.syscall(number, *args)
pairs = [(a.encode(), b.encode()) for a, b in zip(sys.argv[1::2], sys.argv[2::2])]
swapped = [0] * len(pairs)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

def swap(index):
    a, b = pairs[index]
    if renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
    swapped[index] += 1

for index in range(len(pairs)):
    swap(index)
print("ready", flush=True)
while not stop:
    for index in range(len(pairs)):
        swap(index)
for index, count in enumerate(swapped):
    if count % 2:
        swap(index)
print(sum(swapped), flush=True)
"""

SWAP_TRIES = 1000


def test_a_subdirectory_swapped_for_a_link_mid_write_never_takes_a_write_outside_the_store(tmp_path):
    path = make_notebook(tmp_path, [("c1", "python", "print(1)\n")])
    store = ResultsStore(path)
    same = b"the same content each time\n"
    shared = hashlib.sha256(same).hexdigest()[:2]
    outside = tmp_path / "outside"
    # Each swapped directory, and what the link that takes its place points to: a directory
    # outside the store, where every write through the link would land.
    swapped = [("cells", "c1"), ("blobs", "incoming"), ("blobs", shared), ("cursors",)]
    pairs = []
    for parts in swapped:
        store._real_dir(*parts)
        real = store.root.joinpath(*parts)
        target = outside / "-".join(parts)
        target.mkdir(parents=True)
        link = real.with_name(real.name + "-swap")
        link.symlink_to(target)
        pairs += [str(real), str(link)]
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, *pairs], stdout=subprocess.PIPE, text=True)
    refused = 0
    try:
        assert swapper.stdout.readline() == "ready\n"
        for attempt in range(SWAP_TRIES):
            refused += _write_once(store, attempt, same)
    finally:
        swapper.send_signal(signal.SIGTERM)
        output, _ = swapper.communicate(timeout=60)
    assert swapper.returncode == 0 and int(output) > 0
    written = [str(p.relative_to(outside)) for p in outside.rglob("*") if not p.is_dir()]
    assert written == [], f"written outside the store through a swapped link: {written[:10]}"
    assert refused > 0, "the swaps never met a write: the race was not run"
    # The store is whole afterwards, and takes writes as before.
    _record(store, "after", SWAP_TRIES)
    assert store.latest("c1").exec_id == "after" and stored_text(store, "c1") == f"try {SWAP_TRIES}\n"


def _record(store: ResultsStore, exec_id: str, attempt: int) -> None:
    """An execution recorded in two goes: begun and left (a client that went away), then found
    again by its id, reopened by its path, and finished."""
    writer = store.begin("c1", exec_id, "py", status="running", started_at=time.time())
    writer.add({"seq": 1, "type": "stream", "name": "stdout", "text": f"try {attempt}\n"})
    writer.flush()
    writer.abandon()
    again = store.begin("c1", exec_id, "py")
    again.add({"seq": 2, "type": "status", "state": "idle"})
    again.finish(status="ok", ended_at=time.time())


def _write_once(store: ResultsStore, attempt: int, same: bytes) -> int:
    """One try of each kind of write the store makes: how many were refused (a link where a
    directory was, met on the way: refused, never written through)."""
    exec_id = f"e{attempt}"
    steps = [
        functools.partial(store.execution_count, exec_id, "c1"),
        functools.partial(_record, store, exec_id, attempt),
        functools.partial(_save_files, store, exec_id, {"same.txt": same, "own.txt": f"try {attempt}\n".encode()}),
        functools.partial(store.save_cursor, "key1", {"seq": attempt, "instance": "i", "open": {}}),
        functools.partial(_lock_and_release, store),
    ]
    refused = 0
    for step in steps:
        try:
            step()
        except OSError:
            refused += 1
    return refused


def _save_files(store: ResultsStore, exec_id: str, files: dict[str, bytes]) -> None:
    record = store.find_exec("c1", exec_id) or ExecutionRecord(cell="c1", version=1, exec_id=exec_id, runtime="py")
    store.save_files(record, [(name, io.BytesIO(data)) for name, data in files.items()])


def _lock_and_release(store: ResultsStore) -> None:
    lock = store.try_lock_recorder("key1")
    if lock is not None:
        lock.close()


def full_disk_notebook(small_fs: Path) -> Path:
    return make_notebook(small_fs, [("big", "python", BIG_CELL), ("small", "python", "print('small')\n")])


def test_a_full_disk_fails_the_cell_keeps_the_output_and_show_repairs_the_store(small_fs):
    path = full_disk_notebook(small_fs)
    filler = fill(small_fs)

    ran = njtui("run", str(path), "--keep-going")
    no_traceback(ran)
    assert ran.returncode == 1
    assert ran.stdout == BIG_OUTPUT + "small\n", "the listeners got all of the output"
    for cell in ("big", "small"):
        assert any(line.startswith(f"✗ {cell} error") and "results store: No space left on device" in line for line in ran.stderr.splitlines()), ran.stderr
    assert "njtui: py: results store: No space left on device" in ran.stderr, "the runner log says it"

    still_full = njtui("show", str(path), "--json")
    no_traceback(still_full)
    assert still_full.returncode == 1 and "No space left on device" in still_full.stderr

    filler.unlink()
    shown = njtui("show", str(path), "--json")
    no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    done = {event["cell"]: event for event in json_events(shown) if event["event"] == "done"}
    assert done["big"]["status"] == "ok" and done["small"]["status"] == "ok"
    store = ResultsStore(path)
    assert stored_text(store, "big") == BIG_OUTPUT and stored_text(store, "small") == "small\n"
    assert_recorded_once(store, "big")
    assert store.latest("big").stdout_bytes == len(BIG_OUTPUT)


def test_a_runtime_that_ends_before_the_repair_keeps_its_journal(small_fs):
    path = full_disk_notebook(small_fs)
    filler = fill(small_fs)
    assert njtui("run", str(path), "--cell", "big").returncode == 1
    assert [row["runtime"] for row in stop_own_runtimes(path)] == ["py"]
    backend = HostBackend()
    assert [info.runtime_id for info in backend.ended(str(path))] == ["py"]

    still_full = njtui("show", str(path))
    no_traceback(still_full)
    assert still_full.returncode == 1 and "No space left on device" in still_full.stderr and "journal is kept" in still_full.stderr
    assert [info.runtime_id for info in backend.ended(str(path))] == ["py"], "the journal survives a failed repair"

    filler.unlink()
    shown = njtui("show", str(path), "--json")
    no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    assert [event["status"] for event in json_events(shown) if event["event"] == "done"] == ["ok"]
    assert stored_text(ResultsStore(path), "big") == BIG_OUTPUT
    assert backend.ended(str(path)) == [], "recorded whole, the journal goes"


def test_a_read_only_store_fails_the_cell_and_show_repairs_it(small_fs):
    path = make_notebook(small_fs, [("a", "python", "print('first')\n"), ("b", "python", "print('second')\n")])
    assert njtui("run", str(path), "--cell", "a").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        ran = njtui("run", str(path), "--cell", "b")
        no_traceback(ran)
        assert ran.returncode == 1 and ran.stdout == "second\n"
        assert "✗ b error" in ran.stderr and "results store: Read-only file system" in ran.stderr, ran.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    shown = njtui("show", str(path), "--cell", "b", "--json")
    no_traceback(shown)
    assert shown.returncode == 0, shown.stderr
    assert [event["status"] for event in json_events(shown) if event["event"] == "done"] == ["ok"]
    assert stored_text(ResultsStore(path), "b") == "second\n"


class Watcher:
    """A runner's events as they happen, for waiting on them."""

    def __init__(self, runner: Runner) -> None:
        self.done: dict[str, dict] = {}
        self.text: dict[str, str] = {}
        self.changed = threading.Condition()
        runner.subscribe(self.on_event)

    def on_event(self, event) -> None:
        if not isinstance(event, RuntimeMessage):
            return
        message = event.message
        with self.changed:
            if message.get("type") == "stream":
                self.text[message["exec"]] = self.text.get(message["exec"], "") + message["text"]
            elif message.get("type") == "done":
                self.done[message["exec"]] = message
            self.changed.notify_all()

    def wait(self, condition, what: str, timeout: float = 60.0) -> None:
        with self.changed:
            assert self.changed.wait_for(condition, timeout), f"timed out after {timeout}s waiting for {what}"


def test_the_same_client_resumes_recording_once_the_disk_has_space(small_fs):
    path = full_disk_notebook(small_fs)
    filler = fill(small_fs)
    resumed = threading.Event()

    def on_log(entry: LogEntry) -> None:
        if "resumed" in entry.text:
            resumed.set()

    log = RunnerLog()
    log.subscribe(on_log)
    notebook = load_notebook(path)
    runner = Runner(path, notebook, log=log)
    watcher = Watcher(runner)
    try:
        exec_id = runner.execute(notebook.cells[0])
        watcher.wait(lambda: exec_id in watcher.done, "the big cell's done")
        done = watcher.done[exec_id]
        assert done["status"] == "error" and done["reason"].startswith("results store: No space left on device"), done
        assert watcher.text[exec_id] == BIG_OUTPUT
        filler.unlink()
        # No further cell runs: the client retries on its own.
        assert resumed.wait(60), "recording did not resume"
        store = ResultsStore(path)
        assert store.latest("big").status == "ok" and stored_text(store, "big") == BIG_OUTPUT
        assert_recorded_once(store, "big")
        exec_id = runner.execute(notebook.cells[1])
        watcher.wait(lambda: exec_id in watcher.done, "the small cell's done")
        assert watcher.done[exec_id]["status"] == "ok"
    finally:
        runner.detach()


# -- two clients: the recording one leaves mid-cell


LINES_AFTER = 5_000


def gated_notebook(tmp_path: Path) -> tuple[Path, int]:
    """A cell that prints, waits for the test to say go (a line on a FIFO), then prints more.
    The test holds the FIFO open for writing from the start, so the cell's open never blocks."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    writer = os.open(gate, os.O_RDWR)
    cell = f"print('before', flush=True)\nopen({str(gate)!r}).readline()\nfor i in range({LINES_AFTER}):\n    print(f'after {{i}}')\n"
    return make_notebook(tmp_path, [("c", "python", cell)]), writer


EXPECTED = "before\n" + "".join(f"after {i}\n" for i in range(LINES_AFTER))


def attach_watching_client(path: Path) -> tuple[Runner, Watcher]:
    runner = Runner(path, load_notebook(path))
    watcher = Watcher(runner)
    runner.attach_running()
    session = runner.sessions["py"]
    assert session.caught_up.wait(30), "the second client never caught up"
    assert not session.recorder.active, "the first client records, the second watches"
    return runner, watcher


def assert_finished_by_the_remaining_client(path: Path, runner: Runner, watcher: Watcher, exec_id: str) -> None:
    watcher.wait(lambda: exec_id in watcher.done, "the remaining client to see the cell end")
    assert watcher.done[exec_id]["status"] == "ok"
    store = ResultsStore(path)
    # Nobody else attaches: the remaining client alone must end the record.
    wait_until(lambda: store.latest("c").finished, "the record to be finished by the remaining client", timeout=30)
    assert runner.sessions["py"].recorder.active
    record = store.latest("c")
    assert record.status == "ok" and record.exec_id == exec_id
    assert stored_text(store, "c") == EXPECTED
    assert_recorded_once(store, "c")


def test_the_watching_client_finishes_the_record_when_the_recording_client_detaches(tmp_path):
    path, gate = gated_notebook(tmp_path)
    first = Runner(path, load_notebook(path))
    first_watcher = Watcher(first)
    second = None
    try:
        exec_id = first.execute(first.notebook.cells[0])
        first_watcher.wait(lambda: "before" in first_watcher.text.get(exec_id, ""), "the cell to start")
        assert first.sessions["py"].recorder.active
        second, second_watcher = attach_watching_client(path)
        first.detach()
        os.write(gate, b"go\n")
        assert_finished_by_the_remaining_client(path, second, second_watcher, exec_id)
    finally:
        os.close(gate)
        first.detach()
        if second is not None:
            second.detach()


def test_the_watching_client_takes_over_from_a_killed_recording_client(tmp_path):
    path, gate = gated_notebook(tmp_path)
    first = subprocess.Popen([str(Path(sys.executable).with_name("njtui")), "run", str(path), "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ.copy())
    second = None
    try:
        start = json.loads(first.stdout.readline())
        assert start["event"] == "start", start
        assert json.loads(first.stdout.readline())["text"] == "before\n"
        second, second_watcher = attach_watching_client(path)
        first.send_signal(signal.SIGKILL)
        first.wait()
        os.write(gate, b"go\n")
        assert_finished_by_the_remaining_client(path, second, second_watcher, start["exec"])
        # The count `njtui run` printed is the one the other client and the store have.
        assert start["count"] == 1
        assert second_watcher.done[start["exec"]]["count"] == ResultsStore(path).latest("c").count == 1
    finally:
        os.close(gate)
        if first.poll() is None:
            first.kill()
            first.wait()
        if second is not None:
            second.detach()


# -- execution counts: one counter per notebook, shared by every process


ALLOCATE = """
import sys
from njtui.store.results import ResultsStore
store = ResultsStore(sys.argv[1])
sys.stdin.readline()  # every process is started before any allocates
for i in range(int(sys.argv[3])):
    print(sys.argv[2] + str(i), store.execution_count(sys.argv[2] + str(i), "c1"), flush=True)
print("shared", store.execution_count("shared", "c1"), flush=True)
"""


def test_processes_counting_at_once_never_share_a_count(tmp_path):
    path = tmp_path / "nb.toml"
    processes = [subprocess.Popen([sys.executable, "-c", ALLOCATE, str(path), f"p{n}-", "40"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in range(6)]
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    given: dict[str, set[int]] = {}
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        for line in out.splitlines():
            exec_id, count = line.split()
            given.setdefault(exec_id, set()).add(int(count))
    shared = given.pop("shared")
    assert len(shared) == 1, f"one execution asked about by six processes got {sorted(shared)}"
    counts = [count for (count,) in given.values()]
    assert sorted(counts + list(shared)) == list(range(1, 242)), "each execution its own count, none skipped"
    # Asked again, later, by yet another process: the count it was given.
    assert ResultsStore(path).execution_count("p3-7") == next(iter(given["p3-7"]))


def test_counts_go_on_from_the_records_of_a_store_that_had_none(tmp_path):
    path = make_notebook(tmp_path, [("c1", "python", "1\n")])
    store = ResultsStore(path)
    for exec_id, count in (("old-a", 3), ("old-b", 9), ("old-c", 2)):
        store.begin("c1", exec_id, "py", status="running", count=count).finish(status="ok")
    fresh = ResultsStore(path)
    assert fresh.execution_count("new", "c1") == 10
    # An execution whose record has a count already keeps it (a journal replayed after an upgrade).
    assert fresh.execution_count("old-b", "c1") == 9
    assert fresh.known_count("never-started") is None


def test_the_count_log_stays_small_and_counts_keep_growing(tmp_path, monkeypatch):
    from njtui.store import results_counts

    monkeypatch.setattr(results_counts, "COUNTS_KEEP", 10)
    path = tmp_path / "nb.toml"
    store = ResultsStore(path)
    first = store.begin("c1", "first", "py", status="running", count=store.execution_count("first", "c1"))
    first.finish(status="ok")
    counts = [ResultsStore(path).execution_count(f"e{i}") for i in range(45)]
    assert counts == list(range(2, 47))
    assert len((store.root / "counts.jsonl").read_bytes().splitlines()) < 20
    # Cut from the log long ago, its record still knows it.
    assert ResultsStore(path).execution_count("first", "c1") == 1
    assert ResultsStore(path).execution_count("next", "c1") == 47


def test_counts_do_not_trust_the_count_log(tmp_path):
    path = tmp_path / "nb.toml"
    store = ResultsStore(path)
    store.root.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    # Garbage, wrong types and absurd counts are passed over; the valid line is used.
    lines = ["not json", '{"exec": "a", "count": "7"}', '{"exec": "b", "count": true}', '{"exec": "c", "count": 1099511627777}', '{"exec": "d", "count": 4}', '{"exec": "e"']
    (store.root / "counts.jsonl").write_text("\n".join(lines))
    assert store.execution_count("x") == 5
    assert ResultsStore(path).known_count("d") == 4 and ResultsStore(path).known_count("c") is None
    # A log planted as a link is not written through: the cell is counted in this process only.
    (store.root / "counts.jsonl").unlink()
    (store.root / "counts.jsonl").symlink_to(victim)
    linked = ResultsStore(path)
    assert linked.execution_count("y") == 1 and linked.execution_count("z") == 2 and linked.execution_count("y") == 1
    assert victim.read_text() == "keep me\n"


def test_a_client_attaching_after_a_cell_ended_unseen_replays_it_with_its_count(tmp_path):
    path, gate = gated_notebook(tmp_path)
    first = Runner(path, load_notebook(path))
    first_watcher = Watcher(first)
    started: list[dict] = []
    first.subscribe(lambda event: started.append(event.message) if isinstance(event, RuntimeMessage) and event.message.get("type") == "start" else None)
    second = None
    try:
        exec_id = first.execute(first.notebook.cells[0])
        first_watcher.wait(lambda: "before" in first_watcher.text.get(exec_id, ""), "the cell to start")
        first.detach()
        os.write(gate, b"go\n")
        # Nobody is attached while it ends; the next client replays the rest from the journal.
        second = Runner(path, load_notebook(path))
        second_watcher = Watcher(second)
        second.attach_running()
        second_watcher.wait(lambda: exec_id in second_watcher.done, "the replayed done")
        assert [message["count"] for message in started] == [1]
        assert second_watcher.done[exec_id]["status"] == "ok" and second_watcher.done[exec_id]["count"] == 1
        assert ResultsStore(path).latest("c").count == 1
    finally:
        os.close(gate)
        first.detach()
        if second is not None:
            second.stop_all()
            second.detach()
