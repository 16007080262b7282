"""Rich outputs (MIME bundles) drawn in cells and the pager: Markdown, HTML tables, JSON, PNG,
JPEG, SVG, coloured tracebacks, update_display across cells, clear_output(wait=True), and an
imported execution's mark. Outputs come as they do in use: stored in the notebook's results
store before the app opens (loaded as a notebook opened later is), or sent through the runner's
own event path while it runs. Pictures are half blocks here (no graphics terminal in tests).
Regenerate the snapshot after an intended change: `pytest tests/test_ui_rich_outputs.py --snapshot-update`.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from njtui.runner import RuntimeMessage
from njtui.store.results import ResultsStore
from njtui.ui import graphics
from njtui.ui.cell_output import CellOutput
from njtui.ui.pager import PagerScreen
from tests.helpers import freeze_ui_clock, make_notebook, open_app, screen_settled, wait_for

NOW = 1_764_000_000.0
SIZE = (100, 70)


@pytest.fixture(autouse=True)
def frozen_ui_clock(monkeypatch):
    freeze_ui_clock(monkeypatch, NOW)
    yield
    monkeypatch.undo()
    time.tzset()


def picture(fmt: str, size: tuple[int, int] = (40, 20)) -> str:
    """Base64 of a two-colour picture: red left half, blue right half."""
    image = Image.new("RGB", size, (220, 40, 40))
    ImageDraw.Draw(image).rectangle((size[0] // 2, 0, size[0], size[1]), fill=(40, 80, 220))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="60" height="20"><rect width="60" height="20" fill="#20a040"/><circle cx="30" cy="10" r="8" fill="#f0e020"/></svg>'
TABLE_HTML = "<table><thead><tr><th>name</th><th>score</th></tr></thead><tbody><tr><td>ada</td><td>0.93</td></tr><tr><td>grace</td><td>0.88</td></tr></tbody></table><script>alert('never shown')</script>"
TRACEBACK = "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)\nCell \x1b[0;32mIn[7], line 1\x1b[0m\n\x1b[0;31mZeroDivisionError\x1b[0m: division by zero\x1b]0;owned\x07"


def every_kind() -> list[dict]:
    return [
        {"type": "start", "count": 7, "meta": {"cell": "rich"}},
        {"type": "stream", "name": "stdout", "text": "\x1b[1;32mstarting\x1b[0m\n"},
        {"type": "display", "data": {"text/markdown": "# Results\n\n- **bold** item\n- `code` item", "text/plain": "<Markdown>"}, "metadata": {}, "display_id": None},
        {"type": "display", "data": {"text/html": TABLE_HTML, "text/plain": "DataFrame"}, "metadata": {}, "display_id": None},
        {"type": "display", "data": {"application/json": {"model": "tiny", "layers": [1, 2], "ok": True}, "text/plain": "{...}"}, "metadata": {}, "display_id": None},
        {"type": "display", "data": {"image/png": picture("PNG"), "text/plain": "<Figure png>"}, "metadata": {}, "display_id": None},
        {"type": "display", "data": {"image/jpeg": picture("JPEG"), "text/plain": "<Figure jpeg>"}, "metadata": {}, "display_id": None},
        {"type": "display", "data": {"image/svg+xml": SVG, "text/plain": "<SVG>"}, "metadata": {}, "display_id": None},
        {"type": "display", "data": {"text/plain": "progress 0%"}, "metadata": {}, "display_id": "bar"},
        {"type": "update_display", "data": {"text/plain": "progress 100%"}, "metadata": {}, "display_id": "bar"},
        {"type": "result", "count": 7, "data": {"text/latex": "$\\alpha^2$", "text/plain": "alpha**2"}, "metadata": {}},
        {"type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": TRACEBACK},
        {"type": "done", "status": "error", "count": 7, "duration": 0.25},
    ]


def store_execution(path: Path, cell_id: str, exec_id: str, messages: list[dict], **fields) -> None:
    """An execution written to the notebook's results store, as the recorder (or `njtui import`) writes it."""
    store = ResultsStore(path)
    writer = store.begin(cell_id, exec_id, "py", count=7, status="running", started_at=NOW - 1, **fields)
    for seq, message in enumerate(messages, start=1):
        writer.add({"seq": seq, "exec": exec_id, "t": NOW - 1 + seq / 100, **message})
    writer.finish(status=messages[-1].get("status", "ok"), ended_at=NOW, duration=0.25)


def rich_notebook(tmp_path: Path) -> Path:
    path = make_notebook(tmp_path, [("rich", "python", "show_everything()\n"), ("later", "python", "1 + 1\n")])
    store_execution(path, "rich", "e-rich", every_kind(), extra={"imported": True})
    return path


