"""Keypress to screen change while a cell streams 200,000 lines, against the same with nothing running.

The real `njtui` runs in tmux. Three one-line cells sit above a cell that prints 200,000 lines
(paced over a few seconds so many keypresses land while it streams). Each sample sends `j` or
`k` (moving the selection between the top cells) and polls capture-pane until those cells'
rows change. Target: median < 100 ms while streaming.
Usage: python bench/keypress_latency.py [--samples 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tmux import TmuxApp

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import save_notebook

FLOOD = """import time
for i in range(200_000):
    print('streamed line', i)
    if i % 400 == 0:
        time.sleep(0.01)
"""
TOP_ROWS = 9  # the three small cells
NOTEBOOK_COLUMNS = 60


def top_region(app: TmuxApp) -> str:
    text = subprocess.run([*app.base, "capture-pane", "-e", "-p", "-t", "b", "-S", "0", "-E", str(TOP_ROWS - 1)], capture_output=True, text=True).stdout
    return "\n".join(line[: NOTEBOOK_COLUMNS * 12] for line in text.splitlines())


def sample(app: TmuxApp, key: str, timeout: float = 5.0) -> float:
    before = top_region(app)
    started = time.perf_counter()
    app.keys(key)
    while time.perf_counter() - started < timeout:
        if top_region(app) != before:
            return time.perf_counter() - started
    raise TimeoutError(f"the screen did not change within {timeout}s of {key!r}")


def run(workdir: Path, samples: int, streaming: bool, flood_running) -> list[float]:
    app = TmuxApp(workdir, width=100, height=40)
    try:
        app.launch("keys.toml")
        app.wait_for(r"top_1")
        time.sleep(0.5)  # the app is drawn a moment before it takes keys
        if streaming:
            app.keys("G", "C-r")
            app.wait_for(r"streamed line \d+")
            app.keys("g")
            time.sleep(0.3)
        latencies = []
        for index in range(samples):
            if streaming and not flood_running(app):
                break
            latencies.append(sample(app, "j" if index % 2 == 0 else "k"))
            time.sleep(0.05)
        return latencies
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="njtui-bench-keys-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("NJTUI_RUNTIME_DIR", str(workdir / "rt"))
        notebook = Notebook(title="keys", runtimes={"py": RuntimeSpec("py", "python", default=True)})
        notebook.cells = [Cell(f"top{i}", "code", f"top_{i} = {i}\n", "python") for i in (1, 2, 3)]
        notebook.cells.append(Cell("flood", "code", FLOOD, "python"))
        save_notebook(notebook, workdir / "keys.toml")

        def flood_running(app: TmuxApp) -> bool:
            return "✓ ok" not in app.screen()

        idle = run(workdir, args.samples, False, flood_running)
        streaming = run(workdir, args.samples, True, flood_running)
        subprocess.run([sys.executable, "-m", "njtui", "runtimes", "stop", "--all"], capture_output=True)
    idle_ms, streaming_ms = statistics.median(idle) * 1000, statistics.median(streaming) * 1000
    print(f"idle:      median {idle_ms:.1f} ms, max {max(idle) * 1000:.1f} ms over {len(idle)} keypresses")
    print(f"streaming: median {streaming_ms:.1f} ms, max {max(streaming) * 1000:.1f} ms over {len(streaming)} keypresses while 200,000 lines streamed")
    print(f"keypress latency while streaming: {streaming_ms:.1f} ms median (target < 100 ms)")
    print(f"ratio keypress latency streaming/idle: {streaming_ms / idle_ms:.2f}x")


if __name__ == "__main__":
    main()
