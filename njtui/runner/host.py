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
from njtui.runner.backend import Backend, BackendError, ProgressCallback, RuntimeInfo, SocketConnection, StateRefused, staged_files
from njtui.runner.guard import released_as_it_exits
from njtui.runner.launch import Launch
from njtui.runner.paths import notebook_identity, open_private_root, runtime_key, runtime_root, socket_path
from njtui.runner.private import NotPrivateError, PrivateDir, check_private_dir

START_TIMEOUT = 60.0
# Directories of runtimes that ended and whose journals nobody collected are removed after this.
ENDED_RETENTION = 7 * 86400


def agent_command(spec: RuntimeSpec, journal: Path) -> list[str]:
    command = agent_command_for(spec)
    interpreter: str | None
    if command.interpreter == "python":
        # The interpreter running njtui: a host Python runtime sees the packages of njtui's
        # environment, and the Jupyter bridge its jupyter_client and the kernels installed there.
        return [*own_python(), str(AGENTS_DIR / command.script), "--journal", str(journal), *command.arguments]
    interpreter = shutil.which("bash")
    if interpreter is None:
        raise BackendError("bash is not installed on this machine")
    return [interpreter, str(AGENTS_DIR / command.script), "--journal", str(journal), *command.arguments]


def own_python() -> list[str]:
    """The interpreter for every Python process njtui starts, with a sys.path no other user can
    write: -P keeps the working directory (and, for a script, the script's directory) off it,
    so a module planted where the person happens to be (/tmp, a shared project) is never
    imported in its place. Site-packages, the user's own included, stay: cells use them."""
    return [sys.executable, "-P"]


