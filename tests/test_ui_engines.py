"""Runtimes on other engines, as the UI shows them: where each runs in the runtimes panel, the
Engine field of the settings screen, and a Swarm runtime waiting for a node.

Nothing here boots a runtime: the statuses are set on the app as a runner would report them
(as in test_ui_snapshots.py), and the runner is the real one except where it would ask an
engine: the engines these runtimes name are the test cluster's, which these tests do not need.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.geometry import Region

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.model.settings import Mount
from njtui.runner.runner import Runner
from njtui.runner.state import RuntimeState, RuntimeStatus
from njtui.store import load_notebook, save_notebook
from njtui.ui.panels import runtime_row, where_it_runs
from njtui.ui.settings_screen import SWARM_MACHINE_HINT, RuntimeSettingsScreen
from tests.helpers import focus_on, freeze_ui_clock, screen_settled, steady_cursors, wait_for

NOW = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC
WAITING = "Waiting for a node: no suitable node (insufficient resources on 3 nodes)"


class UnaskedEnginesRunner(Runner):
    """The real runner, less what would reach an engine: attaching at start (nothing of these
    notebooks runs) and the settings screen's facts about images (fixed, as in test_ui_settings)."""

    def attach_running(self) -> None:
        return None

    def local_images(self, engine=None, engine_tls=None):
        return [{"reference": "njtui/bash:5", "size": 117_000_000, "created": 0}, {"reference": "njtui/python:3.11", "size": 161_000_000, "created": 0}]

    def image_env(self, environment, engine=None, engine_tls=None):
        return {"PATH": "/usr/local/bin:/usr/bin:/bin"} if environment != "host" else {}

    def check_environment(self, environment, engine=None, engine_tls=None):
        return "this machine" if environment == "host" else "on this engine"


def engines_notebook() -> Notebook:
    notebook = Notebook(title="Engines")
    runtimes = [
        RuntimeSpec("sh", "bash", name="Bash", environment="njtui/bash:5", default=True, engine="njtui-node2", mounts=[Mount("dir", "/srv/data", "/data")]),
        RuntimeSpec("gpu", "python", name="Trainer", environment="njtui/python:3.11", default=True, engine="swarm:njtui-node1", machine="gpu", mounts=[Mount("dir", "/scratch", "/scratch")]),
        RuntimeSpec("big", "python", name="Too big", environment="njtui/python:3.11", engine="swarm:njtui-node1", machine="gpu", gpus=8),
        RuntimeSpec("tls", "python", name="Node 3", environment="njtui/python:3.11", engine="tcp://10.213.0.3:2376", engine_tls="/etc/njtui/tls/node3"),
        # An engine on a host runtime is ignored: it runs here.
        RuntimeSpec("local", "python", name="Host Python", engine="njtui-node2"),
    ]
    notebook.runtimes = {spec.id: spec for spec in runtimes}
    notebook.cells = [Cell(f"c-{spec.id}", "code", "true\n" if spec.language == "bash" else "1\n", spec.language, runtime=spec.id) for spec in runtimes]
    return notebook


STATUSES = {
    "sh": RuntimeStatus(RuntimeState.RUNNING, idle_since=NOW - 30, backend="docker"),
    "gpu": RuntimeStatus(RuntimeState.BOOTING, phase="Starting", progress={"node": "njtui-node3"}, backend="swarm"),
    "big": RuntimeStatus(RuntimeState.BOOTING, phase=WAITING, backend="swarm"),
    "tls": RuntimeStatus(RuntimeState.ERROR, reason="engine tcp://10.213.0.3:2376 did not answer: connection refused"),
    "local": RuntimeStatus(RuntimeState.RUNNING, busy=True, backend="host"),
}


@pytest.fixture
def engines_app(tmp_path, monkeypatch):
    freeze_ui_clock(monkeypatch, NOW)
    monkeypatch.chdir(tmp_path)
    notebook = engines_notebook()
    save_notebook(notebook, Path("engines.toml"))
    from njtui.ui.app import NotebookApp

    yield NotebookApp(Path("engines.toml"), notebook, UnaskedEnginesRunner(Path("engines.toml"), notebook))
    monkeypatch.undo()
    time.tzset()


