"""Notebooks as documents: the ordered mappings of the notebook format, in njtui's canonical
layout, that are written as TOML and merged part by part."""

from __future__ import annotations

import json
import re
from typing import Any

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.model.settings import Mount
from njtui.store import toml_writer
from njtui.store.environment_fields import environment_value, version_document
from njtui.store.locate import MAX_DEPTH

# The notebook's own Jupyter metadata (kernelspec, language_info, …), kept in Notebook.extra
# under this key as the dict it is; cells keep theirs in Cell.metadata.
JUPYTER_METADATA = "metadata"
# Levels a table of Jupyter metadata may nest in the file: those above it ([[cells]], a
# cell's `metadata`) and the key of a dotted header count towards MAX_DEPTH too.
_TABLE_DEPTH = MAX_DEPTH - 8
_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INT64 = range(-(2**63), 2**63)


def jupyter_value(value: dict[str, Any]) -> dict[str, Any] | str:
    """Jupyter metadata or attachments (any JSON object) as the notebook file holds them: a
    TOML table when TOML can hold every value in it, which reads and diffs as the rest of the
    file does (tags = ["parameters"]); else, whole, as one line of JSON in a string. TOML has no
    null, refuses NUL and control characters in keys, and integers past 64 bits, which JSON
    has; a value half table and half JSON would have two readings of one key. The reader tells
    the two apart by type: Jupyter's value is always an object, never a string."""
    return value if _toml_can_hold(value) else toml_writer.Literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _toml_can_hold(value: dict[str, Any]) -> bool:
    pending: list[tuple[int, Any]] = [(1, value)]
    while pending:
        depth, item = pending.pop()
        if isinstance(item, dict):
            if depth > _TABLE_DEPTH or any(not isinstance(key, str) or _KEY_CONTROL.search(key) for key in item):
                return False
            pending.extend((depth + 1, child) for child in item.values())
        elif isinstance(item, list):
            if depth > _TABLE_DEPTH:
                return False
            pending.extend((depth + 1, child) for child in item)
        elif isinstance(item, str):
            if "\0" in item:
                return False
        elif isinstance(item, bool) or isinstance(item, float):
            continue
        elif not isinstance(item, int) or item not in _INT64:
            return False  # None, or something no JSON holds
    return True


def notebook_document(notebook: Notebook) -> dict[str, Any]:
    """The notebook as an ordered mapping in its canonical layout."""
    document: dict[str, Any] = {"njtui": notebook.format_version}
    if notebook.title:
        document["title"] = notebook.title
    if notebook.registry:
        document["registry"] = notebook.registry
    tables: dict[str, Any] = {}
    if notebook.env:
        document["env"] = dict(notebook.env)
    for key, value in notebook.extra.items():
        if key == JUPYTER_METADATA and isinstance(value, dict):
            value = jupyter_value(value)
        (tables if isinstance(value, dict) else document)[key] = value
    if notebook.runtimes:
        document["runtimes"] = {spec.id: runtime_document(spec) for spec in notebook.runtimes.values()}
    document.update(tables)
    if notebook.cells:
        document["cells"] = [cell_document(cell) for cell in notebook.cells]
    return document


def runtime_document(spec: RuntimeSpec) -> dict[str, Any]:
    """A runtime's table in the order of the notebook format: identity, machine, timeout,
    then its sub-tables (env, secrets, mounts)."""
    table: dict[str, Any] = {"name": spec.name}
    if spec.is_jupyter:
        table["type"] = spec.type
        table["kernel"] = spec.kernel
    table.update(language=spec.language, environment=environment_value(spec.environment))
    if spec.saved_version is not None:
        table["saved_version"] = spec.saved_version
    if spec.export is not None:
        table["export"] = spec.export
    if spec.backend is not None:
        table["backend"] = spec.backend
    if spec.engine is not None:
        table["engine"] = spec.engine
    if spec.engine_tls is not None:
        table["engine_tls"] = spec.engine_tls
    if spec.default:
        table["default"] = True
    if spec.machine is not None:
        table["machine"] = spec.machine
    if spec.cpus is not None:
        table["cpus"] = spec.cpus
    if spec.memory is not None:
        table["memory"] = spec.memory
    if spec.gpus is not None:
        table["gpus"] = list(spec.gpus) if isinstance(spec.gpus, list) else spec.gpus
    if spec.mount_cuda is not None:
        table["mount_cuda"] = spec.mount_cuda
    if spec.idle_timeout is not None:
        table["idle_timeout"] = spec.idle_timeout
    table.update(spec.extra)
    if spec.env:
        table["env"] = dict(spec.env)
    if spec.secrets:
        table["secrets"] = dict(spec.secrets)
    if spec.mounts:
        table["mounts"] = [mount_document(mount) for mount in spec.mounts]
    if spec.versions:
        table["versions"] = [version_document(saved) for saved in spec.versions]
    return table


def mount_document(mount: Mount) -> dict[str, Any]:
    table: dict[str, Any] = {"kind": mount.kind, "source": mount.source}
    if mount.ref is not None:
        table["ref"] = mount.ref
    table["at"] = mount.at
    table["read_only"] = mount.read_only
    table.update(mount.extra)
    return table


def cell_document(cell: Cell) -> dict[str, Any]:
    table: dict[str, Any] = {"id": cell.id, "kind": cell.kind}
    if cell.language is not None:
        table["language"] = cell.language
    if cell.runtime is not None:
        table["runtime"] = cell.runtime
    subtables: dict[str, Any] = {}
    jupyter = {"metadata": cell.metadata, "attachments": cell.attachments}
    for key, value in [*cell.extra.items(), *((key, jupyter_value(value)) for key, value in jupyter.items() if value)]:
        (subtables if isinstance(value, dict) else table)[key] = value
    table["source"] = cell.source
    table.update(subtables)
    return table


def dumps_notebook(notebook: Notebook) -> str:
    return toml_writer.dumps(notebook_document(notebook))
