"""Jupyter notebooks (.ipynb) in and out: `njtui import` makes an njtui notebook of one, with its
stored outputs in the results store; `njtui export` makes one of an njtui notebook and the
latest outputs of its cells.

An imported notebook runs in one Jupyter runtime, its kernelspec's; cells keep their ids,
sources, metadata and attachments, and the notebook's own metadata is kept whole, so an export
gives back what was imported. The mapping of outputs to execution events is
njtui.model.jupyter_outputs's. A .ipynb is someone else's file: whatever it holds ends in an
IpynbError that names the file and the problem, never a traceback, and nothing is written
until everything has been read and checked.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4 as nbv4
from nbformat.v4.rwbase import strip_transient

from njtui.model import HOST_ENVIRONMENT, Cell, Notebook, RuntimeSpec, is_cell_id, new_cell_id
from njtui.model.jupyter_outputs import Displays, events_from_outputs, outputs_from_events
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError, StoreError
from njtui.store.notebook_file import load_notebook, parse_notebook
from njtui.store.notebook_layout import JUPYTER_METADATA, dumps_notebook
from njtui.store.notebook_validator import KERNEL_LANGUAGE, KERNEL_NAME
from njtui.store.results import ResultsStore

# A .ipynb with its outputs may be far larger than a notebook file; this only keeps a wrong
# path (a disk image) from being read whole.
MAX_IPYNB_BYTES = 1024**3
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_NOT_RUNTIME_ID = re.compile(r"[^A-Za-z0-9_-]+")
_DEFAULT_LANGUAGE = "python"  # Jupyter's, for a notebook that names no kernel
# The kernelspec a native runtime's cells are exported with, by language: what Jupyter calls
# the kernels that run those languages (ipykernel's and bash_kernel's).
NATIVE_KERNELSPECS = {
    "python": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
    "bash": {"name": "bash", "display_name": "Bash", "language": "bash"},
}


class IpynbError(StoreError):
    """A .ipynb that cannot be imported, or an export that cannot be written; nothing written."""


@dataclass
class Imported:
    """What `import_ipynb` wrote: the notebook, and how many cells' outputs went to its results."""

    notebook: Notebook
    path: Path
    results: Path
    outputs: int


@dataclass
class Exported:
    path: Path
    cells: int
    outputs: int


# -- reading a .ipynb


@contextlib.contextmanager
def _quiet_nbformat() -> Iterator[None]:
    """nbformat logs a notebook's schema errors and warns about ids it repairs; njtui says what
    matters itself, once, in its own words."""
    logger = logging.getLogger("traitlets")
    silence = logging.Filter("njtui: nothing of traitlets")  # a name no record has: drops all
    logger.addFilter(silence)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.removeFilter(silence)


