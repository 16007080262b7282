"""Notebook files: TOML in, validated model out; model in, TOML out, atomically: canonical for a
new file, edited in place and merged with changes made meanwhile for a file that was read.

Reading a file's bytes, validating and the canonical layout have modules of their own
(notebook_reader, notebook_validator, notebook_layout); their names are importable from here
as they always were."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from njtui.model import Notebook
from njtui.store import toml_writer
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError, toml_error_position
from njtui.store.locate import Locator
from njtui.store.merge import Conflict, advance_base, merge_documents, summary
from njtui.store.notebook_layout import (
    cell_document as cell_document,
)
from njtui.store.notebook_layout import (
    dumps_notebook as dumps_notebook,
)
from njtui.store.notebook_layout import (
    mount_document as mount_document,
)
from njtui.store.notebook_layout import (
    notebook_document,
)
from njtui.store.notebook_layout import (
    runtime_document as runtime_document,
)
from njtui.store.notebook_reader import (
    DONT_CHANGE,
    MAX_NOTEBOOK_BYTES,
    os_error_hint,
    read_notebook_bytes,
    too_large,
)
from njtui.store.notebook_validator import Validator, show


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    """(line, column) of a byte offset of undecoded text; the column counts characters."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, len(raw[line_start:offset].decode("utf-8", "replace")) + 1


def parse_notebook(raw: bytes, path: Path) -> Notebook:
    """The notebook in `raw`, else NotebookError with the file, line and column and what to do;
    never another exception, whatever `raw` holds."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise too_large(path, len(raw))
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, column = _position(raw, nul)
        raise NotebookError(
            path,
            "not a text file (it contains NUL bytes), so not a notebook",
            line=line,
            column=column,
            hint=f"open the .toml notebook file itself; {DONT_CHANGE}",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise NotebookError(
            path,
            f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded)",
            line=line,
            column=column,
            hint=f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8; {DONT_CHANGE}",
        ) from None
    text = text.removeprefix("\ufeff")
    locator = Locator(text)
    if locator.refusal is not None:
        line, column = locator.position(locator.refusal.offset)
        raise NotebookError(path, locator.refusal.message, line=line, column=column, hint=f"{locator.refusal.hint}; {DONT_CHANGE}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, error_line, error_column = toml_error_position(exc, text)
        raise NotebookError(
            path,
            f"not valid TOML: {message[:1].lower() + message[1:]}",
            line=error_line or 1,
            column=error_column or 1,
            hint=(f"this looks like JSON (a Jupyter .ipynb?), not an njtui notebook; {DONT_CHANGE}" if text.lstrip().startswith("{") else f"fix the TOML at that spot (a notebook is a TOML file, see README); {DONT_CHANGE}"),
        ) from None
    except (ValueError, RecursionError, OverflowError, MemoryError) as exc:
        # The scan above refuses what is known to break tomllib (deep nesting, huge integers);
        # this is for what is not known yet, so a notebook still never ends in a traceback.
        raise NotebookError(
            path,
            f"tomllib could not read it ({type(exc).__name__}: {show(str(exc), 120)})",
            line=1,
            column=1,
            hint=f"this is not a notebook njtui can read, and a bug to report with the file; {DONT_CHANGE}",
        ) from None
    return Validator(path, locator).notebook(data)


def load_notebook(path: Path | str) -> Notebook:
    path = Path(path)
    return parse_notebook(read_notebook_bytes(path), path)


def save_notebook(notebook: Notebook, path: Path | str) -> None:
    """Writes `notebook` in njtui's own layout, whatever the file held: for a new notebook.
    A notebook that was read from its file is saved with NotebookFile.save, which keeps the
    file's comments and merges what changed there since."""
    save_document(notebook_document(notebook), path)


def save_document(document: dict[str, Any], path: Path | str) -> Notebook:
    """Writes a notebook document atomically; the text is checked to load back, as any file
    njtui reads is, before it replaces anything (NotebookError if not). Returns what it loads as."""
    path = Path(path)
    text = toml_writer.dumps(document).encode("utf-8")
    notebook = parse_notebook(text, path)
    atomic_write_bytes(path, text)
    return notebook


