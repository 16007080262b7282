"""Docker runtimes: the agent is the main process of a container whose image is the environment.

Everything goes through the Docker SDK's API (no `docker` CLI), so a remote engine named by
DOCKER_HOST or the current Docker context (ssh://, tcp://) works the same as the local one:

- the agent is brought into an unmodified image with `put_archive` before the container starts
  (the Python agent needs `python3` in the image, the Bash agent only `bash`);
- clients talk to it over the engine's attach stream (its stdin and stdout), never a host-side
  socket; a late client replays the agent's journal, read from the container with `get_archive`,
  then follows the live stream, deduplicated by sequence number;
- containers carry labels (notebook, runtime id, njtui version) so any njtui process finds them;
  the agent's idle shutdown stops the container; `stop` removes it; a container that ended while
  nobody was attached stays until a client has recorded its journal, then is removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import njtui
from njtui.model import RuntimeSpec
from njtui.runner import protocol
from njtui.runner.agents import AGENT_SCRIPTS, AGENTS_DIR
from njtui.runner.backend import BackendError, ProgressCallback, RuntimeInfo, staged_files
from njtui.runner.launch import Launch
from njtui.runner.mounts import fetch as fetch_mount
from njtui.runner.mounts import s3_write_back
from njtui.runner.paths import notebook_identity, runtime_key

AGENT_DIR = "/opt/njtui"
JOURNAL = f"{AGENT_DIR}/journal.jsonl"
STAGE_DIR = f"{AGENT_DIR}/files"  # where the agent copies an ending cell's /results files
RESULTS_DIR = "/results"
LABEL_NOTEBOOK = "org.njtui.notebook"
LABEL_RUNTIME = "org.njtui.runtime"
LABEL_KEY = "org.njtui.key"
LABEL_VERSION = "org.njtui.version"
LABEL_LANGUAGE = "org.njtui.language"
LABEL_IDLE = "org.njtui.idle-timeout"
LABEL_SETTINGS = "org.njtui.settings"  # the settings it started with (no secret values)
SECRETS_DIR = "/run/secrets"
CUDA_AT = "/usr/local/cuda"
HELLO_TIMEOUT = 60.0
PROGRESS_INTERVAL = 0.1


def docker_client():
    """A client for the engine the user's Docker set-up names: DOCKER_HOST, else the current
    Docker context, else the local socket."""
    try:
        import docker
        from docker.context import ContextAPI
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise BackendError(f"the docker package is missing: {exc}") from None
    try:
        if os.environ.get("DOCKER_HOST"):
            base_url = os.environ["DOCKER_HOST"]
            tls = None
            if os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH"):
                return docker.from_env()
        else:
            context = ContextAPI.get_current_context()
            base_url = context.Host if context is not None and context.Host else None
            tls = context.TLSConfig if context is not None and context.Host else None
        if base_url is None:
            return docker.from_env()
        return docker.DockerClient(base_url=base_url, tls=tls or False, use_ssh_client=base_url.startswith("ssh://"))
    except Exception as exc:  # noqa: BLE001 - every way of failing to reach an engine reads the same to a user
        raise BackendError(f"Docker engine unreachable: {exc}") from None


def _agent_archive(language: str) -> bytes:
    """A tar of the agent and the /results directory, for put_archive at the image's root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in ((AGENT_DIR.lstrip("/"), 0o755), (STAGE_DIR.lstrip("/"), 0o700), (RESULTS_DIR.lstrip("/"), 0o777)):
            entry = tarfile.TarInfo(directory)
            entry.type = tarfile.DIRTYPE
            entry.mode = mode
            entry.mtime = int(time.time())
            tar.addfile(entry)
        name = AGENT_SCRIPTS[language]
        data = (AGENTS_DIR / name).read_bytes()
        entry = tarfile.TarInfo(f"{AGENT_DIR.lstrip('/')}/{name}")
        entry.size = len(data)
        entry.mode = 0o755
        entry.mtime = int(time.time())
        tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def agent_command(spec: RuntimeSpec) -> list[str]:
    script = AGENT_SCRIPTS.get(spec.language)
    if script is None:
        raise BackendError(f"no agent for language {spec.language!r}")
    interpreter = "python3" if spec.language == "python" else "bash"
    return [interpreter, f"{AGENT_DIR}/{script}", "--journal", JOURNAL, "--idle-timeout", str(spec.idle_timeout_seconds)]


