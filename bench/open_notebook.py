"""Launch to first cell visible, for generated notebooks of 50, 500 and 5,000 cells.

The real `njtui` runs in tmux; the clock stops when capture-pane first shows the first cell's
source. Targets: 500 cells < 1 s; 5,000/50 ratio <= 2. Also prints the app's peak RSS.
Usage: python bench/open_notebook.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tmux import TmuxApp, peak_rss_mb

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import save_notebook

SIZES = (50, 500, 5000)


def generate(path: Path, cells: int) -> None:
    notebook = Notebook(title=f"{cells} cells", runtimes={"py": RuntimeSpec("py", "python", default=True)})
    for index in range(cells):
        if index % 5 == 0:
            notebook.cells.append(Cell(f"m{index:05d}", "markdown", f"## Section {index}\n\nSome prose about step {index}.\n"))
        else:
            notebook.cells.append(Cell(f"c{index:05d}", "code", f"value_{index} = {index} * 2\nprint('cell {index}', value_{index})\n", "python"))
    notebook.cells[0] = Cell("first", "code", "first_cell_marker = 1\n", "python")
    save_notebook(notebook, path)


def measure(workdir: Path, cells: int, runs: int) -> tuple[float, float]:
    path = workdir / f"nb{cells}.toml"
    generate(path, cells)
    times, rss = [], 0.0
    for _ in range(runs):
        app = TmuxApp(workdir)
        try:
            started = app.launch(path.name)
            seen = app.wait_for(r"first_cell_marker = 1")
            times.append(seen - started)
            rss = max(rss, peak_rss_mb(app.app_pid()))
        finally:
            app.close()
    return statistics.median(times), rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="njtui-bench-open-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("NJTUI_RUNTIME_DIR", str(workdir / "rt"))
        results = {}
        for cells in SIZES:
            seconds, rss = measure(workdir, cells, args.runs)
            results[cells] = seconds
            print(f"{cells:>5} cells: first cell visible after {seconds * 1000:.0f} ms (median of {args.runs}), peak RSS {rss:.0f} MB")
    print(f"500 cells open in {results[500]:.2f} s (target < 1 s)")
    print(f"ratio open time 5000/50 cells: {results[5000] / results[50]:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
