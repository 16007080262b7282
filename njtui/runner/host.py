"""Host runtimes: agents run as processes on this machine (the embedded default).

Each runtime lives in a directory under the user's runtime dir, named by its key (notebook
path + runtime id), holding `info.json` (what it is), `relay.json` (pids, written once it
runs), `journal.jsonl`, `agent.log`, `alive.lock` (held by the relay while it lives: a lock
cannot outlive its process, unlike a pid file), `secrets/` (the agent's secret files, removed
by the relay when the agent ends), `results/` (the cells' $NJTUI_RESULTS) and, once it ended,
`exit.json`.

The root and every directory in it are private (njtui.runner.private): created 0700, checked
on each use, refused with what to do if another user could have touched them; files in them
are opened without following symlinks.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import njtui
from njtui.model import RuntimeSpec
from njtui.runner.agents import AGENTS_DIR, agent_command_for
from njtui.runner.backend import Backend, BackendError, ProgressCallback, RuntimeInfo, SocketConnection, staged_files
from njtui.runner.launch import Launch
from njtui.runner.paths import notebook_identity, private_root, runtime_key, runtime_root, socket_path
from njtui.runner.private import NotPrivateError, check_private_dir, open_existing, open_private, private_dir, read_private, write_private

START_TIMEOUT = 60.0
# Directories of runtimes that ended and whose journals nobody collected are removed after this.
ENDED_RETENTION = 7 * 86400


def agent_command(spec: RuntimeSpec, journal: Path) -> list[str]:
    command = agent_command_for(spec)
    interpreter: str | None
    if command.interpreter == "python":
        # The interpreter running njtui: a host Python runtime sees the packages of njtui's
        # environment, and the Jupyter bridge its jupyter_client and the kernels installed there.
        interpreter = sys.executable
    else:
        interpreter = shutil.which("bash")
        if interpreter is None:
            raise BackendError("bash is not installed on this machine")
    return [interpreter, str(AGENTS_DIR / command.script), "--journal", str(journal), *command.arguments]


def _is_alive(runtime_dir: Path) -> bool:
    try:
        lock = open_existing(runtime_dir / "alive.lock")
    except (OSError, NotPrivateError):
        return False  # no relay ever locked it (a planted symlink is refused by the relay)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(lock)
    return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(read_private(path))
    except (OSError, ValueError, NotPrivateError):
        return None


@contextmanager
def _refusing() -> Iterator[None]:
    """Private state that fails its check is a runtime that cannot start, in the user's words."""
    try:
        yield
    except NotPrivateError as exc:
        raise BackendError(str(exc)) from None


def _is_private_dir(path: Path) -> bool:
    """Whether `path` exists and is a private directory; used when scanning, where what is not
    njtui's own (the boot board, a planted link) is passed over, not used."""
    try:
        check_private_dir(path)
    except (OSError, NotPrivateError):
        return False
    return True


def _remove_secrets(runtime_dir: Path) -> None:
    """Secret files of a runtime whose agent has ended: nothing may read them any more."""
    shutil.rmtree(runtime_dir / "secrets", ignore_errors=True)