def _journal_lines(container) -> Iterator[bytes]:
    """The agent's journal, read out of the container (running or stopped) through the API."""
    import docker

    try:
        chunks, _ = container.get_archive(JOURNAL)
    except docker.errors.NotFound:
        return
    buffer = io.BytesIO(b"".join(chunks))
    with tarfile.open(fileobj=buffer, mode="r") as tar:
        member = tar.next()
        if member is None:
            return
        handle = tar.extractfile(member)
        if handle is None:
            return
        for line in handle:
            if line.endswith(b"\n"):
                yield line


class PullProgress:
    """Turns the engine's pull stream into booting phases: Preparing Download (resolving and
    waiting for layers), Downloading (bytes done / total over all layers), Restoring (the
    engine extracting the layers into the image)."""

    def __init__(self, progress: ProgressCallback | None, reference: str) -> None:
        self.progress = progress
        self.reference = reference
        self.downloads: dict[str, tuple[int, int]] = {}
        self.extracts: dict[str, tuple[int, int]] = {}
        self._last = 0.0
        self.phase = ""

    def _report(self, phase: str, detail: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (phase == self.phase and not force and now - self._last < PROGRESS_INTERVAL):
            return
        self.phase, self._last = phase, now
        self.progress(phase, {"image": self.reference, **detail})

    def feed(self, event: dict[str, Any]) -> None:
        if "error" in event:
            raise BackendError(f"image {self.reference} could not be pulled: {event['error']}")
        status = event.get("status", "")
        layer = event.get("id", "")
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            self.downloads[layer] = (detail.get("current", 0), detail["total"])
        elif status in ("Download complete", "Verifying Checksum") and layer in self.downloads:
            self.downloads[layer] = (self.downloads[layer][1], self.downloads[layer][1])
        elif status == "Extracting" and detail.get("total"):
            self.extracts[layer] = (detail.get("current", 0), detail["total"])
        if self.extracts:
            done = sum(current for current, _ in self.extracts.values())
            total = sum(total for _, total in self.extracts.values())
            self._report("Restoring", {"done": done, "total": total})
        elif self.downloads:
            done = sum(current for current, _ in self.downloads.values())
            total = sum(total for _, total in self.downloads.values())
            self._report("Downloading", {"done": done, "total": total}, force=done == total)
        else:
            self._report("Preparing Download", {"status": status})


class AttachStream:
    """The container's stdio through the engine's attach API, as protocol messages. Opened
    before the container starts, it sees every message from `hello` on."""

    def __init__(self, client, container_id: str) -> None:
        from docker.utils.socket import frames_iter

        self.socket = client.api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        self.raw = getattr(self.socket, "_sock", self.socket)
        self._frames = frames_iter(self.socket, False)
        self._pending = b""

    def messages(self) -> Iterator[dict[str, Any]]:
        for stream, data in self._frames:
            if stream == 2:
                yield {"type": protocol.AGENT_STDERR, "text": data.decode("utf-8", "replace")}
                continue
            self._pending += data
            *lines, self._pending = self._pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                try:
                    yield protocol.decode(line)
                except ValueError:
                    yield {"type": protocol.AGENT_STDERR, "text": line.decode("utf-8", "replace")}


class DockerConnection:
    """One client's view of a container's agent: journal replay, then the live attach stream."""

    def __init__(self, backend: DockerBackend, container, stream: AttachStream | None = None, seen: list[dict[str, Any]] | None = None) -> None:
        self.backend = backend
        self.container = container
        # Attached before the journal is read: what happens in between arrives on both, and the
        # sequence numbers drop the duplicates. A stream handed over from start() has seen
        # everything from the first message on (`seen`), so it needs no journal at all.
        self.stream = stream or AttachStream(backend.client, container.id)
        self._seen_from_start = seen
        self._raw = self.stream.raw
        self._send_lock = threading.Lock()
        self._replay_from: int | None = None
        self._closed = False

    def send(self, request: dict[str, Any]) -> None:
        if request.get("op") == "attach":
            # Answered here, as the host relay answers it: the journal is in the container.
            self._replay_from = int(request.get("since") or 1)
            return
        data = protocol.encode(request)
        with self._send_lock:
            try:
                self._raw.sendall(data)
            except OSError as exc:
                raise BackendError(f"runtime container {self.container.short_id} is not reachable: {exc}") from None

    def _replay(self) -> Iterator[dict[str, Any]]:
        since, self._replay_from = self._replay_from, None
        if since is None:
            return
        if self._seen_from_start is not None:
            lines = self._seen_from_start
            self._seen_from_start = None
            yield from (message for message in lines if since <= (message.get("seq") or 0))
            return
        for line in _journal_lines(self.container):
            message = protocol.decode(line)
            if since <= (message.get("seq") or 0):
                yield message

    def __iter__(self) -> Iterator[dict[str, Any]]:
        last = 0
        try:
            for message in self._replay():
                last = max(last, message.get("seq") or 0)
                yield message
            for message in self.stream.messages():
                seq = message.get("seq") or 0
                if seq and seq <= last:
                    continue
                last = max(last, seq)
                yield message
                if self._replay_from is not None:
                    # A client taking over the recording asked for history again.
                    yield from self._replay()
        except Exception:  # noqa: BLE001 - the stream ended: the engine, the container or the network went
            pass
        if not self._closed:
            yield {"type": protocol.RUNTIME_EXIT, "reason": self.backend.exit_reason(self.container.id)}

    def close(self) -> None:
        self._closed = True
        try:
            # Only our side stops reading: a half-close would close the agent's stdin.
            self._raw.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        try:
            self.stream.socket.close()
        except OSError:
            pass


class DockerBackend:
    name = "docker"

    def __init__(self, client=None) -> None:
        self._client = client
        self._lock = threading.Lock()
        # The attach stream a runtime was started with, for the first client that connects.
        self._handed_over: dict[str, tuple[AttachStream, list[dict[str, Any]]]] = {}

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                client = docker_client()
                try:
                    client.ping()
                except Exception as exc:  # noqa: BLE001
                    raise BackendError(f"Docker engine unreachable: {exc}") from None
                self._client = client
            return self._client

    def _api(self, what: str, call, *args, **kwargs):
        import docker

        try:
            return call(*args, **kwargs)
        except docker.errors.NotFound as exc:
            raise BackendError(f"{what}: not found ({exc.explanation or exc})") from None
        except docker.errors.APIError as exc:
            raise BackendError(f"{what}: {exc.explanation or exc}") from None
        except Exception as exc:  # noqa: BLE001 - connection errors of every kind
            with self._lock:
                self._client = None
            raise BackendError(f"Docker engine unreachable: {exc}") from None

    # -- finding
    def _containers(self, *, running: bool | None, labels: dict[str, str] | None = None) -> list:
        filters: dict[str, Any] = {"label": [LABEL_KEY] + [f"{name}={value}" for name, value in (labels or {}).items()]}
        if running is True:
            filters["status"] = "running"
        elif running is False:
            filters["status"] = ["exited", "dead"]
        return self._api("listing runtime containers", self.client.containers.list, all=True, filters=filters)

    def _info(self, container) -> RuntimeInfo:
        labels = container.labels
        state = container.attrs.get("State", {})
        started = state.get("StartedAt", "")
        return RuntimeInfo(
            key=labels.get(LABEL_KEY, ""),
            notebook=labels.get(LABEL_NOTEBOOK, ""),
            runtime_id=labels.get(LABEL_RUNTIME, ""),
            backend=self.name,
            language=labels.get(LABEL_LANGUAGE, ""),
            environment=container.attrs.get("Config", {}).get("Image", ""),
            idle_timeout=float(labels.get(LABEL_IDLE, "1200")),
            started_at=_parse_time(started),
            alive=container.status == "running",
            pid=state.get("Pid") or None,
            details={"container": container.id, "name": container.name, "settings": _json_label(labels.get(LABEL_SETTINGS))},
        )

    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None:
        key = runtime_key(notebook_path, runtime_id)
        for container in self._containers(running=True, labels={LABEL_KEY: key}):
            return self._with_instance(self._info(container), container)
        return None

    def _with_instance(self, info: RuntimeInfo, container) -> RuntimeInfo:
        for line in _journal_lines(container):
            hello = json.loads(line)
            if hello.get("type") == "hello":
                info.instance = hello.get("instance")
            break
        return info

    def list(self) -> list[RuntimeInfo]:
        return [self._info(container) for container in self._containers(running=True)]

    def orphans(self) -> list[RuntimeInfo]:
        """Exited runtime containers whose notebook is no longer at its path on this machine
        (moved or deleted). An exited container waits for its notebook's next client to record
        its journal and remove it; none will come for these, so they are listed for the user."""
        infos = []
        for container in self._containers(running=False):
            info = self._info(container)
            if os.path.exists(info.notebook):
                continue
            info.alive = False
            info.exit_reason = self.exit_reason(container.id)
            infos.append(info)
        return infos

    # -- starting
    def ensure_image(self, reference: str, progress: ProgressCallback | None = None) -> None:
        import docker

        try:
            self.client.images.get(reference)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise BackendError(f"image {reference}: {exc.explanation or exc}") from None
        repository, tag = _split_reference(reference)
        tracker = PullProgress(progress, reference)
        tracker._report("Preparing Download", {"status": "resolving"}, force=True)
        try:
            for event in self.client.api.pull(repository, tag=tag, stream=True, decode=True):
                tracker.feed(event)
        except docker.errors.NotFound:
            raise BackendError(f"image not found: {reference} (not on this engine, and no registry has it)") from None
        except docker.errors.APIError as exc:
            explanation = str(exc.explanation or exc)
            if "not found" in explanation or "does not exist" in explanation or "manifest unknown" in explanation:
                raise BackendError(f"image not found: {reference} ({explanation})") from None
            raise BackendError(f"image {reference} could not be pulled: {explanation}") from None
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - a registry that can't be reached
            raise BackendError(f"image {reference} could not be pulled: {exc}") from None

    def container_config(self, notebook_path: str, spec: RuntimeSpec, launch: Launch) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the container is created with: (create_container arguments, host config
        arguments), from the runtime's resolved settings. Secret values are not here."""
        import docker

        key = runtime_key(notebook_path, spec.id)
        environment = {
            **launch.env,
            "NJTUI_RUNTIME": spec.id,
            "NJTUI_NOTEBOOK": notebook_identity(notebook_path),
            "NJTUI_RESULTS": RESULTS_DIR,
            "NJTUI_SECRETS_DIR": SECRETS_DIR,
        }
        environment.setdefault("LANG", "C.UTF-8")
        host: dict[str, Any] = {
            "init": True,  # an init as PID 1 reaps what cells leave behind and forwards signals
            "log_config": {"type": "none", "config": {}},  # output lives in the agent's journal
            # Secrets are written here by the agent: memory only, never in an image or `inspect`.
            "tmpfs": {SECRETS_DIR: "mode=0700,size=1m"},
        }
        if launch.cpus is not None:
            host["nano_cpus"] = int(launch.cpus * 1e9)
        if launch.memory_bytes is not None:
            host["mem_limit"] = launch.memory_bytes
            host["memswap_limit"] = launch.memory_bytes  # no swap: past the limit is out of memory
        if launch.gpus:
            if isinstance(launch.gpus, list):
                host["device_requests"] = [docker.types.DeviceRequest(device_ids=list(launch.gpus), capabilities=[["gpu"]])]
            else:
                host["device_requests"] = [docker.types.DeviceRequest(count=int(launch.gpus), capabilities=[["gpu"]])]
        binds = {}
        for mount in spec.mounts:
            if mount.kind == "dir":
                source = str(Path(mount.source).expanduser())
                binds[source] = {"bind": mount.at, "mode": "ro" if mount.read_only else "rw"}
        if launch.mount_cuda:
            cuda = cuda_home()
            binds[cuda] = {"bind": CUDA_AT, "mode": "ro"}
            image_env = self._image_env(spec.environment)
            image_path = image_env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            environment["PATH"] = f"{CUDA_AT}/bin:{image_path}"
            library_path = image_env.get("LD_LIBRARY_PATH")
            environment["LD_LIBRARY_PATH"] = f"{CUDA_AT}/lib64" + (f":{library_path}" if library_path else "")
            environment["CUDA_HOME"] = CUDA_AT
        if binds:
            host["binds"] = binds
        create = {
            "image": spec.environment,
            "command": agent_command(spec),
            "name": f"njtui-{key}",
            "labels": {
                LABEL_NOTEBOOK: notebook_identity(notebook_path),
                LABEL_RUNTIME: spec.id,
                LABEL_KEY: key,
                LABEL_VERSION: njtui.__version__,
                LABEL_LANGUAGE: spec.language,
                LABEL_IDLE: str(spec.idle_timeout_seconds),
                LABEL_SETTINGS: json.dumps(launch.settings, sort_keys=True),
            },
            "environment": environment,
            "stdin_open": True,  # the agent's request channel…
            "detach": True,  # …which stays open when a client goes (else docker-py sets StdinOnce)
            "tty": False,
        }
        return create, host

    def _image_env(self, reference: str) -> dict[str, str]:
        try:
            image = self.client.images.get(reference)
        except Exception:  # noqa: BLE001 - resolved at create time anyway
            return {}
        return dict(item.split("=", 1) for item in image.attrs.get("Config", {}).get("Env") or [] if "=" in item)

    def local_images(self) -> list[dict[str, Any]]:
        """Images on the engine: reference, size in bytes, creation time."""
        images = []
        for image in self._api("listing images", self.client.images.list):
            for tag in image.tags:
                images.append({"reference": tag, "size": image.attrs.get("Size", 0), "created": _parse_time(image.attrs.get("Created", ""))})
        return sorted(images, key=lambda item: item["reference"])

    def check_image(self, reference: str) -> str:
        """Where an image reference resolves ("on this engine", "in its registry"); a
        BackendError saying why when it does not."""
        import docker

        try:
            self.client.images.get(reference)
            return "on this engine"
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise BackendError(f"{reference}: {exc.explanation or exc}") from None
        try:
            self.client.api.inspect_distribution(reference)
            return "in its registry (pulled at boot)"
        except docker.errors.APIError as exc:
            raise BackendError(f"image {reference} is neither on this engine nor in a registry it can reach ({exc.explanation or exc})") from None

    def image_env(self, reference: str) -> dict[str, str]:
        """The environment variables an image sets (its `ENV`), for "show inherited"."""
        return self._image_env(reference)

    def create(self, notebook_path: str, spec: RuntimeSpec, launch: Launch):
        """Creates (does not start) the runtime's container, mounts included."""
        import docker

        create, host = self.container_config(notebook_path, spec, launch)
        self._remove_named(create["name"])
        try:
            created = self.client.api.create_container(**create, host_config=self.client.api.create_host_config(**host))
        except docker.errors.ImageNotFound:
            raise BackendError(f"image not found: {spec.environment}") from None
        container = self.client.containers.get(created["Id"])
        try:
            for mount in spec.mounts:
                if mount.kind in ("git", "s3"):
                    self._api(f"{mount.kind} mount at {mount.at}", container.put_archive, "/", fetch_mount(mount, launch.mount_credentials))
        except BaseException:
            container.remove(force=True)
            raise
        return container

    def start(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, progress: ProgressCallback | None = None) -> RuntimeInfo:
        import docker

        running = self.find(notebook_path, spec.id)
        if running is not None:
            return running
        self.ensure_image(spec.environment, progress)
        try:
            container = self.create(notebook_path, spec, launch)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # another njtui process is starting the same runtime
                for _ in range(100):
                    running = self.find(notebook_path, spec.id)
                    if running is not None:
                        return running
                    time.sleep(0.1)
            raise BackendError(f"container for {spec.id} could not be created: {exc.explanation or exc}") from None
        try:
            stream = AttachStream(self.client, container.id)
            archive = _agent_archive(spec.language)
            if progress:
                progress("Uploading", {"done": 0, "total": len(archive), "what": "agent"})
            self._api("uploading the agent", container.put_archive, "/", archive)
            if progress:
                progress("Uploading", {"done": len(archive), "total": len(archive), "what": "agent"})
                progress("Starting", {"container": container.short_id})
            self._api("starting the container", container.start)
            seen = self._wait_for_hello(container, stream)
        except BaseException:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001
                pass
            raise
        info = self._info(self._api("inspecting the container", self.client.containers.get, container.id))
        info.instance = seen[-1].get("instance")
        self._handed_over[container.id] = (stream, seen)
        return info

    def _remove_named(self, name: str) -> None:
        import docker

        try:
            stale = self.client.containers.get(name)
        except docker.errors.NotFound:
            return
        if stale.status != "running":
            stale.remove(force=True)

    def _wait_for_hello(self, container, stream: AttachStream) -> list[dict[str, Any]]:
        """The agent's first messages, up to its hello, read from the attach stream."""
        seen: list[dict[str, Any]] = []
        stderr = ""
        stream.raw.settimeout(HELLO_TIMEOUT)
        try:
            for message in stream.messages():
                if message.get("type") == protocol.AGENT_STDERR:
                    stderr += message.get("text", "")
                    continue
                seen.append(message)
                if message.get("type") == "hello":
                    return seen
        except OSError:
            raise BackendError(f"the agent did not start within {HELLO_TIMEOUT:.0f}s") from None
        finally:
            stream.raw.settimeout(None)
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else self.exit_reason(container.id)
        raise BackendError(f"the agent exited at start: {detail}")

    # -- talking and stopping
    def connect(self, info: RuntimeInfo) -> DockerConnection:
        container = self._api(f"runtime {info.runtime_id}", self.client.containers.get, info.details["container"])
        handed = self._handed_over.pop(container.id, None)
        if handed is not None:
            return DockerConnection(self, container, *handed)
        return DockerConnection(self, container)

    def stop(self, info: RuntimeInfo, timeout: float = 5.0) -> None:
        import docker

        try:
            container = self.client.containers.get(info.details["container"])
        except docker.errors.NotFound:
            return
        if container.status == "running":
            try:
                connection = DockerConnection(self, container)
                connection.send({"op": "shutdown"})
                container.wait(timeout=timeout)
                connection.close()
            except Exception:  # noqa: BLE001 - it is removed below either way
                pass
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "already in progress" in str(exc.explanation or ""):
                return
            raise BackendError(f"container {container.short_id} could not be removed: {exc.explanation or exc}") from None

    def exit_reason(self, container_id: str) -> str:
        """Why a container's agent ended, in words: from the engine's state and the journal."""
        try:
            return self._exit_reason(container_id)
        except Exception as exc:  # noqa: BLE001 - the engine went away while we asked it
            return f"Docker engine unreachable: {exc}"

    def _exit_reason(self, container_id: str) -> str:
        import docker

        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return "container removed from outside"
        except Exception as exc:  # noqa: BLE001
            return f"Docker engine unreachable: {exc}"
        state = container.attrs.get("State", {})
        if state.get("Status") in ("removing", "dead"):
            return "container removed from outside"
        if state.get("Running"):
            return "the connection to the container closed"
        if state.get("OOMKilled"):
            return "killed: out of memory"
        last = None
        for line in _journal_lines(container):
            last = line
        if last is not None:
            message = json.loads(last)
            if message.get("type") == "exit":
                return protocol.exit_words(message.get("reason"))
        code = state.get("ExitCode")
        if state.get("Error"):
            return f"container failed: {state['Error']}"
        if code == 137:
            return "container killed (SIGKILL: docker kill, or the agent was killed)"
        if code == 143:
            return "container stopped from outside (SIGTERM: docker stop)"
        if code and code > 128:
            return f"agent killed by signal {code - 128}"
        return f"agent crashed (exit status {code})"

    def ended(self, notebook_path: str) -> list[RuntimeInfo]:
        infos = []
        for container in self._containers(running=False, labels={LABEL_NOTEBOOK: notebook_identity(notebook_path)}):
            info = self._with_instance(self._info(container), container)
            info.alive = False
            info.exit_reason = self.exit_reason(container.id)
            infos.append(info)
        return infos

    @contextlib.contextmanager
    def _directory_archive(self, info: RuntimeInfo, directory: str) -> Iterator[IO[bytes] | None]:
        """A directory of the container as one tar through the API, spooled to a temporary
        file; None if the directory is not there."""
        import docker

        container = self._api(f"runtime {info.runtime_id}", self.client.containers.get, info.details["container"])
        try:
            chunks, _ = container.get_archive(directory.rstrip("/") + "/.")
        except docker.errors.NotFound:
            yield None
            return
        with tempfile.TemporaryFile() as spool:
            for chunk in chunks:
                spool.write(chunk)
            spool.seek(0)
            yield spool

    def collect_files(self, info: RuntimeInfo, staged: list[dict[str, Any]]) -> Iterator[tuple[str, IO[bytes]]]:
        """The copies of its /results files the agent staged as an execution ended."""
        names = {staged_name: name for name, staged_name in staged_files(staged)}
        if not names:
            return
        with self._directory_archive(info, STAGE_DIR) as archive:
            if archive is None:
                return
            with tarfile.open(fileobj=archive, mode="r|") as tar:
                for member in tar:
                    name = names.get(member.name.rsplit("/", 1)[-1])
                    if name is None or not member.isfile():
                        continue
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield name, handle

    def write_back(self, info: RuntimeInfo, mount, credentials: dict[str, str]) -> list[str]:
        """A read-write S3 mount's changed files, from the container back to the bucket."""
        with self._directory_archive(info, mount.at) as archive:
            if archive is None:
                return []
            try:
                return s3_write_back(mount, credentials, regular_files(archive))
            except BackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - botocore's errors, in words
                raise BackendError(f"s3 mount {mount.source}: {exc}") from None

    def journal(self, info: RuntimeInfo) -> Iterator[dict[str, Any]]:
        container = self._api(f"runtime {info.runtime_id}", self.client.containers.get, info.details["container"])
        for line in _journal_lines(container):
            yield protocol.decode(line)

    def discard(self, info: RuntimeInfo) -> None:
        import docker

        try:
            container = self.client.containers.get(info.details["container"])
            if container.status != "running":
                container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except Exception:  # noqa: BLE001 - left for the next client
            pass


def regular_files(archive: IO[bytes]) -> Iterator[tuple[str, IO[bytes]]]:
    """The regular files in a tar of a directory, by their names inside it."""
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.split("/", 1)[1] if "/" in member.name else member.name
            handle = tar.extractfile(member)
            if handle is not None and name:
                yield name, handle


def cuda_home() -> str:
    """The host's CUDA toolkit: $NJTUI_CUDA_HOME, $CUDA_HOME, else /usr/local/cuda."""
    home = os.environ.get("NJTUI_CUDA_HOME") or os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    if not Path(home, "bin").is_dir():
        raise BackendError(f"mount_cuda: no CUDA toolkit at {home} on this machine; set NJTUI_CUDA_HOME to its directory")
    return str(Path(home).resolve())


def _json_label(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None


def _split_reference(reference: str) -> tuple[str, str]:
    name, _, digest = reference.partition("@")
    if digest:
        return name, digest
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return repository, tag
    return name, "latest"


def _parse_time(value: str) -> float:
    from datetime import datetime

    if not value or value.startswith("0001"):
        return 0.0
    try:
        return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0