async def show_statuses(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, app.notebook_screen.loaded.is_set, what="the notebook to load")
    app.statuses.update(STATUSES)
    app.notebook_screen.show_runtimes()
    app.runner_log_panel.entries.clear()  # what opening logged, with today's times
    app.runner_log_panel.set_filter(None)
    await pilot.pause()


def panel_lines(app) -> list[str]:
    options = app.runtimes_panel.query_one("OptionList")
    return [strip.text.rstrip() for strip in options.render_lines(Region(0, 0, options.size.width, options.virtual_size.height))]


def test_the_panel_shows_where_each_runtime_runs(engines_app, snap_compare):
    assert snap_compare(engines_app, terminal_size=(120, 44), run_before=show_statuses)


async def test_a_runtime_waiting_for_a_node_says_why_in_yellow(engines_app):
    async with engines_app.run_test(size=(120, 44)) as pilot:
        await show_statuses(pilot)
        prompt = engines_app.runtimes_panel.query_one("OptionList").get_option("big").prompt
        reason = "no suitable node (insufficient resources on 3 nodes)"
        start = prompt.plain.index(reason)
        assert prompt.plain.startswith("● Too big (big) Waiting for a node\n"), prompt.plain
        assert [str(span.style) for span in prompt.spans if span.start <= start < span.end] == ["yellow"]
        # Drawn whole, however narrow the panel: wrapped, never cut off.
        drawn = " ".join(" ".join(panel_lines(engines_app)).split())
        assert "Too big (big) Waiting for a node" in drawn and reason in drawn, "\n".join(panel_lines(engines_app))
        assert "njtui/python:3.11 · python · 1 cell on njtui-node3 of Swarm njtui-node1" in drawn


def test_where_it_runs_in_words():
    assert where_it_runs(None) is None and where_it_runs(None, "njtui-node3") is None
    assert where_it_runs("gpu-box") == "on gpu-box"
    assert where_it_runs("ssh://me@gpu-box") == "on ssh://me@gpu-box"
    assert where_it_runs("swarm:njtui-node1") == "on Swarm njtui-node1"
    assert where_it_runs("swarm:tcp://10.213.0.1:2376", "njtui-node3") == "on njtui-node3 of Swarm tcp://10.213.0.1:2376"
    # Running on a Swarm: the node it landed on, from its details, stays on the row.
    row = runtime_row("gpu", "Trainer", "njtui/python:3.11", "python", 1, RuntimeStatus(RuntimeState.RUNNING), where=where_it_runs("swarm:njtui-node1", "njtui-node3"))
    assert row.plain == "● Trainer (gpu) running\n  njtui/python:3.11 · python · 1 cell\n  on njtui-node3 of Swarm njtui-node1"
    default = runtime_row("py", "Python", "njtui/python:3.11", "python", 2, RuntimeStatus(RuntimeState.RUNNING))
    assert default.plain == "● Python (py) running\n  njtui/python:3.11 · python · 2 cells", "the default engine looks as before"


def open_settings(runtime_id: str, tab: str):
    async def run_before(pilot):
        await show_statuses(pilot)
        pilot.app.notebook_screen.action_runtime_settings(runtime_id)
        await screen_settled(pilot, RuntimeSettingsScreen)
        pilot.app.screen.query_one("TabbedContent").active = tab
        await screen_settled(pilot, RuntimeSettingsScreen)
        steady_cursors(pilot.app)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize(
    ("runtime_id", "tab"),
    [
        ("sh", "tab-machine"),  # a Docker context: the Engine field and its verdict
        ("sh", "tab-mounts"),  # its dir mount is on that engine's machine
        ("gpu", "tab-machine"),  # a Swarm: machine types are node labels, typed
        ("gpu", "tab-mounts"),  # a Swarm's dir mount: on the node it lands on
        ("tls", "tab-machine"),  # a tcp:// engine: its TLS directory
        ("local", "tab-machine"),  # a host runtime: the engine does not apply
    ],
)
def test_settings_show_the_engine(engines_app, snap_compare, runtime_id, tab):
    assert snap_compare(engines_app, terminal_size=(100, 34), run_before=open_settings(runtime_id, tab))


