"""Snapshots of the full-output pager (pytest-textual-snapshot): colours drawn as styles, a
progress bar as one line, stderr in the cell's colours, and a search with its current match.
Regenerate after an intended change: `pytest tests/test_pager_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from njtui.store.results import ResultsStore
from njtui.ui.pager import PagerScreen
from tests.helpers import screen_settled
from tests.test_pager import PagerApp

NOW = 1_764_000_000.0


def training_output(tmp_path) -> PagerScreen:
    store = ResultsStore(tmp_path / "nb.toml")
    writer = store.begin("train", "e", "gpu", count=3, status="running", started_at=NOW - 5)
    messages = [("stdout", "\x1b[1mTraining\x1b[0m on \x1b[36mcuda:0\x1b[0m\x1b]0;owned\x07\n")]
    for epoch in range(40):
        messages.append(("stderr", "".join(f"\repoch {epoch} {'█' * (step // 10):<10}| {step}%" for step in range(0, 101, 25)) + "\n"))
        colour = "32" if epoch % 7 else "31"
        messages.append(("stdout", f"epoch {epoch} \x1b[{colour}mloss {1 / (epoch + 1):.3f}\x1b[0m\tacc {epoch / 40:.2f}\x1b[8A\n"))
    messages.append(("stdout", "a long line " + "=" * 120 + " its end\n"))
    for seq, (name, text) in enumerate(messages, start=1):
        writer.add({"seq": seq, "exec": "e", "type": "stream", "t": NOW, "name": name, "text": text})
    writer.finish(status="ok", ended_at=NOW, duration=5.0)
    return PagerScreen(store, store.latest("train"), "Output of cell train · [3]")


def test_pager_searching(tmp_path, snap_compare):
    app = PagerApp(training_output(tmp_path))

    async def searching(pilot):
        await screen_settled(pilot, PagerScreen)
        await pilot.press("/", *"loss 0.1", "enter", "n")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=searching)


def test_pager_wrapped(tmp_path, snap_compare):
    app = PagerApp(training_output(tmp_path))

    async def wrapped(pilot):
        await screen_settled(pilot, PagerScreen)
        await pilot.press("G", "w")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=wrapped)
