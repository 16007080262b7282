"""The user's njtui settings: `<config dir>/config.toml` (platformdirs), e.g. the theme, and
`graphics` (auto|kitty|sixel|blocks: how pictures are drawn, njtui.ui.graphics).

Unknown keys survive a save. A config file that does not parse is reported and never
overwritten, so nothing the user wrote is lost."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from njtui.dirs import make_dirs
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import StoreError, toml_error_position

GRAPHICS_CHOICES = ("auto", "kitty", "sixel", "blocks")  # njtui.ui.graphics.CHOICES


def config_path() -> Path:
    return platformdirs.user_config_path("njtui") / "config.toml"


@dataclass
class UserConfig:
    theme: str | None = None
    graphics: str | None = None  # None: "auto"
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why the file could not be read; saving is refused then


def load_config(path: Path | None = None) -> UserConfig:
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UserConfig()
    except tomllib.TOMLDecodeError as exc:
        message, line, column = toml_error_position(exc)
        return UserConfig(error=str(StoreError(path, f"not valid TOML: {message}", line=line, column=column)))
    except (OSError, UnicodeDecodeError) as exc:
        return UserConfig(error=str(StoreError(path, f"cannot read it: {exc}")))
    theme = data.pop("theme", None)
    if theme is not None and not isinstance(theme, str):
        return UserConfig(error=str(StoreError(path, "theme must be a string")), extra=data)
    graphics = data.pop("graphics", None)
    if graphics is not None and graphics not in GRAPHICS_CHOICES:
        return UserConfig(error=str(StoreError(path, f"graphics must be one of {', '.join(GRAPHICS_CHOICES)}")), extra=data)
    return UserConfig(theme=theme, graphics=graphics, extra=data)


def save_config(config: UserConfig, path: Path | None = None) -> None:
    path = path or config_path()
    if config.error:
        raise OSError(f"not saving {path}: {config.error} (fix or remove the file)")
    data = dict(config.extra)
    if config.theme is not None:
        data["theme"] = config.theme
    if config.graphics is not None:
        data["graphics"] = config.graphics
    make_dirs(path.parent)  # njtui's own (the secret store lives there too): 0700, with any made above it
    atomic_write_bytes(path, tomli_w.dumps(data).encode())


def remember_theme(name: str) -> str | None:
    """Stores the theme choice; returns why it could not, if it could not."""
    config = load_config()
    config.theme = name
    try:
        save_config(config)
    except OSError as exc:
        return str(exc)
    return None
