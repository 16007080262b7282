"""The runner's public API: what `njtui.runner` exports, that the UI and the CLI use nothing
else of it, that importing the protocol stays cheap for the relay, and the machine-wide runtime
listing and stopping the CLI is built on."""

from __future__ import annotations

import ast
import json
import pkgutil
import queue
import subprocess
import sys
from pathlib import Path

import njtui.runner
from njtui.store import load_notebook
from tests.conftest import REPO
from tests.helpers import make_notebook

RUNNER_SUBMODULES = {module.name for module in pkgutil.iter_modules(njtui.runner.__path__)}


def test_importing_the_protocol_loads_nothing_heavy():
    # The host relay imports njtui.runner.protocol on every boot, which runs the package's
    # __init__ first: a fresh interpreter shows what that costs.
    probe = "import sys, json\nimport njtui.runner.protocol\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    heavy = {"textual", "docker", "rich", "njtui.runner.runner", "njtui.runner.backend", "njtui.store", "njtui.model"}
    assert not heavy & loaded, f"importing the protocol loaded {sorted(heavy & loaded)}"
    assert {name for name in loaded if name.startswith("njtui")} == {"njtui", "njtui.runner", "njtui.runner.protocol"}


def test_every_public_name_resolves_to_the_object_of_its_submodule():
    from njtui.runner.backend import BackendError
    from njtui.runner.events import RuntimeChanged, RuntimeMessage
    from njtui.runner.launch import CONTAINER_ONLY
    from njtui.runner.listing import RuntimeEntry, RuntimeListing, RuntimeStops
    from njtui.runner.log import LogEntry, RunnerLog
    from njtui.runner.protocol import STOPPED_MID_CELL
    from njtui.runner.runner import Runner
    from njtui.runner.state import RuntimeState, RuntimeStatus

    expected = {
        "Runner": Runner,
        "RuntimeChanged": RuntimeChanged,
        "RuntimeMessage": RuntimeMessage,
        "RuntimeEntry": RuntimeEntry,
        "RuntimeListing": RuntimeListing,
        "RuntimeStops": RuntimeStops,
        "RuntimeState": RuntimeState,
        "RuntimeStatus": RuntimeStatus,
        "LogEntry": LogEntry,
        "RunnerLog": RunnerLog,
        "RunnerError": BackendError,  # one error type, under its public name
        "STOPPED_MID_CELL": STOPPED_MID_CELL,
        "CONTAINER_ONLY": CONTAINER_ONLY,
    }
    assert sorted(njtui.runner.__all__) == sorted(expected)
    for name, value in expected.items():
        assert getattr(njtui.runner, name) is value, name
    assert set(expected) <= set(dir(njtui.runner))


def test_unknown_names_are_attribute_errors_and_submodules_still_import():
    try:
        njtui.runner.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    # `from package import submodule` falls back to importing it only on an AttributeError.
    from njtui.runner import protocol

    assert protocol.__name__ == "njtui.runner.protocol"


def _runner_submodule_imports(path: Path) -> list[str]:
    """Every import in `path` that reaches into njtui.runner's submodules, as `file:line: import`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("njtui.runner.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("njtui.runner."):
                names = [node.module]
            elif node.module == "njtui.runner":
                names = [f"njtui.runner.{alias.name}" for alias in node.names if alias.name in RUNNER_SUBMODULES]
            else:
                names = []
        else:
            names = []
        found += [f"{path.name if REPO not in path.parents else path.relative_to(REPO)}:{node.lineno}: {name}" for name in names]
    return found


def test_the_ui_and_the_cli_import_only_the_runner_package():
    sources = sorted((REPO / "njtui" / "ui").glob("*.py")) + sorted((REPO / "njtui" / "commands").glob("*.py")) + [REPO / "njtui" / "cli.py"]
    assert len(sources) > 5
    reaching = [found for path in sources for found in _runner_submodule_imports(path)]
    assert reaching == [], "import these from njtui.runner instead:\n" + "\n".join(reaching)


def test_the_import_check_sees_each_way_of_reaching_a_submodule(tmp_path):
    # The check above passes vacuously if it cannot see an import: each form it must catch.
    sample = tmp_path / "sample.py"
    sample.write_text("import njtui.runner.host\nfrom njtui.runner.backend import BackendError\nfrom njtui.runner import protocol, Runner\ndef lazy():\n    from njtui.runner.runner import Runner\n")
    found = _runner_submodule_imports(sample)
    assert [line.split(": ", 1)[1] for line in found] == ["njtui.runner.host", "njtui.runner.backend", "njtui.runner.protocol", "njtui.runner.runner"]


def test_list_and_stop_runtimes_across_notebooks(tmp_path):
    """Runner.list_runtimes asks each runtime what it does; Runner.stop_runtimes stops by key
    prefix, and the cell it stopped ends with the exported reason."""
    from njtui.runner import STOPPED_MID_CELL, Runner, RuntimeMessage

    busy_path = make_notebook(tmp_path, [("long", "python", "import time\nprint('started', flush=True)\ntime.sleep(120)\n")], name="busy.toml")
    idle_path = make_notebook(tmp_path, [("quick", "bash", "true\n")], name="idle.toml")
    runners = []
    exec_ids = []
    messages: queue.Queue = queue.Queue()
    try:
        for path in (busy_path, idle_path):
            notebook = load_notebook(path)
            runner = Runner(path, notebook)
            runner.subscribe(lambda event: messages.put(event) if isinstance(event, RuntimeMessage) else None)
            runners.append(runner)
            exec_ids.append(runner.execute(notebook.code_cells()[0]))
        seen = []
        while not ({"started\n", "done"} <= {m.get("text") or m.get("type") for m in seen}):
            seen.append(messages.get(timeout=60).message)
        listing = Runner.list_runtimes()
        assert listing.problems == [] or all(problem.startswith("docker") for problem in listing.problems)
        mine = {entry.notebook: entry for entry in listing.runtimes}
        busy, idle = mine[str(busy_path.resolve())], mine[str(idle_path.resolve())]
        assert (busy.state, busy.busy, busy.runtime, busy.backend) == ("running", True, "py", "host")
        assert (idle.state, idle.busy, idle.runtime) == ("running", False, "sh")
        assert idle.idle_for is not None and busy.pid and not busy.notebook_missing
        assert list(busy.to_dict()) == ["id", "notebook", "runtime", "backend", "environment", "language", "state", "busy", "pid", "idle_for", "uptime"]

        stops = Runner.stop_runtimes(busy.key[:6])
        assert [entry.key for entry in stops.stopped] == [busy.key] and stops.failed == []
        while True:
            message = messages.get(timeout=30).message
            if message.get("type") == "done" and message.get("exec") == exec_ids[0]:
                break
        assert message["status"] == "interrupted" and message["reason"] == STOPPED_MID_CELL
        # Other programs may have runtimes on this machine's engine: only this test's count.
        ours = {str(busy_path.resolve()), str(idle_path.resolve())}
        assert [entry.key for entry in Runner.list_runtimes(ask=False).runtimes if entry.notebook in ours] == [idle.key]
        assert Runner.stop_runtimes("no-such-runtime").stopped == []
    finally:
        for runner in runners:
            runner.detach()
