"""Runtimes on other machines: a tcp:// engine and a Swarm service vs the machine's own engine.

Against the three-node Swarm of `scripts/cluster up` (node3: a dockerd in a network namespace of
its own, reached over tcp:// with TLS). All in this process, through njtui's Runner, A and B
interleaved (the order flipped every round) so that a busy machine weighs on both alike:
1. exec round trip of `1+1` in a warm Python runtime: the tcp engine vs the local engine;
2. a cell printing 10 MB (as bench/stream.py): the tcp engine vs the local engine;
3. boot to the result of `1+1`, cold each round: a Swarm service vs a local container.
Figures are printed, never asserted; the issue wants the remote round trip under 2x local.
Everything it started is stopped at the end, on Ctrl-C too.
Usage: python bench/remote.py [--runs 200] [--stream-runs 5] [--boot-runs 10] [--machine small]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream import StreamedChars, cell_code, expected_chars

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner import Runner, RuntimeMessage
from njtui.runner.docker_container import LABEL_NOTEBOOK
from njtui.store import save_notebook

CLUSTER_DIR = Path(os.environ.get("NJTUI_CLUSTER_DIR", "/var/lib/njtui-cluster"))
LOCAL, TCP, SWARM = "local", "tcp", "swarm"


def load_cluster() -> dict[str, Any]:
    description = CLUSTER_DIR / "cluster.json"
    if not description.exists():
        raise SystemExit(f"no cluster: {description} is missing; bring it up with `bash scripts/cluster up` and run this again")
    return json.loads(description.read_text())


def node(cluster: dict[str, Any], name: str) -> dict[str, Any]:
    return next(entry for entry in cluster["nodes"] if entry["name"] == name)


class Executor:
    """Runs code in one of a Runner's runtimes and waits for its `done`, as the CLI does."""

    def __init__(self, runner: Runner, notebook: Notebook) -> None:
        self.runner = runner
        self.events: queue.Queue = queue.Queue()
        runner.subscribe(self.events.put)
        self.cells: dict[str, Cell] = {}
        for runtime_id, spec in notebook.runtimes.items():
            self.cells[runtime_id] = Cell(id=f"bench-{runtime_id}", kind="code", language=spec.language, runtime=runtime_id)
            notebook.cells.append(self.cells[runtime_id])

    def run(self, runtime_id: str, code: str, on_message: Callable[[dict], None] | None = None) -> dict:
        cell = self.cells[runtime_id]
        cell.source = code
        exec_id = self.runner.execute(cell)
        while True:
            event = self.events.get(timeout=300)
            if isinstance(event, RuntimeMessage) and event.message.get("exec") == exec_id:
                if on_message is not None:
                    on_message(event.message)
                if event.message["type"] == "done":
                    if event.message.get("status") != "ok":
                        raise SystemExit(f"runtime {runtime_id}: `{code[:40]}` ended {event.message}")
                    return event.message


@contextmanager
def bench_notebook(image: str, tcp_engine: str, tls_dir: str | None, swarm: str, machine: str | None) -> Iterator[tuple[Path, Runner, Executor]]:
    with tempfile.TemporaryDirectory(prefix="njtui-bench-remote-") as tmp:
        os.environ["NJTUI_RUNTIME_DIR"] = str(Path(tmp) / "rt")
        notebook = Notebook(title="bench remote")
        notebook.runtimes[LOCAL] = RuntimeSpec(LOCAL, "python", environment=image, default=True)
        notebook.runtimes[TCP] = RuntimeSpec(TCP, "python", environment=image, engine=tcp_engine, engine_tls=tls_dir)
        notebook.runtimes[SWARM] = RuntimeSpec(SWARM, "python", environment=image, engine=swarm, machine=machine)
        path = Path(tmp) / "bench.toml"
        save_notebook(notebook, path)
        runner = Runner(path, notebook)
        try:
            yield path, runner, Executor(runner, notebook)
        finally:
            # A second Ctrl-C must not leave half of it running.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                runner.stop_all()
            finally:
                runner.detach()


