"""Listing a big diff: njtui's changes of a runtime vs a plain `docker diff` of the same container.

A Docker runtime is booted through the njtui Runner on a throwaway notebook and creates 10,000
files (100 directories of 100) in its file system. Then, for N rounds, interleaved (the order
alternates round by round) so that machine load affects all alike, the same container's
changes are listed three ways: `runner.environments.changes("rt")` (the engine's diff, less
njtui's mounts, sorted, with the packages read from it), `njtui env diff --json` (the command
line: a new process that attaches to the running runtime and prints JSON), and the Docker SDK's
`container.diff()`. Then the runtime is saved and rewrites all 10,000 files, and the same is
timed again: after a save, njtui also reads the save's mark and asks `find` which files changed
since. Each listing is checked to hold all 10,000 files.
Target (issue 13): 10,000 changed files listed in under a second.
Usage: python bench/env_diff.py [--rounds 5] [--image njtui/python:3.11] [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Executor, remove_images, scratch_runner

MAKE = "import os\nfor d in range({dirs}):\n    os.makedirs(f'/many/{{d}}', exist_ok=True)\n    for f in range(100):\n        open(f'/many/{{d}}/{{f}}', 'w').close()\n"
REWRITE = "for d in range({dirs}):\n    for f in range(100):\n        open(f'/many/{{d}}/{{f}}', 'a').write('x')\n"


def measure(label: str, rounds: int, ways: dict, expected: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for name, way in ways.items():  # one unmeasured round each: the engine's caches warm for all
        assert way() >= expected, (label, name)
    for index in range(rounds):
        order = list(ways.items()) if index % 2 == 0 else list(reversed(ways.items()))
        for name, way in order:
            started = time.perf_counter()
            listed = way()
            samples[name].append(time.perf_counter() - started)
            assert listed >= expected, (label, name, listed)
    return samples


def report(label: str, samples: dict[str, list[float]], baseline: str) -> None:
    print(f"{label}:")
    base = statistics.median(samples[baseline])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:<34} median {median * 1000:6.0f} ms, max {max(values) * 1000:6.0f} ms over {len(values)} rounds  ({median / base:.2f}x {baseline})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image", default="njtui/python:3.11")
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    dirs = max(args.files // 100, 1)
    files = dirs * 100

    import docker

    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="njtui-bench-data-") as data_dir:
        os.environ["NJTUI_DATA_DIR"] = data_dir  # the who-uses-what records of the throwaway notebook
        with scratch_runner(environment=args.image) as (runner, notebook):
            executor = Executor(runner, notebook)
            spec = notebook.runtimes["rt"]
            done = executor.run(MAKE.format(dirs=dirs))
            assert done["status"] == "ok", done
            container = client.containers.get(runner.sessions["rt"].info.details["container"])

            def under_many(paths) -> int:
                return sum(1 for path in paths if path.startswith("/many/") and path.count("/") == 3)

            def njtui_changes() -> int:
                return under_many(change.path for change in runner.environments.changes("rt").paths)

            def njtui_cli() -> int:
                result = subprocess.run([sys.executable, "-m", "njtui", "env", "diff", str(runner.path), "rt", "--json"], capture_output=True, text=True, check=True)
                return under_many(entry["path"] for entry in json.loads(result.stdout)["paths"])

            def docker_diff() -> int:
                return under_many(item["Path"] for item in container.diff())

            ways = {"docker diff (SDK container.diff)": docker_diff, "Runner.environments.changes": njtui_changes, "njtui env diff --json (process)": njtui_cli}
            made: list[str] = []
            try:
                added = measure("added", args.rounds, ways, files)
                made.append(runner.environments.save("rt", "bench").image)
                done = executor.run(REWRITE.format(dirs=dirs))
                assert done["status"] == "ok", done
                rewritten = measure("rewritten after a save", args.rounds, ways, files)
            finally:
                remove_images(client, made)
                spec.versions.clear()
                spec.saved_version = None
    client.close()
    report(f"{files} files added since the image", added, "docker diff (SDK container.diff)")
    report(f"{files} files rewritten since a save (njtui: diff + save mark + find)", rewritten, "docker diff (SDK container.diff)")
    worst = max(statistics.median(values) for name, values in {**added, **rewritten}.items() if not name.startswith("docker"))
    print(f"slowest njtui median: {worst * 1000:.0f} ms (target < 1000 ms for 10,000 files)")


if __name__ == "__main__":
    main()
