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
from njtui.model.size import SizeError, parse_size
from njtui.store import toml_writer
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError, toml_error_position
from njtui.store.locate import Locator

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", dict: "a table", list: "an array", (int, float): "a number"}
_RUNTIME_KEYS = ("name", "language", "environment", "default", "idle_timeout", "cpus", "memory", "env")
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
        runtimes_table = self.get(data, (), "runtimes", dict, label="the notebook") or {}
        runtimes = {rid: self.runtime(rid, table) for rid, table in runtimes_table.items()}
        self.check_defaults(runtimes)
        raw_cells = self.get(data, (), "cells", list, label="the notebook") or []
        notebook = Notebook(
            title=title,
            runtimes=runtimes,
            format_version=version,
            extra={k: v for k, v in data.items() if k not in ("njtui", "title", "runtimes", "cells")},
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
        env = self.get(table, where, "env", dict, label=label) or {}
        for key, value in env.items():
            if not isinstance(value, str):
                raise self.fail(where + ("env", key), f"environment variable {key} of {label} must be a string, not {_describe(value)}", f'quote it: {key} = "{value}"')
        return RuntimeSpec(
            id=runtime_id,
            language=language,
            name=self.get(table, where, "name", str, label=label) or "",
            environment=environment or HOST_ENVIRONMENT,
            default=bool(self.get(table, where, "default", bool, label=label)),
            idle_timeout=idle_timeout,
            cpus=float(cpus) if cpus is not None else None,
            memory=memory,
            env=dict(env),
            extra={k: v for k, v in table.items() if k not in _RUNTIME_KEYS},
        )

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
    tables = {}
    for key, value in notebook.extra.items():
        (tables if isinstance(value, dict) else document)[key] = value
    if notebook.runtimes:
        document["runtimes"] = {spec.id: runtime_document(spec) for spec in notebook.runtimes.values()}
    document.update(tables)
    if notebook.cells:
        document["cells"] = [cell_document(cell) for cell in notebook.cells]
    return document


def runtime_document(spec: RuntimeSpec) -> dict[str, Any]:
    table: dict[str, Any] = {"name": spec.name, "language": spec.language, "environment": spec.environment}
    if spec.default:
        table["default"] = True
    if spec.cpus is not None:
        table["cpus"] = spec.cpus
    if spec.memory is not None:
        table["memory"] = spec.memory
    if spec.idle_timeout is not None:
        table["idle_timeout"] = spec.idle_timeout
    table.update(spec.extra)
    if spec.env:
        table["env"] = dict(spec.env)
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
