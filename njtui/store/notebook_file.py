"""Notebook files: TOML in, validated model out; model in, TOML out, atomically: canonical for a
new file, edited in place and merged with changes made meanwhile for a file that was read."""

from __future__ import annotations

import copy
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from njtui.model import (
    CELL_KINDS,
    FORMAT_VERSION,
    HOST_ENVIRONMENT,
    LANGUAGES,
    MAX_IDLE_TIMEOUT,
    Cell,
    DurationError,
    Notebook,
    RuntimeSpec,
    is_cell_id,
    is_runtime_id,
    new_cell_id,
    parse_duration,
)
from njtui.model.settings import MAX_CPUS, MAX_GPUS, MAX_MEMORY, MIN_CPUS, MIN_MEMORY, MOUNT_KINDS, Mount, is_image_reference
from njtui.model.size import SizeError, parse_size
from njtui.store.machines import load_machines, machines_path
from njtui.store import toml_writer
from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError, toml_error_position
from njtui.store.locate import MAX_DEPTH, Locator
from njtui.store.merge import Conflict, advance_base, merge_documents, summary
from njtui.store.secrets import SECRET_NAME

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", dict: "a table", list: "an array", (int, float): "a number"}
_RUNTIME_KEYS = (
    "name", "language", "environment", "backend", "default", "machine", "cpus", "memory", "gpus", "mount_cuda",
    "idle_timeout", "env", "secrets", "mounts",
)
_MOUNT_KEYS = ("kind", "source", "ref", "at", "read_only")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CELL_KEYS = ("id", "kind", "language", "runtime", "source")
_DONT_CHANGE = "njtui left the file unchanged"
_ID_RULE = "1 to 64 letters, digits, - or _"
# Control characters (tab aside) in a one-line setting: a title or name with an escape sequence
# would drive the terminal that prints it, a path or URL with one fails only when used.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GPU_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/-]{0,127}")
_GIT_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_INT64 = range(-(2**63), 2**63)
MAX_NOTEBOOK_BYTES = 64 * 1024**2


