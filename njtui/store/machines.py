"""Machine presets: njtui's defaults plus the user's `<config>/machines.toml`, e.g.

[small]
cpus = 1.0
memory = "2GB"

[trainer]
cpus = 8
memory = "32GB"
gpus = 1
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from njtui.model.settings import DEFAULT_MACHINES


def machines_path() -> Path:
    return platformdirs.user_config_path("njtui") / "machines.toml"


def load_machines() -> dict[str, dict[str, Any]]:
    presets = {name: dict(values) for name, values in DEFAULT_MACHINES.items()}
    try:
        user = tomllib.loads(machines_path().read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return presets
    for name, values in user.items():
        if isinstance(values, dict):
            presets[name] = {key: values[key] for key in ("cpus", "memory", "gpus") if key in values}
    return presets
