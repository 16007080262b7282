"""Shared test set-up: every test gets its own runtime, config and state directories.

The environment is set explicitly (no NO_COLOR, a known TERM) so output and snapshots do not
depend on the shell the suite was started from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON_IMAGE = "njtui/python:3.11"
BASH_IMAGE = "njtui/bash:5"
JUPYTER_IMAGE = "njtui/jupyter:3.11"  # PYTHON_IMAGE with jupyter_client, ipykernel and bash_kernel
SAMPLES = REPO / "sample_notebooks"


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test is a failed one: only a `gpu` test may skip (no GPU on the machine)."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("gpu") is None and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure here: {reason}"


def pytest_sessionfinish(session, exitstatus):
    """Nothing may be orphaned: a runtime container of this session left after every test's own
    clean-up is a failure (and is removed)."""
    if not hasattr(session.config, "_tmp_path_factory"):
        return
    leftovers = _remove_test_containers(session.config._tmp_path_factory.getbasetemp(), report=True)
    _remove_test_images()
    if leftovers:
        print("\nnjtui: runtime containers left behind by the tests: " + ", ".join(leftovers))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    runtime_dir = Path(f"/tmp/njt-{os.getpid()}-{home.name}")
    # Private, as njtui requires of a runtime root (njtui.runner.private); short, for sockets.
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    runtime_dir.chmod(0o700)
    monkeypatch.setenv("NJTUI_RUNTIME_DIR", str(runtime_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    # A terminal's size comes from the terminal a test makes (tmux, a pty, Pilot), never from
    # the environment: a shell's COLUMNS and LINES (pytest-xdist's workers have 80x24), which Rich
    # obeys (an app in a wider tmux window drawn 80 wide, a piped table cut to 80).
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    yield runtime_dir
    from njtui.runner.host import HostBackend

    backend = HostBackend(runtime_dir)
    for info in backend.list():
        backend.stop(info, timeout=3)
    subprocess.run(["rm", "-rf", str(runtime_dir)], check=False)
    _stop_test_runtimes(tmp_path_factory.getbasetemp())


def _stop_test_runtimes(basetemp: Path) -> None:
    """Stops this session's Docker runtimes through the product's own path (stop removes)."""
    if not _test_containers(basetemp):
        return
    from njtui.runner.docker_backend import DockerBackend

    backend = DockerBackend()
    prefix = str(basetemp.resolve())
    for info in backend.list():
        if info.notebook.startswith(prefix):
            backend.stop(info, timeout=3)
    for container in _test_containers(basetemp):
        if container.status != "running":
            info = backend._info(container)
            backend.discard(info)


def _test_containers(basetemp: Path) -> list:
    """Runtime containers of notebooks this test session made (under pytest's base temp)."""
    try:
        import docker

        client = docker.from_env()
        containers = client.containers.list(all=True, filters={"label": "org.njtui.key"}, ignore_removed=True)
    except Exception:  # noqa: BLE001 - no engine: nothing to clean
        return []
    prefix = str(basetemp.resolve())
    return [c for c in containers if c.labels.get("org.njtui.notebook", "").startswith(prefix)]


def _remove_test_containers(basetemp: Path, report: bool) -> list[str]:
    names = []
    for container in _test_containers(basetemp):
        names.append(f"{container.name} ({container.labels.get('org.njtui.runtime')}, {container.status})")
        try:
            container.remove(force=True, v=True)
        except Exception:  # noqa: BLE001
            pass
    return names


def _remove_test_images() -> None:
    """Images the tests built (pulled from their loopback registry): untagged while a container
    still used them, they would stay behind as dangling images."""
    from tests.helpers import session_image_label

    try:
        import docker

        docker.from_env().images.prune(filters={"label": session_image_label(), "dangling": False})
    except Exception:  # noqa: BLE001 - no engine: nothing to clean
        pass


@pytest.fixture(scope="session")
def docker_engine():
    """The Docker engine and base images the Docker tests run against (scripts/provision)."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no Docker engine answers ({exc}); scripts/provision starts one")
    for tag in (PYTHON_IMAGE, BASH_IMAGE, JUPYTER_IMAGE):
        try:
            client.images.get(tag)
        except Exception:  # noqa: BLE001
            pytest.skip(f"base image {tag} is missing; scripts/provision builds it")
    return client


@pytest.fixture
def loopback_registry(docker_engine, tmp_path_factory):
    """A real Docker registry on loopback, for images the engine must download."""
    import shutil

    from tests.helpers import free_loopback_port, start_registry

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (scripts/provision installs it)")
    address = f"127.0.0.1:{free_loopback_port()}"
    server = start_registry(binary, tmp_path_factory.mktemp("registry"), address)
    yield address
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def throttled_registry(loopback_registry):
    """The loopback registry behind a ThrottlingProxy that passes 1 MB/s towards the engine:
    push to `proxy.upstream` (full speed), pull from `proxy.address`, and a 20 MB layer takes
    20 s to download, so its Downloading phase is there to be seen however loaded the machine
    is; `proxy.unthrottle()` once the test has seen it."""
    from tests.helpers import ThrottlingProxy

    with ThrottlingProxy(loopback_registry, bytes_per_second=1_000_000) as proxy:
        yield proxy


@pytest.fixture
def private_docker_engine(docker_engine):
    """A Docker engine of the test's own (tests.helpers.PrivateDockerd: its own socket, data
    root, exec root and network namespace) with njtui/python:3.11 copied in from the machine's
    engine: the test may stop, kill and restart it while the machine's engine goes on serving
    the rest of the suite and anything else using Docker. Point njtui at it with
    DOCKER_HOST=engine.host. Afterwards it is stopped and removed, whatever state the test left
    it in: containers, containerd, shims, mounts and its directory."""
    import tempfile

    from tests.helpers import PrivateDockerd, load_images, stop_private_dockerd

    # Short, under /tmp: the sockets inside it have a 108-byte limit that a test's tmp_path
    # (named after the test) can pass.
    engine = PrivateDockerd(Path(tempfile.mkdtemp(prefix="njd-", dir="/tmp")))
    try:
        engine.start()
        client = engine.client()
        load_images(docker_engine, client, [PYTHON_IMAGE])
        client.close()
        yield engine
    finally:
        stop_private_dockerd(engine)


def njtui(*args: str, cwd: Path | None = None, timeout: float = 120, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs the real `njtui` command line as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "njtui", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        input=input,
        env=os.environ.copy(),
    )


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MB tmpfs for a notebook and its results (runtimes' journals and staged copies live
    outside it): a real full disk, filled with tests.helpers.fill. Tests run as root here."""
    from njtui.runner.host import HostBackend

    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True, text=True)
    assert mounted.returncode == 0, f"these tests mount a tmpfs and must run as root: {mounted.stderr}"
    try:
        yield mountpoint
    finally:
        # The runtimes' working directory is on it: they go first.
        backend = HostBackend()
        for info in backend.list():
            backend.stop(info, timeout=3)
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)


@pytest.fixture
def run_cli():
    return njtui


@pytest.fixture
def moto_server():
    """A real S3 API (moto's server mode) on loopback."""
    import shutil

    from tests.helpers import free_loopback_port, wait_until_serving

    binary = shutil.which("moto_server", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if binary is None:
        pytest.skip("moto_server is not installed (the dev extras install it)")
    port = free_loopback_port()
    server = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(server, url)
    yield url
    server.terminate()
    server.wait(timeout=10)
