"""Warm round trip of `1+1`: njtui's host Python runtime vs jupyter_client + ipykernel.

Both measured in this process, median of N runs after a warm-up. Target: ratio <= 0.2.
Usage: python bench/exec_latency.py [--runs 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Executor, jupyter_execute, jupyter_kernel, median_ms, scratch_runner


def measure_njtui(runs: int, environment: str = "host") -> float:
    with scratch_runner(environment=environment) as (runner, notebook):
        executor = Executor(runner, notebook)
        for _ in range(20):
            executor.run("1+1")
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            executor.run("1+1")
            samples.append(time.perf_counter() - started)
    return median_ms(samples)


def measure_jupyter(runs: int) -> float:
    with jupyter_kernel() as client:
        for _ in range(20):
            jupyter_execute(client, "1+1")
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            jupyter_execute(client, "1+1")
            samples.append(time.perf_counter() - started)
    return median_ms(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--environment", default="host", help='"host" or an image for a Docker runtime')
    args = parser.parse_args()
    jupyter = measure_jupyter(args.runs)
    njtui = measure_njtui(args.runs, args.environment)
    print(f"jupyter_client+ipykernel  median {jupyter:.3f} ms over {args.runs} runs")
    print(f"njtui {args.environment:<19} median {njtui:.3f} ms over {args.runs} runs")
    print(f"ratio njtui/jupyter exec latency ({args.environment}): {njtui / jupyter:.3f}x (target <= 0.2x)")


if __name__ == "__main__":
    main()
