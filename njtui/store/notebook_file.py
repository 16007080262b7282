"""Notebook files: TOML in, validated model out; model in, canonical TOML out, atomically."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from njtui.model import (
    CELL_KINDS,
    FORMAT_VERSION,
    HOST_ENVIRONMENT,
    LANGUAGES,
    Cell,
    DurationError,
    Notebook,
    RuntimeSpec,
    parse_duration,
)
from njtui.model.settings import MOUNT_KINDS, Mount, is_image_reference
from njtui.model.size import SizeError, parse_size
from njtui.store.machines import load_machines, machines_path
from njtui.store import toml_writer
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError, toml_error_position
from njtui.store.locate import Locator

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", dict: "a table", list: "an array", (int, float): "a number"}
_RUNTIME_KEYS = (
    "name", "language", "environment", "default", "machine", "cpus", "memory", "gpus", "mount_cuda",
    "idle_timeout", "env", "secrets", "mounts",
)
_MOUNT_KEYS = ("kind", "source", "ref", "at", "read_only")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CELL_KEYS = ("id", "kind", "language", "runtime", "source")
_DONT_CHANGE = "njtui left the file unchanged"


class _Validator:
    """Turns parsed TOML into a Notebook, raising NotebookError at the first problem."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self._locator: Locator | None = None

    def fail(self, where: tuple, message: str, hint: str) -> NotebookError:
        if self._locator is None:
            self._locator = Locator(self.text)
        return NotebookError(self.path, message, line=self._locator.line_of(where), column=1 if where else None, hint=hint)

    def get(self, table: dict, where: tuple, key: str, kind: type, *, required: bool = False, label: str = "") -> Any:
        if key not in table:
            if required:
                raise self.fail(where, f"{label or 'table'} is missing the key `{key}`", f"add `{key} = …` ({_TYPE_NAMES[kind]})")
            return None
        value = table[key]
        wrong = not isinstance(value, kind) or (kind in (int, (int, float)) and isinstance(value, bool))
        if wrong:
            raise self.fail(
                where + (key,),
                f"`{key}` in {label or 'the notebook'} must be {_TYPE_NAMES[kind]}, not {_describe(value)}",
                f"write it as {_TYPE_NAMES[kind]}",
            )
        return value

    def notebook(self, data: dict) -> Notebook:
        version = self.get(data, (), "njtui", int, required=True, label="the notebook")
        if version > FORMAT_VERSION:
            raise self.fail(
                ("njtui",),
                f"this notebook uses format {version}, written by a newer njtui; this njtui reads format {FORMAT_VERSION}",
                "upgrade njtui (pip install -U njtui) to open it",
            )
        if version < 1:
            raise self.fail(("njtui",), f"format version {version} does not exist", f"write njtui = {FORMAT_VERSION}")
        title = self.get(data, (), "title", str, label="the notebook") or ""
        notebook_env = self.variables((), self.get(data, (), "env", dict, label="the notebook") or {}, "the notebook")
        runtimes_table = self.get(data, (), "runtimes", dict, label="the notebook") or {}
        runtimes = {rid: self.runtime(rid, table) for rid, table in runtimes_table.items()}
        self.check_defaults(runtimes)
        raw_cells = self.get(data, (), "cells", list, label="the notebook") or []
        notebook = Notebook(
            title=title,
            runtimes=runtimes,
            env=notebook_env,
            format_version=version,
            extra={k: v for k, v in data.items() if k not in ("njtui", "title", "env", "runtimes", "cells")},
        )
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_cells):
            cell = self.cell(index, raw, runtimes)
            if cell.id in seen:
                raise self.fail(
                    ("cells", index, "id"),
                    f"cell id {cell.id!r} is used twice (cells {seen[cell.id] + 1} and {index + 1})",
                    "give every cell its own id (any short unique text, e.g. 6 hex digits)",
                )
            seen[cell.id] = index
            notebook.cells.append(cell)
        self.check_cell_runtimes(notebook)
        return notebook

    def runtime(self, runtime_id: str, table: Any) -> RuntimeSpec:
        where = ("runtimes", runtime_id)
        label = f"runtime {runtime_id!r}"
        if not isinstance(table, dict):
            raise self.fail(where, f"{label} must be a table, not {_describe(table)}", f"write it as [runtimes.{runtime_id}] with its keys below")
        language = self.get(table, where, "language", str, required=True, label=label)
        if language not in LANGUAGES:
            raise self.fail(where + ("language",), f"{label} has unknown language {language!r}", f"use one of: {', '.join(LANGUAGES)}")
        environment = self.get(table, where, "environment", str, label=label)
        if environment is not None and not environment.strip():
            raise self.fail(where + ("environment",), f"{label} has an empty environment", f'write environment = "{HOST_ENVIRONMENT}" or an image reference')
        idle_timeout = self.get(table, where, "idle_timeout", str, label=label)
        if idle_timeout is not None:
            try:
                if parse_duration(idle_timeout) <= 0:
                    raise DurationError("must be positive")
            except DurationError as exc:
                raise self.fail(where + ("idle_timeout",), f"{label} has a bad idle_timeout {idle_timeout!r}: {exc}", 'write it like "20m", "90s" or "1h30m"') from None
        cpus = self.get(table, where, "cpus", (int, float), label=label)
        if cpus is not None and (isinstance(cpus, bool) or cpus <= 0):
            raise self.fail(where + ("cpus",), f"{label} has cpus = {cpus!r}", "write a positive number of CPUs, e.g. cpus = 1.5")
        memory = self.get(table, where, "memory", str, label=label)
        if memory is not None:
            try:
                if parse_size(memory) < 6 * 1024 * 1024:
                    raise SizeError("Docker needs at least 6 MB")
            except SizeError as exc:
                raise self.fail(where + ("memory",), f"{label} has a bad memory limit {memory!r}: {exc}", 'write it like "256MB" or "2GiB"') from None
        env = self.variables(where, self.get(table, where, "env", dict, label=label) or {}, label)
        if environment is not None and environment != HOST_ENVIRONMENT and not is_image_reference(environment):
            raise self.fail(
                where + ("environment",),
                f"{label} has environment {environment!r}, which is not an image reference",
                'write "host" or an image like "njtui/python:3.11" or "registry.example.org:5000/team/image:tag"',
            )
        machine = self.get(table, where, "machine", str, label=label)
        if machine is not None:
            presets = load_machines()
            if machine not in presets:
                raise self.fail(
                    where + ("machine",),
                    f"{label} names machine type {machine!r}, which is not defined",
                    f"use one of: {', '.join(sorted(presets))} (presets are in {machines_path()}), or leave it out and set cpus/memory",
                )
        gpus = table.get("gpus")
        if gpus is not None:
            if isinstance(gpus, bool) or not (
                (isinstance(gpus, int) and gpus >= 0) or (isinstance(gpus, list) and all(isinstance(g, str) and g for g in gpus))
            ):
                raise self.fail(where + ("gpus",), f"`gpus` of {label} must be a count or a list of device ids, not {_describe(gpus)}", 'write gpus = 1, or gpus = ["0", "1"]')
        mount_cuda = self.get(table, where, "mount_cuda", bool, label=label)
        secrets = self.get(table, where, "secrets", dict, label=label) or {}
        for variable, secret in secrets.items():
            if not _VARIABLE_NAME.match(variable):
                raise self.fail(where + ("secrets", variable), f"{variable!r} in the secrets of {label} is not a variable name", "use letters, digits and _ (not first a digit)")
            if not isinstance(secret, str) or not _SECRET_NAME.match(secret):
                raise self.fail(
                    where + ("secrets", variable),
                    f"secret {variable} of {label} must name a secret in your secret store, not {_describe(secret)}",
                    f'write {variable} = "secret-name" and store it with `njtui secrets set secret-name`; never the value itself',
                )
        raw_mounts = self.get(table, where, "mounts", list, label=label) or []
        mounts = [self.mount(where + ("mounts", index), raw, label) for index, raw in enumerate(raw_mounts)]
        seen_at: dict[str, int] = {}
        for index, mount in enumerate(mounts):
            if mount.at in seen_at:
                raise self.fail(where + ("mounts", index, "at"), f"{label} has two mounts at {mount.at} (mounts {seen_at[mount.at] + 1} and {index + 1})", "give each mount its own directory")
            seen_at[mount.at] = index
        return RuntimeSpec(
            id=runtime_id,
            language=language,
            name=self.get(table, where, "name", str, label=label) or "",
            environment=environment or HOST_ENVIRONMENT,
            default=bool(self.get(table, where, "default", bool, label=label)),
            idle_timeout=idle_timeout,
            machine=machine,
            cpus=float(cpus) if cpus is not None else None,
            memory=memory,
            gpus=gpus,
            mount_cuda=mount_cuda,
            env=env,
            secrets=dict(secrets),
            mounts=mounts,
            extra={k: v for k, v in table.items() if k not in _RUNTIME_KEYS},
        )

    def variables(self, where: tuple, env: dict, label: str) -> dict[str, str]:
        for key, value in env.items():
            if not _VARIABLE_NAME.match(key):
                raise self.fail(where + ("env", key), f"{key!r} in the env of {label} is not a variable name", "use letters, digits and _ (not first a digit)")
            if not isinstance(value, str):
                raise self.fail(where + ("env", key), f"environment variable {key} of {label} must be a string, not {_describe(value)}", f'quote it: {key} = "{value}"')
        return dict(env)

    def mount(self, where: tuple, raw: Any, label: str) -> Mount:
        if not isinstance(raw, dict):
            raise self.fail(where, f"a mount of {label} must be a table, not {_describe(raw)}", "write it as [[runtimes.ID.mounts]] with kind, source and at")
        kind = self.get(raw, where, "kind", str, required=True, label=f"a mount of {label}")
        if kind not in MOUNT_KINDS:
            raise self.fail(where + ("kind",), f"a mount of {label} has unknown kind {kind!r}", f"use one of: {', '.join(MOUNT_KINDS)}")
        source = self.get(raw, where, "source", str, required=True, label=f"a mount of {label}")
        at = self.get(raw, where, "at", str, required=True, label=f"a mount of {label}")
        if not at.startswith("/") or "\0" in at or any(part == ".." for part in at.split("/")):
            raise self.fail(where + ("at",), f"a mount of {label} is at {at!r}, which is not an absolute path", 'write the directory inside the runtime, e.g. at = "/data"')
        if kind == "dir" and not Path(source).expanduser().is_absolute():
            raise self.fail(where + ("source",), f"the dir mount of {label} has source {source!r}, which is not an absolute path", "write the host directory's absolute path (~ works)")
        if kind == "s3" and not source.startswith("s3://"):
            raise self.fail(where + ("source",), f"the s3 mount of {label} has source {source!r}", 'write it like "s3://bucket/prefix"')
        ref = self.get(raw, where, "ref", str, label=f"a mount of {label}")
        read_only = self.get(raw, where, "read_only", bool, label=f"a mount of {label}")
        extra = {k: v for k, v in raw.items() if k not in _MOUNT_KEYS}
        return Mount(kind=kind, source=source, at=at.rstrip("/") or "/", read_only=True if read_only is None else read_only, ref=ref, extra=extra)

    def check_defaults(self, runtimes: dict[str, RuntimeSpec]) -> None:
        defaults: dict[str, str] = {}
        for spec in runtimes.values():
            if not spec.default:
                continue
            if spec.language in defaults:
                raise self.fail(
                    ("runtimes", spec.id, "default"),
                    f"runtimes {defaults[spec.language]!r} and {spec.id!r} are both the default for {spec.language}",
                    f"keep `default = true` on one {spec.language} runtime only",
                )
            defaults[spec.language] = spec.id

    def cell(self, index: int, raw: Any, runtimes: dict[str, RuntimeSpec]) -> Cell:
        where = ("cells", index)
        label = f"cell {index + 1}"
        if not isinstance(raw, dict):
            raise self.fail(("cells",), f"{label} must be a table, not {_describe(raw)}", "write each cell as a [[cells]] block")
        cell_id = self.get(raw, where, "id", str, required=True, label=label)
        if not cell_id.strip():
            raise self.fail(where + ("id",), f"{label} has an empty id", "give it a short unique id, e.g. 6 hex digits")
        label = f"cell {cell_id!r}"
        kind = self.get(raw, where, "kind", str, required=True, label=label)
        if kind not in CELL_KINDS:
            raise self.fail(where + ("kind",), f"{label} has unknown kind {kind!r}", f"use one of: {', '.join(CELL_KINDS)}")
        source = self.get(raw, where, "source", str, required=True, label=label)
        language = self.get(raw, where, "language", str, label=label)
        runtime = self.get(raw, where, "runtime", str, label=label)
        if runtime is not None and runtime not in runtimes:
            known = ", ".join(runtimes) or "none defined"
            raise self.fail(where + ("runtime",), f"{label} names runtime {runtime!r}, which the notebook does not define", f"define [runtimes.{runtime}] or use one of: {known}")
        if kind == "code":
            if language is None and runtime is not None:
                language = runtimes[runtime].language
            if language is None:
                raise self.fail(where, f"code {label} has no `language`", f"add language = one of: {', '.join(LANGUAGES)}")
            if language not in LANGUAGES:
                raise self.fail(where + ("language",), f"{label} has unknown language {language!r}", f"use one of: {', '.join(LANGUAGES)}")
            if runtime is not None and runtimes[runtime].language != language:
                raise self.fail(
                    where + ("runtime",),
                    f"{label} is {language} but its runtime {runtime!r} runs {runtimes[runtime].language}",
                    f"pick a {language} runtime or change the cell's language",
                )
        return Cell(
            id=cell_id,
            kind=kind,
            source=source,
            language=language,
            runtime=runtime,
            extra={k: v for k, v in raw.items() if k not in _CELL_KEYS},
        )

    def check_cell_runtimes(self, notebook: Notebook) -> None:
        for index, cell in enumerate(notebook.cells):
            if not cell.is_code or cell.runtime is not None:
                continue
            candidates = [s.id for s in notebook.runtimes.values() if s.language == cell.language]
            if len(candidates) > 1 and notebook.default_runtime(cell.language) is None:
                raise self.fail(
                    ("cells", index),
                    f"cell {cell.id!r} names no runtime and {cell.language} has several ({', '.join(candidates)}) with none the default",
                    f"set `default = true` on one of them or give the cell `runtime = \"{candidates[0]}\"`",
                )


