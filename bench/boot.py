"""Boot to first result: an njtui Docker runtime vs a bare container through the SDK.

njtui: a stopped runtime with environment IMAGE, from `execute` of `1+1` to its result (create
the container, upload the agent, start, attach, run). Baseline, in the same process: the Docker
SDK's `containers.run(IMAGE, sleep)` plus one `exec_run(["python3", "-c", "print(1+1)"])`, then
removal. Both with the image already on the engine. Target: ratio <= 1.3.
Usage: python bench/boot.py [--runs 10] [--image njtui/python:3.11]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Executor, scratch_runner


def measure_docker_run(image: str, runs: int) -> list[float]:
    import docker

    client = docker.from_env()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        container = client.containers.run(image, ["sleep", "infinity"], detach=True, init=True)
        result = container.exec_run(["python3", "-c", "print(1+1)"])
        assert result.output.strip() == b"2", result
        samples.append(time.perf_counter() - started)
        container.remove(force=True)
    return samples


def measure_njtui(image: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        with scratch_runner(environment=image) as (runner, notebook):
            executor = Executor(runner, notebook)
            started = time.perf_counter()
            done = executor.run("1+1")
            samples.append(time.perf_counter() - started)
            assert done["status"] == "ok", done
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--image", default="njtui/python:3.11")
    args = parser.parse_args()
    measure_docker_run(args.image, 1)  # warm the engine's caches for both sides
    measure_njtui(args.image, 1)
    baseline = statistics.median(measure_docker_run(args.image, args.runs))
    njtui = statistics.median(measure_njtui(args.image, args.runs))
    print(f"docker SDK run + exec   median {baseline * 1000:.0f} ms over {args.runs} runs")
    print(f"njtui runtime boot      median {njtui * 1000:.0f} ms over {args.runs} runs (to the result of 1+1)")
    print(f"ratio njtui boot / docker run+exec: {njtui / baseline:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