def edit_notebook(notebook: Notebook, edit: Callable[[dict[str, Any]], None], path: Path | str) -> Notebook:
    """`notebook` with `edit` applied to its document (notebook_document's mapping, which
    `edit` changes in place), checked as a file read from disk is: the validated notebook, or
    NotebookError saying what is wrong. `notebook` itself is not changed. `njtui runtime set`
    and the settings screen both edit through here, then save with NotebookFile.save."""
    document = copy.deepcopy(notebook_document(notebook))
    edit(document)
    return _validated(document, Path(path))


def _validated(document: dict[str, Any], path: Path) -> Notebook:
    return parse_notebook(toml_writer.dumps(document).encode("utf-8"), path)


# -- a notebook file that was read, saved with a three-way merge

# (st_ino, st_size, st_mtime_ns): a save renames a new file over the old one (a new inode), an
# editor writing in place changes the size or the time.
Signature = tuple[int, int, int]
SAVE_ATTEMPTS = 3


def _signature(path: Path) -> Signature | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NotebookError(path, f"cannot read the file: {exc.strerror}", hint=os_error_hint(exc)) from None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass
class SaveResult:
    """What NotebookFile.save did. "saved": the file now holds `notebook`, the merge of what
    was saved with what changed in the file meanwhile (`taken_in` lists those changes, by
    part); the caller goes on from this `notebook`, since saving the one it gave again would
    take those changes back. "conflict": the same parts were changed differently in both
    (`conflicts`), and the file was not touched; saving again with prefer="ours" or "theirs"
    settles them."""

    status: str
    conflicts: list[Conflict] = field(default_factory=list)
    notebook: Notebook | None = None
    taken_in: dict[str, list[str]] = field(default_factory=dict)
    layout_kept: bool = True  # False: the file was laid out anew and lost its comments


@dataclass
class TakeIn:
    """What changed in the file while it was open: `notebook` is the notebook being edited
    with those changes taken in, `changed` what they changed in it, `waiting` the parts that
    were left as they are here (changed here too, or being edited) for the next save's merge;
    or `error`, when the file cannot be read as a notebook now."""

    notebook: Notebook | None = None
    changed: dict[str, list[str]] = field(default_factory=dict)
    waiting: list[Conflict] = field(default_factory=list)
    error: NotebookError | None = None