def stored_output_drawn(app):
    """A snapshot's run_before: the cell "rich"'s stored execution loaded and drawn, the runner
    log (its times differ from run to run) empty."""

    async def drawn(pilot):
        await wait_for(pilot, lambda: app.notebook_screen.loaded.is_set() and app.outputs.get("rich") is not None and app.outputs["rich"].finished, what="the stored output")
        app.runner_log_panel.entries.clear()
        app.runner_log_panel.set_filter(None)
        app.view.refresh_all()
        await pilot.pause()

    return drawn


def test_every_mime_type_in_a_cell(tmp_path, monkeypatch, snap_compare):
    monkeypatch.chdir(tmp_path)
    app = open_app(rich_notebook(tmp_path))

    assert snap_compare(app, terminal_size=SIZE, run_before=stored_output_drawn(app))


def shown_text(output: CellOutput) -> str:
    from rich.console import Console

    from njtui.model import Cell
    from njtui.ui.cell import CellWidget

    widget = CellWidget(Cell("x", "code", "", "python"), output, "host")
    console = Console(width=100, color_system=None, file=io.StringIO())
    with console.capture() as capture:
        console.print(widget._output_renderable())
    return capture.get()


async def test_a_stored_execution_renders_as_it_did_live(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    live = CellOutput()
    live.begin("e-rich", None)
    for seq, message in enumerate(every_kind(), start=1):
        live.apply({"seq": seq, "exec": "e-rich", "t": NOW - 1 + seq / 100, **message})
    app = open_app(rich_notebook(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.outputs.get("rich") is not None and app.outputs["rich"].finished, what="the stored output")
        stored = app.outputs["rich"]
        assert stored.imported and "imported" in app.view.widgets["rich"].border_title
        text = shown_text(stored)
        assert text == shown_text(live)
    assert "Results" in text and "# Results" not in text  # a heading, drawn
    assert "grace" in text and "never shown" not in text  # the table, not the script
    assert '"model": "tiny"' in text and "▀" in text and "progress 100%" in text and "progress 0%" not in text
    assert "Out[7]:" in text and "$\\alpha^2$" in text
    assert "owned" not in text  # the title sequence went; the traceback's colours stay (the snapshot shows them)


def emit(app, cell_id: str, exec_id: str, *messages: dict) -> None:
    """Messages of an execution, through the runner's own event path (as a runtime's arrive)."""
    for message in messages:
        app.runner._emit(RuntimeMessage("py", {"exec": exec_id, "t": time.time(), "meta": {"cell": cell_id}, **message}))


async def test_update_display_reaches_every_cell_and_clear_output_waits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = make_notebook(tmp_path, [("a", "python", "h = display('0%', display_id=True)\n"), ("b", "python", "h.update('50%')\n"), ("c", "python", "loop()\n")])
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.notebook_screen.loaded.is_set(), what="the notebook")
        emit(app, "a", "ea", {"seq": 1, "type": "start", "count": 1}, {"seq": 2, "type": "display", "data": {"text/plain": "progress 0%"}, "metadata": {}, "display_id": "shared"}, {"seq": 3, "type": "done", "status": "ok", "duration": 0.1})
        await wait_for(pilot, lambda: "progress 0%" in shown_text(app.outputs["a"]), what="the display")
        emit(app, "b", "eb", {"seq": 4, "type": "start", "count": 2}, {"seq": 5, "type": "update_display", "data": {"text/markdown": "**progress 50%**", "text/plain": "progress 50%"}, "metadata": {}, "display_id": "shared"})
        await wait_for(pilot, lambda: "progress 50%" in shown_text(app.outputs["a"]), what="the update in the other cell")
        widget_a = app.view.widgets["a"]
        await wait_for(pilot, lambda: widget_a._shown_generation is not None and widget_a._shown_generation[0] == app.outputs["a"].generation, what="cell a redrawn")
        assert "progress" not in shown_text(app.outputs["b"])  # an update shows nothing where it comes

        emit(app, "c", "ec", {"seq": 6, "type": "start", "count": 3}, {"seq": 7, "type": "stream", "name": "stdout", "text": "step 1\n"}, {"seq": 8, "type": "clear_output", "wait": True})
        await wait_for(pilot, lambda: app.outputs["c"].clear_pending, what="the clear_output")
        assert "step 1" in shown_text(app.outputs["c"])  # still there until the next output
        emit(app, "c", "ec", {"seq": 9, "type": "stream", "name": "stdout", "text": "step 2\n"}, {"seq": 10, "type": "clear_output", "wait": False}, {"seq": 11, "type": "display", "data": {"text/plain": "final"}, "metadata": {}, "display_id": None})
        await wait_for(pilot, lambda: "final" in shown_text(app.outputs["c"]), what="the last display")
        assert "step" not in shown_text(app.outputs["c"])


async def test_a_display_loaded_before_its_update_shows_the_update(tmp_path, monkeypatch):
    """Cells load in notebook order; the update, run later in an earlier cell, still applies."""
    monkeypatch.chdir(tmp_path)
    path = make_notebook(tmp_path, [("upd", "python", "h.update(2)\n"), ("shown", "python", "h = display(1)\n")])
    store_execution(path, "shown", "e1", [{"type": "display", "data": {"text/plain": "version one"}, "metadata": {}, "display_id": "late"}, {"type": "done", "status": "ok"}])
    store = ResultsStore(path)
    writer = store.begin("upd", "e2", "py", count=2, status="running", started_at=NOW)
    writer.add({"seq": 1, "exec": "e2", "t": NOW + 5, "type": "update_display", "data": {"text/plain": "version two"}, "metadata": {}, "display_id": "late"})
    writer.finish(status="ok", ended_at=NOW + 6, duration=1.0)
    app = open_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.outputs.get("shown") is not None and app.outputs["shown"].finished, what="the stored outputs")
        assert "version two" in shown_text(app.outputs["shown"])