async def test_the_settings_say_what_an_engine_changes(engines_app):
    async with engines_app.run_test(size=(100, 34)) as pilot:
        await show_statuses(pilot)
        engines_app.notebook_screen.action_runtime_settings("gpu")
        await screen_settled(pilot, RuntimeSettingsScreen)
        screen = pilot.app.screen
        screen.query_one("TabbedContent").active = "tab-machine"
        await pilot.pause()
        assert str(screen.query_one("#swarm-machine-hint").content) == SWARM_MACHINE_HINT
        assert screen.query_one("#swarm-machine").display and not screen.query_one("#machine").display
        assert screen.query_one("#swarm-machine").value == "gpu"
        assert "dir mounts name a directory on the Swarm node the runtime lands on (Swarm njtui-node1)" in str(screen.query_one("#mount-engine-note").content)

        # Off the Swarm: this machine's presets again, the label kept as a choice until another is picked.
        screen.query_one("#engine").value = "njtui-node2"
        await wait_for(pilot, lambda: screen.query_one("#machine").display, what="the machine presets")
        assert not screen.query_one("#swarm-machine-hint").display and screen.query_one("#machine").value == "gpu"
        assert "directory on the machine of engine njtui-node2, not on this one" in str(screen.query_one("#mount-engine-note").content)

        # A tcp:// engine asks for its TLS directory, which another engine drops.
        assert not screen.query_one("#engine-tls-row").display
        screen.query_one("#engine").value = "tcp://10.213.0.3:2376"
        await wait_for(pilot, lambda: screen.query_one("#engine-tls-row").display, what="the TLS field")
        screen.query_one("#engine_tls").value = "/etc/njtui/tls/node3"
        await wait_for(pilot, lambda: screen.spec.engine_tls == "/etc/njtui/tls/node3", what="the TLS directory")
        screen.query_one("#engine").value = "unix:///run/other.sock"
        await wait_for(pilot, lambda: not screen.query_one("#engine-tls-row").display, what="the TLS field to go")
        assert screen.spec.engine_tls is None

        # Empty: the default engine, and a dir mount is this machine's again.
        screen.query_one("#engine").value = ""
        await wait_for(pilot, lambda: screen.spec.engine is None, what="the default engine")
        assert "default Docker engine" in str(screen.query_one("#engine-setting-status").content)
        assert not screen.query_one("#mount-engine-note").display


NOTEBOOK_TEXT = """\
njtui = 1
title = "engines"

# The lab's shell: moved to the big box once it is set up.
[runtimes.sh]
name = "Bash"
language = "bash"
environment = "njtui/bash:5"  # the image every node has
default = true

[[cells]]
id = "a"
kind = "code"
language = "bash"
source = \"\"\"
echo hi
\"\"\"
"""


async def test_an_engine_is_checked_as_typed_and_saved_into_the_file(tmp_path):
    from njtui.ui.app import NotebookApp

    path = tmp_path / "nb.toml"
    path.write_text(NOTEBOOK_TEXT)
    notebook = load_notebook(path)
    app = NotebookApp(path, notebook, UnaskedEnginesRunner(path, notebook))
    async with app.run_test(size=(100, 34)) as pilot:
        await pilot.press("e")
        await screen_settled(pilot, RuntimeSettingsScreen)
        screen = app.screen
        assert isinstance(screen, RuntimeSettingsScreen)
        screen.query_one("TabbedContent").active = "tab-machine"
        await pilot.pause()
        engine = screen.query_one("#engine")
        await focus_on(pilot, engine)
        await pilot.press(*"ftp://x")
        status = screen.query_one("#engine-setting-status")
        await wait_for(pilot, lambda: "✗ engine 'ftp://x' has scheme 'ftp', which is not one of ssh, tcp, unix" in str(status.content), what="the engine flagged")
        assert engine.has_class("-invalid")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "not saved: engine 'ftp://x'" in str(screen.query_one("#settings-error").content), what="the refusal")
        assert path.read_text() == NOTEBOOK_TEXT, "nothing saved while the engine is bad"

        await pilot.press(*["backspace"] * len("ftp://x"), *"njtui-node2")
        await wait_for(pilot, lambda: "✓ its container runs on the engine of Docker context njtui-node2" in str(status.content), what="the engine accepted")
        assert not engine.has_class("-invalid")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: path.read_text() != NOTEBOOK_TEXT, what="the save")
    # The one key added, at the end of its table; the comments and the rest as they were.
    assert path.read_text() == NOTEBOOK_TEXT.replace("default = true\n", 'default = true\nengine = "njtui-node2"\n')
    assert load_notebook(path).runtimes["sh"].engine == "njtui-node2"
