"""Notebooks as documents: the ordered mappings of the notebook format, in njtui's canonical
layout, that are written as TOML and merged part by part."""

from __future__ import annotations

from typing import Any

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.model.settings import Mount
from njtui.store import toml_writer
from njtui.store.environment_fields import environment_value, version_document


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
    table: dict[str, Any] = {"name": spec.name, "language": spec.language, "environment": environment_value(spec.environment)}
    if spec.saved_version is not None:
        table["saved_version"] = spec.saved_version
    if spec.export is not None:
        table["export"] = spec.export
    if spec.backend is not None:
        table["backend"] = spec.backend
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
    for key, value in cell.extra.items():
        (subtables if isinstance(value, dict) else table)[key] = value
    table["source"] = cell.source
    table.update(subtables)
    return table


def dumps_notebook(notebook: Notebook) -> str:
    return toml_writer.dumps(notebook_document(notebook))