class _Validator:
    """Turns parsed TOML into a Notebook, raising NotebookError at the first problem."""

    def __init__(self, path: Path, locator: Locator) -> None:
        self.path = path
        self.locator = locator
        self._machines: dict | None = None  # the user's machine presets, read once if named

    def fail(self, where: tuple, message: str, hint: str) -> NotebookError:
        line, column = self.locator.locate(where)
        return NotebookError(self.path, message, line=line, column=column, hint=hint)

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

    def one_line(self, where: tuple, value: str | None, what: str) -> None:
        if value is not None and _CONTROL.search(value):
            raise self.fail(
                where,
                f"{what} {_show(value)} contains a control character",
                "write it as one line of plain text, without control characters such as \\n or \\u001b",
            )

    def check_values(self, data: dict) -> None:
        """What no part of a notebook may hold, even keys njtui does not know (they are kept and
        written back): NUL, which no path, environment or argument can carry; control characters
        in keys; integers TOML cannot store (it promises 64 bits); nesting past MAX_DEPTH.
        Walked without recursion."""
        pending: list[tuple[tuple, Any]] = [((), data)]
        while pending:
            where, value = pending.pop()
            if isinstance(value, (dict, list)):
                if value and len(where) >= MAX_DEPTH:
                    raise self.fail(where, f"values are nested more than {MAX_DEPTH} levels deep here", "a notebook needs only a few levels; flatten this value")
                items = value.items() if isinstance(value, dict) else enumerate(value)
                children = []
                for key, item in items:
                    # A key with a line break could not be written back: a key is one line.
                    if isinstance(key, str) and _KEY_CONTROL.search(key):
                        raise self.fail(where + (key,), f"the key {_show(key)} contains a control character", "write the key as plain text, without control characters such as \\n or \\u0000")
                    children.append((where + (key,), item))
                pending.extend(reversed(children))  # so the first problem in the file is the one reported
            elif isinstance(value, str) and "\0" in value:
                raise self.fail(where, "this text contains a NUL character (\\u0000), which no part of a notebook may hold", "remove the \\u0000 escape")
            elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
                raise self.fail(where, "this integer does not fit in 64 bits, as TOML integers must", "write a smaller number")

    def notebook(self, data: dict) -> Notebook:
        self.check_values(data)
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
        self.one_line(("title",), title, "the title")
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
        if not is_runtime_id(runtime_id):
            raise self.fail(
                where,
                f"runtime id {_show(runtime_id)} is not a valid id",
                f"name a runtime with {_ID_RULE}, e.g. [runtimes.py], and use that name in cells' `runtime`",
            )
        label = f"runtime {runtime_id!r}"
        if not isinstance(table, dict):
            raise self.fail(where, f"{label} must be a table, not {_describe(table)}", f"write it as [runtimes.{runtime_id}] with its keys below")
        language = self.get(table, where, "language", str, required=True, label=label)
        if language not in LANGUAGES:
            raise self.fail(where + ("language",), f"{label} has unknown language {_show(language)}", f"use one of: {', '.join(LANGUAGES)}")
        name = self.get(table, where, "name", str, label=label)
        self.one_line(where + ("name",), name, f"the name of {label}")
        environment = self.get(table, where, "environment", str, label=label)
        if environment is not None and not environment.strip():
            raise self.fail(where + ("environment",), f"{label} has an empty environment", f'write environment = "{HOST_ENVIRONMENT}" or an image reference')
        backend = self.get(table, where, "backend", str, label=label)
        if backend is not None and not is_runtime_id(backend):
            raise self.fail(where + ("backend",), f"{label} names backend {_show(backend)}, which is not a backend name", "leave `backend` out (host or Docker by the environment) or name an installed backend, e.g. backend = \"docker\"")
        idle_timeout = self.get(table, where, "idle_timeout", str, label=label)
        if idle_timeout is not None:
            self.idle_timeout(where + ("idle_timeout",), idle_timeout, label)
        cpus = self.get(table, where, "cpus", (int, float), label=label)
        # Written so that nan, which compares false with everything, is refused too.
        if cpus is not None and not MIN_CPUS <= cpus <= MAX_CPUS:
            raise self.fail(
                where + ("cpus",),
                f"{label} has cpus = {_show(cpus)}, outside {MIN_CPUS:g} to {MAX_CPUS}",
                f"write a number of CPUs from {MIN_CPUS:g} to {MAX_CPUS}, e.g. cpus = 1.5",
            )
        memory = self.get(table, where, "memory", str, label=label)
        if memory is not None:
            self.memory(where + ("memory",), memory, label)
        env = self.variables(where, self.get(table, where, "env", dict, label=label) or {}, label)
        if environment is not None and environment != HOST_ENVIRONMENT and not is_image_reference(environment):
            raise self.fail(
                where + ("environment",),
                f"{label} has environment {_show(environment)}, which is not an image reference",
                'write "host" or an image like "njtui/python:3.11" or "registry.example.org:5000/team/image:tag"',
            )
        machine = self.get(table, where, "machine", str, label=label)
        if machine is not None:
            if self._machines is None:
                self._machines = load_machines()
            presets = self._machines
            if machine not in presets:
                raise self.fail(
                    where + ("machine",),
                    f"{label} names machine type {_show(machine)}, which is not defined",
                    f"use one of: {', '.join(sorted(presets))} (presets are in {machines_path()}), or leave it out and set cpus/memory",
                )
        gpus = table.get("gpus")
        if gpus is not None:
            if isinstance(gpus, bool) or not (
                (isinstance(gpus, int) and 0 <= gpus <= MAX_GPUS)
                or (isinstance(gpus, list) and len(gpus) <= MAX_GPUS and all(isinstance(g, str) and _GPU_ID.fullmatch(g) for g in gpus))
            ):
                raise self.fail(
                    where + ("gpus",),
                    f"`gpus` of {label} must be a count or a list of device ids, not {_describe(gpus)}",
                    f'write gpus = 1 (at most {MAX_GPUS}), or gpus = ["0", "1"] (ids of letters, digits and : . _ / -)',
                )
        mount_cuda = self.get(table, where, "mount_cuda", bool, label=label)
        secrets = self.get(table, where, "secrets", dict, label=label) or {}
        for variable, secret in secrets.items():
            if not _VARIABLE_NAME.fullmatch(variable):
                raise self.fail(where + ("secrets", variable), f"{_show(variable)} in the secrets of {label} is not a variable name", "use letters, digits and _ (not first a digit)")
            if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
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
            name=name or "",
            environment=environment or HOST_ENVIRONMENT,
            backend=backend,
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

    def idle_timeout(self, where: tuple, text: str, label: str) -> None:
        example = 'write it like "20m", "90s" or "1h30m"'
        try:
            seconds = parse_duration(text)
        except DurationError as exc:
            raise self.fail(where, f"{label} has a bad idle_timeout {_show(text)}: {exc}", example) from None
        if not 0 < seconds <= MAX_IDLE_TIMEOUT:
            raise self.fail(
                where,
                f"{label} has idle_timeout {_show(text)}; it must be more than 0 and at most {MAX_IDLE_TIMEOUT / 86400:g} days",
                f'{example}; at most "{MAX_IDLE_TIMEOUT / 86400:g}d"',
            )

    def memory(self, where: tuple, text: str, label: str) -> None:
        example = 'write it like "256MB" or "2GiB"'
        try:
            size = parse_size(text)
        except SizeError as exc:
            raise self.fail(where, f"{label} has a bad memory limit {_show(text)}: {exc}", example) from None
        if size < MIN_MEMORY:
            raise self.fail(where, f"{label} has a bad memory limit {_show(text)}: Docker needs at least {MIN_MEMORY // 1024**2}MiB", example)
        if size > MAX_MEMORY:
            raise self.fail(
                where,
                f"{label} has a bad memory limit {_show(text)}: a runtime may have at most {MAX_MEMORY // 1024**4}TiB",
                f"{example}, at most {MAX_MEMORY // 1024**4}TiB",
            )

    def variables(self, where: tuple, env: dict, label: str) -> dict[str, str]:
        for key, value in env.items():
            if not _VARIABLE_NAME.fullmatch(key):
                raise self.fail(where + ("env", key), f"{_show(key)} in the env of {label} is not a variable name", "use letters, digits and _ (not first a digit)")
            if not isinstance(value, str):
                raise self.fail(where + ("env", key), f"environment variable {key} of {label} must be a string, not {_describe(value)}", f'quote it: {key} = "{value}"' if isinstance(value, (int, float)) else f'write it as a string: {key} = "…"')
        return dict(env)

    def mount(self, where: tuple, raw: Any, label: str) -> Mount:
        if not isinstance(raw, dict):
            raise self.fail(where, f"a mount of {label} must be a table, not {_describe(raw)}", "write it as [[runtimes.ID.mounts]] with kind, source and at")
        kind = self.get(raw, where, "kind", str, required=True, label=f"a mount of {label}")
        if kind not in MOUNT_KINDS:
            raise self.fail(where + ("kind",), f"a mount of {label} has unknown kind {_show(kind)}", f"use one of: {', '.join(MOUNT_KINDS)}")
        source = self.get(raw, where, "source", str, required=True, label=f"a mount of {label}")
        self.one_line(where + ("source",), source, f"the source of a mount of {label}")
        at = self.get(raw, where, "at", str, required=True, label=f"a mount of {label}")
        self.one_line(where + ("at",), at, f"the directory of a mount of {label}")
        if not at.startswith("/") or any(part == ".." for part in at.split("/")):
            raise self.fail(where + ("at",), f"a mount of {label} is at {_show(at)}, which is not an absolute path", 'write the directory inside the runtime, e.g. at = "/data"')
        if kind == "dir" and not Path(source).expanduser().is_absolute():
            raise self.fail(where + ("source",), f"the dir mount of {label} has source {_show(source)}, which is not an absolute path", "write the host directory's absolute path (~ works)")
        if kind == "s3" and not source.startswith("s3://"):
            raise self.fail(where + ("source",), f"the s3 mount of {label} has source {_show(source)}", 'write it like "s3://bucket/prefix"')
        ref = self.get(raw, where, "ref", str, label=f"a mount of {label}")
        # git reads a ref that starts with "-" as an option; the rest is git's own ref rule.
        if ref is not None and (not ref or ref.startswith("-") or _GIT_REF_FORBIDDEN.search(ref) or ".." in ref):
            raise self.fail(where + ("ref",), f"a mount of {label} has ref {_show(ref)}, which is not a git branch, tag or commit", 'write a branch, tag or commit, e.g. ref = "main" or ref = "v1.2"')
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
        if not is_cell_id(cell_id):
            raise self.fail(
                where + ("id",),
                f"{label} has an empty id" if not cell_id else f"{label} has id {_show(cell_id)}, which is not a valid cell id",
                f'use {_ID_RULE}, unique in the notebook (njtui writes 6 hex digits, e.g. id = "{new_cell_id()}")',
            )
        label = f"cell {cell_id!r}"
        kind = self.get(raw, where, "kind", str, required=True, label=label)
        if kind not in CELL_KINDS:
            raise self.fail(where + ("kind",), f"{label} has unknown kind {_show(kind)}", f"use one of: {', '.join(CELL_KINDS)}")
        source = self.get(raw, where, "source", str, required=True, label=label)
        language = self.get(raw, where, "language", str, label=label)
        runtime = self.get(raw, where, "runtime", str, label=label)
        if runtime is not None and runtime not in runtimes:
            known = ", ".join(runtimes) or "none defined"
            advice = f"define [runtimes.{runtime}] or use" if is_runtime_id(runtime) else "use"
            raise self.fail(where + ("runtime",), f"{label} names runtime {_show(runtime)}, which the notebook does not define", f"{advice} one of: {known}")
        if kind == "code":
            if language is None and runtime is not None:
                language = runtimes[runtime].language
            if language is None:
                raise self.fail(where, f"code {label} has no `language`", f"add language = one of: {', '.join(LANGUAGES)}")
            if language not in LANGUAGES:
                raise self.fail(where + ("language",), f"{label} has unknown language {_show(language)}", f"use one of: {', '.join(LANGUAGES)}")
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
        # Each language's runtimes gathered once: per cell it would be cells × runtimes.
        by_language: dict[str, list[str]] = {}
        for spec in notebook.runtimes.values():
            by_language.setdefault(spec.language, []).append(spec.id)
        for index, cell in enumerate(notebook.cells):
            if not cell.is_code or cell.runtime is not None:
                continue
            candidates = by_language.get(cell.language or "", [])
            if len(candidates) > 1 and notebook.default_runtime(cell.language) is None:
                raise self.fail(
                    ("cells", index),
                    f"cell {cell.id!r} names no runtime and {cell.language} has several ({', '.join(candidates)}) with none the default",
                    f"set `default = true` on one of them or give the cell `runtime = \"{candidates[0]}\"`",
                )


