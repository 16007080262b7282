"""The TUI with Docker runtimes: the sample mixing host and containers, and a boot that pulls."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from njtui.runner.state import RuntimeState
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE, SAMPLES
from tests.helpers import open_app, push_image_only_the_registry_has, wait_for
from tests.test_docker_runtime import notebook_file

pytestmark = pytest.mark.docker


async def test_docker_sample_in_the_tui(docker_engine, tmp_path):
    sample = tmp_path / "docker-tour.toml"
    shutil.copy(SAMPLES / "docker-tour.toml", sample)
    app = open_app(sample)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.action_run_all()
        code = app.notebook.code_cells()
        await wait_for(pilot, lambda: all(app.outputs.get(c.id) and app.outputs[c.id].finished for c in code), timeout=90, what="every cell")
        assert {app.outputs[c.id].status for c in code} == {"ok"}
        labels = {c.id: f"{app.environment_label(c)} · {c.language}" for c in code}
        assert set(labels.values()) == {"host · python", f"{PYTHON_IMAGE} · python", f"{BASH_IMAGE} · bash"}
        for cell in code:
            app.view.select(app.notebook.cells.index(cell))
            await pilot.pause()
            assert app.view.widget_at(app.view.selected).border_subtitle == labels[cell.id]
        assert all(app.statuses[r].state == RuntimeState.RUNNING for r in app.notebook.runtimes)
        files = app.outputs["c1"].files
        assert [f["name"] for f in files] == ["hello.txt"], "the /results file is listed under the cell"
        await pilot.press("ctrl+p", *"stop all runtimes and quit", "enter")
        await wait_for(pilot, lambda: not app.is_running, timeout=30, what="stop all and quit")


async def test_panel_shows_downloading_with_real_bytes(docker_engine, loopback_registry, tmp_path):
    reference = f"{loopback_registry}/njtui-test/panel:{os.getpid()}"
    push_image_only_the_registry_has(docker_engine, PYTHON_IMAGE, reference, megabytes=40)
    path = notebook_file(tmp_path, {"py": {"language": "python", "environment": reference, "default": True}}, [("c", "py", "1 + 1\n")])
    shown: list[str] = []
    try:
        app = open_app(path)
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.press("ctrl+r")
            deadline = time.monotonic() + 90
            while not (app.outputs.get("c") and app.outputs["c"].finished) and time.monotonic() < deadline:
                options = app.runtimes_panel.query_one("OptionList")
                if options.option_count:
                    shown.append(str(options.get_option_at_index(0).prompt))
                await pilot.pause(0.02)
            assert app.outputs["c"].status == "ok"
            downloading = [text for text in shown if "Downloading" in text]
            assert downloading, shown[:5]
            assert any(re.search(r"[█░]{12} [\d.]+[kM]?B/40\.0MB", text) for text in downloading), downloading[:3]
            app.runner.stop_all()
    finally:
        try:
            docker_engine.images.remove(reference, force=True)
        except Exception:  # noqa: BLE001
            pass