def _where(path: Any) -> str:
    """A place in a notebook as nbformat's error gives it: cells[2].outputs[0]."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top level"


def _validation_problem(error: Exception, within: tuple = ()) -> str:
    message = getattr(error, "message", None) or str(error).split("\n", 1)[0]
    message = _CONTROL.sub(" ", message)
    if len(message) > 200:
        message = message[:200] + "…"
    path = [*within, *(getattr(error, "absolute_path", None) or [])]
    where = _where(path)
    if len(path) >= 2 and path[0] == "cells" and isinstance(path[1], int):
        where += f" (cell {path[1] + 1})"
    return f"at {where}: {message}"


def _unreadable(text: str, error: Exception) -> str:
    """Why nbformat could not read a notebook, in its schema's words where the file is JSON that
    names a version ("at cells: 5 is not of type 'array'"), rather than the Python error that the
    upgrade met on the way ("'int' object is not iterable")."""
    with contextlib.suppress(Exception):
        document = json.loads(text)
        version = document.get("nbformat") if isinstance(document, dict) else None
        if isinstance(version, int) and not isinstance(version, bool):
            try:
                nbformat.validate(document, version=version)
            except nbformat.ValidationError as invalid:
                return _validation_problem(invalid)
    return _CONTROL.sub(" ", str(error).split("\n", 1)[0])[:200] or type(error).__name__


def read_ipynb(path: Path) -> Any:
    """The notebook in `path` as nbformat v4 (older versions upgraded by nbformat), valid, with
    a unique valid id on every cell; IpynbError otherwise."""
    hint = "njtui imports Jupyter notebooks (.ipynb, nbformat 3 or 4); nothing was written"
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_IPYNB_BYTES + 1)
    except FileNotFoundError:
        raise IpynbError(path, "no such file", hint="check the path of the .ipynb to import") from None
    except IsADirectoryError:
        raise IpynbError(path, "is a directory, not a notebook", hint="name the .ipynb file") from None
    except OSError as exc:
        raise IpynbError(path, f"cannot read the file: {exc.strerror or exc}", hint="check its permissions and the path") from None
    if len(raw) > MAX_IPYNB_BYTES:
        raise IpynbError(path, f"is larger than the {MAX_IPYNB_BYTES // 1024**3} GiB njtui reads", hint=hint)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IpynbError(path, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}), so not a Jupyter notebook", hint=hint) from None
    captured: dict[str, Exception] = {}
    with _quiet_nbformat():
        try:
            notebook = nbformat.reads(text, as_version=4, capture_validation_error=captured)
        except RecursionError:
            raise IpynbError(path, "is nested too deeply to read", hint=hint) from None
        except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds on what is not a notebook; each is said, none a traceback
            raise IpynbError(path, f"is not a Jupyter notebook nbformat can read: {_unreadable(text, exc)}", hint=hint) from None
        if not isinstance(notebook.get("cells"), list):
            raise IpynbError(path, "is not a Jupyter notebook: it has no list of cells", hint=hint)
        minor = notebook.get("nbformat_minor")
        has_ids = isinstance(minor, int) and minor >= 5
        if has_ids:
            # Repaired before validating: nbformat refuses a bad id, where a new one does.
            _repair_ids(notebook.cells)
        try:
            nbformat.validate(notebook)
        except Exception as exc:  # noqa: BLE001 - jsonschema's and nbformat's errors alike: said, not raised
            raise IpynbError(path, f"is not a valid Jupyter notebook: {_validation_problem(exc)}", hint=f"fix the notebook (Jupyter shows the same problem); {hint}") from None
    if not has_ids:
        _repair_ids(notebook.cells)
    return notebook


def _repair_ids(cells: list[Any]) -> None:
    """Every cell gets an id, valid and unique: its own where it has one."""
    taken: set[str] = {cell["id"] for cell in cells if isinstance(cell, dict) and isinstance(cell.get("id"), str) and is_cell_id(cell["id"])}
    seen: set[str] = set()
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not is_cell_id(cell_id) or cell_id in seen:
            cell_id = new_cell_id(taken)
            taken.add(cell_id)
            cell["id"] = cell_id
        seen.add(cell_id)


def _plain(value: Any) -> Any:
    """NotebookNodes as the plain dicts and lists the notebook model holds."""
    return json.loads(json.dumps(value))


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def _kernel_of(metadata: dict[str, Any]) -> tuple[str, str, str]:
    """(kernelspec name, display name, language) of a notebook's metadata, each made valid."""
    kernelspec: dict[str, Any] = metadata["kernelspec"] if isinstance(metadata.get("kernelspec"), dict) else {}
    language_info: dict[str, Any] = metadata["language_info"] if isinstance(metadata.get("language_info"), dict) else {}
    language = next((value.lower() for value in (kernelspec.get("language"), language_info.get("name")) if isinstance(value, str) and KERNEL_LANGUAGE.fullmatch(value.lower())), None)
    name = kernelspec.get("name")
    if not (isinstance(name, str) and KERNEL_NAME.fullmatch(name)):
        # No kernelspec (a notebook never run): the kernel Jupyter names for its language.
        known = NATIVE_KERNELSPECS.get(language or _DEFAULT_LANGUAGE)
        name = known["name"] if known is not None else language if language and KERNEL_NAME.fullmatch(language) else NATIVE_KERNELSPECS[_DEFAULT_LANGUAGE]["name"]
    display_name = kernelspec.get("display_name")
    if not (isinstance(display_name, str) and _one_line(display_name)):
        display_name = next((spec["display_name"] for spec in NATIVE_KERNELSPECS.values() if spec["name"] == name), name)
    return name, _one_line(display_name), language or _DEFAULT_LANGUAGE


def runtime_id_for(kernel: str) -> str:
    """A runtime id named after a kernelspec: its characters a runtime id cannot have as -."""
    return _NOT_RUNTIME_ID.sub("-", kernel)[:64].strip("-") or "jupyter"