def _describe(value: Any) -> str:
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return f"{name} ({value!r})" if not isinstance(value, (dict, list)) else name
    if isinstance(value, float):
        return f"a number ({value!r})"
    return f"{type(value).__name__} ({value!r})"


def parse_notebook(raw: bytes, path: Path) -> Notebook:
    if b"\x00" in raw[:8192]:
        offset = raw.index(b"\x00")
        raise NotebookError(
            path,
            "not a text file (it contains NUL bytes), so not a notebook",
            line=raw.count(b"\n", 0, offset) + 1,
            hint=f"open the .toml notebook file itself; {_DONT_CHANGE}",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise NotebookError(
            path,
            f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be decoded)",
            line=line,
            column=column,
            hint=f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8; {_DONT_CHANGE}",
        ) from None
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line, column = toml_error_position(exc)
        raise NotebookError(
            path,
            f"not valid TOML: {message[:1].lower() + message[1:]}",
            line=line,
            column=column,
            hint=(
                f"this looks like JSON (a Jupyter .ipynb?), not an njtui notebook; {_DONT_CHANGE}"
                if text.lstrip().startswith("{")
                else f"fix the TOML at that spot (a notebook is a TOML file, see README); {_DONT_CHANGE}"
            ),
        ) from None
    return _Validator(path, text).notebook(data)