def _show(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: repr, cut short, since it may be megabytes long."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "…"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(value: Any) -> str:
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return f"{name} ({_show(value)})" if not isinstance(value, (dict, list)) else name
    if isinstance(value, float):
        return f"a number ({_show(value)})"
    return f"{type(value).__name__} ({_show(value)})"


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    """(line, column) of a byte offset of undecoded text; the column counts characters."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, len(raw[line_start:offset].decode("utf-8", "replace")) + 1


def parse_notebook(raw: bytes, path: Path) -> Notebook:
    """The notebook in `raw`, else NotebookError with the file, line and column and what to do;
    never another exception, whatever `raw` holds."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise _too_large(path, len(raw))
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, column = _position(raw, nul)
        raise NotebookError(
            path,
            "not a text file (it contains NUL bytes), so not a notebook",
            line=line,
            column=column,
            hint=f"open the .toml notebook file itself; {_DONT_CHANGE}",
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
            hint=f"save it as UTF-8, e.g. iconv -f latin1 -t utf-8; {_DONT_CHANGE}",
        ) from None
    text = text.removeprefix("\ufeff")
    locator = Locator(text)
    if locator.refusal is not None:
        line, column = locator.position(locator.refusal.offset)
        raise NotebookError(path, locator.refusal.message, line=line, column=column, hint=f"{locator.refusal.hint}; {_DONT_CHANGE}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message, line, column = toml_error_position(exc, text)
        raise NotebookError(
            path,
            f"not valid TOML: {message[:1].lower() + message[1:]}",
            line=line or 1,
            column=column or 1,
            hint=(
                f"this looks like JSON (a Jupyter .ipynb?), not an njtui notebook; {_DONT_CHANGE}"
                if text.lstrip().startswith("{")
                else f"fix the TOML at that spot (a notebook is a TOML file, see README); {_DONT_CHANGE}"
            ),
        ) from None
    except (ValueError, RecursionError, OverflowError, MemoryError) as exc:
        # The scan above refuses what is known to break tomllib (deep nesting, huge integers);
        # this is for what is not known yet, so a notebook still never ends in a traceback.
        raise NotebookError(
            path,
            f"tomllib could not read it ({type(exc).__name__}: {_show(str(exc), 120)})",
            line=1,
            column=1,
            hint=f"this is not a notebook njtui can read, and a bug to report with the file; {_DONT_CHANGE}",
        ) from None
    return _Validator(path, locator).notebook(data)


def _too_large(path: Path, size: int) -> NotebookError:
    return NotebookError(
        path,
        f"is {size / 1024**2:,.1f} MiB, larger than the {MAX_NOTEBOOK_BYTES // 1024**2} MiB a notebook may be",
        hint=f"name the .toml notebook file itself; large data belongs in files beside it, not in cells; {_DONT_CHANGE}",
    )


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_regular(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    if kind == "a directory":
        raise NotebookError(path, "is a directory, not a notebook file", hint="name a .toml notebook file")
    raise NotebookError(
        path,
        f"is {kind}, not a regular file, so not a notebook",
        hint="name the .toml notebook file itself (a symlink to one is fine); njtui reads notebooks only from regular files",
    )


def read_notebook_bytes(path: Path) -> bytes:
    """The bytes of a notebook file. Only a regular file is read (a FIFO would block, /dev/zero
    never end), and at most MAX_NOTEBOOK_BYTES of it; NotebookError otherwise."""
    try:
        # stat follows a symlink: it is the file that would be read that must be regular, and
        # it is checked before opening, since opening some devices already does something.
        _check_regular(path, os.stat(path).st_mode)
        # O_NONBLOCK: should a FIFO replace the file after the stat, opening it does not wait
        # for a writer; the fstat below then refuses it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotebookError(path, "no such notebook", hint="check the path, or run `njtui PATH` to create a new notebook there") from None
    except IsADirectoryError:
        raise NotebookError(path, "is a directory, not a notebook file", hint="name a .toml notebook file") from None
    except OSError as exc:
        raise NotebookError(path, f"cannot read the file: {exc.strerror}", hint=_os_error_hint(exc)) from None
    except ValueError:  # a NUL in the path
        raise NotebookError(path, "is not a path a file can have (it contains a NUL)", hint="name the .toml notebook file") from None
    try:
        info = os.fstat(descriptor)
        _check_regular(path, info.st_mode)
        if info.st_size > MAX_NOTEBOOK_BYTES:
            raise _too_large(path, info.st_size)
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow after the fstat: the limit holds for what is read
            chunk = os.read(descriptor, min(1024**2, MAX_NOTEBOOK_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_NOTEBOOK_BYTES:
                raise _too_large(path, total)
    except OSError as exc:
        raise NotebookError(path, f"cannot read the file: {exc.strerror}", hint=_os_error_hint(exc)) from None
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def _os_error_hint(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "check its permissions (and those of the directories above it)"
    return "check the path; it must name a readable .toml notebook file"


def load_notebook(path: Path | str) -> Notebook:
    path = Path(path)
    return parse_notebook(read_notebook_bytes(path), path)


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
        raise NotebookError(path, f"cannot read the file: {exc.strerror}", hint=_os_error_hint(exc)) from None
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
    def load(cls, path: Path | str) -> "NotebookFile":
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