def own_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process njtui starts: PYTHONPATH keeps its absolute entries only. An empty
    or relative entry names the working directory of whichever process reads it, which for an
    agent is the notebook's directory and for its children anywhere at all."""
    if "PYTHONPATH" in env:
        kept = [entry for entry in env["PYTHONPATH"].split(os.pathsep) if os.path.isabs(entry)]
        if kept:
            env["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            del env["PYTHONPATH"]
    return env


def _is_alive(directory: PrivateDir) -> bool:
    try:
        lock = directory.open_existing("alive.lock")
    except (OSError, NotPrivateError):
        return False  # no relay ever locked it (a planted symlink is refused by the relay)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # A relay killed a moment ago holds its lock until the kernel has closed all its files,
        # its sockets first: its client has seen the connection end, and a boot right after
        # would find the runtime alive and attach to a socket about to go. Not alive, then,
        # once the lock is let go of.
        relay_pid = (_read_json(directory, "relay.json") or {}).get("relay_pid")
        return not (isinstance(relay_pid, int) and released_as_it_exits(lock, relay_pid))
    finally:
        os.close(lock)
    return False


def _read_json(directory: PrivateDir, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(directory.read(name))
    except (OSError, ValueError, NotPrivateError):
        return None
    return data if isinstance(data, dict) else None


def _has_journal(directory: PrivateDir) -> bool:
    try:
        return stat.S_ISREG(directory.lstat("journal.jsonl").st_mode)
    except OSError:
        return False


def _made_by_njtui(directory: PrivateDir) -> dict[str, Any] | None:
    """The info.json of a runtime directory that njtui made, which names the directory it was
    written in (`dir_id`: device and inode); None for any other. A runtime directory re-created
    by anything else (an agent's mkdir -p after its directory was removed, a cell) is never
    taken for a runtime's, whatever it holds."""
    data = _read_json(directory, "info.json")
    if data is None or data.get("dir_id") != directory.identity():
        return None
    return data


@contextmanager
def _refusing() -> Iterator[None]:
    """Private state that fails its check is a runtime that cannot start, in the user's words."""
    try:
        yield
    except NotPrivateError as exc:
        raise StateRefused(str(exc)) from None


def _scanned(root: PrivateDir, name: str) -> PrivateDir | None:
    """The entry `name` of the root, opened, if it is a private directory; used when scanning,
    where what is not njtui's own (the boot board, a planted link) is passed over, not used."""
    try:
        return root.subdir(name)
    except (OSError, NotPrivateError):
        return None


def _runtime_dirs(root: PrivateDir) -> Iterator[tuple[str, PrivateDir]]:
    """Each private directory in the root with its name, open while the caller looks at it."""
    for name in sorted(root.names()):
        directory = _scanned(root, name)
        if directory is not None:
            with directory:
                yield name, directory


def _remove_secrets(directory: PrivateDir) -> None:
    """Secret files of a runtime whose agent has ended: nothing may read them any more."""
    directory.remove_tree("secrets")


class HostBackend(Backend):
    """Runtimes as processes on this machine, each beside a relay (`hostd`) that outlives
    its clients. Environments do not apply: the host is the environment."""

    name = "host"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or runtime_root()
        self._reapers: list[subprocess.Popen] = []

    def _open_root(self) -> PrivateDir:
        """The runtime root, opened and checked; everything in it is found and made at it."""
        with _refusing():
            try:
                return open_private_root(self.root)
            except OSError as exc:
                raise BackendError(f"cannot make the runtime directory {self.root}: {exc.strerror or exc}") from None

    def _open_runtime(self, key: str) -> PrivateDir | None:
        """The runtime directory `key` if it exists, opened and checked private (refused if it is
        not); None if it does not."""
        with self._open_root() as root, _refusing():
            try:
                return root.subdir(key)
            except FileNotFoundError:
                return None

    @contextmanager
    def _runtime_of(self, info: RuntimeInfo) -> Iterator[PrivateDir | None]:
        """The directory of a runtime this backend found, opened; None if it is gone, or is no
        longer the one njtui made."""
        with self._open_root() as root:
            directory = _scanned(root, Path(info.details["dir"]).name)
        if directory is None:
            yield None
            return
        with directory:
            yield directory if _made_by_njtui(directory) is not None else None

    def _info(self, directory: PrivateDir) -> RuntimeInfo | None:
        data = _made_by_njtui(directory)
        if data is None:
            return None
        info = RuntimeInfo(**{k: v for k, v in data.items() if k in RuntimeInfo.__dataclass_fields__})
        relay = _read_json(directory, "relay.json") or {}
        info.pid = relay.get("agent_pid")
        info.instance = relay.get("instance")
        info.alive = _is_alive(directory)
        info.details = {"dir": str(directory.path), "socket": relay.get("socket"), "relay_pid": relay.get("relay_pid"), "settings": data.get("settings")}
        if not info.alive:
            ended = _read_json(directory, "exit.json") or {}
            info.exit_reason = ended.get("reason") or "relay gone"
        return info

    @contextmanager
    def _start_lock(self, key: str) -> Iterator[None]:
        with self._open_root() as root, _refusing():
            lock = root.open(f"{key}.start.lock", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)

    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None:
        directory = self._open_runtime(runtime_key(notebook_path, runtime_id))
        if directory is None:
            return None
        with directory:
            info = self._info(directory)
            # Alive but not listening yet: another client's boot is under way (its relay holds
            # alive.lock from its first moment, and says where it listens once its agent said
            # hello). Attaching now would find no socket; it is ready, or gone, within the start
            # timeout, and nothing signals it to a process that did not start it.
            deadline = time.monotonic() + START_TIMEOUT
            while info is not None and info.alive and not info.details.get("socket") and time.monotonic() < deadline:
                time.sleep(0.01)
                info = self._info(directory)
        return info if info is not None and info.alive else None

    def list(self) -> builtins.list[RuntimeInfo]:
        found = []
        with self._open_root() as root:
            for _, directory in _runtime_dirs(root):
                info = self._info(directory)
                if info is not None and info.alive:
                    found.append(info)
        return found

    def start(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, progress: ProgressCallback | None = None) -> RuntimeInfo:
        key = runtime_key(notebook_path, spec.id)
        with self._start_lock(key):
            running = self.find(notebook_path, spec.id)
            if running is not None:
                return running
            with self._fresh_runtime_dir(key) as directory:
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
                # Which directory njtui made: one re-created by anything else is never this runtime's.
                payload["dir_id"] = directory.identity()
                with _refusing():
                    directory.write("info.json", json.dumps(payload, indent=1).encode())
                if progress:
                    progress("Starting", {"command": spec.language})
                with _refusing():
                    self._spawn_relay(directory, notebook_path, spec, launch)
                started = self._info(directory)
            assert started is not None
            return started

    def _fresh_runtime_dir(self, key: str) -> PrivateDir:
        """The runtime directory of `key`, made now (0700, at the root's descriptor), under the
        start lock with the runtime not running. What was there is never reused: the directory
        of an ended runtime whose journal nobody collected is kept aside for the recorder; any
        other (one re-created by something other than njtui) is removed."""
        with self._open_root() as root:
            with _refusing():
                try:
                    existing = root.subdir(key)  # refused, and left as it is, if not private
                except FileNotFoundError:
                    existing = None
            if existing is not None:
                with existing:
                    made = _made_by_njtui(existing) is not None
                    if _is_alive(existing):
                        raise BackendError(f"{existing.path} is in use by a process that njtui did not start from it (its alive.lock is held); end that process, or remove the directory")
                    if made and _has_journal(existing):
                        # An ended runtime whose journal nobody collected: kept for the recorder.
                        root.rename(key, f"{key}.ended-{time.time_ns()}")
                        _remove_secrets(existing)
                    else:
                        root.remove_tree(key)
            try:
                os.mkdir(key, 0o700, dir_fd=root.fd)
            except FileExistsError:
                raise BackendError(f"{root.path / key} could not be made afresh: something else keeps making it") from None
            with _refusing():
                return root.subdir(key)

    def _spawn_relay(self, directory: PrivateDir, notebook_path: str, spec: RuntimeSpec, launch: Launch) -> None:
        env = own_environment({**os.environ, **launch.env})
        # The relay starts in its own private directory, not wherever njtui was started, and
        # every path it is given is absolute for that.
        runtime_dir = directory.path.absolute()
        # Secrets a killed relay could not remove go before the new agent gets its own. The
        # relay (hostd) removes this directory when the agent ends; its name is fixed there.
        _remove_secrets(directory)
        directory.subdir("secrets", create=True).close()
        env["NJTUI_SECRETS_DIR"] = str(runtime_dir / "secrets")
        env["NJTUI_RUNTIME"] = spec.id
        env["NJTUI_NOTEBOOK"] = notebook_identity(notebook_path)
        # The host's /results: files written here are collected when the cell finishes.
        directory.subdir("results", create=True).close()
        env["NJTUI_RESULTS"] = str(runtime_dir / "results")
        # Cells see a plain terminal-less environment, not the TUI's.
        for name in ("TEXTUAL", "TEXTUAL_DRIVER"):
            env.pop(name, None)
        try:
            relay_socket = socket_path(runtime_dir)
        except OSError as exc:
            raise BackendError(f"cannot make a place for the runtime's socket: {exc}") from None
        relay_log = os.fdopen(directory.open("relay.log", os.O_WRONLY | os.O_APPEND), "ab")
        read_fd, write_fd = os.pipe()
        command = [
            *own_python(),
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
                cwd=runtime_dir,
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
            log = directory.read("relay.log").decode(errors="replace")[-800:]
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
        try:
            connection = self.connect(info)
            connection.send({"op": "shutdown"})
            connection.close()
        except (BackendError, OSError):
            pass
        with self._runtime_of(info) as directory:
            if directory is None:
                return  # gone, or no longer the directory njtui made for it
            deadline = time.monotonic() + timeout
            while _is_alive(directory) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _is_alive(directory):
                for pid_key in ("agent_pid", "relay_pid"):
                    pid = (_read_json(directory, "relay.json") or {}).get(pid_key)
                    if pid:
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                while _is_alive(directory) and time.monotonic() < deadline + 2:
                    time.sleep(0.02)
                if not _is_alive(directory):
                    # A killed relay could not remove the runtime's secret files itself.
                    _remove_secrets(directory)

    def ended(self, notebook_path: str) -> builtins.list[RuntimeInfo]:
        """Runtimes of this notebook that ended with a journal nobody has collected yet."""
        identity = notebook_identity(notebook_path)
        found = []
        now = time.time()
        with self._open_root() as root:
            for name, directory in _runtime_dirs(root):
                if not _has_journal(directory):
                    continue
                info = self._info(directory)
                if info is None or info.alive:
                    continue
                _remove_secrets(directory)
                if info.notebook == identity:
                    found.append(info)
                elif now - os.fstat(directory.fd).st_mtime > ENDED_RETENTION:
                    root.remove_tree(name)
        return found

    def collect_files(self, info: RuntimeInfo, staged: builtins.list[dict[str, Any]]) -> Iterator[tuple[str, IO[bytes]]]:
        """The copies of its /results files the agent staged as an execution ended."""
        with self._runtime_of(info) as directory:
            if directory is None:
                return
            try:
                stage = directory.subdir("files")
            except (NotPrivateError, OSError):
                return
        with stage:
            for name, staged_name in staged_files(staged):
                try:
                    fd = stage.open_existing(staged_name)
                except (NotPrivateError, OSError):
                    continue
                with os.fdopen(fd, "rb") as handle:
                    yield name, handle

    def journal(self, info: RuntimeInfo) -> Iterator[dict[str, Any]]:
        with self._runtime_of(info) as directory:
            if directory is None:
                raise BackendError(f"the journal of runtime {info.runtime_id} is gone: its directory {info.details['dir']} is missing or was not made by njtui")
            with _refusing():
                fd = directory.open_existing("journal.jsonl")
        with os.fdopen(fd, "rb") as journal:
            for line in journal:
                if line.endswith(b"\n"):
                    yield json.loads(line)

    def discard(self, info: RuntimeInfo) -> None:
        name = Path(info.details["dir"]).name
        with self._runtime_of(info) as directory:
            if directory is None or _is_alive(directory):
                return
            with self._open_root() as root:
                root.remove_tree(name)
