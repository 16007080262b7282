"""What a runtime's container is made of: where the agent lives in it, the labels any njtui
process finds it by, and the create and host configuration from the runtime's settings.

Only the runtime's own file system is in the container's writable layer, so that saving it as
an environment (`docker commit`) takes nothing else: the agent, its journal, /results and the
git and S3 mounts are on anonymous volumes, secrets on a tmpfs, host directories bound. The
container's configuration is kept to the image's own too (a commit merges it into the new
image): its environment variables reach the agent through a file on the agent's volume, read
by a shell that then becomes the agent.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import njtui
from njtui.model import RuntimeSpec
from njtui.runner.agents import AGENTS_DIR, agent_command_for
from njtui.runner.backend import BackendError
from njtui.runner.launch import Launch
from njtui.runner.paths import notebook_identity, runtime_key

AGENT_DIR = "/opt/njtui"
JOURNAL = f"{AGENT_DIR}/journal.jsonl"
STAGE_DIR = f"{AGENT_DIR}/files"  # where the agent copies an ending cell's /results files
ENV_FILE = f"{AGENT_DIR}/env"  # the runtime's environment variables, sourced before the agent starts
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


def agent_archive(spec: RuntimeSpec, environment: dict[str, str]) -> bytes:
    """A tar of the agent, its environment file and the /results directory, for put_archive
    at the image's root (they land on the container's volumes)."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in ((AGENT_DIR.lstrip("/"), 0o755), (STAGE_DIR.lstrip("/"), 0o700), (RESULTS_DIR.lstrip("/"), 0o777)):
            entry = tarfile.TarInfo(directory)
            entry.type = tarfile.DIRTYPE
            entry.mode = mode
            entry.mtime = now
            tar.addfile(entry)
        env_file = "".join(f"{variable}={shlex.quote(value)}\n" for variable, value in environment.items()).encode()
        files = [(f"{AGENT_DIR}/{name}", (AGENTS_DIR / name).read_bytes(), 0o755) for name in agent_command_for(spec).files]
        for path, data, mode in (*files, (ENV_FILE, env_file, 0o600)):
            entry = tarfile.TarInfo(path.lstrip("/"))
            entry.size = len(data)
            entry.mode = mode
            entry.mtime = now
            tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def agent_command(spec: RuntimeSpec) -> list[str]:
    command = agent_command_for(spec)
    interpreter = "python3" if command.interpreter == "python" else "bash"
    # `set -a` exports what the file assigns; exec makes the agent the process the init watches.
    # An image without the interpreter ends here with a sentence the runtime's error shows.
    return [
        "/bin/sh",
        "-c",
        f'set -a; . {ENV_FILE}; set +a; command -v "$1" >/dev/null || {{ echo "njtui: this image has no $1, which the runtime\'s agent needs" >&2; exit 127; }}; exec "$@"',
        "njtui-agent",
        interpreter,
        f"{AGENT_DIR}/{command.script}",
        "--journal",
        JOURNAL,
        *command.arguments,
    ]


def runtime_environment(notebook_path: str, spec: RuntimeSpec, launch: Launch, image_env: Callable[[str], dict[str, str]], image: str) -> dict[str, str]:
    """The variables the agent starts with (the image's own come from the image)."""
    environment = _environment(notebook_path, spec, launch)
    if launch.mount_cuda:
        environment.update(_cuda_environment(image_env(image)))
    return environment


def cuda_home() -> str:
    """The host's CUDA toolkit: $NJTUI_CUDA_HOME, $CUDA_HOME, else /usr/local/cuda."""
    home = os.environ.get("NJTUI_CUDA_HOME") or os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    if not Path(home, "bin").is_dir():
        raise BackendError(f"mount_cuda: no CUDA toolkit at {home} on this machine; set NJTUI_CUDA_HOME to its directory")
    return str(Path(home).resolve())