class NotebookFile:
    """A notebook file and what njtui last read from it or wrote to it: the base of the
    three-way merge each save makes (base, the file now, the notebook being saved), so that a
    change made in the file meanwhile — `njtui runtime set`, another editor, a `git pull` — is
    merged instead of overwritten, and the text, comments and layout a person gave the file
    are edited in place rather than rewritten."""

    def __init__(self, path: Path | str, notebook: Notebook, text: str | None = None, signature: Signature | None = None) -> None:
        self.path = Path(path)
        self.base = copy.deepcopy(notebook_document(notebook))
        self.text = text
        # None: unknown, so the first look at the file reads it (it may have changed since
        # `notebook` was read from it).
        self.signature = signature
        self.notebook = notebook  # the notebook as read, for the caller to edit and save
        # The file's document while parts of it wait (changed here too, or held), and what was
        # held then: once something held is let go, it is merged again without a new read.
        self._waiting: tuple[dict[str, Any], str | None] | None = None
        self._held: tuple[frozenset, frozenset] = (frozenset(), frozenset())

    @classmethod
    def load(cls, path: Path | str) -> NotebookFile:
        path = Path(path)
        signature = _signature(path)
        raw = read_notebook_bytes(path)
        notebook = parse_notebook(raw, path)
        return cls(path, notebook, _text_of(raw), signature)

    def _read(self) -> tuple[Signature | None, bytes | None]:
        signature = _signature(self.path)
        if signature is None:
            return None, None
        try:
            raw = read_notebook_bytes(self.path)
        except NotebookError:
            if _signature(self.path) is None:  # removed between the two looks
                return None, None
            raise
        return signature, raw

    def _theirs(self, raw: bytes | None) -> tuple[dict[str, Any], str | None]:
        """The file's document and text now; the base when the file is gone (a save makes it anew)."""
        if raw is None:
            return self.base, self.text
        try:
            notebook = parse_notebook(raw, self.path)
        except NotebookError as exc:
            raise NotebookError(
                self.path,
                f"changed on disk since njtui read it, and is not a notebook now: {exc.message}",
                line=exc.line,
                column=exc.column,
                hint="fix the file (or move it away) and save again; nothing was written, your changes are still here",
            ) from None
        return notebook_document(notebook), _text_of(raw)

    def save(self, notebook: Notebook, *, prefer: str | None = None) -> SaveResult:
        """Saves `notebook`, merged with what changed in the file since it was read: "saved",
        or "conflict" with the file untouched. The result is validated as any file njtui reads
        before it replaces the file, atomically. NotebookError when the file or the merge is
        not a valid notebook (nothing written then)."""
        ours = notebook_document(notebook)
        for _ in range(SAVE_ATTEMPTS):
            signature, raw = self._read()
            theirs, theirs_text = self._theirs(raw)
            merge = merge_documents(self.base, ours, theirs, prefer=prefer)
            if merge.conflicts and prefer is None:
                return SaveResult("conflict", merge.conflicts)
            try:
                merged = _validated(merge.document, self.path)
            except NotebookError as exc:
                raise NotebookError(
                    self.path,
                    f"your changes and those made in the file since njtui read it do not make a valid notebook together: {exc.message}",
                    hint="nothing was written; change the notebook here (or the file) so they fit, and save again",
                ) from None
            document = notebook_document(merged)
            text, layout_kept = self._render(theirs_text, theirs, document)
            written = parse_notebook(text.encode("utf-8"), self.path)
            if _signature(self.path) != signature:
                continue  # written to again while this merge was made: merge with that too
            if raw is None or text.encode("utf-8") != raw:
                atomic_write_bytes(self.path, text.encode("utf-8"))
            self.base, self.text, self.signature = document, text, _signature(self.path)
            self._waiting = None
            return SaveResult("saved", merge.conflicts, written, summary(ours, document), layout_kept)
        raise NotebookError(
            self.path,
            f"kept changing while njtui saved it ({SAVE_ATTEMPTS} tries)",
            hint="nothing was written; save again once the other program is done with the file",
        )

    def _render(self, text: str | None, old: dict[str, Any], new: dict[str, Any]) -> tuple[str, bool]:
        """The file's text edited to read as `new` (comments and layout kept), else njtui's
        own layout of `new` (a new file, or a layout the in-place edit could not follow)."""
        if text is None:
            return toml_writer.dumps(new), True
        if old == new:
            return text, True
        try:
            edited = toml_writer.update_text(text, old, new)
            if notebook_document(parse_notebook(edited.encode("utf-8"), self.path)) == new:
                return edited, True
        except Exception:  # noqa: BLE001 - tomlkit on a layout it cannot edit: lay it out anew
            pass
        return toml_writer.dumps(new), False

    def take_in(self, notebook: Notebook, *, hold_cells: Iterable[str] = (), hold_runtimes: Iterable[str] = ()) -> TakeIn | None:
        """What changed in the file since it was last read or written, merged into `notebook`
        (which is not changed: the result holds the merged copy), or None when the file did not
        change. Parts changed here too, and the cells and runtimes held (being edited), keep
        their version here and wait for the next save, which merges them or reports a conflict."""
        held = (frozenset(hold_cells), frozenset(hold_runtimes))
        signature = _signature(self.path)
        if signature == self.signature:
            if self._waiting is None or held == self._held:
                return None
            theirs, text = self._waiting
        else:
            self.signature = signature
            if signature is None:
                return None  # removed or moved away: the next save writes it anew
            try:
                raw = read_notebook_bytes(self.path)
                theirs, text = self._theirs(raw)
            except NotebookError as exc:
                return TakeIn(error=exc)
        self._held = held
        ours = notebook_document(notebook)
        if theirs == self.base:
            self.text, self._waiting = text, None
            return None
        merge = merge_documents(self.base, ours, theirs, hold_cells=held[0], hold_runtimes=held[1])
        try:
            merged = _validated(merge.document, self.path)
        except NotebookError as exc:
            # Said once per change of the file; a save then says it again, and writes nothing.
            return TakeIn(
                error=NotebookError(
                    self.path,
                    f"changed on disk in a way that does not fit the changes made here: {exc.message}",
                    hint="change the notebook here or the file so they fit; until then a save writes nothing",
                )
            )
        self.base = advance_base(self.base, theirs, merge.conflicts)
        self.text = text
        self._waiting = (theirs, text) if merge.conflicts else None
        return TakeIn(merged, summary(ours, notebook_document(merged)), merge.conflicts)


def _text_of(raw: bytes) -> str:
    # parse_notebook accepted these bytes, so they decode.
    return raw.decode("utf-8").removeprefix("\ufeff")
