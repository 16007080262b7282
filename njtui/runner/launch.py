"""What a runtime is started with: its settings resolved against the notebook, the machine
presets and the user's secret store, just before boot.

`Launch.settings` is the runtime's settings as they were at start (secret *names*, never values),
recorded with the runtime so a later edit can be shown as "restart to apply: …"."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from njtui.model import Notebook, RuntimeSpec
from njtui.model.size import parse_size
from njtui.runner.backend import BackendError
from njtui.store.errors import StoreError
from njtui.store.machines import load_machines
from njtui.store.notebook_file import mount_document
from njtui.store.secrets import SecretStore

# Settings a host runtime cannot apply; the UI says so rather than ignoring them.
CONTAINER_ONLY = ("machine", "cpus", "memory", "gpus", "mount_cuda", "mounts")


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


def settings_of(notebook: Notebook, spec: RuntimeSpec) -> dict[str, Any]:
    """The settings that take effect at start, comparable between two moments."""
    return {
        "environment": spec.environment,
        "language": spec.language,
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


def resolve(notebook: Notebook, spec: RuntimeSpec, store: SecretStore | None = None) -> Launch:
    machine = load_machines().get(spec.machine or "", {}) if spec.machine else {}
    cpus = spec.cpus if spec.cpus is not None else machine.get("cpus")
    memory = spec.memory if spec.memory is not None else machine.get("memory")
    gpus = spec.gpus if spec.gpus is not None else machine.get("gpus")
    launch = Launch(
        env={**notebook.env, **spec.env},
        cpus=float(cpus) if cpus is not None else None,
        memory_bytes=parse_size(memory) if memory else None,
        gpus=gpus,
        mount_cuda=bool(spec.mount_cuda) or os.environ.get("NJTUI_MOUNT_CUDA") == "1",
        settings=settings_of(notebook, spec),
    )
    wanted = dict(spec.secrets)
    mount_names = [name for mount in spec.mounts for name in mount.secret_names()]
    if wanted or mount_names:
        store = store or SecretStore()
        try:
            names = set(store.names())
        except StoreError as exc:
            raise BackendError(str(exc)) from None
        for variable, name in wanted.items():
            if name not in names:
                raise BackendError(f"secret {name!r} (for {variable} of runtime {spec.id}) is not in your secret store; set it with `njtui secrets set {name}`")
            launch.secrets[variable] = store.get(name) or ""
        for name in mount_names:
            if name not in names:
                raise BackendError(f"secret {name!r} (for a mount of runtime {spec.id}) is not in your secret store; set it with `njtui secrets set {name}`")
            launch.mount_credentials[name] = store.get(name) or ""
    return launch
