"""Runtime settings beyond the environment: mounts, machine presets, image references."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MOUNT_KINDS = ("dir", "git", "s3")

# Bounds on a runtime's limits. A notebook is shared input: a value outside them is a typo or an
# attack, and would otherwise pass the loader and fail only when the runtime starts.
MIN_CPUS = 0.01  # Docker's smallest CPU quota
MAX_CPUS = 1024
MIN_MEMORY = 6 * 1024**2  # Docker refuses a smaller memory limit
MAX_MEMORY = 64 * 1024**4  # 64 TiB
MAX_GPUS = 64

# Machine presets a notebook names with `machine = "small"`; the user's
# <config>/machines.toml adds or overrides presets (see njtui/store/machines.py).
DEFAULT_MACHINES: dict[str, dict[str, Any]] = {
    "small": {"cpus": 1.0, "memory": "1GB"},
    "medium": {"cpus": 2.0, "memory": "4GB"},
    "large": {"cpus": 4.0, "memory": "16GB"},
    "gpu": {"cpus": 4.0, "memory": "16GB", "gpus": 1},
}

# An image reference as Docker accepts it: [registry[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
IMAGE_REFERENCE = re.compile(rf"^{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$")


def is_image_reference(text: str) -> bool:
    # fullmatch: with match, "$" would also accept a reference followed by a newline.
    return IMAGE_REFERENCE.fullmatch(text) is not None


@dataclass
class Mount:
    kind: str  # dir | git | s3
    source: str  # a host directory, a git URL, or s3://bucket/prefix
    at: str  # the absolute directory inside the runtime
    read_only: bool = True
    ref: str | None = None  # git: a branch, tag or commit
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. s3 endpoint/region, credential secret names

    def secret_names(self) -> list[str]:
        """Secrets this mount needs (credentials), by name in the user's secret store."""
        keys = ("token", "access_key_id", "secret_access_key")
        return [self.extra[key] for key in keys if isinstance(self.extra.get(key), str)]