def notebook_from_ipynb(ipynb: Any, title: str) -> tuple[Notebook, dict[str, tuple[list[dict[str, Any]], int | None]]]:
    """The njtui notebook of a read .ipynb (see read_ipynb), and each code cell's stored
    outputs and execution count, by cell id (cells that never ran have neither)."""
    # What nbformat itself drops when it writes a notebook: marks of a conversion, a signature.
    strip_transient(ipynb)
    metadata = _plain(ipynb.get("metadata", {}))
    kernel, display_name, language = _kernel_of(metadata)
    runtime = RuntimeSpec(id=runtime_id_for(kernel), language=language, name=display_name, environment=HOST_ENVIRONMENT, default=True, type="jupyter", kernel=kernel)
    stored_title = metadata.get("title")
    notebook = Notebook(
        title=_one_line(stored_title) if isinstance(stored_title, str) and _one_line(stored_title) else title,
        runtimes={runtime.id: runtime},
        extra={JUPYTER_METADATA: metadata} if metadata else {},
    )
    outputs: dict[str, tuple[list[dict[str, Any]], int | None]] = {}
    for raw in ipynb.cells:
        kind = raw.get("cell_type")
        source = raw.get("source", "")
        cell = Cell(
            id=raw["id"],
            kind=kind,
            source="".join(source) if isinstance(source, list) else source,
            language=language if kind == "code" else None,
            metadata=_plain(raw.get("metadata", {})),
            attachments=_plain(raw.get("attachments", {})),
        )
        notebook.cells.append(cell)
        if kind == "code":
            count = raw.get("execution_count")
            cell_outputs = _plain(raw.get("outputs", []))
            if cell_outputs or count is not None:
                outputs[cell.id] = (cell_outputs, count if isinstance(count, int) else None)
    return notebook, outputs


def import_ipynb(source: Path, target: Path, *, force: bool = False) -> Imported:
    """Imports `source` (.ipynb) as the njtui notebook `target`, its stored outputs recorded in
    `target`'s results store as each cell's newest execution. IpynbError (nothing written) for
    a notebook that cannot be imported, or a `target` that exists and `force` is not given."""
    if not force and target.exists():
        raise IpynbError(target, "exists already; njtui import does not replace it", hint="pass --force to replace it, or -o to write the notebook elsewhere")
    ipynb = read_ipynb(source)
    notebook, stored = notebook_from_ipynb(ipynb, source.stem)
    text = dumps_notebook(notebook)
    try:
        # Checked as any notebook file is read, before anything is written.
        notebook = parse_notebook(text.encode("utf-8"), target)
    except NotebookError as exc:
        raise IpynbError(source, f"cannot be held in an njtui notebook: {exc.message}", hint="nothing was written") from None
    store = ResultsStore(target)
    runtime_id = next(iter(notebook.runtimes))
    for cell in notebook.cells:
        if cell.id in stored:
            outputs, count = stored[cell.id]
            record_imported(store, cell, runtime_id, outputs, count)
    atomic_write_bytes(target, text.encode("utf-8"))
    return Imported(notebook, target, store.root, len(stored))


def record_imported(store: ResultsStore, cell: Cell, runtime_id: str, outputs: list[dict[str, Any]], count: int | None) -> None:
    """A cell's stored outputs as its newest execution, marked `imported`, so that they show
    as soon as the notebook opens, and as stale once the source changes."""
    exec_id = f"import-{secrets.token_hex(6)}"
    events = events_from_outputs(outputs, count)
    writer = store.begin(cell.id, exec_id, runtime_id, status="running", count=count, source_hash=cell.source_hash, extra={"imported": True})
    try:
        for seq, event in enumerate(events, start=1):
            writer.add({"seq": seq, "exec": exec_id, **event})
        failed = any(event["type"] == "error" for event in events)
        writer.finish(status="error" if failed else "ok", count=count)
    except BaseException:
        writer.abandon()
        raise


# -- writing a .ipynb


def _kernel_runtime(notebook: Notebook) -> RuntimeSpec | None:
    """The runtime whose kernel the notebook is exported for: the first code cell's, else the
    first Jupyter runtime, else the first runtime."""
    code = notebook.code_cells()
    if code:
        return notebook.runtime_for(code[0])
    runtimes = list(notebook.runtimes.values())
    return next((spec for spec in runtimes if spec.is_jupyter), runtimes[0] if runtimes else None)


