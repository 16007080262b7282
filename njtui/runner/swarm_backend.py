"""Swarm runtimes: each a one-replica Docker Swarm service that never restarts by itself.

`engine = "swarm:<context or manager URL>"` places a runtime on a Swarm. The manager schedules
it: the runtime's machine type becomes a placement constraint on the nodes' `njtui.machine`
label, `cpus` and `memory` reservations and limits, `gpus` a count of the `NVIDIA-GPU` generic
resource. Until a node can hold it the runtime boots ("Waiting for a node: " and Swarm's own
reason) and can be cancelled.

njtui talks to the agent as it does to a local container's (docker_backend): through the
attach stream and the archive API of the engine of the node the task landed on, which the
node's `njtui.engine` label names (a Docker context's name or a URL). The agent listens on no
network port. A service's container starts with a shell that waits for the agent, which njtui
then uploads (a service cannot be given files before it starts).
"""

from __future__ import annotations

import builtins
import io
import tarfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from njtui.model import RuntimeSpec
from njtui.model.engine import EngineError, parse_engine
from njtui.runner.backend import WRITE_BACK, Backend, BackendError, BackendUnavailable, BootCancelled, ProgressCallback, RuntimeInfo
from njtui.runner.docker_backend import DockerBackend
from njtui.runner.docker_connection import AttachStream, DockerConnection
from njtui.runner.docker_container import AGENT_DIR, LABEL_IDLE, LABEL_KEY, LABEL_LANGUAGE, LABEL_NOTEBOOK, LABEL_RUNTIME, SECRETS_DIR, agent_archive, container_config, runtime_environment
from njtui.runner.docker_engine import parse_time
from njtui.runner.launch import Launch
from njtui.runner.paths import notebook_identity, runtime_key

# Node labels njtui reads: a node's machine type, and the engine that reaches the node.
NODE_MACHINE_LABEL = "njtui.machine"
NODE_ENGINE_LABEL = "njtui.engine"
GPU_RESOURCE = "NVIDIA-GPU"
READY = f"{AGENT_DIR}/ready"  # uploaded after the agent: the container's shell then starts it
POLL = 0.25
# Task states in which its container runs or is about to.
_STARTING = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")
_ENDED = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")


def _labelled(service: dict[str, Any], wanted: dict[str, str | None]) -> bool:
    labels = service.get("Spec", {}).get("Labels") or {}
    return all(labels.get(name) if value is None else labels.get(name) == value for name, value in wanted.items())


def _task_order(task: dict[str, Any]) -> str:
    return task.get("CreatedAt", "")


