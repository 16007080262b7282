"""Which notebooks on this machine use which saved environments (image ids): what `njtui env
prune` and `rm` ask before removing a version, so that a version another notebook boots from
or imports is never removed.

A record is a hint, never the truth: a notebook is recorded when one of its runtimes boots
from, saves or pins a saved environment, and the notebook file itself is read again before a
version is called unused (it may have moved on, or gone). The file is
`<data dir>/njtui/environment-uses.json` (NJTUI_DATA_DIR overrides the directory).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

from njtui.dirs import make_dirs
from njtui.store.atomic import atomic_write_bytes


def uses_path() -> Path:
    override = os.environ.get("NJTUI_DATA_DIR")
    root = Path(override) if override else platformdirs.user_data_path("njtui")
    return root / "environment-uses.json"


def _read(path: Path) -> dict[str, dict[str, list[str]]]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # Shape-checked: the file is ours, but a hand edit must not crash a prune.
    return {image: {nb: [r for r in runtimes if isinstance(r, str)] for nb, runtimes in users.items() if isinstance(runtimes, list)} for image, users in data.items() if isinstance(users, dict)}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    make_dirs(path.parent)  # njtui's own: 0700, with any made above it
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def record_use(image: str, notebook_path: str, runtime_id: str) -> None:
    """Notes that a runtime of a notebook uses a saved environment. Not synced to disk: a
    record lost to a crash is a hint lost, and a save would otherwise wait on the fsync."""
    path = uses_path()
    with _locked(path):
        data = _read(path)
        runtimes = data.setdefault(image, {}).setdefault(notebook_path, [])
        if runtime_id in runtimes:
            return
        runtimes.append(runtime_id)
        atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode(), durable=False)


def recorded_users(image: str) -> dict[str, list[str]]:
    """notebook path → runtime ids recorded as using `image`."""
    return _read(uses_path()).get(image, {})


def forget_image(image: str) -> None:
    path = uses_path()
    with _locked(path):
        data = _read(path)
        if data.pop(image, None) is not None:
            atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode(), durable=False)