async def test_the_pager_shows_every_part_of_every_bundle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = open_app(rich_notebook(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.outputs.get("rich") is not None and app.outputs["rich"].finished, what="the stored output")
        await pilot.press("o")
        await screen_settled(pilot, PagerScreen)
        pager = app.screen
        assert isinstance(pager, PagerScreen)
        await wait_for(pilot, lambda: not pager.reading, what="the pager to read the store")
        plain = [line.plain for line in pager.view.lines]
        labels = [line for line in plain if line.startswith("── ")]
        for mime in ("text/markdown", "text/html", "application/json", "image/png", "image/jpeg", "image/svg+xml", "text/latex"):
            assert any(mime in label for label in labels), (mime, labels)
        assert sum("text/plain" in label for label in labels) == 9  # every bundle's text too, the update's included
        assert any("update_display bar" in label for label in labels)
        assert "# Results" in plain and any(line.strip() == "Results" for line in plain)  # the source, and as drawn
        assert sum("▀" in line for line in plain) >= 3 * 5  # three pictures, drawn
        assert "progress 0%" in plain and "progress 100%" in plain  # nothing hidden: the first version too
        assert any("ZeroDivisionError: division by zero" in line for line in plain)
        assert not any("\x1b]" in line.line for line in pager.view.lines)


def test_graphics_are_decided_from_the_setting_and_the_environment():
    assert graphics.resolve("blocks", {"TERM": "xterm-kitty"}).protocol == "blocks"
    assert graphics.resolve("kitty", {}).protocol == "kitty"
    assert graphics.resolve(None, {"TERM": "xterm-kitty"}, ask_terminal=False).protocol == "kitty"
    assert graphics.resolve("auto", {"KITTY_WINDOW_ID": "3", "TERM": "xterm-256color"}, ask_terminal=False).protocol == "kitty"
    assert graphics.resolve("auto", {"TERM_PROGRAM": "WezTerm"}, ask_terminal=False).protocol == "sixel"
    assert graphics.resolve("auto", {"TERM_PROGRAM": "ghostty"}, ask_terminal=False).protocol == "kitty"
    assert graphics.resolve("auto", {"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-0/default,1,0"}, ask_terminal=False).protocol == "blocks"
    assert graphics.resolve("auto", {"TERM": "xterm-256color"}, ask_terminal=False).protocol == "blocks"
    assert graphics.resolve("holograms", {}).protocol == "blocks"
    # pytest's standard streams are no terminal: nothing is asked.
    assert graphics.query_sixel() is False
    decided = graphics.prepare("kitty", {"NJTUI_GRAPHICS": "blocks"})
    assert decided.protocol == "blocks" and graphics.protocol() == "blocks"  # the variable wins over the config


def test_kitty_transmission_is_chunked_quiet_and_wrapped_for_tmux():
    from njtui.ui.kitty import DIACRITICS, PLACEHOLDER, placeholder_rows, transmission

    png = bytes(range(256)) * 40  # 10,240 bytes: three chunks of base64
    sent = transmission(png, 0x123456, 20, 5)
    sequences = sent.split("\x1b\\")[:-1]
    assert len(sequences) == 4 and sequences[0].startswith("\x1b_Ga=T,U=1,f=100,q=2,i=1193046,c=20,r=5,m=1;")
    assert [sequence.split(";", 1)[0][3:] for sequence in sequences[1:]] == ["q=2,m=1", "q=2,m=1", "q=2,m=0"]
    assert base64.b64decode("".join(sequence.split(";", 1)[1] for sequence in sequences)) == png
    wrapped = transmission(b"x", 7, 1, 1, through_tmux=True)
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b_G") and wrapped.endswith("\x1b\x1b\\\x1b\\")
    rows = placeholder_rows(7, 3, 2)
    assert rows == [PLACEHOLDER + DIACRITICS[0] + DIACRITICS[0] + PLACEHOLDER * 2, PLACEHOLDER + DIACRITICS[1] + DIACRITICS[0] + PLACEHOLDER * 2]


def test_the_graphics_decision_follows_the_setting_then_the_terminal(monkeypatch):
    from njtui.ui import graphics

    assert graphics.resolve("blocks", {"TERM": "xterm-kitty"}).protocol == "blocks"
    assert graphics.resolve(None, {"TERM": "xterm-kitty"}, ask_terminal=False).protocol == "kitty"
    assert graphics.resolve("kitty", {"TMUX": "/tmp/x,1,0"}).through_tmux
    monkeypatch.setattr(graphics, "tmux_passes_kitty", lambda: False)
    assert graphics.resolve(None, {"TMUX": "/tmp/x,1,0", "TERM": "tmux-256color"}, ask_terminal=False).protocol == "blocks"


def test_an_svg_output_never_draws_a_file_of_this_machine(tmp_path):
    """resvg would follow <image href="/path">: an output from someone else's notebook must not
    read (and show) a local file; an inline (data:) picture still draws."""
    from njtui.ui.rich_output import svg_png

    local = tmp_path / "secret.png"
    Image.new("RGB", (10, 10), (255, 0, 0)).save(local)
    inline = "data:image/png;base64," + picture("PNG", (10, 10))
    for reference, wanted in ((str(local), (0, 0, 255)), (f"file://{local}", (0, 0, 255)), (inline, (220, 40, 40))):
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10"><rect width="10" height="10" fill="blue"/><image xlink:href="{reference}" href="{reference}" width="10" height="10"/></svg>'
        drawn = Image.open(io.BytesIO(svg_png(svg))).convert("RGB")
        assert drawn.getpixel((1, 1)) == wanted, reference


ONE_KIND = {
    "markdown": {"type": "display", "data": {"text/markdown": "# Results\n\n- **bold** item\n- `code` item", "text/plain": "<Markdown>"}, "metadata": {}, "display_id": None},
    "html-table": {"type": "display", "data": {"text/html": TABLE_HTML, "text/plain": "DataFrame"}, "metadata": {}, "display_id": None},
    "json": {"type": "result", "count": 7, "data": {"application/json": {"model": "tiny", "layers": [1, 2], "ok": True}, "text/plain": "{...}"}, "metadata": {}},
    "png": {"type": "display", "data": {"image/png": picture("PNG"), "text/plain": "<Figure png>"}, "metadata": {}, "display_id": None},
    "jpeg": {"type": "display", "data": {"image/jpeg": picture("JPEG"), "text/plain": "<Figure jpeg>"}, "metadata": {}, "display_id": None},
    "svg": {"type": "display", "data": {"image/svg+xml": SVG, "text/plain": "<SVG>"}, "metadata": {}, "display_id": None},
    "latex": {"type": "result", "count": 7, "data": {"text/latex": "$\\alpha^2$", "text/plain": "alpha**2"}, "metadata": {}},
    "plain": {"type": "result", "count": 7, "data": {"text/plain": "Counter({'a': 3, 'b': 1})"}, "metadata": {}},
    "error": {"type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": TRACEBACK},
}


@pytest.mark.parametrize("kind", sorted(ONE_KIND))
def test_a_cell_with_one_mime_type(kind, tmp_path, monkeypatch, snap_compare):
    monkeypatch.chdir(tmp_path)
    path = make_notebook(tmp_path, [("rich", "python", f"show_{kind.replace('-', '_')}()\n")])
    failed = kind == "error"
    messages = [{"type": "start", "count": 7, "meta": {"cell": "rich"}}, ONE_KIND[kind], {"type": "done", "status": "error" if failed else "ok", "count": 7, "duration": 0.25}]
    store_execution(path, "rich", "e-rich", messages)
    app = open_app(path)

    assert snap_compare(app, terminal_size=(100, 30), run_before=stored_output_drawn(app))
