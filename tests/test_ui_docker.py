"""The TUI with Docker runtimes: the sample mixing host and containers, and a boot that pulls."""

from __future__ import annotations

import os
import re
import shutil

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
        app.notebook_screen.action_run_all()
        code = app.notebook.code_cells()
        await wait_for(pilot, lambda: all(app.outputs.get(c.id) and app.outputs[c.id].finished for c in code), timeout=90, what="every cell")
        assert {app.outputs[c.id].status for c in code} == {"ok"}
        labels = {c.id: f"{app.notebook_screen.environment_label(c)} · {c.language}" for c in code}
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


async def test_panel_shows_downloading_with_real_bytes(docker_engine, throttled_registry, tmp_path):
    proxy = throttled_registry
    name = f"njtui-test/panel:{os.getpid()}"
    push_image_only_the_registry_has(docker_engine, PYTHON_IMAGE, f"{proxy.upstream}/{name}", megabytes=20)
    # Pulled through the throttling proxy: the download lasts until the panel has drawn it.
    reference = f"{proxy.address}/{name}"
    path = notebook_file(tmp_path, {"py": {"language": "python", "environment": reference, "default": True}}, [("c", "py", "1 + 1\n")])
    shown: list[str] = []
    bar = re.compile(r"[█░]{12} [\d.]+[kM]?B/20\.0MB")
    try:
        app = open_app(path)
        async with app.run_test(size=(120, 30)) as pilot:

            def finished() -> bool:
                return bool(app.outputs.get("c") and app.outputs["c"].finished)

            def bar_drawn_or_finished() -> bool:
                options = app.runtimes_panel.query_one("OptionList")
                if options.option_count:
                    shown.append(str(options.get_option_at_index(0).prompt))
                return any(bar.search(text) for text in shown) or finished()

            await pilot.press("ctrl+r")
            await wait_for(pilot, bar_drawn_or_finished, timeout=240, what="the panel to draw the download")
            proxy.unthrottle()
            await wait_for(pilot, finished, timeout=240, what="the cell")
            assert app.outputs["c"].status == "ok"
            downloading = [text for text in shown if "Downloading" in text]
            assert downloading, shown[:5]
            assert any(bar.search(text) for text in downloading), downloading[:3]
            app.runner.stop_all()
    finally:
        try:
            docker_engine.images.remove(reference, force=True)
        except Exception:  # noqa: BLE001
            pass
