"""Unsaved work, journaled as it is made, so that no crash of the app can take it.

Every change to an open notebook writes the whole notebook (as the TOML a save would write)
to a recovery file in the user's state directory, named after the notebook's path; a save, or
quitting without saving on purpose, removes it. The next open of that notebook finds it and
offers to restore it. The file also keeps the notebook as it was read from disk, so a restored
notebook is merged with what changed in the file since, as a save would be.

The UI thread only takes a snapshot (the notebook as a document: plain dicts of strings); a
writer thread renders and writes it, so a keystroke costs a snapshot, not a file write. The
crash path writes synchronously.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from njtui.dirs import make_dirs
from njtui.model import Notebook
from njtui.store import toml_writer
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError
from njtui.store.notebook_file import parse_notebook
from njtui.store.notebook_layout import notebook_document

RECOVERY_FORMAT = 1


def recovery_dir() -> Path:
    override = os.environ.get("NJTUI_RECOVERY_DIR")
    return Path(override) if override else platformdirs.user_state_path("njtui") / "recovery"


def recovery_path(notebook_path: Path | str) -> Path:
    """One file per notebook path; the stem is there for a person looking in the directory."""
    absolute = os.path.abspath(os.fspath(notebook_path))
    digest = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(absolute).stem)[:40]
    return recovery_dir() / f"{stem}-{digest}.json"


@dataclass
class Recovery:
    """Unsaved work found for a notebook: `notebook` as it was being edited, `base` as it was
    read from the file then (None: unknown), `saved_at` when it was last journaled."""

    path: Path
    notebook: Notebook
    base: Notebook | None
    saved_at: float
    reason: str


def find_recovery(notebook_path: Path | str) -> Recovery | None:
    """The unsaved work journaled for this notebook, or None. A recovery file that cannot be
    read as one is left where it is (it may be all that is left of someone's work) and named in
    the NotebookError."""
    path = recovery_path(notebook_path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NotebookError(path, f"cannot read the recovery file: {exc.strerror}", hint="check its permissions; your unsaved work from the last session is in it") from None
    try:
        envelope = json.loads(raw.decode("utf-8"))
        if envelope.get("format") != RECOVERY_FORMAT or envelope.get("notebook_path") != os.path.abspath(os.fspath(notebook_path)):
            raise ValueError("not a recovery file of this notebook")
        notebook = parse_notebook(envelope["text"].encode("utf-8"), Path(notebook_path))
        base_text = envelope.get("base_text")
        base = parse_notebook(base_text.encode("utf-8"), Path(notebook_path)) if base_text else None
        return Recovery(path, notebook, base, float(envelope.get("saved_at") or 0), str(envelope.get("reason") or "the app stopped"))
    except (ValueError, KeyError, TypeError, AttributeError, NotebookError) as exc:
        raise NotebookError(path, f"the recovery file is damaged: {exc}", hint=f"your unsaved work may still be readable in it; move it away ({path}) to stop this message") from None


class RecoveryJournal:
    """The recovery file of one open notebook."""

    def __init__(self, notebook_path: Path | str, base: Notebook | None) -> None:
        self.notebook_path = Path(os.path.abspath(os.fspath(notebook_path)))
        self.path = recovery_path(notebook_path)
        self._base_text = toml_writer.dumps(notebook_document(base)) if base is not None else None
        self._lock = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._latest: dict[str, Any] | None = None  # what the file should hold (None: nothing unsaved)
        self._written = False
        self._closed = False
        self._problem: str | None = None
        self._thread = threading.Thread(target=self._write_loop, name="njtui-recovery", daemon=True)
        self._thread.start()

    @property
    def problem(self) -> str | None:
        """Why the last write failed (None: it did not)."""
        return self._problem

    def set_base(self, base: Notebook) -> None:
        """The file was saved or merged: restoring later merges against this."""
        text = toml_writer.dumps(notebook_document(base))
        with self._lock:
            self._base_text = text

    def record(self, notebook: Notebook) -> None:
        """Journals `notebook` as it is now (cheap: the write happens on the writer thread)."""
        document = notebook_document(notebook)
        with self._lock:
            self._pending = self._latest = document
            self._lock.notify()

    def flush(self, reason: str = "the app stopped") -> Path | None:
        """Writes what is pending now, durably (the crash path); the file's path if one holds
        unsaved work."""
        with self._lock:
            self._pending = None
            if self._latest is not None:
                self._write(self._latest, reason, durable=True)
            return self.path if self._written else None

    def discard(self) -> None:
        """The work is saved (or thrown away on purpose): no recovery is needed."""
        with self._lock:
            self._pending = self._latest = None
            self._written = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._problem = f"cannot remove {self.path}: {exc.strerror}"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=5)

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._closed:
                    self._lock.wait()
                if self._pending is None:
                    return
                document, self._pending = self._pending, None
                self._write(document, "the app stopped", durable=False)

    def _write(self, document: dict[str, Any], reason: str, *, durable: bool) -> None:
        # Under the lock: a discard (after a save) never races a write of the older state.
        envelope = {
            "format": RECOVERY_FORMAT,
            "notebook_path": str(self.notebook_path),
            "saved_at": time.time(),
            "reason": reason,
            "text": toml_writer.dumps(document),
            "base_text": self._base_text,
        }
        try:
            make_dirs(self.path.parent)  # 0700, and so is each directory made above it
            atomic_write_bytes(self.path, json.dumps(envelope, ensure_ascii=False).encode("utf-8"), mode=0o600, durable=durable)
        except OSError as exc:
            self._problem = f"cannot write {self.path}: {exc.strerror}"
            return
        self._problem = None
        self._written = True
