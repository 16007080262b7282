"""The runtime settings screen: snapshots of each section, and editing for real.

For the snapshots the runner's engine facts (the images on the engine, their sizes and ages, an
image's ENV) are fixed values, so the pictures do not change with the machine that built the
images; the Pilot test below uses the real engine.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.model.settings import Mount
from njtui.runner.runner import Runner
from njtui.store import load_notebook, save_notebook
from njtui.ui.settings_screen import RuntimeSettingsScreen, inherited_variables
from tests.conftest import PYTHON_IMAGE
from tests.helpers import focus_on, freeze_ui_clock, open_app, screen_settled, steady_cursors, wait_for

NOW = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC

FIXED_IMAGES = [
    {"reference": "njtui/bash:5", "size": 117_000_000, "created": 0},
    {"reference": "njtui/python:3.11", "size": 161_000_000, "created": 0},
]


class FixedEngineRunner(Runner):
    def local_images(self, engine=None, engine_tls=None):
        return FIXED_IMAGES

    def image_env(self, environment, engine=None, engine_tls=None):
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "MPLBACKEND": "svg"} if environment != "host" else {}

    def check_environment(self, environment, engine=None, engine_tls=None):
        return "this machine" if environment == "host" else "on this engine"


def settings_notebook() -> Notebook:
    notebook = Notebook(title="settings", env={"MPLBACKEND": "pdf", "DATA": "/data"})
    notebook.runtimes["py"] = RuntimeSpec(
        "py",
        "python",
        name="Python",
        environment=PYTHON_IMAGE,
        default=True,
        machine="small",
        memory="256MB",
        env={"MPLBACKEND": "Agg"},
        secrets={"AWS_SECRET_ACCESS_KEY": "aws-prod"},
        mounts=[Mount("git", "https://example.org/org/repo.git", "/src/repo", ref="v1.2"), Mount("s3", "s3://lab/runs", "/data", read_only=False)],
    )
    notebook.runtimes["local"] = RuntimeSpec("local", "python", name="Host Python", mounts=[Mount("dir", "/srv/data", "/data")])
    notebook.cells = [Cell("a", "code", "1\n", "python")]
    return notebook


@pytest.fixture
def frozen_ui_clock(monkeypatch):
    """The screens' clocks read NOW (image ages, and the notebook behind the settings with its
    runtimes' idle times): the same picture on every machine and every run."""
    freeze_ui_clock(monkeypatch, NOW)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def settings_app(tmp_path, monkeypatch, frozen_ui_clock):
    monkeypatch.chdir(tmp_path)
    notebook = settings_notebook()
    save_notebook(notebook, Path("nb.toml"))
    from njtui.ui.app import NotebookApp

    return NotebookApp(Path("nb.toml"), notebook, FixedEngineRunner(Path("nb.toml"), notebook))


def open_tab(runtime_id: str, tab: str | None):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.notebook_screen.action_runtime_settings(runtime_id)
        await screen_settled(pilot, RuntimeSettingsScreen)
        if tab:
            pilot.app.screen.query_one("TabbedContent").active = tab
        await screen_settled(pilot, RuntimeSettingsScreen)
        steady_cursors(pilot.app)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("tab", ["tab-general", "tab-variables", "tab-secrets", "tab-mounts", "tab-machine"])
def test_settings_sections(settings_app, snap_compare, tab):
    assert snap_compare(settings_app, terminal_size=(100, 34), run_before=open_tab("py", tab))


def test_settings_of_a_host_runtime_say_what_does_not_apply(settings_app, snap_compare):
    assert snap_compare(settings_app, terminal_size=(100, 34), run_before=open_tab("local", "tab-mounts"))


def test_inherited_variables_mark_the_winner():
    rows = inherited_variables({"LANG": "C.UTF-8", "MPLBACKEND": "svg"}, {"MPLBACKEND": "pdf", "DATA": "/data"}, {"MPLBACKEND": "Agg"})
    assert ("MPLBACKEND", "Agg", "runtime", True) in rows
    assert ("MPLBACKEND", "pdf", "notebook", False) in rows and ("MPLBACKEND", "svg", "image", False) in rows
    assert ("LANG", "C.UTF-8", "image", True) in rows and ("DATA", "/data", "notebook", True) in rows


async def settings_opened(pilot) -> RuntimeSettingsScreen:
    """The selected cell's runtime's settings, opened with `e` as a person does."""
    await pilot.press("e")
    await screen_settled(pilot, RuntimeSettingsScreen)
    screen = pilot.app.screen
    assert isinstance(screen, RuntimeSettingsScreen)
    return screen


