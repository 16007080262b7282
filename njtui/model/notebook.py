"""A notebook: runtimes and the cells that run in them.

The model mirrors the reference: every code cell has a runtime; cells of one language share
that language's default runtime unless a cell names another; a notebook can hold several
runtimes. Unknown keys from the file are kept in `extra` so a load/save round-trip keeps them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from njtui.model.duration import parse_duration
from njtui.model.engine import SWARM_PREFIX
from njtui.model.environment import EnvironmentImport, SavedVersion
from njtui.model.settings import Mount

FORMAT_VERSION = 1
HOST_ENVIRONMENT = "host"
DEFAULT_IDLE_TIMEOUT = 20 * 60.0
MAX_IDLE_TIMEOUT = 365 * 86400.0  # a year; longer is a typo, and timers overflow far beyond it
LANGUAGES = ("python", "bash")  # the languages of njtui's own (native) agents
CELL_KINDS = ("code", "markdown", "raw")  # raw: kept as written, never run (Jupyter's raw cells)
# How a runtime executes code (the reference's runtime "type"): njtui's own agents, or a Jupyter
# kernel named by `kernel`, whose language is the kernel's (any, not only LANGUAGES).
RUNTIME_TYPES = ("native", "jupyter")
LANGUAGE_DISPLAY_NAMES = {"python": "Python", "bash": "Bash"}


# Ids come from shared notebooks and become path components (results directories, runtime
# state), so they keep to an alphabet that is safe everywhere. The cell id rule is nbformat's.
CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
RUNTIME_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_cell_id(text: str) -> bool:
    return CELL_ID.fullmatch(text) is not None


def is_runtime_id(text: str) -> bool:
    return RUNTIME_ID.fullmatch(text) is not None


def new_cell_id(taken: set[str] | frozenset[str] = frozenset()) -> str:
    while True:
        candidate = secrets.token_hex(3)  # 6 hex digits: a valid cell id
        if candidate not in taken:
            return candidate


def source_hash(source: str) -> str:
    """Identifies the source an execution ran, so a UI can mark stale output."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


@dataclass
class RuntimeSpec:
    id: str
    language: str
    name: str = ""
    # "host", an image reference, or another runtime's saved version (pinned when resolved).
    environment: str | EnvironmentImport = HOST_ENVIRONMENT
    # The backend that runs it, by its registered name; None: "host" for the host environment,
    # "docker" for an image.
    backend: str | None = None
    # The Docker engine its container runs on (see model.engine); None: the user's default one.
    engine: str | None = None
    engine_tls: str | None = None  # a directory with ca.pem, cert.pem, key.pem, for a tcp:// engine
    default: bool = False
    idle_timeout: str | None = None
    machine: str | None = None  # a machine preset; cpus/memory below override its values
    cpus: float | None = None  # container limits; host runtimes show they do not apply
    memory: str | None = None  # e.g. "256MB"
    gpus: int | list[str] | None = None  # a count, or device ids
    mount_cuda: bool | None = None  # the host's CUDA toolkit, read-only, on PATH/LD_LIBRARY_PATH
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # variable name → secret name (never the value)
    mounts: list[Mount] = field(default_factory=list)
    saved_version: int | None = None  # the saved version it boots from; None: `environment` itself
    versions: list[SavedVersion] = field(default_factory=list)  # its saves, oldest first
    export: bool | None = None  # push each save to the notebook's registry
    type: str = "native"  # one of RUNTIME_TYPES
    kernel: str | None = None  # a Jupyter kernelspec name (type "jupyter" only), e.g. "python3"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_jupyter(self) -> bool:
        return self.type == "jupyter"

    def __post_init__(self) -> None:
        if not self.name:
            self.name = LANGUAGE_DISPLAY_NAMES.get(self.language, self.id)

    @property
    def idle_timeout_seconds(self) -> float:
        if self.idle_timeout is None:
            return DEFAULT_IDLE_TIMEOUT
        return parse_duration(self.idle_timeout)

    @property
    def is_swarm(self) -> bool:
        return self.engine is not None and self.engine.startswith(SWARM_PREFIX)

    @property
    def is_host(self) -> bool:
        return self.environment == HOST_ENVIRONMENT

    @property
    def imported(self) -> EnvironmentImport | None:
        return self.environment if isinstance(self.environment, EnvironmentImport) else None

    def version(self, number: int) -> SavedVersion | None:
        return next((saved for saved in self.versions if saved.version == number), None)

    @property
    def boot_version(self) -> SavedVersion | None:
        """The saved version it boots from, if any."""
        return self.version(self.saved_version) if self.saved_version is not None else None

    @property
    def declared_environment(self) -> str:
        """The environment the notebook names, in words: "njtui/bash:5", "tools v3" (an import)."""
        return self.environment.label() if isinstance(self.environment, EnvironmentImport) else self.environment

    @property
    def environment_label(self) -> str:
        """What it boots from, in a few words: its saved version ("tools v2"), else the environment it names."""
        if self.saved_version is not None:
            return f"{self.id} v{self.saved_version}"
        return self.declared_environment


