"""Host runtimes: agents run as processes on this machine (the embedded default).

Each runtime lives in a directory under the user's runtime dir, named by its key (notebook
path + runtime id), holding `info.json` (what it is), `relay.json` (pids, written once it
runs), `journal.jsonl`, `agent.log`, `alive.lock` (held by the relay while it lives: a lock
cannot outlive its process, unlike a pid file) and, once it ended, `exit.json`.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import socket
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
from njtui.runner.backend import BackendError, ProgressCallback, RuntimeInfo, SocketConnection
from njtui.runner.launch import Launch
from njtui.runner.paths import notebook_identity, runtime_key, runtime_root, socket_path

AGENTS_DIR = Path(__file__).parent / "agents"
START_TIMEOUT = 60.0
# Directories of runtimes that ended and whose journals nobody collected are removed after this.
ENDED_RETENTION = 7 * 86400


def agent_command(spec: RuntimeSpec, journal: Path) -> list[str]:
    timeout = str(spec.idle_timeout_seconds)
    if spec.language == "python":
        # The interpreter running njtui: a host Python runtime sees the packages of njtui's environment.
        return [sys.executable, str(AGENTS_DIR / "agent.py"), "--journal", str(journal), "--idle-timeout", timeout]
    if spec.language == "bash":
        bash = shutil.which("bash")
        if bash is None:
            raise BackendError("bash is not installed on this machine")
        return [bash, str(AGENTS_DIR / "agent.sh"), "--journal", str(journal), "--idle-timeout", timeout]
    raise BackendError(f"no agent for language {spec.language!r}")


def _is_alive(runtime_dir: Path) -> bool:
    try:
        with open(runtime_dir / "alive.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class HostBackend:
    name = "host"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self._reapers: list[subprocess.Popen] = []

    def _dir(self, key: str) -> Path:
        return self.root / key

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
        with open(self.root / f"{key}.start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None:
        info = self._info(self._dir(runtime_key(notebook_path, runtime_id)))
        return info if info is not None and info.alive else None

    def list(self) -> list[RuntimeInfo]:
        found = []
        for child in sorted(self.root.iterdir()) if self.root.exists() else []:
            if child.is_dir():
                info = self._info(child)
                if info is not None and info.alive:
                    found.append(info)
        return found

    def start(self, notebook_path: str, spec: RuntimeSpec, progress: ProgressCallback | None = None, launch: Launch | None = None) -> RuntimeInfo:
        launch = launch or Launch(env=dict(spec.env))
        key = runtime_key(notebook_path, spec.id)
        with self._start_lock(key):
            running = self.find(notebook_path, spec.id)
            if running is not None:
                return running
            runtime_dir = self._dir(key)
            if runtime_dir.exists() and (runtime_dir / "journal.jsonl").exists() and not _is_alive(runtime_dir):
                # An ended runtime whose journal nobody collected: keep it for the recorder.
                runtime_dir.rename(self.root / f"{key}.ended-{time.time_ns()}")
            runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = RuntimeInfo(
                key=key,
                notebook=notebook_identity(notebook_path),
                runtime_id=spec.id,
                backend=self.name,
                language=spec.language,
                environment=spec.environment,
                idle_timeout=spec.idle_timeout_seconds,
                started_at=time.time(),
            )
            payload = info.to_dict()
            payload["njtui_version"] = njtui.__version__
            payload["settings"] = launch.settings
            (runtime_dir / "info.json").write_text(json.dumps(payload, indent=1))
            if progress:
                progress("Starting", {"command": spec.language})
            self._spawn_relay(runtime_dir, notebook_path, spec, launch)
            started = self._info(runtime_dir)
            assert started is not None
            return started

    def _spawn_relay(self, runtime_dir: Path, notebook_path: str, spec: RuntimeSpec, launch: Launch) -> None:
        env = dict(os.environ)
        env.update(launch.env)
        secrets = runtime_dir / "secrets"
        secrets.mkdir(mode=0o700, exist_ok=True)
        env["NJTUI_SECRETS_DIR"] = str(secrets)
        env["NJTUI_RUNTIME"] = spec.id
        env["NJTUI_NOTEBOOK"] = notebook_identity(notebook_path)
        # The host's /results: files written here are collected when the cell finishes.
        results = runtime_dir / "results"
        results.mkdir(exist_ok=True)
        env["NJTUI_RESULTS"] = str(results)
        # Cells see a plain terminal-less environment, not the TUI's.
        for name in ("TEXTUAL", "TEXTUAL_DRIVER"):
            env.pop(name, None)
        read_fd, write_fd = os.pipe()
        command = [
            sys.executable,
            "-m",
            "njtui.runner.hostd",
            "--dir",
            str(runtime_dir),
            "--socket",
            str(socket_path(runtime_dir)),
            "--ready-fd",
            str(write_fd),
            "--cwd",
            str(Path(notebook_identity(notebook_path)).parent),
            "--",
            *agent_command(spec, runtime_dir / "journal.jsonl"),
        ]
        relay_log = open(runtime_dir / "relay.log", "ab")  # noqa: SIM115
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
            log = (runtime_dir / "relay.log").read_text(errors="replace")[-800:]
            raise BackendError(detail + (f"\n{log}" if log.strip() and "Traceback" in log else ""))

    def connect(self, info: RuntimeInfo) -> SocketConnection:
        path = info.details.get("socket")
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

    def ended(self, notebook_path: str) -> list[RuntimeInfo]:
        """Runtimes of this notebook that ended with a journal nobody has collected yet."""
        identity = notebook_identity(notebook_path)
        found = []
        now = time.time()
        for child in sorted(self.root.iterdir()) if self.root.exists() else []:
            if not child.is_dir() or not (child / "journal.jsonl").exists():
                continue
            info = self._info(child)
            if info is None or info.alive:
                continue
            if info.notebook == identity:
                found.append(info)
            elif now - child.stat().st_mtime > ENDED_RETENTION:
                shutil.rmtree(child, ignore_errors=True)
        return found

    def collect_files(self, info: RuntimeInfo, since: float) -> Iterator[tuple[str, IO[bytes]]]:
        """Files under the runtime's $NJTUI_RESULTS changed since the execution started."""
        root = Path(info.details["dir"]) / "results"
        cutoff = since - 0.001
        for directory, _, names in os.walk(root):
            for name in sorted(names):
                path = Path(directory) / name
                try:
                    if not path.is_file() or path.is_symlink() or path.stat().st_mtime < cutoff:
                        continue
                    with open(path, "rb") as handle:
                        yield str(path.relative_to(root)), handle
                except OSError:
                    continue

    def journal(self, info: RuntimeInfo) -> Iterator[dict[str, Any]]:
        with open(Path(info.details["dir"]) / "journal.jsonl", "rb") as journal:
            for line in journal:
                if line.endswith(b"\n"):
                    yield json.loads(line)

    def discard(self, info: RuntimeInfo) -> None:
        runtime_dir = Path(info.details["dir"])
        if not _is_alive(runtime_dir):
            shutil.rmtree(runtime_dir, ignore_errors=True)
