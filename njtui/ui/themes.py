"""Theme files (TOML) loaded as Textual themes: njtui's own from `themes/`, the user's from
`<config dir>/themes/`. A broken user theme is reported, never fatal."""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from textual.color import Color, ColorParseError
from textual.theme import Theme

from njtui.store.errors import StoreError, toml_error_position

DEFAULT_THEME = "njtui-dark"
COLOUR_KEYS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel", "success", "warning", "error", "boost")
OTHER_KEYS = {"name": str, "dark": bool, "luminosity_spread": float, "text_alpha": float, "variables": dict}


class ThemeFileError(StoreError):
    """A theme file njtui cannot use."""


def bundled_themes_dir() -> Path:
    """`themes/` at the top of the project (an editable or source install), else the copy
    installed as package data."""
    override = os.environ.get("NJTUI_THEMES_DIR")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "themes", Path(sys.prefix) / "share" / "njtui" / "themes"):
        if candidate.is_dir():
            return candidate
    return here.parent.parent / "themes"


def user_themes_dir() -> Path:
    return platformdirs.user_config_path("njtui") / "themes"


def load_theme_file(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        message, line, column = toml_error_position(exc)
        raise ThemeFileError(path, f"not valid TOML: {message}", line=line, column=column, hint="a theme file is TOML; see themes/njtui-dark.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeFileError(path, f"cannot read it: {exc}") from None
    unknown = sorted(set(data) - set(COLOUR_KEYS) - set(OTHER_KEYS))
    if unknown:
        raise ThemeFileError(path, f"unknown key {unknown[0]!r}", hint=f"keys are {', '.join(COLOUR_KEYS + tuple(OTHER_KEYS))}")
    if "primary" not in data:
        raise ThemeFileError(path, "missing key 'primary'", hint='every theme needs primary = "#rrggbb"')
    for key, kind in OTHER_KEYS.items():
        if key in data and not isinstance(data[key], kind) and not (kind is float and isinstance(data[key], int)):
            raise ThemeFileError(path, f"{key} must be {kind.__name__}")
    for key in COLOUR_KEYS:
        if key in data:
            try:
                if not isinstance(data[key], str):
                    raise TypeError
                Color.parse(data[key])
            except (ColorParseError, TypeError):
                raise ThemeFileError(path, f"{key} = {data[key]!r} is not a colour", hint='write it like "#5fafd7"') from None
    variables = data.get("variables", {})
    if any(not isinstance(value, str) for value in variables.values()):
        raise ThemeFileError(path, "values in [variables] must be strings")
    name = data.get("name") or path.stem
    return Theme(name=name, **{k: v for k, v in data.items() if k != "name"})


@dataclass
class ThemeSet:
    themes: dict[str, Theme] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def discover_themes() -> ThemeSet:
    found = ThemeSet()
    for directory in (bundled_themes_dir(), user_themes_dir()):
        for path in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
            try:
                theme = load_theme_file(path)
            except ThemeFileError as exc:
                found.errors.append(str(exc))
                continue
            found.themes[theme.name] = theme
    return found