async def test_editing_settings_saves_the_notebook_and_refuses_bad_values(tmp_path):
    notebook = Notebook(runtimes={"py": RuntimeSpec("py", "python", default=True)})
    notebook.cells = [Cell("a", "code", "1\n", "python")]
    path = tmp_path / "nb.toml"
    save_notebook(notebook, path)
    app = open_app(path)
    async with app.run_test(size=(100, 34)) as pilot:
        screen = await settings_opened(pilot)
        screen.query_one("TabbedContent").active = "tab-variables"
        await pilot.pause()
        await focus_on(pilot, screen.query_one("#variable-input"))
        await pilot.press(*"GREETING=hello", "enter")
        await wait_for(pilot, lambda: screen.spec.env.get("GREETING") == "hello", what="the variable")
        screen.query_one("TabbedContent").active = "tab-machine"
        await pilot.pause()
        await focus_on(pilot, screen.query_one("#memory"))
        await pilot.press(*"lots")
        await wait_for(pilot, lambda: screen.spec.memory == "lots", what="the memory field")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "bad memory limit" in str(screen.query_one("#settings-error").content), what="the refusal")
        assert "GREETING" not in path.read_text(), "nothing saved while a value is bad"
        screen.query_one("#memory").value = "512MB"
        await wait_for(pilot, lambda: screen.spec.memory == "512MB", what="the memory field")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "512MB" in path.read_text(), what="the save")
    saved = load_notebook(path)
    assert saved.runtimes["py"].env == {"GREETING": "hello"} and saved.runtimes["py"].memory == "512MB"


@pytest.mark.docker
async def test_settings_show_restart_to_apply_and_the_real_engine(docker_engine, tmp_path):
    notebook = Notebook(runtimes={"py": RuntimeSpec("py", "python", environment=PYTHON_IMAGE, default=True)})
    notebook.cells = [Cell("a", "code", "import os\nos.environ.get('MODE')\n", "python")]
    path = tmp_path / "nb.toml"
    save_notebook(notebook, path)
    app = open_app(path)
    async with app.run_test(size=(110, 34)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.outputs.get("a") is not None and app.outputs["a"].finished, timeout=60, what="the cell")
        screen = await settings_opened(pilot)
        await wait_for(pilot, lambda: screen.query_one("#images").row_count > 0, what="the engine's images")
        assert PYTHON_IMAGE in [row.value for row in screen.query_one("#images").rows]
        await wait_for(pilot, lambda: "LANG" in screen.image_env, what="the image's ENV")
        screen.query_one("TabbedContent").active = "tab-variables"
        await pilot.pause()
        await focus_on(pilot, screen.query_one("#variable-input"))
        await pilot.press(*"MODE=new", "enter")
        await wait_for(pilot, lambda: screen.spec.env.get("MODE") == "new", what="the variable")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "restart to apply: env" in str(screen.query_one("#settings-pending").content), what="restart to apply")
        screen.query_one("TabbedContent").active = "tab-general"
        screen.query_one("#environment").value = "njtui/not-there:1"
        await wait_for(pilot, lambda: "✗" in str(screen.query_one("#environment-status").content), what="the bad reference flagged")
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, RuntimeSettingsScreen), what="the settings to close")

        def panel_text() -> str:
            return str(app.runtimes_panel.query_one("OptionList").get_option_at_index(0).prompt)

        try:
            await wait_for(pilot, lambda: "restart to apply: env" in panel_text(), what="the panel to say so")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the panel: {panel_text()!r}, pending: {app.runner.pending_changes('py')}, attached: {'py' in app.runner.sessions}, status: {app.statuses.get('py')}") from None
        await pilot.press("0", "0")
        await wait_for(pilot, lambda: app.runner.pending_changes("py") == [] and "py" in app.runner.sessions, timeout=60, what="the restart")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.outputs["a"].finished and app.outputs["a"].count == 2, timeout=60, what="the cell after restart")
        assert app.outputs["a"].visible_lines() == [("result", "Out[2]: 'new'")]  # the notebook's count goes on
        app.runner.stop_all()


async def test_a_jupyter_runtimes_settings_show_its_kernel_and_save_it_unchanged(tmp_path):
    notebook = Notebook(runtimes={"ir": RuntimeSpec("ir", "r", type="jupyter", kernel="ir", default=True)})
    notebook.cells = [Cell("a", "code", "1 + 1\n", "r")]
    path = tmp_path / "nb.toml"
    save_notebook(notebook, path)
    app = open_app(path)
    async with app.run_test(size=(100, 34)) as pilot:
        screen = await settings_opened(pilot)
        assert "Jupyter kernel ir · r" in str(screen.query_one("#runtime-type").content)
        assert not screen.query("#language")  # the kernel fixes the language
        screen.query_one("#idle_timeout").value = "5m"
        await wait_for(pilot, lambda: screen.spec.idle_timeout == "5m", what="the idle timeout")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "5m" in path.read_text(), what="the save")
    saved = load_notebook(path).runtimes["ir"]
    assert (saved.type, saved.kernel, saved.language, saved.idle_timeout) == ("jupyter", "ir", "r", "5m")


async def test_a_machine_type_unknown_here_is_shown_and_can_be_replaced(tmp_path):
    notebook = Notebook(runtimes={"py": RuntimeSpec("py", "python", environment="njtui/python:3.11", machine="gpu-large", default=True)})
    notebook.cells = [Cell("a", "code", "1\n", "python")]
    path = tmp_path / "nb.toml"
    save_notebook(notebook, path)
    app = open_app(path)
    async with app.run_test(size=(100, 34)) as pilot:
        screen = await settings_opened(pilot)
        select = screen.query_one("#machine")
        assert select.value == "gpu-large"
        assert any("gpu-large  (not defined on this machine" in str(prompt) for prompt, _ in select._options)
        select.value = "small"
        await wait_for(pilot, lambda: screen.spec.machine == "small", what="the new machine type")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: 'machine = "small"' in path.read_text(), what="the save")