class HostBackend(Backend):
    """Runtimes as processes on this machine, each beside a relay (`hostd`) that outlives
    its clients. Environments do not apply: the host is the environment."""

    name = "host"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self._reapers: list[subprocess.Popen] = []

    def _dir(self, key: str) -> Path:
        return self.root / key

    def _private_root(self) -> Path:
        with _refusing():
            try:
                return private_root(self.root)
            except OSError as exc:
                raise BackendError(f"cannot make the runtime directory {self.root}: {exc.strerror or exc}") from None

    def _runtime_dir(self, key: str) -> Path | None:
        """The runtime directory of `key` if it exists, checked private; None if it does not."""
        runtime_dir = self._private_root() / key
        with _refusing():
            try:
                check_private_dir(runtime_dir)
            except FileNotFoundError:
                return None
        return runtime_dir

    def _info(self, runtime_dir: Path) -> RuntimeInfo | None:
        data = _read_json(runtime_dir / "info.json")
        if data is None:
            return None
        info = RuntimeInfo(**{k: v for k, v in data.items() if k in RuntimeInfo.__dataclass_fields__})
        relay = _read_json(runtime_dir / "relay.json") or {}
        info.pid = relay.get("agent_pid")
        info.instance = relay.get("instance")
        info.alive = _is_alive(runtime_dir)
        info.details = {"dir": str(runtime_dir), "socket": relay.get("socket"), "relay_pid": relay.get("relay_pid"), "settings": data.get("settings")}
        if not info.alive:
            ended = _read_json(runtime_dir / "exit.json") or {}
            info.exit_reason = ended.get("reason") or "relay gone"
        return info

    @contextmanager
    def _start_lock(self, key: str) -> Iterator[None]:
        with _refusing():
            lock = open_private(self._private_root() / f"{key}.start.lock", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)

    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None:
        runtime_dir = self._runtime_dir(runtime_key(notebook_path, runtime_id))
        info = self._info(runtime_dir) if runtime_dir is not None else None
        return info if info is not None and info.alive else None

    def list(self) -> builtins.list[RuntimeInfo]:
        found = []
        for child in sorted(self._private_root().iterdir()):
            if _is_private_dir(child):
                info = self._info(child)
                if info is not None and info.alive:
                    found.append(info)
        return found

    def start(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, progress: ProgressCallback | None = None) -> RuntimeInfo:
        key = runtime_key(notebook_path, spec.id)
        with self._start_lock(key):
            running = self.find(notebook_path, spec.id)
            if running is not None:
                return running
            runtime_dir = self._runtime_dir(key) or self._dir(key)
            if runtime_dir.exists() and (runtime_dir / "journal.jsonl").exists() and not _is_alive(runtime_dir):
                # An ended runtime whose journal nobody collected: keep it for the recorder.
                ended = self.root / f"{key}.ended-{time.time_ns()}"
                runtime_dir.rename(ended)
                _remove_secrets(ended)
            with _refusing():
                private_dir(runtime_dir)
            info = RuntimeInfo(
                key=key,
                notebook=notebook_identity(notebook_path),
                runtime_id=spec.id,
                backend=self.name,
                language=spec.language,
                environment=spec.environment_label,
                idle_timeout=spec.idle_timeout_seconds,
                started_at=time.time(),
            )
            payload = info.to_dict()
            payload["njtui_version"] = njtui.__version__
            payload["settings"] = launch.settings
            with _refusing():
                write_private(runtime_dir / "info.json", json.dumps(payload, indent=1).encode())
            if progress:
                progress("Starting", {"command": spec.language})
            with _refusing():
                self._spawn_relay(runtime_dir, notebook_path, spec, launch)
            started = self._info(runtime_dir)
            assert started is not None
            return started

    def _spawn_relay(self, runtime_dir: Path, notebook_path: str, spec: RuntimeSpec, launch: Launch) -> None:
        env = dict(os.environ)
        env.update(launch.env)
        # Secrets a killed relay could not remove go before the new agent gets its own. The
        # relay (hostd) removes this directory when the agent ends; its name is fixed there.
        _remove_secrets(runtime_dir)
        secrets = private_dir(runtime_dir / "secrets")
        env["NJTUI_SECRETS_DIR"] = str(secrets)
        env["NJTUI_RUNTIME"] = spec.id
        env["NJTUI_NOTEBOOK"] = notebook_identity(notebook_path)
        # The host's /results: files written here are collected when the cell finishes.
        results = private_dir(runtime_dir / "results")
        env["NJTUI_RESULTS"] = str(results)
        # Cells see a plain terminal-less environment, not the TUI's.
        for name in ("TEXTUAL", "TEXTUAL_DRIVER"):
            env.pop(name, None)
        try:
            relay_socket = socket_path(runtime_dir)
        except OSError as exc:
            raise BackendError(f"cannot make a place for the runtime's socket: {exc}") from None
        relay_log = os.fdopen(open_private(runtime_dir / "relay.log", os.O_WRONLY | os.O_APPEND), "ab")
        read_fd, write_fd = os.pipe()
        command = [
            sys.executable,
            "-m",
            "njtui.runner.hostd",
            "--dir",
            str(runtime_dir),
            "--socket",
            str(relay_socket),
            "--ready-fd",
            str(write_fd),
            "--cwd",
            str(Path(notebook_identity(notebook_path)).parent),
            "--",
            *agent_command(spec, runtime_dir / "journal.jsonl"),
        ]
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=relay_log,
                stderr=relay_log,
                pass_fds=(write_fd,),
                start_new_session=True,
                env=env,
            )
        finally:
            os.close(write_fd)
            relay_log.close()
        # Reap the relay when it ends so a long-lived client collects no zombies.
        threading.Thread(target=proc.wait, daemon=True, name=f"njtui-reap-{proc.pid}").start()
        with os.fdopen(read_fd) as ready:
            readable, _, _ = select.select([ready], [], [], START_TIMEOUT)
            answer = ready.readline().strip() if readable else "error the runtime did not start in time"
        if answer != "ok":
            detail = answer.removeprefix("error ").strip() or "the relay exited at start"
            log = read_private(runtime_dir / "relay.log").decode(errors="replace")[-800:]
            raise BackendError(detail + (f"\n{log}" if log.strip() and "Traceback" in log else ""))

    def connect(self, info: RuntimeInfo) -> SocketConnection:
        path = info.details.get("socket")
        if not path:
            raise BackendError(f"cannot reach runtime {info.runtime_id}: it has not started listening")
        # Secrets go over this connection: a socket someone else could have put there is refused.
        with _refusing():
            try:
                check_private_dir(Path(path).parent)
                found = os.lstat(path)
            except FileNotFoundError:
                pass  # connect says so below
            else:
                if not stat.S_ISSOCK(found.st_mode) or found.st_uid != os.getuid():
                    raise NotPrivateError(path, "it is not a socket of yours", f"stop the runtime (njtui runtimes stop {info.key}) and remove {path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise BackendError(f"cannot reach runtime {info.runtime_id}: {exc.strerror or exc}") from None
        return SocketConnection(sock)

    def stop(self, info: RuntimeInfo, timeout: float = 5.0) -> None:
        runtime_dir = Path(info.details["dir"])
        try:
            connection = self.connect(info)
            connection.send({"op": "shutdown"})
            connection.close()
        except (BackendError, OSError):
            pass
        deadline = time.monotonic() + timeout
        while _is_alive(runtime_dir) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _is_alive(runtime_dir):
            for pid_key in ("agent_pid", "relay_pid"):
                pid = (_read_json(runtime_dir / "relay.json") or {}).get(pid_key)
                if pid:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
            while _is_alive(runtime_dir) and time.monotonic() < deadline + 2:
                time.sleep(0.02)
            if not _is_alive(runtime_dir):
                # A killed relay could not remove the runtime's secret files itself.
                shutil.rmtree(runtime_dir / "secrets", ignore_errors=True)

    def ended(self, notebook_path: str) -> builtins.list[RuntimeInfo]:
        """Runtimes of this notebook that ended with a journal nobody has collected yet."""
        identity = notebook_identity(notebook_path)
        found = []
        now = time.time()
        for child in sorted(self._private_root().iterdir()):
            if not _is_private_dir(child) or not os.path.isfile(child / "journal.jsonl") or os.path.islink(child / "journal.jsonl"):
                continue
            info = self._info(child)
            if info is None or info.alive:
                continue
            _remove_secrets(child)
            if info.notebook == identity:
                found.append(info)
            elif now - child.stat().st_mtime > ENDED_RETENTION:
                shutil.rmtree(child, ignore_errors=True)
        return found

    def collect_files(self, info: RuntimeInfo, staged: builtins.list[dict[str, Any]]) -> Iterator[tuple[str, IO[bytes]]]:
        """The copies of its /results files the agent staged as an execution ended."""
        stage = Path(info.details["dir"]) / "files"
        for name, staged_name in staged_files(staged):
            try:
                fd = open_existing(stage / staged_name)
            except (NotPrivateError, OSError):
                continue
            with os.fdopen(fd, "rb") as handle:
                yield name, handle

    def journal(self, info: RuntimeInfo) -> Iterator[dict[str, Any]]:
        with _refusing():
            fd = open_existing(Path(info.details["dir"]) / "journal.jsonl")
        with os.fdopen(fd, "rb") as journal:
            for line in journal:
                if line.endswith(b"\n"):
                    yield json.loads(line)

    def discard(self, info: RuntimeInfo) -> None:
        runtime_dir = Path(info.details["dir"])
        if not _is_alive(runtime_dir):
            shutil.rmtree(runtime_dir, ignore_errors=True)