@dataclass
class Cell:
    id: str
    kind: str
    source: str = ""
    language: str | None = None
    runtime: str | None = None
    # Jupyter's cell metadata and a markdown cell's attachments ({name: {mime: base64}}), kept
    # as imported so that an export gives them back.
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_code(self) -> bool:
        return self.kind == "code"

    @property
    def source_hash(self) -> str:
        return source_hash(self.source)


@dataclass
class Notebook:
    title: str = ""
    runtimes: dict[str, RuntimeSpec] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # [env]: defaults for every runtime
    cells: list[Cell] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    registry: str | None = None  # where `env export` pushes saved versions: HOST[:PORT]/PATH
    extra: dict[str, Any] = field(default_factory=dict)

    def cell(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise KeyError(cell_id)

    def languages(self) -> list[str]:
        """The languages a code cell of this notebook can have: njtui's own, then those of its
        Jupyter runtimes' kernels."""
        kernels = [spec.language for spec in self.runtimes.values() if spec.is_jupyter]
        return list(dict.fromkeys([*LANGUAGES, *kernels]))

    def code_cells(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.is_code]

    def cell_ids(self) -> set[str]:
        return {cell.id for cell in self.cells}

    def default_runtime(self, language: str) -> RuntimeSpec | None:
        candidates = [spec for spec in self.runtimes.values() if spec.language == language]
        for spec in candidates:
            if spec.default:
                return spec
        # A language with a single runtime needs no explicit default flag.
        return candidates[0] if len(candidates) == 1 else None

    def runtime_for(self, cell: Cell) -> RuntimeSpec:
        """The runtime a code cell runs in: its own, else its language's default."""
        if cell.runtime is not None:
            return self.runtimes[cell.runtime]
        assert cell.language is not None, f"code cell {cell.id} has no language"
        spec = self.default_runtime(cell.language)
        if spec is None:
            spec = self.add_default_runtime(cell.language)
        return spec

    def add_default_runtime(self, language: str, environment: str = HOST_ENVIRONMENT) -> RuntimeSpec:
        """Adds the runtime a new cell of `language` gets, as Nextjournal does on a new cell."""
        existing = self.default_runtime(language)
        if existing is not None:
            return existing
        base = {"python": "py", "bash": "sh"}.get(language, language)
        runtime_id, number = base, 1
        # Numbered like the UI's new runtimes (py2, py3): the id stays short and valid however
        # many runtimes the notebook already has.
        while runtime_id in self.runtimes:
            number += 1
            runtime_id = f"{base}{number}"
        spec = RuntimeSpec(
            id=runtime_id,
            language=language,
            environment=environment,
            default=not any(s.language == language for s in self.runtimes.values()),
        )
        self.runtimes[runtime_id] = spec
        return spec

    def cells_served(self) -> Counter[str]:
        """How many code cells each runtime serves, by runtime id."""
        return Counter(self.runtime_for(cell).id for cell in self.code_cells())

    def new_cell(self, kind: str = "code", language: str | None = "python", source: str = "") -> Cell:
        return Cell(
            id=new_cell_id(self.cell_ids()),
            kind=kind,
            source=source,
            language=language if kind == "code" else None,
        )
