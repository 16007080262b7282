"""What a runtime is started with: its settings resolved against the notebook, the machine
presets and the user's secret store, just before boot.

`Launch.settings` is the runtime's settings as they were at start (secret *names*, never values),
recorded with the runtime so a later edit can be shown as "restart to apply: …"."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from njtui.model import Notebook, RuntimeSpec
from njtui.model.settings import MAX_CPUS, MAX_GPUS, MAX_MEMORY, MIN_CPUS, MIN_MEMORY
from njtui.model.size import parse_size
from njtui.runner.backend import BackendError
from njtui.store.errors import StoreError
from njtui.store.machines import load_machines, machines_path
from njtui.store.notebook_file import mount_document
from njtui.store.secrets import SecretStore

# Settings a host runtime cannot apply; the UI says so rather than ignoring them.
CONTAINER_ONLY = ("engine", "engine_tls", "machine", "cpus", "memory", "gpus", "mount_cuda", "mounts")


@dataclass
class Launch:
    env: dict[str, str] = field(default_factory=dict)  # notebook [env], then the runtime's env
    secrets: dict[str, str] = field(default_factory=dict)  # variable → value: sent to the agent only
    mount_credentials: dict[str, str] = field(default_factory=dict)  # secret name → value, for mounts
    cpus: float | None = None
    memory_bytes: int | None = None
    gpus: int | list[str] | None = None
    mount_cuda: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    image: str | None = None  # the image it boots from, the environment resolved (saved versions, imports)


def settings_of(notebook: Notebook, spec: RuntimeSpec) -> dict[str, Any]:
    """The settings that take effect at start, comparable between two moments."""
    return {
        "environment": spec.environment_label,
        "language": spec.language,
        # Only a Jupyter runtime names its type, so the settings native runtimes started with
        # before there were types compare equal to today's.
        **({"type": spec.type, "kernel": spec.kernel} if spec.is_jupyter else {}),
        **({"engine": spec.engine} if spec.engine is not None else {}),
        "machine": spec.machine,
        "cpus": spec.cpus,
        "memory": spec.memory,
        "gpus": spec.gpus,
        "mount_cuda": spec.mount_cuda,
        "idle_timeout": spec.idle_timeout,
        "env": {**notebook.env, **spec.env},
        "secrets": dict(spec.secrets),
        "mounts": [mount_document(mount) for mount in spec.mounts],
    }


def changed_settings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [key for key in after if before.get(key) != after.get(key)]


def _machine_limits(spec: RuntimeSpec) -> tuple[float | None, int | None, Any]:
    """cpus, memory in bytes and gpus: the runtime's own, else its machine preset's. Presets
    come from the user's machines.toml, which the notebook's loader does not read; they are held
    to the same bounds here."""
    if spec.is_swarm:
        # A Swarm's machine types are its nodes' labels, matched by the swarm backend as it
        # places the runtime; only the runtime's own limits apply.
        presets: dict[str, dict[str, Any]] = {}
    else:
        presets = load_machines() if spec.machine else {}
    if spec.machine and spec.machine not in presets and not spec.is_host and not spec.is_swarm:
        # Looked up here, where it boots: a notebook from a machine with other presets opens
        # and runs its other runtimes; this one turns red with the choices.
        raise BackendError(
            f"runtime {spec.id}: machine type {spec.machine!r} is not defined on this machine (presets: {', '.join(sorted(presets))}, from {machines_path()}); "
            "pick one in the runtime's settings (e, Machine), define it in that file, or leave it out and set cpus/memory"
        )
    machine = presets.get(spec.machine or "", {})
    cpus = spec.cpus if spec.cpus is not None else machine.get("cpus")
    memory = spec.memory if spec.memory is not None else machine.get("memory")
    gpus = spec.gpus if spec.gpus is not None else machine.get("gpus")
    where = f"machine type {spec.machine!r} ({machines_path()})"
    try:
        if cpus is not None:
            cpus = float(cpus)
            if not MIN_CPUS <= cpus <= MAX_CPUS:
                raise ValueError(f"cpus = {cpus} is outside {MIN_CPUS}–{MAX_CPUS}")
        memory_bytes = parse_size(memory) if memory else None
        if memory_bytes is not None and not MIN_MEMORY <= memory_bytes <= MAX_MEMORY:
            raise ValueError(f"memory = {memory!r} is outside 6 MiB–64 TiB")
        if gpus is not None and not (gpus == "all" or (isinstance(gpus, int) and not isinstance(gpus, bool) and 0 <= gpus <= MAX_GPUS) or isinstance(gpus, list)):
            raise ValueError(f'gpus = {gpus!r} is not a count up to {MAX_GPUS}, "all" or a list of device ids')
    except (TypeError, ValueError) as exc:
        raise BackendError(f"runtime {spec.id}: {where}: {exc}") from None
    return cpus, memory_bytes, gpus


def resolve(notebook: Notebook, spec: RuntimeSpec, store: SecretStore | None = None) -> Launch:
    cpus, memory_bytes, gpus = _machine_limits(spec)
    launch = Launch(
        env={**notebook.env, **spec.env},
        cpus=cpus,
        memory_bytes=memory_bytes,
        gpus=gpus,
        mount_cuda=bool(spec.mount_cuda) or os.environ.get("NJTUI_MOUNT_CUDA") == "1",
        settings=settings_of(notebook, spec),
    )
    mount_names = [name for mount in spec.mounts for name in mount.secret_names()]
    if spec.secrets or mount_names:
        try:
            stored = (store or SecretStore()).values()
        except StoreError as exc:
            raise BackendError(str(exc)) from None

        def secret(name: str, needed_for: str) -> str:
            if name not in stored:
                raise BackendError(f"secret {name!r} (for {needed_for}) is not in your secret store; set it with `njtui secrets set {name}`")
            return stored[name]

        for variable, name in spec.secrets.items():
            launch.secrets[variable] = secret(name, f"{variable} of runtime {spec.id}")
        for name in mount_names:
            launch.mount_credentials[name] = secret(name, f"a mount of runtime {spec.id}")
    return launch
