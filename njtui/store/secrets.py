"""The user's secret store: `<config dir>/secrets.toml`, mode 0600, name = value.

Notebooks hold only secret *names*; values are read here when a runtime boots and go to the
runtime over its agent connection, never into a notebook, the runner log or a container's
configuration. A store that others can read is refused, with the command that fixes it."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import platformdirs
import tomli_w

from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import StoreError, toml_error_position

SECRET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def secrets_path() -> Path:
    override = os.environ.get("NJTUI_SECRETS_FILE")
    return Path(override) if override else platformdirs.user_config_path("njtui") / "secrets.toml"


class SecretStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or secrets_path()

    def _read(self) -> dict[str, str]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise StoreError(
                self.path,
                f"refused: other users can read or write your secret store (mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"chmod 600 {self.path}",
            )
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            message, line, column = toml_error_position(exc)
            raise StoreError(self.path, f"not valid TOML: {message}", line=line, column=column, hint="fix it with an editor; njtui did not change it") from None
        return {name: value for name, value in data.items() if isinstance(value, str)}

    def names(self) -> list[str]:
        return sorted(self._read())

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        if not SECRET_NAME.match(name):
            raise StoreError(self.path, f"{name!r} is not a secret name", hint="use letters, digits, '.', '_' and '-'")
        data = self._read()
        data[name] = value
        self._write(data)

    def remove(self, name: str) -> bool:
        data = self._read()
        if name not in data:
            return False
        del data[name]
        self._write(data)
        return True

    def _write(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_bytes(self.path, tomli_w.dumps(dict(sorted(data.items()))).encode(), mode=0o600)
