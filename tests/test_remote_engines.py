"""Runtimes on other machines, against a real three-node Swarm on this machine (scripts/cluster):
one dockerd per node, each in a network namespace of its own; node2 reached over ssh://, node3
over tcp:// with TLS, node1 the manager. Nothing here touches the machine's own engine except to
check that no runtime landed there."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner import Runner, RunnerError, RuntimeState
from njtui.runner.docker_container import LABEL_KEY, LABEL_NOTEBOOK
from njtui.store import save_notebook
from njtui.store.results import ResultsStore
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE, REPO, njtui
from tests.helpers import Recorder, git_repository, own_runtimes, stop_own_runtimes, wait_until

pytestmark = pytest.mark.docker

CLUSTER_DIR = Path(os.environ.get("NJTUI_CLUSTER_DIR", "/var/lib/njtui-cluster"))
SWARM = "swarm:njtui-node1"


@dataclass
class Cluster:
    description: dict[str, Any]

    def node(self, name: str) -> dict[str, Any]:
        return next(node for node in self.description["nodes"] if node["name"] == name)

    def client(self, name: str):
        """The test's own view of a node's engine, through its socket (not the way njtui goes)."""
        import docker

        return docker.DockerClient(base_url=self.node(name)["socket"], timeout=120)

    @property
    def tls_dir(self) -> str:
        return self.description["tls_dir"]

    def tcp_url(self) -> str:
        return self.node("node3")["url"]

    def placements(self, notebook: Path) -> dict[str, str]:
        """runtime id → the hostname of the node its Swarm service's task runs on (`docker service ps`)."""
        manager = self.client("node1")
        hostnames = {node.id: node.attrs["Description"]["Hostname"] for node in manager.nodes.list()}
        placed = {}
        for service in manager.services.list(filters={"label": f"{LABEL_NOTEBOOK}={notebook.resolve()}"}):
            running = [task for task in service.tasks() if task["Status"]["State"] == "running"]
            if running:
                placed[service.attrs["Spec"]["Labels"]["org.njtui.runtime"]] = hostnames[running[0]["NodeID"]]
        return placed

    def containers_of(self, name: str, notebook: Path) -> list:
        return [c for c in self.client(name).containers.list(all=True, filters={"label": LABEL_KEY}, ignore_removed=True) if c.labels.get(LABEL_NOTEBOOK) == str(notebook.resolve())]

    def set_availability(self, name: str, availability: str) -> None:
        manager = self.client("node1")
        node = manager.nodes.get(self.node(name)["node_id"])
        spec = dict(node.attrs["Spec"])
        spec["Availability"] = availability
        node.update(spec)


@pytest.fixture(scope="session")
def cluster(docker_engine):
    """The three-node Swarm, brought up by the project's script, with its ssh set-up on PATH as
    a user's ssh config would be. One this session brought up goes down with it; one that was up
    (.ci/run brings it up first) is left as it was."""
    script = str(REPO / "scripts" / "cluster")
    was_up = subprocess.run(["bash", script, "status"], capture_output=True, text=True, timeout=120).returncode == 0
    if not was_up:
        up = subprocess.run(["bash", script, "up"], capture_output=True, text=True, timeout=1200)
        if up.returncode != 0:
            pytest.fail(f"scripts/cluster up failed:\n{up.stdout}\n{up.stderr}")
    description = json.loads((CLUSTER_DIR / "cluster.json").read_text())
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{CLUSTER_DIR / 'bin'}{os.pathsep}{path}"
    yield Cluster(description)
    os.environ["PATH"] = path
    if not was_up:
        subprocess.run(["bash", script, "down"], capture_output=True, text=True, timeout=600)


@pytest.fixture
def on_cluster(cluster, tmp_path):
    """The cluster; what a test's notebooks left on it is removed after the test."""
    yield cluster
    prefix = str(tmp_path.resolve())
    manager = cluster.client("node1")
    for service in manager.services.list(filters={"label": LABEL_KEY}):
        if service.attrs["Spec"]["Labels"].get(LABEL_NOTEBOOK, "").startswith(prefix):
            service.remove()
    for name in ("node1", "node2", "node3"):
        for container in cluster.client(name).containers.list(all=True, filters={"label": LABEL_KEY}, ignore_removed=True):
            if container.labels.get(LABEL_NOTEBOOK, "").startswith(prefix) and "com.docker.swarm.service.id" not in container.labels:
                container.remove(force=True, v=True)


