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

import builtins
import contextlib
import json
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from njtui.model import RuntimeSpec
from njtui.runner import docker_images, protocol
from njtui.runner.backend import IMAGES, ORPHANS, WRITE_BACK, Backend, BackendError, BackendUnavailable, ProgressCallback, RuntimeInfo, staged_files
from njtui.runner.docker_connection import AttachStream, DockerConnection, journal_lines
from njtui.runner.docker_container import (
    LABEL_IDLE,
    LABEL_KEY,
    LABEL_LANGUAGE,
    LABEL_NOTEBOOK,
    LABEL_RUNTIME,
    LABEL_SETTINGS,
    LABEL_VERSION,
    STAGE_DIR,
    agent_archive,
    container_config,
    remove_container,
    runtime_environment,
)
from njtui.runner.docker_engine import docker_client, engine_client, parse_time
from njtui.runner.docker_environments import forget_mark
from njtui.runner.launch import Launch
from njtui.runner.mounts import fetch as fetch_mount
from njtui.runner.mounts import s3_write_back
from njtui.runner.paths import notebook_identity, runtime_key

# The labels too: importers of this module find them here, where they always were.
__all__ = [
    "DockerBackend",
    "LABEL_IDLE",
    "LABEL_KEY",
    "LABEL_LANGUAGE",
    "LABEL_NOTEBOOK",
    "LABEL_RUNTIME",
    "LABEL_SETTINGS",
    "LABEL_VERSION",
    "regular_files",
]

HELLO_TIMEOUT = 60.0


# Set by Swarm on the containers of its services' tasks: those are the swarm backend's runtimes.
LABEL_SWARM_SERVICE = "com.docker.swarm.service.id"


def _unreachable(exc: BaseException, engine: str | None = None) -> BackendError:
    """No engine answering where none is configured (no DOCKER_HOST) is a machine without
    Docker: listing every runtime passes over it; one configured and not answering is a problem."""
    if engine is not None:
        return BackendError(f"Docker engine {engine} unreachable: {exc}")
    kind = BackendError if os.environ.get("DOCKER_HOST") else BackendUnavailable
    return kind(f"Docker engine unreachable: {exc}")