def container_config(notebook_path: str, spec: RuntimeSpec, launch: Launch, image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the container is created with: (create_container arguments, host config
    arguments), from the runtime's resolved settings and the image it boots from. Neither
    secret values nor environment variables are here (see the module's docstring)."""
    key = runtime_key(notebook_path, spec.id)
    host = _host_config(launch)
    binds = _directory_binds(spec)
    if launch.mount_cuda:
        binds[cuda_home()] = {"bind": CUDA_AT, "mode": "ro"}
    if binds:
        host["binds"] = binds
    host["mounts"] = _volumes(spec)
    create = {
        "image": image,
        "command": agent_command(spec),
        "name": f"njtui-{key}",
        "labels": _labels(notebook_path, spec, launch, key),
        "stdin_open": True,  # the agent's request channel…
        "detach": True,  # …which stays open when a client goes (else docker-py sets StdinOnce)
        "tty": False,
    }
    return create, host


def _environment(notebook_path: str, spec: RuntimeSpec, launch: Launch) -> dict[str, str]:
    environment = {
        **launch.env,
        "NJTUI_RUNTIME": spec.id,
        "NJTUI_NOTEBOOK": notebook_identity(notebook_path),
        "NJTUI_RESULTS": RESULTS_DIR,
        "NJTUI_SECRETS_DIR": SECRETS_DIR,
    }
    environment.setdefault("LANG", "C.UTF-8")
    return environment


def _host_config(launch: Launch) -> dict[str, Any]:
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
        host["device_requests"] = [_gpu_request(launch.gpus)]
    return host


def _volumes(spec: RuntimeSpec) -> list:
    """Anonymous volumes, removed with the container: what must never be saved with it."""
    from docker.types import Mount as DockerMount

    targets = [AGENT_DIR, RESULTS_DIR] + [mount.at for mount in spec.mounts if mount.kind in ("git", "s3")]
    return [DockerMount(target, None, type="volume") for target in targets]


def volume_targets(spec: RuntimeSpec) -> list[str]:
    """Where the container has mounts of njtui's own: a diff of its file system leaves them out."""
    return [AGENT_DIR, RESULTS_DIR, SECRETS_DIR] + [mount.at for mount in spec.mounts] + ([CUDA_AT] if spec.mount_cuda else [])


def _gpu_request(gpus: int | list[str]):
    import docker

    if isinstance(gpus, list):
        return docker.types.DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])
    return docker.types.DeviceRequest(count=int(gpus), capabilities=[["gpu"]])


def _directory_binds(spec: RuntimeSpec) -> dict[str, dict[str, str]]:
    binds = {}
    for mount in spec.mounts:
        if mount.kind == "dir":
            source = str(Path(mount.source).expanduser())
            binds[source] = {"bind": mount.at, "mode": "ro" if mount.read_only else "rw"}
    return binds


def _cuda_environment(image_env: dict[str, str]) -> dict[str, str]:
    """The mounted toolkit first on the image's own paths."""
    image_path = image_env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    library_path = image_env.get("LD_LIBRARY_PATH")
    return {
        "PATH": f"{CUDA_AT}/bin:{image_path}",
        "LD_LIBRARY_PATH": f"{CUDA_AT}/lib64" + (f":{library_path}" if library_path else ""),
        "CUDA_HOME": CUDA_AT,
    }


def _labels(notebook_path: str, spec: RuntimeSpec, launch: Launch, key: str) -> dict[str, str]:
    return {
        LABEL_NOTEBOOK: notebook_identity(notebook_path),
        LABEL_RUNTIME: spec.id,
        LABEL_KEY: key,
        LABEL_VERSION: njtui.__version__,
        LABEL_LANGUAGE: spec.language,
        LABEL_IDLE: str(spec.idle_timeout_seconds),
        LABEL_SETTINGS: json.dumps(launch.settings, sort_keys=True),
    }


# The engine's own passing failure: overlay2 meets a file still being let go of as it deletes a
# container's layer ("failed to remove root filesystem … directory not empty", seen on a busy
# machine), and finishes when asked again. Any other failure is said at once.
_TRANSIENT_REMOVAL = "failed to remove root filesystem"
REMOVE_TRIES = 5


def remove_container(container) -> None:
    """Removes a container with its anonymous volumes; one already gone is no matter."""
    import docker

    for attempt in range(REMOVE_TRIES):
        try:
            container.remove(force=True, v=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if _TRANSIENT_REMOVAL not in str(exc.explanation or exc) or attempt == REMOVE_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
