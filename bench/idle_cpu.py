"""CPU time at rest: the app, each runtime agent and each host relay, against an idle ipykernel.

The real `njtui` runs in tmux with a notebook of two host runtimes, Python and Bash; one cell
runs in each, then nothing happens. Over the window (30 s by default) every process's utime +
stime (/proc/PID/stat, all its threads) is read before and after, and so are its context
switches (/proc/PID/task/*/status): a process that polls wakes up many times a second even
when each wake costs too little CPU time to show. Time on a CPU from schedstat (nanoseconds)
is printed beside it, and the ratios use it: at rest a window can stay under one clock tick. An agent counts with its helper processes
(the Bash agent is five). A jupyter_client + ipykernel kernel, started and run once like the
runtimes, is measured in the same window as the baseline. Target: under 0.3% of a core for
each agent.
Usage: python bench/idle_cpu.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tmux import TmuxApp

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import save_notebook

TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 0.3  # % of one core, per agent
# Outputs that differ from their cells' source, so the screen shows that each cell ran.
CELLS = [("py", "python", "print('py' + '-ready')\n", "py-ready"), ("sh", "bash", "echo sh''-ready\n", "sh-ready")]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(pid)
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


@dataclass
class Group:
    """Processes measured together, and what they used since `start`."""

    name: str
    pids: list[int]
    ticks: int = 0
    run_ns: int = 0
    switches: int = 0
    cpu_percent: float = 0.0
    precise_percent: float = 0.0
    wakeups_per_s: float = 0.0
    _start: tuple[int, int, int] = field(default=(0, 0, 0))

    def _read(self) -> tuple[int, int, int]:
        ticks = run_ns = switches = 0
        for pid in self.pids:
            stat = _stat(pid)
            if stat is None:
                continue  # ended since: what it used is lost with it
            ticks += int(stat[11]) + int(stat[12])
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    status = Path(f"/proc/{pid}/task/{task}/status").read_text()
                    schedstat = Path(f"/proc/{pid}/task/{task}/schedstat").read_text()
                except OSError:
                    continue
                switches += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
                run_ns += int(schedstat.split()[0])  # time on a CPU, in ns: finer than a tick
        return ticks, run_ns, switches

    def start(self) -> None:
        self._start = self._read()

    def stop(self, seconds: float) -> None:
        ticks, run_ns, switches = self._read()
        self.ticks, self.run_ns, self.switches = ticks - self._start[0], run_ns - self._start[1], switches - self._start[2]
        self.cpu_percent = self.ticks / TICKS / seconds * 100
        self.precise_percent = self.run_ns / 1e9 / seconds * 100
        self.wakeups_per_s = self.switches / seconds


def runtime_groups(runtime_root: Path) -> list[Group]:
    """Each host relay of runtimes under `runtime_root`, and the agent it holds (with helpers)."""
    groups = []
    for pid in _pids():
        argv = _cmdline(pid)
        if "njtui.runner.hostd" not in argv or "--dir" not in argv:
            continue
        if not argv[argv.index("--dir") + 1].startswith(str(runtime_root)):
            continue
        stat = _stat(pid)
        if stat is not None and "njtui.runner.hostd" in _cmdline(int(stat[1])):
            continue  # the agent's guard, a fork of its relay: counted with the relay
        below = [child for child in descendants(pid) if child != pid]
        guards = [child for child in below if "njtui.runner.hostd" in _cmdline(child)]
        agents = [child for child in below if child not in guards]
        language = "bash" if any(arg.endswith("agent.sh") for child in agents for arg in _cmdline(child)) else "python"
        groups.append(Group(f"{language} agent", agents))
        groups.append(Group(f"relay ({language} runtime)", [pid, *guards]))
    return sorted(groups, key=lambda group: group.name)


def run_cells(app: TmuxApp) -> None:
    """Runs each cell (the first at the top, the last at the bottom) until its output shows."""
    for keys, (_, _, _, shown) in zip((("g", "C-r"), ("G", "C-r")), CELLS, strict=True):
        for _ in range(30):  # the app takes keys a moment after it is drawn: sent again until then
            app.keys(*keys)
            try:
                app.wait_for(shown, timeout=2)
                break
            except TimeoutError:
                continue
        else:
            raise SystemExit(f"the cell printing {shown} did not run:\n{app.screen()}")


def stop_runtimes(notebook_path: Path) -> None:
    from njtui.runner.host import HostBackend

    backend = HostBackend()
    for info in backend.list():
        if info.notebook == str(notebook_path.resolve()):
            backend.stop(info, timeout=5)


def kernel_pid(manager) -> int:
    provisioner = getattr(manager, "provisioner", None)
    process = getattr(provisioner, "process", None) or getattr(manager, "kernel", None)
    if process is None:
        raise SystemExit("cannot find the kernel's process in this jupyter_client")
    return int(process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the window at rest")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the cells ran before the window opens")
    args = parser.parse_args()

    from _common import jupyter_execute
    from jupyter_client.manager import start_new_kernel

    with tempfile.TemporaryDirectory(prefix="njtui-bench-idle-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("NJTUI_RUNTIME_DIR", str(workdir / "rt"))
        runtime_root = Path(os.environ["NJTUI_RUNTIME_DIR"]).resolve()
        notebook = Notebook(title="idle", runtimes={rid: RuntimeSpec(rid, language, default=rid == "py") for rid, language, _, _ in CELLS})
        notebook.cells = [Cell(f"c{rid}", "code", source, language, runtime=rid) for rid, language, source, _ in CELLS]
        path = workdir / "idle.toml"
        save_notebook(notebook, path)

        manager, client = start_new_kernel(kernel_name="python3")
        app = TmuxApp(workdir, width=100, height=30)
        try:
            jupyter_execute(client, "1+1")
            app.launch(path.name)
            app.wait_for("py' \\+ '-ready")
            run_cells(app)
            runtimes = runtime_groups(runtime_root)
            # The relays the app started are its children until it exits: counted apart.
            theirs = {pid for group in runtimes for pid in group.pids}
            app_group = Group("app (njtui)", [pid for pid in descendants(app.app_pid()) if pid not in theirs])
            groups = [app_group, *runtimes, Group("ipykernel kernel", descendants(kernel_pid(manager)))]
            if len(groups) != 6:
                raise SystemExit(f"expected the app, two agents, two relays and a kernel; found {[g.name for g in groups]}")
            time.sleep(args.settle)  # the cells' last output drawn, the app at rest
            for group in groups:
                group.start()
            started = time.monotonic()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - started
            for group in groups:
                group.stop(elapsed)
        finally:
            app.close()
            client.stop_channels()
            manager.shutdown_kernel(now=True)
            stop_runtimes(path)

    print(f"idle for {elapsed:.1f} s: utime+stime (clock ticks of {1000 // TICKS} ms), time on a CPU (schedstat, ns), wakeups (context switches)")
    for group in groups:
        processes = f"{len(group.pids)} process{'es' if len(group.pids) != 1 else ''}"
        print(f"  {group.name:<24} {group.cpu_percent:6.2f}% of a core ({group.precise_percent:.3f}% by schedstat)  {group.wakeups_per_s:7.1f} wakeups/s  ({processes})")
    kernel = groups[-1]
    for group in groups:
        if group.name.endswith(" agent"):
            verdict = "ok" if group.cpu_percent < TARGET and group.precise_percent < TARGET else "over"
            print(f"{group.name} idle CPU: {group.precise_percent:.3f}% (target < {TARGET}%: {verdict})")
    # Ratios of the precise measure: at rest a whole window can stay under one clock tick.
    for group in groups[:-1]:
        ratio = f"{group.precise_percent / kernel.precise_percent:.2f}x" if kernel.run_ns else "n/a (the kernel did not run)"
        print(f"ratio {group.name}/ipykernel idle CPU: {ratio}")


if __name__ == "__main__":
    main()