def notebook_file(tmp_path: Path, runtimes: dict[str, dict], cells: list[tuple[str, str, str]], name: str = "nb.toml") -> Path:
    notebook = Notebook(title="remote engines")
    for runtime_id, fields in runtimes.items():
        notebook.runtimes[runtime_id] = RuntimeSpec(runtime_id, **fields)
    for cell_id, runtime_id, source in cells:
        notebook.cells.append(Cell(cell_id, "code", source, notebook.runtimes[runtime_id].language, runtime=runtime_id))
    path = tmp_path / name
    save_notebook(notebook, path)
    return path


def events(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def streams_by_cell(got: list[dict]) -> dict[str, str]:
    out: dict[str, str] = {}
    for event in got:
        if event["event"] == "stream":
            out[event["cell"]] = out.get(event["cell"], "") + event["text"]
    return out


def test_one_run_spans_the_host_an_ssh_engine_a_tls_engine_and_two_swarm_machine_types(on_cluster, docker_engine, tmp_path):
    path = notebook_file(
        tmp_path,
        {
            "here": {"language": "bash"},
            "ssh": {"language": "bash", "environment": BASH_IMAGE, "engine": "njtui-node2"},
            "tls": {"language": "python", "environment": PYTHON_IMAGE, "engine": on_cluster.tcp_url(), "engine_tls": on_cluster.tls_dir},
            "small": {"language": "bash", "environment": BASH_IMAGE, "engine": SWARM, "machine": "small"},
            "gpu": {"language": "python", "environment": PYTHON_IMAGE, "engine": SWARM, "machine": "gpu", "gpus": 1},
        },
        [
            ("a", "here", "echo here"),
            ("b", "ssh", "echo over ssh; ls /results"),
            ("c", "tls", "print('over tls')"),
            ("d", "small", "echo small"),
            ("e", "gpu", "import os\nprint('gpu', os.environ['NJTUI_GPUS'].startswith('GPU-fake-'))"),
        ],
    )
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert streams_by_cell(events(result)) == {"a": "here\n", "b": "over ssh\n", "c": "over tls\n", "d": "small\n", "e": "gpu True\n"}
    # `docker service ps`: each Swarm runtime on the node its machine type demands, the GPU one
    # on the node with the generic resource.
    assert on_cluster.placements(path) == {"small": "njtui-node2", "gpu": "njtui-node3"}
    assert [c.labels["org.njtui.runtime"] for c in on_cluster.containers_of("node2", path) if "com.docker.swarm.service.id" not in c.labels] == ["ssh"]
    assert [c.labels["org.njtui.runtime"] for c in on_cluster.containers_of("node3", path) if "com.docker.swarm.service.id" not in c.labels] == ["tls"]
    assert [c for c in docker_engine.containers.list(all=True, filters={"label": LABEL_KEY}, ignore_removed=True) if c.labels.get(LABEL_NOTEBOOK) == str(path.resolve())] == []
    # Each Swarm runtime is found as itself, every time: the engine keeps one of two label
    # filters on the same label at random, so a wrong query finds another runtime now and then.
    from njtui.runner.swarm_backend import SwarmBackend

    swarm = SwarmBackend(engine=SWARM)
    assert {swarm.find(str(path), runtime).runtime_id for runtime in ("small", "gpu") * 10} == {"small", "gpu"}
    assert all(swarm.find(str(path), runtime).runtime_id == runtime for runtime in ("small", "gpu") * 10)
    # The service and its container carry a local runtime's labels.
    manager = on_cluster.client("node1")
    (gpu_service,) = [s for s in manager.services.list(filters={"label": f"{LABEL_NOTEBOOK}={path.resolve()}"}) if s.attrs["Spec"]["Labels"]["org.njtui.runtime"] == "gpu"]
    (gpu_container,) = [c for c in on_cluster.containers_of("node3", path) if c.labels.get("com.docker.swarm.service.id") == gpu_service.id]
    for labels in (gpu_service.attrs["Spec"]["Labels"], gpu_container.labels):
        assert labels["org.njtui.runtime"] == "gpu" and labels[LABEL_KEY] and labels["org.njtui.version"]
    # `njtui runtimes` lists them all, each with where it runs, and stops them.
    listed = {row["runtime"]: (row.get("engine"), row.get("node")) for row in own_runtimes(path)}
    assert listed == {"here": (None, None), "ssh": ("njtui-node2", None), "tls": (on_cluster.tcp_url(), None), "small": (SWARM, "njtui-node2"), "gpu": (SWARM, "njtui-node3")}
    assert len(stop_own_runtimes(path)) == 5
    assert on_cluster.placements(path) == {}
    assert manager.services.list(filters={"label": f"{LABEL_NOTEBOOK}={path.resolve()}"}) == []


def test_an_unreachable_engine_is_red_with_its_reason_and_the_others_run(on_cluster, tmp_path):
    path = notebook_file(
        tmp_path,
        {
            "ok": {"language": "bash", "environment": BASH_IMAGE, "engine": "njtui-node2"},
            # node3's address, a port nobody listens on: refused at once, as a down engine is.
            "gone": {"language": "bash", "environment": BASH_IMAGE, "engine": on_cluster.tcp_url().replace(":2376", ":2399"), "engine_tls": on_cluster.tls_dir},
            "nowhere": {"language": "bash", "environment": BASH_IMAGE, "engine": "no-such-context"},
        },
        [("a", "gone", "echo never"), ("b", "nowhere", "echo never"), ("c", "ok", "echo fine")],
    )
    result = njtui("run", str(path), "--json", "--keep-going")
    got = events(result)
    done = {event["cell"]: event for event in got if event["event"] == "done"}
    assert done["c"]["status"] == "ok" and streams_by_cell(got) == {"c": "fine\n"}
    assert done["a"]["status"] == "error" and "unreachable" in done["a"]["reason"] and ":2399" in done["a"]["reason"]
    assert "no Docker context named 'no-such-context'" in done["b"]["reason"]
    stop_own_runtimes(path)


def test_a_runtime_moved_to_a_swarm_while_it_runs_stays_on_its_engine_until_restarted(on_cluster, tmp_path):
    """Its `engine` edited from node3's to the Swarm while it runs: the next `njtui run` finds it
    on node3 (its state there, no second runtime), says the edit waits for a restart; the
    restart stops it on node3 and places it on the Swarm node its machine type names."""
    path = notebook_file(tmp_path, {"py": {"language": "python", "environment": PYTHON_IMAGE, "engine": "njtui-node3"}}, [("a", "py", "x = 'kept'\n")])
    assert njtui("run", str(path)).returncode == 0
    assert len(on_cluster.containers_of("node3", path)) == 1
    notebook = _load(path)
    notebook.runtimes["py"].engine = SWARM
    notebook.runtimes["py"].machine = "small"
    notebook.cells[0].source = "print(x)\n"
    save_notebook(notebook, path)

    again = njtui("run", str(path))
    assert again.returncode == 0 and again.stdout == "kept\n", again.stdout + again.stderr
    assert "already running, with the settings it started with; changed since: engine, machine" in again.stderr
    assert on_cluster.placements(path) == {}
    runner = Runner(path, _load(path))
    try:
        runner.restart("py")
        assert on_cluster.placements(path) == {"py": "njtui-node2"}
        assert [c for c in on_cluster.containers_of("node3", path) if c.status == "running"] == []
    finally:
        runner.stop_all()
        runner.detach()


def test_a_machine_type_no_swarm_node_has_is_red_with_the_choices(on_cluster, tmp_path):
    path = notebook_file(tmp_path, {"big": {"language": "bash", "environment": BASH_IMAGE, "engine": SWARM, "machine": "gpu-large"}}, [("a", "big", "echo never")])
    runner = Runner(path, _load(path))
    with pytest.raises(RunnerError, match=r"machine type 'gpu-large' is not a label of any node of Swarm swarm:njtui-node1 \(machine types there: gpu, small\)"):
        runner.ensure("big")
    assert runner.status("big").state == RuntimeState.ERROR


def _load(path: Path) -> Notebook:
    from njtui.store import load_notebook

    return load_notebook(path)


def test_a_runtime_no_node_can_hold_stays_yellow_with_swarms_reason_and_can_be_cancelled(on_cluster, tmp_path):
    path = notebook_file(tmp_path, {"huge": {"language": "bash", "environment": BASH_IMAGE, "engine": SWARM, "cpus": 64}}, [("a", "huge", "echo never")])
    runner = Runner(path, _load(path))
    failures: list[BaseException] = []

    def boot() -> None:
        try:
            runner.ensure("huge")
        except BaseException as exc:  # noqa: BLE001 - what the boot ended with is the test's
            failures.append(exc)

    booting = threading.Thread(target=boot)
    booting.start()
    wait_until(lambda: "no suitable node" in (runner.status("huge").phase or ""), timeout=120, what="Swarm's reason in the boot phase")
    status = runner.status("huge")
    assert status.state == RuntimeState.BOOTING and status.phase.startswith("Waiting for a node: no suitable node")
    assert any("no suitable node" in entry.text for entry in runner.log.history)
    runner.stop("huge")
    booting.join(timeout=60)
    assert not booting.is_alive()
    assert [type(exc).__name__ for exc in failures] == ["BootCancelled"]
    assert runner.status("huge").state == RuntimeState.STOPPED
    assert on_cluster.client("node1").services.list(filters={"label": f"{LABEL_NOTEBOOK}={path.resolve()}"}) == []


def test_draining_the_node_mid_cell_turns_the_runtime_red_and_loses_the_cell_keeping_its_output(on_cluster, tmp_path):
    path = notebook_file(
        tmp_path,
        {"gpu": {"language": "python", "environment": PYTHON_IMAGE, "engine": SWARM, "machine": "gpu"}},
        [("a", "gpu", "import time\nprint('before', flush=True)\ntime.sleep(600)\nprint('never')\n")],
    )
    from njtui.runner.runner import RuntimeChanged, RuntimeMessage

    runner = Runner(path, _load(path))
    seen = Recorder()
    runner.subscribe(seen)
    try:
        runner.execute(runner.notebook.cell("a"))
        seen.wait(lambda s: any(isinstance(e, RuntimeMessage) and e.message.get("text") == "before\n" for e in s), 180, "the cell's first line")
        on_cluster.set_availability("node3", "drain")
        seen.wait(lambda s: any(isinstance(e, RuntimeMessage) and e.message.get("type") == "done" for e in s), 180, "the cell to end")
        done = next(e.message for e in seen if isinstance(e, RuntimeMessage) and e.message.get("type") == "done")
        assert done["status"] == "lost" and "node njtui-node3 was drained" in done["reason"]
        seen.wait(lambda s: [e.status.state for e in s if isinstance(e, RuntimeChanged)][-1] != RuntimeState.RUNNING, 60, "the runtime to leave running")
        final = [e.status for e in seen if isinstance(e, RuntimeChanged)][-1]
        assert final.state == RuntimeState.ERROR and "node njtui-node3 was drained" in final.reason
        store = ResultsStore(path)
        wait_until(lambda: store.latest("a") is not None and store.latest("a").status != "running", timeout=60, what="the record to be closed")
        record = store.latest("a")
        assert record.status == "lost" and [e["text"] for e in store.events(record)] == ["before\n"], "output so far is kept"
    finally:
        on_cluster.set_availability("node3", "active")
        runner.stop_all()
        runner.detach()


@pytest.mark.parametrize("engine", ["njtui-node2", SWARM])
def test_a_killed_client_mid_cell_replays_the_full_output_from_a_remote_runtime(on_cluster, tmp_path, engine):
    path = notebook_file(
        tmp_path,
        {"py": {"language": "python", "environment": PYTHON_IMAGE, "engine": engine}},
        [("slow", "py", "import time, os\npid = os.getpid()\nprint('pid', pid, flush=True)\nfor i in range(12):\n    print('line', i, flush=True)\n    time.sleep(0.5)\n'done'\n"), ("next", "py", "pid\n")],
    )
    client = subprocess.Popen([sys.executable, "-m", "njtui", "run", str(path), "--cell", "slow"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pid = client.stdout.readline().split()[1]
    assert client.stdout.readline() == "line 0\n"
    client.send_signal(signal.SIGKILL)
    client.wait()
    # Rerun: the next client attaches to the same remote runtime, waits for the cell that is
    # still running, and records everything it printed meanwhile from the runtime's journal.
    after = njtui("run", str(path), "--cell", "next", "--json")
    assert after.returncode == 0, after.stdout + after.stderr
    assert next(e for e in events(after) if e["event"] == "result")["data"]["text/plain"] == pid, "the same process, kept running"
    wait_until(lambda: events(njtui("show", str(path), "--json", "--cell", "slow"))[-1]["event"] == "done", timeout=120, what="the cell's done")
    got = events(njtui("show", str(path), "--json", "--cell", "slow"))
    assert [e["text"] for e in got if e["event"] == "stream"] == [f"pid {pid}\n"] + [f"line {i}\n" for i in range(12)]
    assert got[-1]["status"] == "ok"
    stop_own_runtimes(path)


@pytest.mark.parametrize("engine", ["njtui-node2", SWARM])
def test_a_remote_runtime_has_secrets_results_interrupt_restart_and_idle_shutdown(on_cluster, tmp_path, engine):
    from njtui.runner.runner import RuntimeChanged, RuntimeMessage
    from njtui.store.secrets import SecretStore

    SecretStore().set("remote-token", "s3cr3t-remote")
    path = notebook_file(
        tmp_path,
        {"py": {"language": "python", "environment": PYTHON_IMAGE, "engine": engine, "secrets": {"TOKEN": "remote-token"}, "idle_timeout": "8s"}},
        [
            ("secret", "py", "import os\nprint(os.environ['TOKEN'][::-1] == 'etomer-t3rc3s')\nopen('/results/out.txt', 'w').write('made remotely')\n"),
            ("sleep", "py", "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"),
            ("state", "py", "'x' in globals()\n"),
        ],
    )
    runner = Runner(path, _load(path))
    seen = Recorder()
    runner.subscribe(seen)

    execs: dict[str, str] = {}

    def run(cell: str) -> None:
        execs[cell] = runner.execute(runner.notebook.cell(cell))

    def done(cell: str):
        return next((e.message for e in seen if isinstance(e, RuntimeMessage) and e.message.get("type") == "done" and e.message.get("exec") == execs.get(cell)), None)

    try:
        run("secret")
        seen.wait(lambda s: done("secret") is not None, 180, "the secret cell")
        assert done("secret")["status"] == "ok"
        store = ResultsStore(path)
        record = store.latest("secret")
        assert [e["text"] for e in store.events(record) if e.get("type") == "stream"] == ["True\n"]
        (stored,) = store.files(record)
        assert stored["name"] == "out.txt"
        assert b"s3cr3t-remote" not in path.read_bytes() and "s3cr3t-remote" not in "\n".join(entry.text for entry in runner.log.history)
        first = runner.sessions["py"].info.details["container"]
        run("sleep")
        seen.wait(lambda s: any(isinstance(e, RuntimeMessage) and e.message.get("text") == "sleeping\n" for e in s), 60, "the sleeping cell")
        runner.interrupt("py")
        seen.wait(lambda s: done("sleep") is not None, 60, "the interrupt")
        assert done("sleep")["status"] == "interrupted"
        runner.restart("py")
        assert runner.sessions["py"].info.details["container"] != first, "a restart gives a fresh container"
        run("state")
        seen.wait(lambda s: done("state") is not None, 60, "the cell after the restart")
        # With no cell for its idle timeout the runtime ends itself: stopped (grey), not failed.
        after_restart = len(seen)
        seen.wait(lambda s: any(isinstance(e, RuntimeChanged) and e.status.state == RuntimeState.STOPPED for e in s[after_restart:]), 120, "the idle shutdown")
        stopped = [e.status for e in seen if isinstance(e, RuntimeChanged)][-1]
        assert stopped.state == RuntimeState.STOPPED and "idle" in (stopped.reason or "")
    finally:
        runner.stop_all()
        runner.detach()


@pytest.mark.parametrize("engine", ["njtui-node2", SWARM])
def test_git_and_s3_mounts_reach_a_remote_runtime_and_s3_changes_go_back(on_cluster, moto_server, tmp_path, engine):
    """The mounts are fetched on this machine and uploaded through the engine's API, so the
    remote machine needs no access to the repository or the bucket. (Its `dir` mounts name its
    own directories: the cluster's nodes share this machine's file system, so that is not
    tested here.)"""
    import boto3

    from njtui.model.settings import Mount
    from njtui.store.secrets import SecretStore

    repo = tmp_path / "repo"
    git_repository(repo, "v1\n")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing-key", aws_secret_access_key="testing-secret")
    s3.create_bucket(Bucket="lab")
    s3.put_object(Bucket="lab", Key="runs/input.txt", Body=b"from the bucket\n")
    store = SecretStore()
    store.set("s3-key", "testing-key")
    store.set("s3-secret", "testing-secret")
    mounts = [
        Mount("git", f"file://{repo}", "/src/repo", ref="main"),
        Mount("s3", "s3://lab/runs", "/data", read_only=False, extra={"endpoint": moto_server, "access_key_id": "s3-key", "secret_access_key": "s3-secret"}),
    ]
    path = notebook_file(
        tmp_path,
        {"py": {"language": "python", "environment": PYTHON_IMAGE, "engine": engine, "mounts": mounts}},
        [("rw", "py", "open('/data/output.txt', 'w').write('written remotely\\n')\nprint(open('/src/repo/VERSION').read() + open('/data/input.txt').read(), end='')\n")],
    )
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert streams_by_cell(events(result)) == {"rw": "v1\nfrom the bucket\n"}
    assert s3.get_object(Bucket="lab", Key="runs/output.txt")["Body"].read() == b"written remotely\n"
    stop_own_runtimes(path)


@pytest.fixture
def bridge_registry(on_cluster, tmp_path_factory):
    """A real Docker registry on this machine's end of the cluster's bridge (the nodes take it
    as plain HTTP, as engines take one on loopback), for an image a node must download."""
    import shutil
    import socket

    from tests.helpers import start_registry

    binary = shutil.which("docker-registry")
    assert binary is not None, "docker-registry is not installed (scripts/provision installs it)"
    bridge = on_cluster.description["subnet"].rsplit(".", 1)[0] + ".1"
    with socket.socket() as probe:
        probe.bind((bridge, 0))
        address = f"{bridge}:{probe.getsockname()[1]}"
    server = start_registry(binary, tmp_path_factory.mktemp("bridge-registry"), address)
    yield address
    server.terminate()
    server.wait(timeout=10)


def test_booting_on_a_remote_engine_shows_the_download_with_its_bytes(on_cluster, bridge_registry, tmp_path):
    from njtui.runner.runner import RuntimeChanged
    from tests.helpers import push_image_only_the_registry_has

    reference = f"{bridge_registry}/njtui-test/remote-big:{tmp_path.name[-12:].lower().replace('_', '-')}"
    push_image_only_the_registry_has(on_cluster.client("node1"), PYTHON_IMAGE, reference, megabytes=20)
    path = notebook_file(tmp_path, {"py": {"language": "python", "environment": reference, "engine": "njtui-node3"}}, [("a", "py", "print('pulled')")])
    runner = Runner(path, _load(path))
    seen = Recorder()
    runner.subscribe(seen)
    try:
        runner.ensure("py")
        downloading = [e.status for e in seen if isinstance(e, RuntimeChanged) and e.status.phase == "Downloading"]
        assert downloading, [e.status.phase for e in seen if isinstance(e, RuntimeChanged)]
        assert max(status.progress.get("total") or 0 for status in downloading) >= 20_000_000
        assert any(0 < (status.progress.get("done") or 0) for status in downloading)
        assert any("Downloading" in entry.text for entry in runner.log.history)
        assert on_cluster.client("node3").images.get(reference), "pulled by the runtime's engine"
    finally:
        runner.stop_all()
        runner.detach()
        on_cluster.client("node3").images.remove(reference, force=True)


def test_the_app_under_tmux_runs_a_cell_on_a_swarm_node_and_says_where(on_cluster, tmp_path):
    from tests.test_ui_tmux import Tmux

    path = notebook_file(
        tmp_path,
        {"gpu": {"language": "python", "environment": PYTHON_IMAGE, "engine": SWARM, "machine": "gpu", "gpus": 1}},
        [("a", "gpu", "import os\nprint('gpus:', os.environ['NJTUI_GPUS'])")],
    )
    tmux = Tmux(tmp_path / "tmux.sock", width=120, height=32)
    try:
        tmux.start(f"{sys.executable} -m njtui {path.name}; echo NJTUI-EXITED $?; sleep 600", tmp_path)
        tmux.wait_for(r"Runtimes")
        tmux.keys("C-n")
        screen = tmux.wait_for(r"\[1\] ✓ ok", timeout=120)
        assert re.search(r"gpus: GPU-fake-\d", screen), screen
        screen = tmux.wait_for(r"on njtui-node3 of Swarm", timeout=30)
        tmux.press("C-q", until=r"Unsaved changes")  # Ctrl+N on the last cell added one
        tmux.keys("d")
        screen = tmux.wait_for(r"NJTUI-EXITED 0")
        assert "left 1 runtime running (gpu)" in screen.replace("\n", "")
        assert on_cluster.placements(path) == {"gpu": "njtui-node3"}
    finally:
        tmux.kill()
        stop_own_runtimes(path)
