"""Saving an environment vs a plain `docker commit` of the same container.

A Docker runtime is booted through the njtui Runner on a throwaway notebook and writes 1 MB of
random bytes into its file system. Then, for N rounds, the same container is saved both ways,
interleaved (the order alternates round by round) so that machine load affects both alike:
`runner.environments.save(...)` (read the last save's mark, next version number, commit,
inspect, record the use; the diff that marks what it took follows in the background, waited
for outside the timing) and the Docker SDK's `client.api.commit(container_id)`
(pause, commit, unpause). Between rounds the runtime rewrites the 1 MB, so each save has 1 MB
of new data. Every image made is removed as the round ends. The per-step breakdown times the
save's steps by wrapping them in this process (njtui's code is not changed).
Target: median save <= 1.5x median commit.
Usage: python bench/env_save.py [--rounds 10] [--image njtui/python:3.11] [--megabytes 1]
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Executor, remove_images, scratch_runner

WRITE = "import os\nwith open('/var/tmp/bench-1mb.bin', 'wb') as f:\n    f.write(os.urandom({size}))\n"


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


class StepTimer:
    """Times named steps of a save by wrapping the functions that do them."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = collections.defaultdict(list)
        self._undo: list = []

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.samples[label].append(time.perf_counter() - started)

        setattr(owner, name, timed)
        self._undo.append((owner, name, original, name in vars(owner)))

    def restore(self) -> None:
        for owner, name, original, own in reversed(self._undo):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._undo.clear()


STEPS = (
    "container lookup (inspect)",
    "read mark (host file)",
    "next version (images list)",
    "engine.commit (all)",
    "  of which: image inspects",
    "  of which: docker commit",
    "diff (container.diff; background)",
    "write mark (host file; background)",
    "engine name (docker info)",
    "record use (uses file)",
)


def instrument(timer: StepTimer, client) -> None:
    from docker.models.images import ImageCollection

    from njtui.runner import docker_environments as engine
    from njtui.runner import environments

    timer.wrap(environments.Environments, "_container", "container lookup (inspect)")
    timer.wrap(engine, "read_mark", "read mark (host file)")
    timer.wrap(environments.Environments, "_next_version", "next version (images list)")
    timer.wrap(engine, "commit", "engine.commit (all)")
    timer.wrap(client.api, "commit", "  of which: docker commit")
    timer.wrap(ImageCollection, "get", "  of which: image inspects")
    timer.wrap(engine, "container_changes", "diff (container.diff; background)")
    timer.wrap(engine, "write_mark", "write mark (host file; background)")
    timer.wrap(engine, "engine_name", "engine name (docker info)")
    timer.wrap(environments, "record_use", "record use (uses file)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--image", default="njtui/python:3.11")
    parser.add_argument("--megabytes", type=float, default=1.0)
    args = parser.parse_args()

    import docker

    baseline_client = docker.from_env()
    size = int(args.megabytes * 1_000_000)
    saves: list[float] = []
    commits: list[float] = []
    settles: list[float] = []
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="njtui-bench-data-") as data_dir:
        os.environ["NJTUI_DATA_DIR"] = data_dir  # the who-uses-what records of the throwaway notebook
        with scratch_runner(environment=args.image) as (runner, notebook):
            executor = Executor(runner, notebook)
            spec = notebook.runtimes["rt"]

            def rewrite() -> None:
                done = executor.run(WRITE.format(size=size))
                assert done["status"] == "ok", done

            def save() -> str:
                started = time.perf_counter()
                saved = runner.environments.save("rt", "bench")
                saves.append(time.perf_counter() - started)
                # The version is usable once save returns; what it recorded for "changed since
                # this save" (the engine's diff) is still being taken. Waited for here, outside
                # the timing, so that it does not overlap the next measurement of either side.
                started = time.perf_counter()
                runner.environments.settle()
                settles.append(time.perf_counter() - started)
                return saved.image

            def commit() -> str:
                container_id = runner.sessions["rt"].info.details["container"]
                started = time.perf_counter()
                result = baseline_client.api.commit(container_id)
                commits.append(time.perf_counter() - started)
                return result["Id"]

            made: list[str] = []
            try:
                rewrite()
                # One unmeasured round of each: the engine's caches warm for both sides.
                made += [save(), commit()]
                saves.clear()
                commits.clear()
                for image in made:
                    baseline_client.api.remove_image(image, force=True)
                made.clear()
                instrument(timer, runner.backend_for(spec).client)
                for index in range(args.rounds):
                    rewrite()
                    made += [save(), commit()] if index % 2 == 0 else [commit(), save()]
                    for image in made:
                        baseline_client.api.remove_image(image, force=True)
                    made.clear()
            finally:
                timer.restore()
                remove_images(baseline_client, made)
                spec.versions.clear()
                spec.saved_version = None
    baseline_client.close()

    save_median, commit_median = statistics.median(saves), statistics.median(commits)
    print(f"docker commit (SDK)     median {save_ms(commit_median)}, p90 {save_ms(p90(commits))} over {len(commits)} rounds")
    print(f"njtui env save          median {save_ms(save_median)}, p90 {save_ms(p90(saves))} over {len(saves)} rounds ({args.megabytes:g} MB changed each)")
    print("njtui env save, by step, in the order it takes them (median of each step over the rounds):")
    accounted = 0.0
    for label in STEPS:
        samples = timer.samples.get(label, [])
        if not samples:
            continue
        per_save = len(samples) / max(len(saves), 1)
        count = f" (x{per_save:g} per save)" if per_save != 1 else ""
        print(f"  {label:<30} {save_ms(statistics.median(samples))}{count}")
        if not label.startswith(" "):
            accounted += sum(samples) / max(len(saves), 1)
    print(f"  {'the rest (lock, model, log)':<30} {save_ms(max(statistics.mean(saves) - accounted, 0.0))} (mean)")
    print(f"after each save, its record for 'changed since' took a further {save_ms(statistics.median(settles))} (median, in the background)")
    print(f"ratio env save / docker commit: {save_median / commit_median:.2f}x (target <= 1.5x)")


def save_ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


if __name__ == "__main__":
    main()
