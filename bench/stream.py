"""A cell printing 10 MB to stdout: throughput of njtui's runtime vs jupyter_client + ipykernel.

Both measured in this process; each side consumes every stream message as a client does (counts
its characters) and keeps none of it, so peak RSS shows that the client's memory stays bounded.
Target: ratio >= 3x. Usage: python bench/stream.py [--megabytes 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Executor, jupyter_execute, jupyter_kernel, peak_rss_mb, scratch_runner

LINE = "x" * 98  # + "\n" = 99 bytes a line, as a print loop of log lines


def cell_code(megabytes: int) -> str:
    lines = megabytes * 1_000_000 // (len(LINE) + 1)
    return f"for _ in range({lines}):\n    print({LINE!r})\n"


def expected_chars(megabytes: int) -> int:
    return megabytes * 1_000_000 // (len(LINE) + 1) * (len(LINE) + 1)


class StreamedChars:
    """Counts the characters a cell streams, as a runner's `on_message`."""

    def __init__(self) -> None:
        self.received = 0

    def __call__(self, message: dict) -> None:
        if message["type"] == "stream":
            self.received += len(message["text"])


def measure_njtui(megabytes: int, runs: int, environment: str) -> float:
    code, expected = cell_code(megabytes), expected_chars(megabytes)
    with scratch_runner(environment=environment) as (runner, notebook):
        executor = Executor(runner, notebook)
        executor.run("1+1")  # boot outside the measurement
        seconds = []
        for _ in range(runs):
            count = StreamedChars()
            started = time.perf_counter()
            executor.run(code, on_message=count)
            seconds.append(time.perf_counter() - started)
            if count.received != expected:
                raise SystemExit(f"njtui delivered {count.received} of {expected} characters")
    return statistics.median(seconds)


def measure_jupyter(megabytes: int, runs: int) -> float:
    code, expected = cell_code(megabytes), expected_chars(megabytes)
    with jupyter_kernel() as client:
        jupyter_execute(client, "1+1")
        seconds = []
        for _ in range(runs):
            received = 0

            def count(text: str) -> None:
                nonlocal received
                received += len(text)

            started = time.perf_counter()
            jupyter_execute(client, code, on_stream=count)
            seconds.append(time.perf_counter() - started)
            if received != expected:
                raise SystemExit(f"ipykernel delivered {received} of {expected} characters")
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--environment", default="host", help='"host" or an image for a Docker runtime')
    args = parser.parse_args()
    mb = args.megabytes
    jupyter = measure_jupyter(mb, args.runs)
    rss_after_jupyter = peak_rss_mb()
    njtui = measure_njtui(mb, args.runs, args.environment)
    print(f"jupyter_client+ipykernel  {mb} MB in {jupyter:.3f} s = {mb / jupyter:.1f} MB/s (median of {args.runs})")
    print(f"njtui {args.environment:<19} {mb} MB in {njtui:.3f} s = {mb / njtui:.1f} MB/s (median of {args.runs})")
    print(f"client peak RSS: {rss_after_jupyter:.0f} MB after Jupyter runs, {peak_rss_mb():.0f} MB after njtui runs")
    print(f"ratio njtui/jupyter stream throughput ({args.environment}): {jupyter / njtui:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