class SwarmBackend(Backend):
    """Runtimes as one-replica services of a Docker Swarm."""

    name = "swarm"
    capabilities = frozenset({WRITE_BACK})

    def __init__(self, engine: str | None = None, engine_tls: str | None = None) -> None:
        if engine is None:
            raise BackendUnavailable('the swarm backend runs runtimes whose engine names a Swarm: engine = "swarm:<context or manager URL>"')
        try:
            ref = parse_engine(engine)
        except EngineError as exc:
            raise BackendError(f"engine {exc}") from None
        if not ref.swarm:
            raise BackendError(f'engine {engine!r} is not a Swarm: write engine = "swarm:{engine}"')
        self.engine = engine
        self.manager = DockerBackend(engine=ref.target, engine_tls=engine_tls)
        self._nodes: dict[str, DockerBackend] = {}
        self._lock = threading.Lock()

    # -- the manager's view
    def _api(self, what: str, call, *args, **kwargs):
        return self.manager._api(what, call, *args, **kwargs)

    def _services(self, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The runtimes' services, with these label values. The engine turns a service listing's
        label filters into one map by label name, so a filter on a label's presence and one on
        its value (the same name) leave either one at random: the values are checked here too."""
        wanted = {LABEL_KEY: None, **(labels or {})}
        filters = {"label": [name if value is None else f"{name}={value}" for name, value in wanted.items()]}
        services = self._api(f"listing the services of Swarm {self.engine}", self.manager.client.api.services, filters=filters)
        return [service for service in services if _labelled(service, wanted)]

    def _tasks(self, service_id: str) -> list[dict[str, Any]]:
        tasks = self._api("listing the service's tasks", self.manager.client.api.tasks, filters={"service": service_id})
        return sorted(tasks, key=_task_order)

    def _node(self, node_id: str) -> dict[str, Any]:
        return self._api(f"node {node_id}", self.manager.client.api.inspect_node, node_id)

    def _node_backend(self, node: dict[str, Any]) -> DockerBackend:
        """The engine of a node, as its `njtui.engine` label names it."""
        labels = node.get("Spec", {}).get("Labels") or {}
        hostname = node.get("Description", {}).get("Hostname") or node.get("ID", "?")
        endpoint = labels.get(NODE_ENGINE_LABEL)
        if not endpoint:
            if node.get("ManagerStatus", {}).get("Leader"):
                return self.manager
            raise BackendError(f"Swarm node {hostname} has no {NODE_ENGINE_LABEL} label naming the engine njtui reaches it through; label it: docker node update --label-add {NODE_ENGINE_LABEL}=<context or URL> {hostname}")
        with self._lock:
            backend = self._nodes.get(endpoint)
            if backend is None:
                backend = self._nodes[endpoint] = DockerBackend(engine=endpoint)
        return backend

    def machine_types(self) -> builtins.list[str]:
        """The machine types the Swarm's nodes are labelled with."""
        nodes = self._api(f"listing the nodes of Swarm {self.engine}", self.manager.client.api.nodes)
        return sorted({label for node in nodes if (label := (node.get("Spec", {}).get("Labels") or {}).get(NODE_MACHINE_LABEL))})

    # -- finding
    def _info(self, service: dict[str, Any], task: dict[str, Any] | None, alive: bool) -> RuntimeInfo:
        labels = service.get("Spec", {}).get("Labels") or {}
        container_id = ((task or {}).get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
        node_id = (task or {}).get("NodeID")
        node = self._node(node_id) if node_id else {}
        info = RuntimeInfo(
            key=labels.get(LABEL_KEY, ""),
            notebook=labels.get(LABEL_NOTEBOOK, ""),
            runtime_id=labels.get(LABEL_RUNTIME, ""),
            backend=self.name,
            language=labels.get(LABEL_LANGUAGE, ""),
            environment=service.get("Spec", {}).get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", "").split("@", 1)[0],
            idle_timeout=float(labels.get(LABEL_IDLE, "1200")),
            started_at=parse_time((task or {}).get("Status", {}).get("Timestamp", "")),
            alive=alive,
            details={
                "service": service["ID"],
                "container": container_id,
                "engine": self.engine,
                "node": node.get("Description", {}).get("Hostname"),
                "node_engine": (node.get("Spec", {}).get("Labels") or {}).get(NODE_ENGINE_LABEL),
                "node_id": node_id,
            },
        )
        return info

    def _node_of(self, info: RuntimeInfo) -> DockerBackend:
        if not info.details.get("node_id"):
            raise BackendError(f"runtime {info.runtime_id} has no task on a node")
        return self._node_backend(self._node(info.details["node_id"]))

    def find(self, notebook_path: str, runtime_id: str) -> RuntimeInfo | None:
        key = runtime_key(notebook_path, runtime_id)
        for service in self._services({LABEL_KEY: key}):
            task = self._current_task(service["ID"])
            if task is None or task.get("Status", {}).get("State") != "running":
                continue
            info = self._info(service, task, alive=True)
            node = self._node_of(info)
            container = node._api(f"runtime {runtime_id}", node.client.containers.get, info.details["container"])
            return node._with_instance(info, container)
        return None

    def _current_task(self, service_id: str) -> dict[str, Any] | None:
        tasks = self._tasks(service_id)
        return tasks[-1] if tasks else None

    def list(self) -> builtins.list[RuntimeInfo]:
        infos = []
        for service in self._services():
            task = self._current_task(service["ID"])
            if task is not None and task.get("Status", {}).get("State") == "running":
                infos.append(self._info(service, task, alive=True))
        return infos

    # -- starting
    def _check_machine(self, spec: RuntimeSpec) -> None:
        if spec.machine is None:
            return
        types = self.machine_types()
        if spec.machine not in types:
            raise BackendError(
                f"runtime {spec.id}: machine type {spec.machine!r} is not a label of any node of Swarm {self.engine} (machine types there: {', '.join(types) or 'none'}); "
                f"pick one in the runtime's settings (e, Machine), or label a node: docker node update --label-add {NODE_MACHINE_LABEL}={spec.machine} NODE"
            )

    def service_spec(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, image: str) -> dict[str, Any]:
        """create_service's arguments: the local container's configuration as a service."""
        from docker.types import ContainerSpec, DriverConfig, Mount, Placement, Resources, RestartPolicy, ServiceMode, TaskTemplate

        create, host = container_config(notebook_path, spec, launch, image)
        shell, flag, script, *arguments = create["command"]
        # The agent comes after the start: the shell waits for it, then is what it always is.
        # The GPUs Swarm gave it come in a variable no shell can name (DOCKER_RESOURCE_NVIDIA-GPU), which
        # the shell's children do not inherit; the shell's own environment still has it:
        # cells get them as NJTUI_GPUS.
        gpus = f"NJTUI_GPUS=$(tr '\\0' '\\n' </proc/$$/environ | sed -n 's/^DOCKER_RESOURCE_{GPU_RESOURCE}=//p'); [ -n \"$NJTUI_GPUS\" ] && export NJTUI_GPUS; "
        waiting = f"while [ ! -e {READY} ]; do sleep 0.1; done; {gpus}{script}"
        mounts = list(host["mounts"])
        mounts.append(Mount(SECRETS_DIR, None, type="tmpfs", tmpfs_mode=0o700, tmpfs_size=1 << 20))
        for source, bind in (host.get("binds") or {}).items():
            mounts.append(Mount(bind["bind"], source, type="bind", read_only=bind["mode"] == "ro"))
        container = ContainerSpec(image, command=[shell, flag, waiting, *arguments], labels=create["labels"], mounts=mounts, open_stdin=True, tty=False, init=True)
        nano_cpus = host.get("nano_cpus")
        memory = host.get("mem_limit")
        resources = Resources(cpu_limit=nano_cpus, cpu_reservation=nano_cpus, mem_limit=memory, mem_reservation=memory, generic_resources=self._gpus(spec, launch))
        constraints = [f"node.labels.{NODE_MACHINE_LABEL}=={spec.machine}"] if spec.machine else []
        template = TaskTemplate(container, resources=resources, restart_policy=RestartPolicy(condition="none"), placement=Placement(constraints=constraints), log_driver=DriverConfig("none"))
        return {"task_template": template, "name": create["name"], "labels": create["labels"], "mode": ServiceMode("replicated", 1)}

    @staticmethod
    def _gpus(spec: RuntimeSpec, launch: Launch) -> dict[str, int] | None:
        gpus = launch.gpus
        if not gpus:
            return None
        if isinstance(gpus, list):
            return {GPU_RESOURCE: len(gpus)}
        if gpus == "all":
            raise BackendError(f'runtime {spec.id}: a Swarm runtime asks for a number of GPUs (Swarm places it on a node with that many {GPU_RESOURCE}), not "all"; set gpus = 1')
        return {GPU_RESOURCE: int(gpus)}

    def start(self, notebook_path: str, spec: RuntimeSpec, launch: Launch, progress: ProgressCallback | None = None) -> RuntimeInfo:
        import docker

        running = self.find(notebook_path, spec.id)
        if running is not None:
            return running
        self._check_machine(spec)
        image = launch.image or str(spec.environment)
        arguments = self.service_spec(notebook_path, spec, launch, image)
        self._remove_service_named(arguments["name"])
        try:
            created = self.manager.client.api.create_service(**arguments)
        except docker.errors.APIError as exc:
            raise BackendError(f"the Swarm {self.engine} refused the runtime's service: {exc.explanation or exc}") from None
        service_id = created["ID"]
        try:
            task = self._wait_for_task(service_id, progress)
            service = self._api("inspecting the service", self.manager.client.api.inspect_service, service_id)
            info = self._info(service, task, alive=True)
            node = self._node_of(info)
            if progress:
                progress("Starting", {"node": info.details["node"]})
            container = node._api("the service's container", node.client.containers.get, info.details["container"])
            stream = AttachStream(node.client, container.id)
            archive = agent_archive(spec, runtime_environment(notebook_path, spec, launch, node.image_env, image))
            if progress:
                progress("Uploading", {"done": 0, "total": len(archive), "what": "agent"})
            node._api("uploading the agent", container.put_archive, "/", archive)
            node.put_mounts(container, spec, launch)
            node._api("starting the agent", container.put_archive, "/", _ready_archive())
            if progress:
                progress("Uploading", {"done": len(archive), "total": len(archive), "what": "agent"})
            seen = node._wait_for_hello(container, stream)
        except BaseException:
            self._remove_service(service_id)
            raise
        info.instance = seen[-1].get("instance")
        node._handed_over[container.id] = (stream, seen)
        return info

    def _wait_for_task(self, service_id: str, progress: ProgressCallback | None) -> dict[str, Any]:
        """The service's task once it runs. Until then the boot phase says what Swarm says."""
        import docker

        while True:
            try:
                tasks = self.manager.client.api.tasks(filters={"service": service_id})
            except docker.errors.NotFound:
                raise BootCancelled("cancelled: the runtime's service was removed while it waited for a node") from None
            except docker.errors.APIError as exc:
                raise BackendError(f"Swarm {self.engine}: {exc.explanation or exc}") from None
            task: dict[str, Any] = sorted(tasks, key=_task_order)[-1] if tasks else {}
            status = task.get("Status", {})
            state = status.get("State", "new")
            if state == "running":
                return task
            if state in _ENDED:
                node = self._node(task["NodeID"]).get("Description", {}).get("Hostname") if task.get("NodeID") else None
                where = f" on node {node}" if node else ""
                raise BackendError(f"Swarm could not start the runtime{where}: {status.get('Err') or status.get('Message') or state}")
            reason = status.get("Err") or status.get("Message") or state
            phase = f"Waiting for a node: {reason}" if state == "pending" else "Scheduling"
            if progress:
                # Every poll, not only on a change: it is where a stop cancels the wait.
                progress(phase, {"task": state})
            time.sleep(POLL)  # Swarm offers no event for a task's change that a client can wait on per service

    def _remove_service(self, service_id: str) -> None:
        import docker

        try:
            self.manager.client.api.remove_service(service_id)
        except docker.errors.NotFound:
            pass
        except Exception:  # noqa: BLE001 - a service left behind is listed and stoppable
            pass

    def _remove_service_named(self, name: str) -> None:
        """A service of an earlier run of this runtime that has ended (its task is not running)."""
        for service in self._api("listing services", self.manager.client.api.services, filters={"name": name}):
            if service.get("Spec", {}).get("Name") != name:
                continue
            task = self._current_task(service["ID"])
            if task is not None and task.get("Status", {}).get("State") == "running":
                raise BackendError(f"a service named {name} runs already on Swarm {self.engine}")
            self._remove_service(service["ID"])

    # -- talking and stopping
    def connect(self, info: RuntimeInfo) -> DockerConnection:
        node = self._node_of(info)
        connection = node.connect(info)
        connection.explain = lambda container_id: self.exit_reason(info, node, container_id)
        return connection

    def exit_reason(self, info: RuntimeInfo, node: DockerBackend, container_id: str) -> str:
        """Why the runtime's agent ended: what Swarm did to its task, where it did something."""
        reason = node.exit_reason(container_id)
        try:
            if node.agent_exit(node.client.containers.get(container_id)) is not None:
                return reason  # it ended itself (idle timeout, shutdown): its own words
            tasks = self._tasks(info.details["service"])
        except Exception:  # noqa: BLE001 - the node or the manager went too: what its engine said
            return reason
        task = next((each for each in tasks if ((each.get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")) == container_id), None)
        if task is None or task.get("DesiredState") not in ("shutdown", "remove"):
            return reason
        try:
            node_info = self._node(task["NodeID"])
        except BackendError:
            return f"Swarm shut the runtime's task down: {reason}"
        hostname = node_info.get("Description", {}).get("Hostname") or task["NodeID"]
        if node_info.get("Spec", {}).get("Availability") == "drain":
            return f"node {hostname} was drained: Swarm shut the runtime down ({reason})"
        if node_info.get("Status", {}).get("State") != "ready":
            return f"node {hostname} left the Swarm ({node_info.get('Status', {}).get('State')}): {reason}"
        return f"Swarm shut the runtime's task down: {reason}"

    def stop(self, info: RuntimeInfo, timeout: float = 5.0) -> None:
        if info.details.get("container") and info.alive:
            try:
                node = self._node_of(info)
                node.shut_down(node.client.containers.get(info.details["container"]), timeout)
            except Exception:  # noqa: BLE001 - its node is gone: the service is removed below either way
                pass
        self._remove_service(info.details["service"])

    def ended(self, notebook_path: str) -> builtins.list[RuntimeInfo]:
        infos = []
        for service in self._services({LABEL_NOTEBOOK: notebook_identity(notebook_path)}):
            task = self._current_task(service["ID"])
            if task is None or task.get("Status", {}).get("State") not in _ENDED:
                continue
            info = self._info(service, task, alive=False)
            if not info.details["container"]:
                continue
            try:
                node = self._node_of(info)
                container = node.client.containers.get(info.details["container"])
                info = node._with_instance(info, container)
            except Exception:  # noqa: BLE001 - its node is gone: nothing left to record
                continue
            info.exit_reason = self.exit_reason(info, node, info.details["container"])
            infos.append(info)
        return infos

    def journal(self, info: RuntimeInfo) -> Iterator[dict[str, Any]]:
        return self._node_of(info).journal(info)

    def discard(self, info: RuntimeInfo) -> None:
        self._remove_service(info.details["service"])

    def collect_files(self, info: RuntimeInfo, staged: builtins.list[dict[str, Any]]) -> Iterator[tuple[str, IO[bytes]]]:
        return self._node_of(info).collect_files(info, staged)

    def write_back(self, info: RuntimeInfo, mount, credentials: dict[str, str]) -> builtins.list[str]:
        return self._node_of(info).write_back(info, mount, credentials)


def _ready_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        entry = tarfile.TarInfo(READY.lstrip("/"))
        entry.mtime = int(time.time())
        tar.addfile(entry, io.BytesIO(b""))
    return buffer.getvalue()
