"""Environments in the TUI: the diff screen, the versions list, the settings screen's
provenance (snapshots, from fixed data), and saving and resetting a real Docker runtime.

The snapshots are fed fixed EnvironmentChanges, VersionRow lists and a notebook whose versions
have fixed ids and dates, and a runner whose environment facts are fixed values: the pictures
do not depend on the engine or the machine. The Pilot tests at the end use the real engine.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList

from njtui.model import Cell, EnvironmentImport, Notebook, RuntimeSpec, SavedVersion, environment_repository
from njtui.runner import EnvironmentChanges, LineageStep, PackageChange, PathChange, RuntimeState, RuntimeStatus, VersionRow
from njtui.store import load_notebook, save_notebook
from njtui.ui.environment_screens import TRANSIENT_NOTE, EnvironmentDiffScreen, MessageScreen, VersionsScreen, progress_words
from njtui.ui.keys import help_sections, palette_commands
from njtui.ui.panels import runtime_row
from njtui.ui.screens import ConfirmScreen
from njtui.ui.settings_screen import RuntimeSettingsScreen
from tests.conftest import BASH_IMAGE
from tests.helpers import focus_on, freeze_ui_clock, listed_images, open_app, screen_settled, steady_cursors, stop_own_runtimes, wait_for
from tests.test_ui_settings import FixedEngineRunner

NOW = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC
SIZE = (100, 34)

TOOLS_V1 = SavedVersion(1, "sha256:" + "1a" * 32, "njtui-env/nb-tools:1", BASH_IMAGE, "sha256:" + "0b" * 32, "2025-11-20T10:00:00Z", "installed ripgrep", host="lab-engine", size=12_300_000)
TOOLS_V2 = SavedVersion(
    2,
    "sha256:" + "2c" * 32,
    "njtui-env/nb-tools:2",
    "v1",
    "sha256:" + "1a" * 32,
    "2025-11-22T09:30:00Z",
    "added jq and a config",
    host="lab-engine",
    size=3_400_000,
    digest="localhost:5000/team/nb-tools@sha256:" + "d4" * 32,
)


def fixed_changes() -> EnvironmentChanges:
    paths = [
        PathChange("/etc/ld.so.cache", "C"),
        PathChange("/etc/ripgreprc", "A"),
        PathChange("/tmp/old-build.log", "D"),
        PathChange("/usr/bin/rg", "A"),
        PathChange("/usr/lib/python3/dist-packages/requests-2.32.3.dist-info/METADATA", "A"),
        PathChange("/usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA", "D"),
        PathChange("/usr/share/doc/ripgrep/copyright", "A"),
        PathChange("/var/lib/dpkg/status", "C"),
    ]
    packages = [
        PackageChange("dpkg", "ripgrep", None, "13.0.0-4"),
        PackageChange("python", "requests", "2.31.0", "2.32.3"),
        PackageChange("python", "six", "1.16.0", None),
    ]
    return EnvironmentChanges(runtime="tools", since="tools v2", paths=paths, packages=packages)


def fixed_rows() -> list[VersionRow]:
    return [
        VersionRow("tools", 1, TOOLS_V1.saved_at, TOOLS_V1.message, TOOLS_V1.size, TOOLS_V1.image, None, "this engine", []),
        VersionRow("tools", 2, TOOLS_V2.saved_at, TOOLS_V2.message, TOOLS_V2.size, TOOLS_V2.image, TOOLS_V2.digest, "this engine", ["tools (boots from it)", "py (imports it)"], boots=True),
        VersionRow("tools", 3, "2025-11-23T18:05:00Z", "tried a newer jq\x1b[31m (broke)", 800_000, "sha256:" + "3e" * 32, None, "not here", []),
    ]


class FixedEnvironments:
    """What the runner would say of environments, fixed."""

    def newest_source_version(self, runtime_id):
        return 3 if runtime_id == "py" else None

    def source_notebook(self, runtime_id):
        return "/projects/base/base.toml" if runtime_id == "py" else None

    def lineage(self, runtime_id):
        top = [LineageStep("nb.toml: py v1", "sha256:" + "5f" * 32, how="saved")] if runtime_id == "py" else []
        return [*top, LineageStep("base.toml: tools v2", TOOLS_V2.image, TOOLS_V2.digest, how="saved"), LineageStep(BASH_IMAGE, "sha256:" + "0b" * 32, how="image")]

    def inherited_env(self, runtime_id):
        return [
            (BASH_IMAGE, {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}),
            ("base.toml: tools v2", {"RIPGREP_CONFIG_PATH": "/etc/ripgreprc", "LANG": "en_GB.UTF-8"}),
            ("notebook [env]", {}),
            ("runtime py", {}),
        ]


def provenance_notebook() -> Notebook:
    notebook = Notebook(title="environments", env={"DATA": "/data"})
    notebook.runtimes["tools"] = RuntimeSpec("tools", "bash", name="Tools", environment=BASH_IMAGE, default=True, saved_version=2, versions=[TOOLS_V1, TOOLS_V2])
    pinned = EnvironmentImport(runtime="tools", version=2, notebook="../base/base.toml", image=TOOLS_V2.image, digest=TOOLS_V2.digest)
    notebook.runtimes["py"] = RuntimeSpec("py", "python", name="Python", environment=pinned, default=True, env={"LANG": "C"})
    notebook.cells = [Cell("a", "code", "rg --version\n", "bash"), Cell("b", "code", "import requests\n", "python")]
    return notebook


@pytest.fixture
def env_app(tmp_path, monkeypatch):
    freeze_ui_clock(monkeypatch, NOW)
    monkeypatch.chdir(tmp_path)
    notebook = provenance_notebook()
    save_notebook(notebook, Path("nb.toml"))
    from njtui.ui.app import NotebookApp

    runner = FixedEngineRunner(Path("nb.toml"), notebook)
    runner.environments = FixedEnvironments()  # type: ignore[assignment]
    yield NotebookApp(Path("nb.toml"), notebook, runner)
    monkeypatch.undo()
    time.tzset()


def showing(make_screen, screen_type):
    async def run_before(pilot):
        await pilot.pause()
        await pilot.app.push_screen(make_screen(pilot.app))
        await screen_settled(pilot, screen_type)
        steady_cursors(pilot.app)
        await pilot.pause()

    return run_before


def test_diff_screen(env_app, snap_compare):
    make = lambda app: EnvironmentDiffScreen(fixed_changes(), "Tools (tools)")  # noqa: E731
    assert snap_compare(env_app, terminal_size=SIZE, run_before=showing(make, EnvironmentDiffScreen))


def test_versions_list(env_app, snap_compare):
    make = lambda app: VersionsScreen("tools", BASH_IMAGE, fixed_rows(), app.notebook_screen)  # noqa: E731
    assert snap_compare(env_app, terminal_size=SIZE, run_before=showing(make, VersionsScreen))


def settings_of(runtime_id: str, tab: str):
    async def run_before(pilot):
        await pilot.pause()
        pilot.app.notebook_screen.action_runtime_settings(runtime_id)
        await screen_settled(pilot, RuntimeSettingsScreen)
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.facts is not None, what="the provenance facts")
        screen.query_one("TabbedContent").active = tab
        await screen_settled(pilot, RuntimeSettingsScreen)
        steady_cursors(pilot.app)
        await pilot.pause()

    return run_before


def test_settings_provenance_of_an_import(env_app, snap_compare):
    assert snap_compare(env_app, terminal_size=SIZE, run_before=settings_of("py", "tab-general"))


def test_settings_provenance_of_a_saved_version(env_app, snap_compare):
    assert snap_compare(env_app, terminal_size=SIZE, run_before=settings_of("tools", "tab-general"))


def test_settings_show_the_variables_each_level_sets(env_app, snap_compare):
    assert snap_compare(env_app, terminal_size=SIZE, run_before=settings_of("py", "tab-variables"))


# -- without the engine


async def test_ten_thousand_paths_are_all_listed(env_app):
    # How fast is measured in bench/env_diff.py, never asserted here (the project's rule).
    changes = EnvironmentChanges("tools", "tools v2", [PathChange(f"/usr/lib/node_modules/pkg{n // 100}/file{n}.js", "A") for n in range(10_000)])
    async with env_app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await env_app.push_screen(EnvironmentDiffScreen(changes, "Tools (tools)"))
        await screen_settled(pilot, EnvironmentDiffScreen)
        paths = env_app.screen.query_one("#diff-paths", DataTable)
        assert paths.row_count == 10_000
        assert env_app.screen.query_one("#diff-groups", DataTable).row_count == 1
        await pilot.press("ctrl+end")
        await pilot.pause()
        assert paths.cursor_row == 9_999


def test_untrusted_text_is_drawn_not_obeyed():
    words = progress_words("Uploading", {"done": 3_100_000, "total": 12_000_000})
    assert words == "Uploading 3.1/12.0 MB"
    row = runtime_row("tools", "Tools", "tools v2", "bash", 1, RuntimeStatus(RuntimeState.RUNNING), changed="2 paths since \x1b]0;pwned\x07tools v2", working=None)
    assert "\x1b" not in row.plain and "Δ changed" in row.plain and "lost on restart unless saved" in row.plain
    assert "transient" in TRANSIENT_NOTE.lower()


async def test_keys_are_in_help_and_the_palette(env_app):
    async with env_app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = env_app.notebook_screen
        names = [command.name for command in palette_commands(screen)]
        for words in ("save environment of Tools (tools)", "environment changes of Tools (tools)", "environment versions of Tools (tools)", "reset environment of Tools (tools)"):
            assert f"environment: {words}" in names
        assert "cell: save runtime's environment" in names
        panel_keys = dict(next(rows for title, rows in help_sections(env_app, screen) if title.startswith("Runtimes panel")))
        assert panel_keys["S"] == "save environment" and panel_keys["X"] == "reset environment"


# -- the real engine


def _remove_saved_images(client, repository: str) -> None:
    for image in listed_images(client, name=repository):
        for tag in image["RepoTags"] or []:
            try:
                client.images.remove(tag, force=True)
            except Exception:  # noqa: BLE001 - gone already
                pass


@pytest.mark.docker
async def test_save_and_reset_from_the_tui(docker_engine, tmp_path):
    notebook = Notebook(title="env")
    notebook.runtimes["tools"] = RuntimeSpec("tools", "bash", name="Tools", environment=BASH_IMAGE, default=True)
    notebook.cells = [
        Cell("a", "code", "echo kept > /opt/kept.txt\n", "bash"),
        Cell("b", "code", "echo lost > /opt/lost.txt\n", "bash"),
        Cell("c", "code", "cat /opt/kept.txt; test -e /opt/lost.txt && echo still-there || echo gone\n", "bash"),
    ]
    # A stem of its own: saved versions are tagged by notebook stem and runtime on the shared
    # engine, and the numbers count on from any tag already there.
    path = tmp_path / f"envtui-{uuid.uuid4().hex[:12]}.toml"
    save_notebook(notebook, path)
    repository = environment_repository(path.stem, "tools")
    app = open_app(path)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.notebook_screen

            def panel_text() -> str:
                options = app.runtimes_panel.query_one(OptionList)
                return str(options.get_option_at_index(0).prompt) if options.option_count else ""

            async def run(cell_id: str, count: int) -> None:
                await focus_on(pilot, app.view, "the cells")  # ctrl+r runs the selected cell from there
                app.view.select(app.notebook.cells.index(next(c for c in app.notebook.cells if c.id == cell_id)))
                await pilot.press("ctrl+r")
                await wait_for(pilot, lambda: app.outputs.get(cell_id) is not None and app.outputs[cell_id].finished and app.outputs[cell_id].count == count, timeout=120, what=f"cell {cell_id}")
                assert app.outputs[cell_id].status == "ok", app.outputs[cell_id].visible_lines()

            await run("a", 1)
            await wait_for(pilot, lambda: "Δ changed" in panel_text(), timeout=60, what="the Δ mark")
            assert "lost on restart unless saved" in panel_text()

            # Save with the panel's key: the message modal, then the notebook file gains the version.
            await focus_on(pilot, app.runtimes_panel.query_one(OptionList))
            await pilot.press("S")
            await wait_for(pilot, lambda: isinstance(app.screen, MessageScreen), what="the message modal")
            await pilot.press(*"kept file", "enter")
            await wait_for(pilot, lambda: "[[runtimes.tools.versions]]" in path.read_text(), timeout=120, what="the saved version in the file")
            await wait_for(pilot, lambda: not screen.env_work and "Δ changed" not in panel_text(), timeout=60, what="the mark to go")
            saved = load_notebook(path).runtimes["tools"]
            assert [(v.version, v.message) for v in saved.versions] == [(1, "kept file")] and saved.saved_version == 1

            # More changes, then reset with the panel's key: the confirmation names what is lost.
            await run("b", 2)
            await wait_for(pilot, lambda: "Δ changed" in panel_text(), timeout=60, what="the Δ mark again")
            await focus_on(pilot, app.runtimes_panel.query_one(OptionList))
            await pilot.press("X")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=60, what="the reset confirmation")
            assert "1 changed path (1 added)" in app.screen.question and "memory" in app.screen.question
            await pilot.press("y")
            await wait_for(pilot, lambda: not screen.env_work and app.statuses["tools"].state == RuntimeState.RUNNING, timeout=120, what="the fresh runtime")
            await run("c", 3)
            lines = [text for _, text in app.outputs["c"].visible_lines()]
            assert "kept" in lines and "gone" in lines, lines
            assert "Δ changed" not in panel_text()
            app.runner.stop_all()
    finally:
        stop_own_runtimes(tmp_path)
        _remove_saved_images(docker_engine, repository)
