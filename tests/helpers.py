"""Helpers shared by test modules: notebooks on disk, apps on them, waiting for conditions."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import save_notebook


def own_runtimes(under: Path) -> list[dict]:
    """The rows of `njtui runtimes --json` of the notebook `under` names, or of the notebooks
    under that directory (a test's tmp_path): the machine's Docker engine is shared, so other
    programs' runtimes may be listed too, and they are not a test's to count or stop."""
    from tests.conftest import njtui

    listed = njtui("runtimes", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    return [row for row in rows if Path(row["notebook"]).is_relative_to(under.resolve())]


def stop_own_runtimes(under: Path) -> list[dict]:
    """`njtui runtimes stop ID` for each of `own_runtimes(under)`, never `stop --all` (it would
    stop every njtui runtime on the machine, other programs' included); the rows stopped."""
    from tests.conftest import njtui

    rows = own_runtimes(under)
    for row in rows:
        stopped = njtui("runtimes", "stop", row["id"])
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    return rows


def fill(directory: Path, leave: int = 200_000) -> Path:
    """A file that takes all but `leave` bytes of the file system `directory` is on."""
    filler = directory / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(directory).free - leave))
    return filler


def make_notebook(tmp_path: Path, cells: list[tuple[str, str, str]], name: str = "nb.toml", **runtime_settings) -> Path:
    """cells: (id, language or "markdown", source); one host runtime per language."""
    notebook = Notebook(title="test")
    for language in sorted({language for _, language, _ in cells if language != "markdown"}):
        runtime_id = {"python": "py", "bash": "sh"}[language]
        notebook.runtimes[runtime_id] = RuntimeSpec(runtime_id, language, default=True, **runtime_settings)
    for cell_id, language, source in cells:
        if language == "markdown":
            notebook.cells.append(Cell(id=cell_id, kind="markdown", source=source))
        else:
            notebook.cells.append(Cell(id=cell_id, kind="code", language=language, source=source))
    path = tmp_path / name
    save_notebook(notebook, path)
    return path


def open_app(path: Path, **kwargs):
    from njtui.runner.runner import Runner
    from njtui.store import load_notebook
    from njtui.ui.app import NotebookApp

    notebook = load_notebook(path)
    return NotebookApp(path, notebook, Runner(path, notebook), **kwargs)


async def wait_for(pilot, condition, timeout: float = 30.0, what: str = "condition") -> None:
    """Lets the app run until `condition()` holds (runtimes answer on their own time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


async def screen_settled(pilot, screen_type=None, timeout: float = 30.0) -> None:
    """Waits until the screen on top (of `screen_type`, if given) has no worker still running
    (a pager loading, a palette searching, a settings screen asking the engine), then lets it
    draw once: a snapshot waits for what it shows, not for a time."""
    app = pilot.app

    def settled() -> bool:
        screen = app.screen
        if screen_type is not None and not isinstance(screen, screen_type):
            return False
        return not any(worker.node is screen and worker.is_running for worker in app.workers)

    await wait_for(pilot, settled, timeout=timeout, what=f"{screen_type.__name__ if screen_type else 'the screen'} to settle")
    await pilot.pause()


# -- real servers on loopback (a Docker registry, an S3 API)

# Marks images the tests build, so the end of the session removes them (conftest); the value
# is the test session's pid, so a session never removes images another one is using.
TEST_IMAGE_LABEL = "org.njtui.test-image"


def session_image_label() -> str:
    return f"{TEST_IMAGE_LABEL}={os.getpid()}"


def listed_images(client, **options) -> list[dict]:
    """The engine's image summaries (Id, RepoTags, Labels, Created), as one listing call gives
    them. `client.images.list` inspects each image after listing them, and fails when another
    program (another test worker) removes one in between."""
    return client.api.images(**options)


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(server: subprocess.Popen, url: str, timeout: float = 20.0) -> None:
    """Until `url` answers over HTTP; kills `server` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.1)