def ipynb_metadata(notebook: Notebook, notebook_stem: str) -> dict[str, Any]:
    """The notebook-level metadata of an export: what was imported, with the kernelspec and
    language_info of the notebook's runtime (the imported ones where they name the same)."""
    stored = notebook.extra.get(JUPYTER_METADATA)
    metadata: dict[str, Any] = copy.deepcopy(stored) if isinstance(stored, dict) else {}
    spec = _kernel_runtime(notebook)
    if spec is not None:
        if spec.is_jupyter:
            kernelspec = {"name": spec.kernel, "display_name": spec.name, "language": spec.language}
        else:
            kernelspec = dict(NATIVE_KERNELSPECS.get(spec.language, {"name": spec.language, "display_name": spec.name, "language": spec.language}))
        old_kernelspec = metadata.get("kernelspec")
        if not (isinstance(old_kernelspec, dict) and old_kernelspec.get("name") == kernelspec["name"] and isinstance(old_kernelspec.get("display_name"), str)):
            metadata["kernelspec"] = kernelspec
        old_language = metadata.get("language_info")
        if not (isinstance(old_language, dict) and isinstance(old_language.get("name"), str) and old_language["name"].lower() == spec.language):
            metadata["language_info"] = {"name": spec.language}
    # A title the notebook file holds beyond its name; the file name is the title otherwise.
    if notebook.title and ("title" in metadata or notebook.title != notebook_stem):
        metadata["title"] = notebook.title
    return metadata


def ipynb_from_notebook(notebook: Notebook, store: ResultsStore | None, path: Path) -> tuple[Any, int]:
    """The nbformat 4.5 notebook of `notebook` (read from `path`), each code cell with the
    outputs of its latest recorded execution in `store`; and how many cells have outputs.
    IpynbError when nbformat refuses a cell (metadata written by hand that Jupyter does not
    allow)."""
    displays: Displays = {}
    cells = []
    with_outputs = 0
    for index, cell in enumerate(notebook.cells):
        try:
            made, ran = _ipynb_cell(cell, store, displays)
        except Exception as exc:  # noqa: BLE001 - nbformat's schema errors, said in njtui's words
            raise _invalid_export(path, exc, ("cells", index)) from None
        cells.append(made)
        with_outputs += ran
    # NotebookNodes all through, as nbformat's writer reads them (attributes, not keys).
    return nbformat.from_dict(nbv4.new_notebook(cells=cells, metadata=ipynb_metadata(notebook, path.stem))), with_outputs


def _invalid_export(path: Path, error: Exception, within: tuple = ()) -> IpynbError:
    return IpynbError(
        path,
        f"does not make a valid Jupyter notebook: {_validation_problem(error, within)}",
        hint="the metadata or attachments written in the notebook file are not what Jupyter allows there; fix them and export again (nothing was written)",
    )


def _ipynb_cell(cell: Cell, store: ResultsStore | None, displays: Displays) -> tuple[Any, bool]:
    """A cell as nbformat makes it (and checks it), and whether it has a recorded execution."""
    common: dict[str, Any] = {"id": cell.id, "metadata": copy.deepcopy(cell.metadata)}
    if cell.kind == "code":
        outputs: list[dict[str, Any]] = []
        count = None
        record = store.latest(cell.id) if store is not None else None
        if store is not None and record is not None:
            outputs = outputs_from_events(store.events(record), displays)
            count = record.count if isinstance(record.count, int) and not isinstance(record.count, bool) and record.count >= 0 else None
        return nbv4.new_code_cell(cell.source, outputs=outputs, execution_count=count, **common), record is not None
    if cell.attachments:
        common["attachments"] = copy.deepcopy(cell.attachments)
    maker = nbv4.new_markdown_cell if cell.kind == "markdown" else nbv4.new_raw_cell
    return maker(cell.source, **common), False


def export_notebook(source: Path, target: Path, *, force: bool = False) -> Exported:
    """Exports the njtui notebook `source` and its latest outputs as the .ipynb `target`, valid
    nbformat 4.5, written atomically. NotebookError for a notebook that cannot be read,
    IpynbError for a `target` that exists (without `force`) or an export nbformat refuses."""
    notebook = load_notebook(source)
    if not force and target.exists():
        raise IpynbError(target, "exists already; njtui export does not replace it", hint="pass --force to replace it, or -o to write the .ipynb elsewhere")
    with _quiet_nbformat():
        try:
            # nbformat checks each cell as it is made, then the whole.
            ipynb, with_outputs = ipynb_from_notebook(notebook, ResultsStore(source), source)
            nbformat.validate(ipynb)
        except IpynbError:
            raise
        except Exception as exc:  # noqa: BLE001 - said in njtui's words, whatever nbformat raised
            raise _invalid_export(source, exc) from None
        text = nbformat.writes(ipynb, version=4)
    atomic_write_bytes(target, (text if text.endswith("\n") else text + "\n").encode("utf-8"))
    return Exported(target, len(notebook.cells), with_outputs)
