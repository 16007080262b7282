"""Jupyter-type runtimes: what njtui's bridge costs on top of the kernel.

1. Warm execution round trip of `1+1` through njtui (a `type = "jupyter"` host runtime: Runner →
   relay → bridge agent → ipykernel and back) vs jupyter_client talking to the same kind of kernel
   (kernelspec python3) directly, both in this process, sampled alternately, median of N runs
   after a warm-up.
   Target: ratio <= 1.2.
2. `--open`: launch to first cell visible (tmux, capture-pane), of a generated 500-cell .ipynb
   with stored outputs: njtui on the notebook `njtui import` made of it vs euporie-notebook on the
   .ipynb, alternately. `--make-ipynb PATH` only writes that notebook.

Usage: python bench/jupyter_type.py [--runs 200] [--kernel python3|bash]
       python bench/jupyter_type.py --open [--runs 5] [--euporie PATH]   (needs tmux)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Executor, jupyter_execute, jupyter_kernel, median_ms, scratch_runner

CODE = {"python3": "1+1", "bash": "echo 2"}
LANGUAGE = {"python3": "python", "bash": "bash"}


def measure_round_trips(runs: int, kernel: str) -> tuple[float, float]:
    """Median ms of (njtui, jupyter_client direct), sampled alternately, so that a machine whose
    load drifts weighs on both alike."""
    with scratch_runner(language=LANGUAGE[kernel], type="jupyter", kernel=kernel) as (runner, notebook), jupyter_kernel(kernel) as client:
        executor = Executor(runner, notebook)
        for _ in range(20):
            executor.run(CODE[kernel])
            jupyter_execute(client, CODE[kernel])
        ours, theirs = [], []
        for _ in range(runs):
            started = time.perf_counter()
            executor.run(CODE[kernel])
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            jupyter_execute(client, CODE[kernel])
            theirs.append(time.perf_counter() - started)
    return median_ms(ours), median_ms(theirs)


def make_ipynb(path: Path, cells: int = 500) -> None:
    """A notebook as people have them: markdown and code cells, most with stored outputs."""
    import base64
    import io

    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    from PIL import Image

    picture = io.BytesIO()
    Image.linear_gradient("L").resize((64, 48)).save(picture, format="PNG")
    png = base64.b64encode(picture.getvalue()).decode()
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    for index in range(cells):
        if index % 5 == 0:
            notebook.cells.append(new_markdown_cell(f"## Section {index // 5}\n\nSome *prose* about step {index}."))
            continue
        outputs = [new_output("stream", name="stdout", text=f"line {line} of cell {index}\n") for line in range(3)]
        outputs.append(new_output("execute_result", data={"text/plain": str(index * 2)}, execution_count=index))
        if index % 50 == 1:
            outputs.append(new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}))
        notebook.cells.append(new_code_cell(f"for i in range(3):\n    print(f'line {{i}} of cell {index}')\n{index} * 2", execution_count=index, outputs=outputs))
    nbformat.validate(notebook)
    nbformat.write(notebook, str(path))


def measure_open(runs: int, euporie: str) -> tuple[float, float]:
    """Median seconds from launch to the first cell visible: njtui on the imported notebook,
    euporie-notebook on the .ipynb itself, alternately, in the same terminal size."""
    import shlex
    import statistics
    import subprocess
    import tempfile

    from _tmux import TmuxApp

    with tempfile.TemporaryDirectory(prefix="njtui-bench-jupyter-") as tmp:
        workdir = Path(tmp)
        ipynb = workdir / "big.ipynb"
        make_ipynb(ipynb)
        subprocess.run([sys.executable, "-m", "njtui", "import", str(ipynb)], check=True, capture_output=True)
        timings: dict[str, list[float]] = {"njtui": [], "euporie": []}
        for _ in range(runs):
            for name in timings:
                app = TmuxApp(workdir)
                try:
                    started = app.launch("big.toml") if name == "njtui" else app.launch_command(f"{shlex.quote(euporie)} {shlex.quote(str(ipynb))}")
                    timings[name].append(app.wait_for(r"Section 0") - started)
                finally:
                    app.close()
    return statistics.median(timings["njtui"]), statistics.median(timings["euporie"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--kernel", default="python3", choices=sorted(CODE))
    parser.add_argument("--make-ipynb", type=Path, help="write the 500-cell notebook of the open-time comparison there, and stop")
    parser.add_argument("--open", action="store_true", help="compare the open time of an imported 500-cell notebook with euporie-notebook's")
    parser.add_argument("--euporie", default="euporie-notebook", help="the euporie-notebook command (installed apart: pip install euporie)")
    args = parser.parse_args()
    if args.open:
        ours, theirs = measure_open(max(1, args.runs if args.runs != 200 else 5), args.euporie)
        print(f"500-cell .ipynb, first cell visible: njtui (imported) {ours * 1000:.0f} ms, euporie-notebook {theirs * 1000:.0f} ms")
        print(f"ratio njtui/euporie open time: {ours / theirs:.2f}x")
        return
    if args.make_ipynb:
        make_ipynb(args.make_ipynb)
        print(f"wrote {args.make_ipynb}")
        return
    njtui, jupyter = measure_round_trips(args.runs, args.kernel)
    print(f"jupyter_client → {args.kernel:<8} median {jupyter:.3f} ms over {args.runs} runs")
    print(f"njtui jupyter runtime    median {njtui:.3f} ms over {args.runs} runs")
    print(f"ratio njtui/jupyter_client round trip ({args.kernel}): {njtui / jupyter:.3f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