def load_notebook(path: Path | str) -> Notebook:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotebookError(path, "no such notebook", hint="check the path, or run `njtui PATH` to create a new notebook there") from None
    except IsADirectoryError:
        raise NotebookError(path, "is a directory, not a notebook file", hint="name a .toml notebook file") from None
    except OSError as exc:
        raise NotebookError(path, f"cannot read the file: {exc.strerror}", hint="check its permissions") from None
    return parse_notebook(raw, path)


def notebook_document(notebook: Notebook) -> dict[str, Any]:
    """The notebook as an ordered mapping in its canonical layout."""
    document: dict[str, Any] = {"njtui": notebook.format_version}
    if notebook.title:
        document["title"] = notebook.title
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
    table: dict[str, Any] = {"name": spec.name, "language": spec.language, "environment": spec.environment}
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
    subtables = {}
    for key, value in cell.extra.items():
        (subtables if isinstance(value, dict) else table)[key] = value
    table["source"] = cell.source
    table.update(subtables)
    return table


def dumps_notebook(notebook: Notebook) -> str:
    return toml_writer.dumps(notebook_document(notebook))


def save_notebook(notebook: Notebook, path: Path | str) -> None:
    """Writes atomically; the text is checked to load back before it replaces anything."""
    path = Path(path)
    text = dumps_notebook(notebook)
    parse_notebook(text.encode("utf-8"), path)
    atomic_write_bytes(path, text.encode("utf-8"))