def start_registry(binary: str, home: Path, address: str) -> subprocess.Popen:
    """A real Docker registry (the `docker-registry` program) serving `address` (host:port) from
    `home`, once it answers."""
    (home / "config.yml").write_text(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {home / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n")
    server = subprocess.Popen([binary, "serve", str(home / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_serving(server, f"http://{address}/v2/", timeout=15)
    return server


def git_repository(repo: Path, version: str) -> list[str]:
    """A git repository at `repo` whose one commit has a file VERSION holding `version`; the
    git command that works in it, for further commits."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "VERSION").write_text(version)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    return git


def push_image_only_the_registry_has(client, base_image: str, reference: str, megabytes: int) -> None:
    """An image with a layer of its own (random bytes, so nothing compresses it away) pushed to a
    registry and removed locally: booting it makes the engine download it."""
    builder = client.containers.run(base_image, ["bash", "-c", f"head -c {megabytes * 1_000_000} /dev/urandom > /blob"], detach=True)
    builder.wait(timeout=60)
    repository, tag = reference.rsplit(":", 1)
    builder.commit(repository=repository, tag=tag, changes=f"LABEL {session_image_label()}")
    builder.remove()
    for line in client.api.push(reference, stream=True, decode=True):
        assert "error" not in line, line
    client.images.remove(reference)


# -- an agent on its stdio, as the relay and Docker drive it


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class AgentProcess:
    """Requests in, messages out; every wait is bounded, so an agent that goes silent fails its
    test with what it said last instead of hanging the suite."""

    def __init__(self, argv: list[str], **popen) -> None:
        # SIGINT at its default, as the relay starts an agent: a suite run from a background job
        # ignores SIGINT, and an agent inheriting that could not be interrupted.
        popen.setdefault("preexec_fn", _default_sigint)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, **popen)
        self.buffer = b""
        self.raw = b""  # every complete line the agent wrote, as written
        self.messages: list[dict] = []

    def send(self, request: dict) -> None:
        self.proc.stdin.write((json.dumps(request, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
        self.proc.stdin.flush()

    def next(self, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message within {timeout}s; so far: {self.messages[-5:]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                data = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not data:
                    raise AssertionError(f"the agent exited; its last messages: {self.messages[-5:]}")
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.raw += line + b"\n"
        message = json.loads(line)
        self.messages.append(message)
        return message

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# -- waiting on what a test waits for


def wait_until(condition, timeout: float = 30.0, what: str = "condition", every: float = 0.05) -> None:
    """`wait_for` outside an app: returns as soon as `condition()` holds, fails naming `what`
    after `timeout` (a bound for a hung test, never a window the test asserts on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Recorder(list):
    """A runner's events as they arrive (`runner.subscribe(recorder)`); `wait` wakes on the
    event that makes its predicate true, however long the machine takes to produce it."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self._arrived = threading.Condition()

    def __call__(self, event) -> None:
        with self._arrived:
            self.append(event)
            self._arrived.notify_all()

    def clear(self) -> None:
        with self._arrived:
            super().clear()

    def wait(self, predicate, timeout: float = 60.0, what: str = "an event") -> None:
        """predicate(recorder) is called with the events so far, under the recorder's lock: it
        must only look at them (not call into the runner, which may be delivering one)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; the last events: {list(self)[-5:]}")


# -- frozen clocks for snapshots


def freeze_ui_clock(monkeypatch, now: float) -> None:
    """Every clock the screens show reads `now`: each njtui.ui module's `time.time` (elapsed
    and idle times, the 1 s tick that redraws running cells, image ages) and the runner log's
    (its time stamps); the rest of `time` (monotonic, sleep, strftime) is the real module.
    Modules are found by walking the package, so a screen added later is frozen too."""
    import importlib
    import pkgutil
    import time as real_time

    import njtui.runner.log
    import njtui.ui

    class FrozenTime:
        def time(self) -> float:
            return now

        def time_ns(self) -> int:
            return int(now * 1_000_000_000)

        def __getattr__(self, name):
            return getattr(real_time, name)

    frozen = FrozenTime()
    modules = [njtui.runner.log] + [importlib.import_module(info.name) for info in pkgutil.walk_packages(njtui.ui.__path__, "njtui.ui.")]
    for module in modules:
        if getattr(module, "time", None) is real_time:
            monkeypatch.setattr(module, "time", frozen)
    # Log time stamps are drawn in local time: UTC makes them the same on every machine. The
    # caller calls time.tzset() again once monkeypatch has put TZ back.
    monkeypatch.setenv("TZ", "UTC")
    real_time.tzset()


# -- a throttled path to a registry


class ThrottlingProxy:
    """A TCP proxy on loopback in front of `upstream` ("host:port") that passes what the server
    sends at `bytes_per_second` (what clients send goes through at full speed), so a download
    through it lasts long enough for every phase of it to be seen, however busy the machine.
    `unthrottle()` lets the rest through at full speed once the test has seen what it waits for.
    It runs on daemon threads of the test process: `close()` (or leaving its `with`) stops it,
    and it can never outlive the test session."""

    CHUNK = 16 * 1024

    def __init__(self, upstream: str, bytes_per_second: float) -> None:
        import threading

        host, port = upstream.rsplit(":", 1)
        self.upstream = upstream
        self._upstream = (host, int(port))
        self.bytes_per_second: float | None = bytes_per_second
        self._lock = threading.Lock()
        self._next_slot = time.monotonic()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, name="throttling-proxy", daemon=True).start()

    def __enter__(self) -> ThrottlingProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def unthrottle(self) -> None:
        self.bytes_per_second = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        try:
            # shutdown, not just close: it wakes the accept() blocked in the other thread.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, throttled: bool) -> None:
        try:
            while True:
                data = source.recv(self.CHUNK)
                if not data:
                    break
                if throttled:
                    self._take_turn(len(data))
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # the other direction may still have bytes to pass
        except OSError:
            pass

    def _take_turn(self, size: int) -> None:
        """Waits for this chunk's slot in one schedule shared by all connections: the rate is
        the proxy's, however many connections the engine opens."""
        rate = self.bytes_per_second
        if rate is None:
            return
        with self._lock:
            self._next_slot = max(time.monotonic(), self._next_slot) + size / rate
            turn_ends = self._next_slot
        delay = turn_ends - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the slow link itself, which the test needs: not a wait for an event


# -- a Docker engine of a test's own


class PrivateDockerd:
    """A dockerd of a test's own, so a test can stop, kill and restart an engine for real while
    the machine's engine serves everyone else (the rest of the suite, other programs).

    Everything it has is under `root`: its API socket, `--data-root`, `--exec-root` (where its
    containerd and runc keep their state), `--pidfile`, its config and log. It runs inside
    `wrapper` — by default a network namespace of its own (`unshare --net`): dockerd changes
    the network of the namespace it runs in (with `--bridge=none` it deletes the bridge called
    docker0, which is the machine engine's; with a bridge it would share that one), and in a
    namespace of its own nothing it does reaches the machine's interfaces or iptables. Clients
    reach it through its unix socket, which is a file, not part of a network namespace.
    `network_args` are its network options: no bridge and no iptables suit containers that need
    no network (njtui's agents talk over the container's stdio); a wrapper that enters a
    prepared namespace (`ip netns exec NAME`) can pass bridge options of its own instead."""

    def __init__(self, root: Path, wrapper: tuple[str, ...] = ("unshare", "--net", "--"), network_args: tuple[str, ...] = ("--bridge=none", "--iptables=false")) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.data_root = root / "data"
        self.exec_root = root / "exec"
        self.pidfile = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.config = root / "daemon.json"
        self.wrapper = tuple(wrapper)
        self.network_args = tuple(network_args)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Starts (or starts again, with the same data root: images and containers kept) and
        returns once the engine answers."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"dockerd {self.process.pid} still runs")
        # The machine's /etc/docker/daemon.json may name hosts or a data root of its own.
        self.config.write_text("{}\n")
        self.pidfile.unlink(missing_ok=True)  # left by a killed dockerd
        # So is its containerd's: dockerd waits for the pid named there and gives up ("timeout
        # waiting for containerd to start") when it is a zombie not yet reaped or another process.
        containerd_pidfile = self.exec_root / "containerd" / "containerd.pid"
        try:
            containerd_pid = int(containerd_pidfile.read_text().strip())
            stat = Path(f"/proc/{containerd_pid}/stat").read_text()
            if not stat.startswith(f"{containerd_pid} (containerd) ") or stat.rsplit(")", 1)[1].split()[0] == "Z":
                containerd_pidfile.unlink()
        except (OSError, ValueError):
            containerd_pidfile.unlink(missing_ok=True)
        argv = [
            *self.wrapper,
            "dockerd",
            f"--config-file={self.config}",
            f"--host={self.host}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            *self.network_args,
        ]
        with open(self.log, "ab") as log:
            log.write(f"==== {' '.join(argv)}\n".encode())
            log.flush()
            # Its own session: a Ctrl-C to the test run reaches pytest, whose clean-up stops it.
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with status {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(5)
                probe.connect(str(self.socket))
                probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return probe.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
        except OSError:
            return False

    @property
    def pid(self) -> int:
        """dockerd's own pid (the wrapper may have forked it)."""
        return int(self.pidfile.read_text().strip())

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=120)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exited(self, timeout: float = 60.0) -> int:
        """Until dockerd (and the wrapper) has exited; its exit status."""
        return self.process.wait(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_private_dockerd(root: Path, **options) -> PrivateDockerd:
    """A PrivateDockerd under `root` (created; keep it short: the sockets under it have a
    108-byte limit), started. Always pair with stop_private_dockerd, also when this raises."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = PrivateDockerd(root, **options)
    engine.start()
    return engine


def load_images(source, target, references) -> None:
    """Copies images from one engine to another as `docker save | docker load` does, streamed
    (nothing written to disk): the same ids, layers, ENV and CMD."""
    for reference in references:
        stream = source.images.get(reference).save(chunk_size=1 << 20, named=True)
        loaded = target.images.load(stream)
        assert any(reference in image.tags for image in loaded), (reference, loaded)


def stop_private_dockerd(engine: PrivateDockerd, timeout: float = 60.0) -> None:
    """Stops the engine and removes everything it had, whatever state the test left it in
    (running, stopped, killed with containers still up): its containers, dockerd, its
    containerd and shims (with their sockets), the mounts under its root, and the root itself.
    Raises if something could not be removed, naming it."""
    import hashlib
    import shutil
    import signal

    problems: list[str] = []
    if engine.process is not None and engine.process.poll() is None:
        if engine.answers():
            try:
                client = engine.client()
                for container in client.containers.list(all=True):
                    container.remove(force=True, v=True)
                client.close()
            except Exception as exc:  # noqa: BLE001 - what is left is removed below, by force
                problems.append(f"removing its containers through the API: {exc}")
        try:
            os.kill(engine.process.pid, signal.SIGTERM)
            engine.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait()
    # After a SIGKILL dockerd's containers outlive it in their shims: runc (with the state dir
    # dockerd gave it) kills and deletes them, cgroups included.
    runc_root = engine.exec_root / "runtime-runc" / "moby"
    if runc_root.is_dir() and shutil.which("runc"):
        listed = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True)
        for container_id in listed.stdout.split():
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", container_id], capture_output=True)
    # Then every process still naming the root: its containerd, and shims (whose sockets, named
    # by a hash of containerd's address and the container, are in containerd's shared dir).
    marker = f"{engine.root}/".encode()  # its paths: not another root whose name starts the same
    leftovers = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker in arg for arg in argv):
            leftovers.append((int(proc.name), [arg.decode(errors="replace") for arg in argv]))
    for pid, argv in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if "-address" in argv and "-id" in argv and "-namespace" in argv:
            address, namespace, container_id = (argv[argv.index(flag) + 1] for flag in ("-address", "-namespace", "-id"))
            digest = hashlib.sha256(os.path.join(address, namespace, container_id).encode()).hexdigest()
            Path("/run/containerd/s", digest).unlink(missing_ok=True)

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return True

    try:
        wait_until(lambda: all(gone(pid) for pid, _ in leftovers), timeout=30, what="the private engine's processes to end")
    except AssertionError:
        problems.append("processes still running: " + ", ".join(str(pid) for pid, _ in leftovers if not gone(pid)))
    still_mounted = unmount_under(engine.root)
    if still_mounted:
        problems.append(f"still mounted (the directory is left in place): {still_mounted}")
    else:
        shutil.rmtree(engine.root, ignore_errors=True)
        if engine.root.exists():
            problems.append(f"{engine.root} could not be removed")
    if problems:
        raise AssertionError(f"the private dockerd under {engine.root} left things behind: " + "; ".join(problems) + f"\n{engine.log_tail()}")


def unmount_under(root: Path) -> list[str]:
    """Unmounts everything mounted at or below `root`, deepest first (overlays of containers, a
    data root dockerd bind-mounts on itself, network namespaces); what is still mounted."""

    import re

    def mounted() -> list[str]:
        prefix = str(root.resolve())
        points = []
        for line in Path("/proc/self/mounts").read_text().splitlines():
            # Spaces, tabs and backslashes in mount points are written as octal escapes.
            point = re.sub(r"\\([0-7]{3})", lambda escape: chr(int(escape.group(1), 8)), line.split()[1])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
        return sorted(set(points), key=len, reverse=True)

    for _ in range(3):
        points = mounted()
        if not points:
            return []
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
    return mounted()


async def focus_on(pilot, widget, what: str | None = None) -> None:
    """Focuses `widget` and waits until it has the focus: Textual moves focus on a later turn
    of the app's loop (and only once the widget can take it: a tab just switched to shows its
    fields a frame later), so keys pressed straight after focus() may reach the widget before."""
    name = what or f"#{widget.id}"
    await wait_for(pilot, lambda: widget.focusable, what=f"{name} to be focusable")
    widget.focus()
    await wait_for(pilot, lambda: widget.has_focus, what=f"{name} to take the focus")


def steady_cursors(app) -> None:
    """Stops the text cursors of the screen on top from blinking: the blink is a clock too, and
    a snapshot would show the cursor or not depending on when it is taken. A focused field
    shows its cursor steadily, as in the blink's visible half."""
    for widget in app.screen.query("*"):
        if hasattr(widget, "cursor_blink"):
            widget.cursor_blink = False


def output_on_a_terminal(argv: list[str], timeout: float = 60) -> tuple[int, bytes]:
    """Runs a command with a pseudo-terminal as its stdout and stderr, as a person's shell
    would: (exit status, every byte it wrote to the terminal)."""
    import pty
    import select

    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while select.select([leader], [], [], timeout)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other side closed: the command has ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return process.wait(timeout=30), seen
