"""The user's secret store: `<config dir>/secrets.toml`, mode 0600, name = value.

Notebooks hold only secret *names*; values are read here when a runtime boots and go to the
runtime over its agent connection, never into a notebook, the runner log or a container's
configuration. A store that others can read is refused, with the command that fixes it.

The store's directory is made 0700. It is also where `config.toml` and themes live, so one
that others may read (0755, as an older njtui or an editor made it) is accepted: the file
itself is 0600. One that others may *write* is refused, as is a store or directory that is not
the user's: whoever can write there can swap the file for their own between our reads and writes."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import platformdirs
import tomli_w

from njtui.dirs import make_dirs
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import StoreError, toml_error_position

SECRET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def secrets_path() -> Path:
    override = os.environ.get("NJTUI_SECRETS_FILE")
    return Path(override) if override else platformdirs.user_config_path("njtui") / "secrets.toml"


class SecretStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or secrets_path()

    def _check_directory(self) -> None:
        directory = self.path.parent
        try:
            info = directory.stat()  # followed: a config directory linked from dotfiles is common
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(directory, "refused: the secret store's directory is not a directory", hint=f"remove {directory}")
        if info.st_uid != os.getuid():
            raise StoreError(
                directory,
                f"refused: the secret store's directory belongs to uid {info.st_uid}, not to you (uid {os.getuid()})",
                hint="its owner or an administrator must remove it, or set XDG_CONFIG_HOME (or NJTUI_SECRETS_FILE) to a place of yours",
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise StoreError(
                directory,
                f"refused: other users can write the secret store's directory (mode {stat.S_IMODE(info.st_mode):04o}), so they could replace the store",
                hint=f"chmod 700 {directory}",
            )

    def _read(self) -> dict[str, str]:
        self._check_directory()
        try:
            # Checked on the open file, not the path, so what is checked is what is read;
            # non-blocking, so a FIFO put there cannot hang us (a regular file reads the same).
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(self.path, "refused: your secret store is not a regular file", hint=f"remove {self.path}")
            if info.st_uid != os.getuid():
                raise StoreError(
                    self.path,
                    f"refused: your secret store belongs to uid {info.st_uid}, not to you (uid {os.getuid()})",
                    hint=f"remove {self.path} (its owner or an administrator can) and set your secrets again",
                )
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise StoreError(
                    self.path,
                    f"refused: other users can read or write your secret store (mode {stat.S_IMODE(info.st_mode):04o})",
                    hint=f"chmod 600 {self.path}",
                )
            text = handle.read().decode("utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message, line, column = toml_error_position(exc)
            raise StoreError(self.path, f"not valid TOML: {message}", line=line, column=column, hint="fix it with an editor; njtui did not change it") from None
        return {name: value for name, value in data.items() if isinstance(value, str)}

    def names(self) -> list[str]:
        return sorted(self._read())

    def values(self) -> dict[str, str]:
        """Every secret, read once (a runtime's boot takes all it needs from one reading)."""
        return self._read()

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        if not SECRET_NAME.fullmatch(name):
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
        make_dirs(self.path.parent)  # 0700, and so is each directory made above it
        self._check_directory()
        atomic_write_bytes(self.path, tomli_w.dumps(dict(sorted(data.items()))).encode(), mode=0o600)