class DockerBackend(Backend):
    """Runtimes as containers whose images are their environments."""

    name = "docker"
    capabilities = frozenset({ORPHANS, WRITE_BACK, IMAGES})

    def __init__(self, client=None, engine: str | None = None, engine_tls: str | None = None) -> None:
        self._client = client
        # The engine a runtime's `engine` setting names (None: the user's default engine).
        self.engine = engine
        self.engine_tls = engine_tls
        self._lock = threading.Lock()
        # The attach stream a runtime was started with, for the first client that connects.
        self._handed_over: dict[str, tuple[AttachStream, list[dict[str, Any]]]] = {}

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                client = docker_client() if self.engine is None else engine_client(self.engine, self.engine_tls)
                try:
                    client.ping()
                except Exception as exc:  # noqa: BLE001 - every way of not answering reads the same
                    raise _unreachable(exc, self.engine) from None
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
            raise _unreachable(exc, self.engine) from None

    # -- finding
    def _containers(self, *, running: bool | None, labels: dict[str, str] | None = None) -> list:
        filters: dict[str, Any] = {"label": [LABEL_KEY] + [f"{name}={value}" for name, value in (labels or {}).items()]}
        if running is True:
            filters["status"] = "running"
        elif running is False:
            filters["status"] = ["exited", "dead"]
        # ignore_removed: one removed between the listing and its inspection is not an error.
        containers = self._api("listing runtime containers", self.client.containers.list, all=True, filters=filters, ignore_removed=True)
        # A blank key: a container started by hand from a saved environment, which carries the
        # runtime's labels blanked (see docker_environments), is not a runtime. A Swarm task's
        # container is the swarm backend's to list and stop.
        return [container for container in containers if container.labels.get(LABEL_KEY) and LABEL_SWARM_SERVICE not in container.labels]

    def _info(self, container) -> RuntimeInfo:
        labels = container.labels
        state = container.attrs.get("State", {})
        started = state.get("StartedAt", "")
        settings = _json_label(labels.get(LABEL_SETTINGS))
        # In words ("tools v2") where the runtime booted from a saved version, whose image has only an id.
        environment = settings.get("environment") if isinstance(settings, dict) and isinstance(settings.get("environment"), str) else None
        return RuntimeInfo(
            key=labels.get(LABEL_KEY, ""),
            notebook=labels.get(LABEL_NOTEBOOK, ""),
            runtime_id=labels.get(LABEL_RUNTIME, ""),
            backend=self.name,
            language=labels.get(LABEL_LANGUAGE, ""),
            environment=environment or container.attrs.get("Config", {}).get("Image", ""),
            idle_timeout=float(labels.get(LABEL_IDLE, "1200")),
            started_at=parse_time(started),
            alive=container.status == "running",
            pid=state.get("Pid") or None,
            details={"container": container.id, "name": container.name, "settings": settings, "engine": self.engine},
        )

    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None:
        key = runtime_key(notebook_path, runtime_id)
        for container in self._containers(running=True, labels={LABEL_KEY: key}):
            return self._with_instance(self._info(container), container)
        return None

    def _with_instance(self, info: RuntimeInfo, container) -> RuntimeInfo:
        for line in journal_lines(container):
            hello = json.loads(line)
            if hello.get("type") == "hello":
                info.instance = hello.get("instance")
            break
        return info

    def list(self) -> builtins.list[RuntimeInfo]:
        return [self._info(container) for container in self._containers(running=True)]

    def orphans(self) -> builtins.list[RuntimeInfo]:
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
        docker_images.ensure_image(self.client, reference, progress)

    def local_images(self) -> builtins.list[dict[str, Any]]:
        """Images on the engine: reference, size in bytes, creation time."""
        return docker_images.tagged_images(self._api("listing images", self.client.images.list))

    def check_image(self, reference: str) -> str:
        """Where an image reference resolves ("on this engine", "in its registry"); a
        BackendError saying why when it does not."""
        return docker_images.check_image(self.client, reference)

    def image_env(self, reference: str) -> dict[str, str]:
        """The environment variables an image sets (its `ENV`), for "show inherited"."""
        try:
            image = self.client.images.get(reference)
        except Exception:  # noqa: BLE001 - resolved at create time anyway
            return {}
        return docker_images.image_env(image)

    def create(self, notebook_path: str, spec: RuntimeSpec, launch: Launch):
        """Creates (does not start) the runtime's container, mounts included."""
        import docker

        create, host = container_config(notebook_path, spec, launch, launch.image or str(spec.environment))
        self._remove_named(create["name"])
        try:
            created = self.client.api.create_container(**create, host_config=self.client.api.create_host_config(**host))
        except docker.errors.ImageNotFound:
            raise BackendError(f"image not found: {launch.image or spec.environment}") from None
        container = self.client.containers.get(created["Id"])
        try:
            self.put_mounts(container, spec, launch)
        except BaseException:
            remove_container(container)
            raise
        return container

    def put_mounts(self, container, spec: RuntimeSpec, launch: Launch) -> None:
        """The git and S3 mounts' files, fetched here and copied onto the container's volumes
        (the engine's machine needs no access to the repository or the bucket)."""
        for mount in spec.mounts:
            if mount.kind in ("git", "s3"):
                self._api(f"{mount.kind} mount at {mount.at}", container.put_archive, "/", fetch_mount(mount, launch.mount_credentials))

    def start(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, progress: ProgressCallback | None = None) -> RuntimeInfo:
        import docker

        running = self.find(notebook_path, spec.id)
        if running is not None:
            return running
        image = launch.image or str(spec.environment)
        self.ensure_image(image, progress)
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
            archive = agent_archive(spec, runtime_environment(notebook_path, spec, launch, self.image_env, image))
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
                remove_container(container)
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
            remove_container(stale)

    def _wait_for_hello(self, container, stream: AttachStream) -> builtins.list[dict[str, Any]]:
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

    def shut_down(self, container, timeout: float) -> None:
        """Asks a running container's agent to end (its cell ends as stopped) and waits up to
        `timeout` for it; whatever happens, the caller removes the container after."""
        if container.status != "running":
            return
        try:
            connection = DockerConnection(self, container)
            connection.send({"op": "shutdown"})
            container.wait(timeout=timeout)
            connection.close()
        except Exception:  # noqa: BLE001 - it is removed after either way
            pass

    def stop(self, info: RuntimeInfo, timeout: float = 5.0) -> None:
        import docker

        try:
            container = self.client.containers.get(info.details["container"])
        except docker.errors.NotFound:
            return
        self.shut_down(container, timeout)
        forget_mark(container.id)
        try:
            remove_container(container)
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

    @staticmethod
    def agent_exit(container) -> dict[str, Any] | None:
        """The agent's own `exit` message, if its journal ends with one (it ended itself)."""
        last = None
        for line in journal_lines(container):
            last = line
        message = json.loads(last) if last is not None else None
        return message if isinstance(message, dict) and message.get("type") == "exit" else None

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
        said = self.agent_exit(container)
        if said is not None:
            return protocol.exit_words(said)
        code = state.get("ExitCode")
        if state.get("Error"):
            return f"container failed: {state['Error']}"
        if code == 137:
            return "container killed (SIGKILL: docker kill, or the agent was killed)"
        if code == 143:
            return "container stopped from outside (SIGTERM: docker stop)"
        if code and code > 128:
            return f"agent killed by signal {code - 128}"
        if code == 0:
            # The agents exit 0 only when they end on their own (after their `exit` message, or on
            # a TERM). Its journal is missing when a stop removed the container as we read it.
            return "stopped"
        return f"agent crashed (exit status {code})"

    def ended(self, notebook_path: str) -> builtins.list[RuntimeInfo]:
        import docker

        infos = []
        for container in self._containers(running=False, labels={LABEL_NOTEBOOK: notebook_identity(notebook_path)}):
            try:
                info = self._with_instance(self._info(container), container)
            except docker.errors.APIError:
                # Being removed as we look (a stop of another client): nothing left to record.
                continue
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

    def collect_files(self, info: RuntimeInfo, staged: builtins.list[dict[str, Any]]) -> Iterator[tuple[str, IO[bytes]]]:
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

    def write_back(self, info: RuntimeInfo, mount, credentials: dict[str, str]) -> builtins.list[str]:
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
        for line in journal_lines(container):
            yield protocol.decode(line)

    def discard(self, info: RuntimeInfo) -> None:
        import docker

        try:
            container = self.client.containers.get(info.details["container"])
            if container.status != "running":
                remove_container(container)
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


def _json_label(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None