def sweep_leftovers(cluster: dict[str, Any], notebook: Path) -> list[str]:
    """What of this bench's notebook is still on any engine after the Runner stopped it all: a
    boot interrupted at the wrong moment, or a stop that did not stop. Removed, and named, since
    one is a bug in njtui worth reporting."""
    import docker

    identity = f"{LABEL_NOTEBOOK}={notebook.resolve()}"
    left: list[str] = []
    manager = docker.DockerClient(base_url=node(cluster, "node1")["socket"], timeout=60)
    for service in manager.services.list(filters={"label": identity}):
        left.append(f"service {service.name} on the Swarm")
        service.remove()
    engines = {"local engine": docker.from_env(timeout=60), **{name: docker.DockerClient(base_url=node(cluster, name)["socket"], timeout=60) for name in ("node1", "node2", "node3")}}
    for where, client in engines.items():
        for container in client.containers.list(all=True, filters={"label": identity}):
            # A removed service's task container is taken down by its node a moment later, on its
            # own: not a leftover, but not to be left to that moment either.
            if "com.docker.swarm.service.id" not in container.labels:
                left.append(f"container {container.name} on {where}")
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass  # its node was quicker
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # "removal already in progress"
                    raise
    return left


def say(text: str) -> None:
    """Progress, on stderr: the table on stdout stays whole."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def interleaved(rounds: int, first: str, second: str) -> Iterator[tuple[int, str]]:
    """Round by round, A then B, then B then A: neither side always comes after the other."""
    for index in range(rounds):
        for side in (first, second) if index % 2 == 0 else (second, first):
            yield index, side


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def measure_round_trips(executor: Executor, runs: int) -> dict[str, list[float]]:
    for side in (LOCAL, TCP):
        for _ in range(20):
            executor.run(side, "1+1")
    samples: dict[str, list[float]] = {LOCAL: [], TCP: []}
    for _, side in interleaved(runs, LOCAL, TCP):
        started = time.perf_counter()
        executor.run(side, "1+1")
        samples[side].append(time.perf_counter() - started)
    return samples


def measure_stream(executor: Executor, megabytes: int, runs: int) -> dict[str, list[float]]:
    code, expected = cell_code(megabytes), expected_chars(megabytes)
    samples: dict[str, list[float]] = {LOCAL: [], TCP: []}
    for _, side in interleaved(runs, LOCAL, TCP):
        count = StreamedChars()
        started = time.perf_counter()
        executor.run(side, code, on_message=count)
        samples[side].append(time.perf_counter() - started)
        if count.received != expected:
            raise SystemExit(f"runtime {side} delivered {count.received} of {expected} characters")
    return samples


def measure_boot(runner: Runner, executor: Executor, runs: int) -> tuple[dict[str, list[float]], list[str]]:
    """Each round from stopped runtimes; the stops are outside the measurement."""
    samples: dict[str, list[float]] = {LOCAL: [], SWARM: []}
    placements: list[str] = []
    for side in (LOCAL, SWARM):  # the first boot of each warms caches (agent archive, node images)
        executor.run(side, "1+1")
        runner.stop(side)
    for _, side in interleaved(runs, LOCAL, SWARM):
        started = time.perf_counter()
        executor.run(side, "1+1")
        samples[side].append(time.perf_counter() - started)
        if side == SWARM:
            placements.append(str(runner.ensure(SWARM).info.details.get("node")))
        runner.stop(side)
    return samples, placements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="exec round trips on each side")
    parser.add_argument("--megabytes", type=int, default=10)
    parser.add_argument("--stream-runs", type=int, default=5)
    parser.add_argument("--boot-runs", type=int, default=10)
    parser.add_argument("--image", default="njtui/python:3.11")
    parser.add_argument("--tcp-engine", help="the remote engine: a URL or a context name (default: node3's tcp:// URL from cluster.json)")
    parser.add_argument("--tls", help="TLS material for a tcp:// URL (default: the cluster's tls_dir)")
    parser.add_argument("--swarm", default="swarm:njtui-node1")
    parser.add_argument("--machine", help="the Swarm runtime's machine type (default: none, Swarm picks any node)")
    args = parser.parse_args()

    cluster = load_cluster()
    tcp_engine = args.tcp_engine or node(cluster, "node3")["url"]
    tls_dir = args.tls or (cluster["tls_dir"] if tcp_engine.startswith("tcp://") else None)
    # A Swarm task on node2 is reached over ssh://, through the cluster's ssh set-up.
    os.environ["PATH"] = f"{cluster['ssh_bin']}{os.pathsep}{os.environ['PATH']}"
    # A `kill` ends it as Ctrl-C does: through the cleanup.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    started = time.perf_counter()
    path: Path | None = None
    try:
        with bench_notebook(args.image, tcp_engine, tls_dir, args.swarm, args.machine) as (path, runner, executor):
            say(f"exec round trips: booting the local and the remote runtime, then {args.runs} of `1+1` on each")
            trips = measure_round_trips(executor, args.runs)
            say(f"{args.megabytes} MB streams: {args.stream_runs} on each")
            streams = measure_stream(executor, args.megabytes, args.stream_runs)
            runner.stop(TCP)  # boots are timed on a machine with no other runtime of ours running
            runner.stop(LOCAL)
            say(f"boots: {args.boot_runs} cold ones of each, after one of each to warm up")
            boots, placements = measure_boot(runner, executor, args.boot_runs)
    except KeyboardInterrupt:
        say("interrupted: what it started is stopped")
        raise SystemExit(130) from None
    finally:
        if path is not None:
            for leftover in sweep_leftovers(cluster, path):
                say(f"left running after the Runner stopped all (removed now): {leftover}")
    if load_cluster() != cluster:
        # Another `scripts/cluster up` rebuilt it under us: the remote figures mix two clusters.
        say("warning: the cluster was rebuilt while the bench ran (cluster.json changed); run it again")

    mb = args.megabytes
    local_rtt, tcp_rtt = statistics.median(trips[LOCAL]), statistics.median(trips[TCP])
    local_stream, tcp_stream = statistics.median(streams[LOCAL]), statistics.median(streams[TCP])
    local_boot, swarm_boot = statistics.median(boots[LOCAL]), statistics.median(boots[SWARM])
    # Where Swarm put each one weighs: a node reached over ssh:// pays for the ssh connections.
    by_node = {name: [sample for sample, where in zip(boots[SWARM], placements, strict=True) if where == name] for name in sorted(set(placements))}
    nodes = ", ".join(f"{name} x{len(samples)} median {statistics.median(samples) * 1000:.0f} ms" for name, samples in by_node.items())
    print(f"remote engine: {tcp_engine}" + (f" (TLS from {tls_dir})" if tls_dir else "") + f"; Swarm: {args.swarm}" + (f", machine {args.machine}" if args.machine else ""))
    print(f"{'':<34}{'local engine':>16}{'remote':>16}{'remote/local':>14}")
    print(f"{f'exec 1+1 median ({args.runs} runs)':<34}{local_rtt * 1000:>13.3f} ms{tcp_rtt * 1000:>13.3f} ms{tcp_rtt / local_rtt:>13.2f}x")
    print(f"{'exec 1+1 p90':<34}{p90(trips[LOCAL]) * 1000:>13.3f} ms{p90(trips[TCP]) * 1000:>13.3f} ms{p90(trips[TCP]) / p90(trips[LOCAL]):>13.2f}x")
    print(f"{f'{mb} MB stream, to done (median of {args.stream_runs})':<34}{local_stream:>14.3f} s{tcp_stream:>14.3f} s{tcp_stream / local_stream:>13.2f}x")
    print(f"{f'{mb} MB stream throughput':<34}{mb / local_stream:>11.1f} MB/s{mb / tcp_stream:>11.1f} MB/s")
    print(f"{f'boot to 1+1 (median of {args.boot_runs})':<34}{local_boot * 1000:>13.0f} ms{swarm_boot * 1000:>13.0f} ms{swarm_boot / local_boot:>13.2f}x  (remote = Swarm service; on {nodes})")
    print(f"{'boot rounds, local':<34}" + " ".join(f"{sample * 1000:.0f}" for sample in boots[LOCAL]) + " ms")
    print(f"{'boot rounds, Swarm':<34}" + " ".join(f"{sample * 1000:.0f} ({where})" for sample, where in zip(boots[SWARM], placements, strict=True)) + " ms")
    print(f"bench took {time.perf_counter() - started:.0f} s")
    print(f"remote round trip: {tcp_rtt / local_rtt:.2f}x local; {mb} MB stream: {tcp_stream / local_stream:.2f}x; swarm boot: {swarm_boot / local_boot:.2f}x local container")


if __name__ == "__main__":
    main()
