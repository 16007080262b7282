"""Environments beyond a plain image: versions a runtime saved of its file system, and imports
of another runtime's saved version, pinned to what it resolved to.

In the notebook file (see docs/environments.md):

    [runtimes.tools]
    environment = "njtui/bash:5"          # what version 1 was saved from
    saved_version = 2                     # what the runtime boots from now; absent: the environment
    export = true                         # push every save to the notebook's registry
    [[runtimes.tools.versions]]           # one entry per save, oldest first
    version = 1
    image = "sha256:…"                    # the image id: what "pinned" means on any engine
    …

    [runtimes.py]
    environment = { runtime = "tools", version = 2, image = "sha256:…" }
    environment = { notebook = "../base.toml", runtime = "tools", version = 3, image = "sha256:…", digest = "localhost:5000/team/base-tools@sha256:…" }
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

ENV_REPOSITORY = "njtui-env"  # saved versions are tagged njtui-env/<notebook-stem>-<runtime>:<n>
_NOT_COMPONENT = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class EnvironmentImport:
    """Another runtime's saved version as this runtime's environment. `image` (and `digest`,
    when the version was exported) pin it: later saves of the source change nothing here."""

    runtime: str
    version: int
    notebook: str | None = None  # relative to the importing notebook's directory; None: the same notebook
    image: str | None = None  # the image id it resolved to
    digest: str | None = None  # REGISTRY/REPO@sha256:… when the version was exported

    @property
    def pinned(self) -> bool:
        return bool(self.image or self.digest)

    def label(self) -> str:
        where = f"{PurePath(self.notebook).stem}:" if self.notebook else ""
        return f"{where}{self.runtime} v{self.version}"


@dataclass
class SavedVersion:
    """One save of a runtime's file system: an image on the engine it was saved on, and in a
    registry once exported."""

    version: int
    image: str  # the image id (sha256:…)
    tag: str  # njtui-env/<stem>-<runtime>:<n> on the engine it was saved on
    base: str  # what the saved container booted from, in words: an image, an import, "v2"
    base_image: str  # that base's image id
    saved_at: str  # ISO 8601, UTC
    message: str = ""
    host: str = ""  # the engine's name: where the image is, until exported
    size: int = 0  # bytes the save added (the new layer)
    digest: str | None = None  # REGISTRY/REPO@sha256:… once exported
    flattened: bool = False  # saved as one layer (the image had neared the engine's layer limit)
    extra: dict[str, Any] = field(default_factory=dict)


def environment_repository(notebook_stem: str, runtime_id: str) -> str:
    """The image repository of a runtime's saved versions; Docker allows only lower-case
    letters, digits and single separators in a repository's components."""
    stem = _NOT_COMPONENT.sub("-", notebook_stem.lower()).strip("-") or "notebook"
    runtime = _NOT_COMPONENT.sub("-", runtime_id.lower()).strip("-") or "runtime"
    return f"{ENV_REPOSITORY}/{stem}-{runtime}"
