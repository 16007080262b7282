"""One owner per runtime (issue 11): 1,000 mixed operations — submissions, interrupts, restarts,
client detaches — from three threads at once across three runtimes (host Python, host Bash,
Docker Python). Per runtime, every state change must be a move the state table allows, and
every execution the runner accepted must end with exactly one `done`."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner import Runner, RuntimeChanged, RuntimeMessage
from njtui.runner.state import ALLOWED
from njtui.store import save_notebook
from tests.conftest import PYTHON_IMAGE

OPERATIONS = 1000
DRIVERS = 3
# Weights of the operations: mostly cells, some slow enough to be interrupted or cut by a restart.
WEIGHTS = {"quick": 55, "slow": 20, "interrupt": 15, "restart": 4, "detach": 6}

RUNTIMES = {
    "py": ("python", "host", "n = {i}\nprint(n)\n", "import time\nprint('slow', flush=True)\ntime.sleep(0.3)\n"),
    "sh": ("bash", "host", "echo {i}\n", "echo slow\nsleep 0.3\n"),
    "dk": ("python", PYTHON_IMAGE, "n = {i}\nprint(n)\n", "import time\nprint('slow', flush=True)\ntime.sleep(0.3)\n"),
}


class Observed:
    """Everything the runner emitted, per runtime, in the order it came."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.states: dict[str, list] = defaultdict(list)
        self.dones: Counter = Counter()
        self.done_runtime: dict[str, str] = {}
        self.messages: dict = {}

    def __call__(self, event) -> None:
        with self.lock:
            if isinstance(event, RuntimeChanged):
                self.states[event.runtime_id].append(event.status.state)
            elif isinstance(event, RuntimeMessage) and event.message.get("type") == "done":
                self.dones[event.message.get("exec")] += 1
                self.messages.setdefault(event.message.get("exec"), []).append((event.runtime_id, event.message.get("seq"), event.message.get("status"), event.message.get("reason")))
                self.done_runtime[event.message.get("exec")] = event.runtime_id
                self.lock.notify_all()

    def wait_for_dones(self, exec_ids: set[str], timeout: float) -> set[str]:
        """The executions still without a `done` after waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                missing = {exec_id for exec_id in exec_ids if not self.dones[exec_id]}
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    return missing
                self.lock.wait(remaining)


def stress_notebook(tmp_path) -> tuple:
    notebook = Notebook(title="stress")
    cells = []
    for runtime_id, (language, environment, _quick, slow) in RUNTIMES.items():
        notebook.runtimes[runtime_id] = RuntimeSpec(runtime_id, language, environment=environment, idle_timeout="10m")
        cells.append(Cell(id=f"{runtime_id}-slow", kind="code", language=language, runtime=runtime_id, source=slow))
    notebook.cells = cells
    path = tmp_path / "stress.toml"
    save_notebook(notebook, path)
    return path, notebook


@pytest.mark.slow
def test_a_thousand_mixed_operations_keep_every_runtime_consistent(docker_engine, tmp_path):
    path, notebook = stress_notebook(tmp_path)
    runner = Runner(path, notebook)
    observed = Observed()
    runner.subscribe(observed)
    accepted: dict[str, str] = {}  # exec id → runtime
    failures: list[str] = []
    guard = threading.Lock()
    names = list(WEIGHTS)
    weights = list(WEIGHTS.values())

    def operate(seed: int) -> None:
        chooser = random.Random(seed)
        for index in range(OPERATIONS // DRIVERS + (1 if seed < OPERATIONS % DRIVERS else 0)):
            runtime_id = chooser.choice(list(RUNTIMES))
            operation = chooser.choices(names, weights)[0]
            try:
                if operation in ("quick", "slow"):
                    language, _, quick, _ = RUNTIMES[runtime_id]
                    cell = notebook.cell(f"{runtime_id}-slow") if operation == "slow" else Cell(id=f"{runtime_id}-q", kind="code", language=language, runtime=runtime_id, source=quick.format(i=index))
                    exec_id = runner.execute(cell)
                    with guard:
                        accepted[exec_id] = runtime_id
                elif operation == "interrupt":
                    runner.interrupt(runtime_id)
                elif operation == "restart":
                    runner.restart(runtime_id)
                else:
                    runner.detach()
            except Exception as exc:  # noqa: BLE001 - every failure is reported below
                with guard:
                    failures.append(f"{operation} {runtime_id}: {type(exc).__name__}: {exc}")

    drivers = [threading.Thread(target=operate, args=(seed,), name=f"stress-{seed}") for seed in range(DRIVERS)]
    try:
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join()
        assert not failures, failures[:10]
        # Cells of runtimes this client detached from last finish unseen: attaching replays them.
        runner.attach_running()
        missing = observed.wait_for_dones(set(accepted), timeout=180)
        assert not missing, f"{len(missing)} of {len(accepted)} executions never got a done: {sorted((accepted[exec_id], exec_id) for exec_id in missing)[:10]}"
        with observed.lock:
            twice = {exec_id: count for exec_id, count in observed.dones.items() if exec_id in accepted and count != 1}
            assert not twice, f"executions with more than one done: {[observed.messages[e] for e in list(twice)[:6]]}"
            assert all(observed.done_runtime[exec_id] == runtime for exec_id, runtime in accepted.items())
            for runtime_id, states in observed.states.items():
                moves = [state for index, state in enumerate(states) if index == 0 or states[index - 1] != state]
                bad = [(a.value, b.value) for a, b in zip(moves, moves[1:], strict=False) if b not in ALLOWED[a]]
                assert not bad, f"runtime {runtime_id} moved {bad}"
    finally:
        runner.stop_all()
        runner.detach()
