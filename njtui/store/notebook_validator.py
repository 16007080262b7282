"""Parsed TOML checked against the notebook format, part by part, into a Notebook: the first
problem found is a NotebookError at its line and column, saying what to write instead."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any, TypeAlias

from njtui.model import (
    CELL_KINDS,
    FORMAT_VERSION,
    HOST_ENVIRONMENT,
    LANGUAGES,
    MAX_IDLE_TIMEOUT,
    RUNTIME_TYPES,
    Cell,
    DurationError,
    EnvironmentImport,
    Notebook,
    RuntimeSpec,
    is_cell_id,
    is_runtime_id,
    new_cell_id,
    parse_duration,
)
from njtui.model.engine import ENGINE_ADVICE, SWARM_PREFIX, EngineError, parse_engine
from njtui.model.settings import MAX_CPUS, MAX_GPUS, MAX_MEMORY, MIN_CPUS, MIN_MEMORY, MOUNT_KINDS, Mount
from njtui.model.size import SizeError, parse_size
from njtui.store.environment_fields import ENVIRONMENT_KEYS, read_environment, read_registry, read_saved
from njtui.store.errors import NotebookError
from njtui.store.locate import MAX_DEPTH, Locator
from njtui.store.notebook_layout import JUPYTER_METADATA
from njtui.store.secrets import SECRET_NAME

# What a value must be an instance of: a type, or a tuple of them as isinstance takes.
_Kind: TypeAlias = type | tuple[type, ...]
_TYPE_NAMES: dict[_Kind, str] = {str: "a string", bool: "true or false", int: "an integer", dict: "a table", list: "an array", (int, float): "a number"}
_RUNTIME_KEYS = (
    "name",
    "type",
    "kernel",
    "language",
    "environment",
    "backend",
    "engine",
    "engine_tls",
    "default",
    "machine",
    "cpus",
    "memory",
    "gpus",
    "mount_cuda",
    "idle_timeout",
    "env",
    "secrets",
    "mounts",
    *ENVIRONMENT_KEYS,
)
_MOUNT_KEYS = ("kind", "source", "ref", "at", "read_only")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CELL_KEYS = ("id", "kind", "language", "runtime", "source", "metadata", "attachments")
# Jupyter's rules: a kernelspec's name (jupyter_client), a language as kernels report it.
KERNEL_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
KERNEL_LANGUAGE = re.compile(r"[a-z0-9][a-z0-9+#_.-]{0,63}")
_RUNTIME_TYPE_ADVICE = 'use type = "jupyter" (a Jupyter kernel, named by `kernel`), or leave `type` out for njtui\'s own agents ("native")'
_ID_RULE = "1 to 64 letters, digits, - or _"
# Control characters (tab aside) in a one-line setting: a title or name with an escape sequence
# would drive the terminal that prints it, a path or URL with one fails only when used.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_GPU_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/-]{0,127}")
_GIT_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_INT64 = range(-(2**63), 2**63)


class Validator:
    """Turns parsed TOML into a Notebook, raising NotebookError at the first problem."""

    def __init__(self, path: Path, locator: Locator) -> None:
        self.path = path
        self.locator = locator

    def fail(self, where: tuple, message: str, hint: str) -> NotebookError:
        line, column = self.locator.locate(where)
        return NotebookError(self.path, message, line=line, column=column, hint=hint)

    def get(self, table: dict, where: tuple, key: str, kind: _Kind, *, required: bool = False, label: str = "") -> Any:
        if key not in table:
            if required:
                raise self.fail(where, f"{label or 'table'} is missing the key `{key}`", f"add `{key} = …` ({_TYPE_NAMES[kind]})")
            return None
        value = table[key]
        wrong = not isinstance(value, kind) or (kind in (int, (int, float)) and isinstance(value, bool))
        if wrong:
            raise self.fail(
                where + (key,),
                f"`{key}` in {label or 'the notebook'} must be {_TYPE_NAMES[kind]}, not {describe(value)}",
                f"write it as {_TYPE_NAMES[kind]}",
            )
        return value

    def one_line(self, where: tuple, value: str | None, what: str) -> None:
        if value is not None and _CONTROL.search(value):
            raise self.fail(
                where,
                f"{what} {show(value)} contains a control character",
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
                        raise self.fail(where + (key,), f"the key {show(key)} contains a control character", "write the key as plain text, without control characters such as \\n or \\u0000")
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
        extra = {k: v for k, v in data.items() if k not in ("njtui", "title", "env", "runtimes", "cells", "registry")}
        if JUPYTER_METADATA in extra:
            # Kept in `extra` as the dict it stands for, whichever way the file holds it.
            extra[JUPYTER_METADATA] = self.jupyter_json((JUPYTER_METADATA,), extra[JUPYTER_METADATA], "the notebook's Jupyter metadata")
        notebook = Notebook(
            title=title,
            runtimes=runtimes,
            env=notebook_env,
            format_version=version,
            registry=read_registry(self, data),
            extra=extra,
        )
        # A code cell's language is njtui's own or that of a Jupyter runtime the notebook has.
        languages = list(LANGUAGES) + sorted({spec.language for spec in runtimes.values() if spec.is_jupyter} - set(LANGUAGES))
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_cells):
            cell = self.cell(index, raw, runtimes, languages)
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
        self.check_runtime_table(where, runtime_id, table)
        label = f"runtime {runtime_id!r}"
        runtime_type, kernel = self.runtime_kind(where, table, label)
        language, name, environment, backend = self.runtime_identity(where, table, label, runtime_type)
        idle_timeout, cpus, memory = self.runtime_limits(where, table, label)
        env = self.variables(where, self.get(table, where, "env", dict, label=label) or {}, label)
        saved_version, versions, export = read_saved(self, where, table, label)
        machine = self.runtime_machine(where, table, label)
        engine, engine_tls = self.runtime_engine(where, table, label)
        gpus = self.runtime_gpus(where, table, label)
        mount_cuda = self.get(table, where, "mount_cuda", bool, label=label)
        secrets = self.runtime_secrets(where, table, label)
        mounts = self.runtime_mounts(where, table, label)
        return RuntimeSpec(
            id=runtime_id,
            language=language,
            name=name or "",
            environment=environment or HOST_ENVIRONMENT,
            backend=backend,
            engine=engine,
            engine_tls=engine_tls,
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
            saved_version=saved_version,
            versions=versions,
            export=export,
            type=runtime_type,
            kernel=kernel,
            extra={k: v for k, v in table.items() if k not in _RUNTIME_KEYS},
        )

    def check_runtime_table(self, where: tuple, runtime_id: str, table: Any) -> None:
        if not is_runtime_id(runtime_id):
            raise self.fail(
                where,
                f"runtime id {show(runtime_id)} is not a valid id",
                f"name a runtime with {_ID_RULE}, e.g. [runtimes.py], and use that name in cells' `runtime`",
            )
        label = f"runtime {runtime_id!r}"
        if not isinstance(table, dict):
            raise self.fail(where, f"{label} must be a table, not {describe(table)}", f"write it as [runtimes.{runtime_id}] with its keys below")

    def runtime_kind(self, where: tuple, table: dict, label: str) -> tuple[str, str | None]:
        """A runtime's type and, for a Jupyter one, its kernelspec's name."""
        runtime_type = self.get(table, where, "type", str, label=label)
        if runtime_type is None:
            runtime_type = RUNTIME_TYPES[0]
        elif runtime_type not in RUNTIME_TYPES:
            raise self.fail(where + ("type",), f"{label} has unknown type {show(runtime_type)}", _RUNTIME_TYPE_ADVICE)
        kernel = self.get(table, where, "kernel", str, label=label)
        if runtime_type != "jupyter":
            if kernel is not None:
                raise self.fail(where + ("kernel",), f"{label} names a kernel but is not of type jupyter", 'add type = "jupyter" to run it in that Jupyter kernel, or remove `kernel`')
            return runtime_type, None
        kernel_advice = "(`jupyter kernelspec list` shows the kernels installed)"
        if kernel is None:
            raise self.fail(where, f"{label} is of type jupyter but names no kernel", f'add kernel = "python3", the name of the kernelspec it runs {kernel_advice}')
        if not KERNEL_NAME.fullmatch(kernel):
            raise self.fail(where + ("kernel",), f"{label} names kernel {show(kernel)}, which is not a kernelspec name", f'write the kernelspec\'s name, letters, digits, . _ and -, e.g. kernel = "python3" {kernel_advice}')
        return runtime_type, kernel

    def runtime_identity(self, where: tuple, table: dict, label: str, runtime_type: str = RUNTIME_TYPES[0]) -> tuple[str, str | None, str | EnvironmentImport | None, str | None]:
        """A runtime's language, name, environment and backend."""
        language = self.get(table, where, "language", str, required=True, label=label)
        if runtime_type == "jupyter":
            # Whatever the kernel runs: njtui only needs it to pick the cells it serves.
            if not KERNEL_LANGUAGE.fullmatch(language):
                raise self.fail(
                    where + ("language",),
                    f"{label} has language {show(language)}, which is not a language name",
                    'write the language its kernel reports, in lower case: letters, digits and + # _ - ., e.g. language = "python", "r" or "julia"',
                )
        elif language not in LANGUAGES:
            advice = f"use one of: {', '.join(LANGUAGES)}"
            if KERNEL_LANGUAGE.fullmatch(language):
                advice += '; for another language, run a Jupyter kernel: type = "jupyter" and kernel = "…" (its kernelspec)'
            raise self.fail(where + ("language",), f"{label} has unknown language {show(language)}", advice)
        name = self.get(table, where, "name", str, label=label)
        self.one_line(where + ("name",), name, f"the name of {label}")
        environment = read_environment(self, where, table, label)
        backend = self.get(table, where, "backend", str, label=label)
        if backend is not None and not is_runtime_id(backend):
            raise self.fail(where + ("backend",), f"{label} names backend {show(backend)}, which is not a backend name", 'leave `backend` out (host or Docker by the environment) or name an installed backend, e.g. backend = "docker"')
        return language, name, environment, backend

    def runtime_limits(self, where: tuple, table: dict, label: str) -> tuple[str | None, int | float | None, str | None]:
        """A runtime's idle_timeout, cpus and memory."""
        idle_timeout = self.get(table, where, "idle_timeout", str, label=label)
        if idle_timeout is not None:
            self.idle_timeout(where + ("idle_timeout",), idle_timeout, label)
        cpus = self.get(table, where, "cpus", (int, float), label=label)
        # Written so that nan, which compares false with everything, is refused too.
        if cpus is not None and not MIN_CPUS <= cpus <= MAX_CPUS:
            raise self.fail(
                where + ("cpus",),
                f"{label} has cpus = {show(cpus)}, outside {MIN_CPUS:g} to {MAX_CPUS}",
                f"write a number of CPUs from {MIN_CPUS:g} to {MAX_CPUS}, e.g. cpus = 1.5",
            )
        memory = self.get(table, where, "memory", str, label=label)
        if memory is not None:
            self.memory(where + ("memory",), memory, label)
        return idle_timeout, cpus, memory

    def runtime_machine(self, where: tuple, table: dict, label: str) -> str | None:
        """A machine type's name only: what it stands for is looked up where the runtime boots
        (this machine's presets; another's for a notebook shared from there), so a notebook naming
        a type unknown here still opens, shows and runs its other runtimes."""
        machine = self.get(table, where, "machine", str, label=label)
        if machine is not None and not _MACHINE_NAME.fullmatch(machine):
            raise self.fail(where + ("machine",), f"{label} names machine type {show(machine)}, which is not a machine type's name", 'name a preset with letters, digits, ., _ or - (e.g. machine = "gpu-large"), or leave it out and set cpus/memory')
        return machine

    def runtime_engine(self, where: tuple, table: dict, label: str) -> tuple[str | None, str | None]:
        """Where its container runs, checked as a way of naming an engine only: whether that
        engine answers, and what a context stands for, are found out where the runtime boots."""
        engine = self.get(table, where, "engine", str, label=label)
        if engine is not None:
            try:
                parse_engine(engine)
            except EngineError as exc:
                raise self.fail(where + ("engine",), f"{label}: engine {exc}", ENGINE_ADVICE) from None
        engine_tls = self.get(table, where, "engine_tls", str, label=label)
        self.one_line(where + ("engine_tls",), engine_tls, f"the engine_tls directory of {label}")
        if engine_tls is not None and not (engine or "").removeprefix(SWARM_PREFIX).startswith("tcp://"):
            raise self.fail(
                where + ("engine_tls",), f"{label} has engine_tls but its engine is not a tcp:// URL", 'engine_tls is the TLS material of a tcp:// engine (engine = "tcp://host:2376"); a Docker context carries its own, so remove engine_tls'
            )
        return engine, engine_tls

    def runtime_gpus(self, where: tuple, table: dict, label: str) -> Any:
        gpus = table.get("gpus")
        if gpus is not None:
            if isinstance(gpus, bool) or not ((isinstance(gpus, int) and 0 <= gpus <= MAX_GPUS) or (isinstance(gpus, list) and len(gpus) <= MAX_GPUS and all(isinstance(g, str) and _GPU_ID.fullmatch(g) for g in gpus))):
                raise self.fail(
                    where + ("gpus",),
                    f"`gpus` of {label} must be a count or a list of device ids, not {describe(gpus)}",
                    f'write gpus = 1 (at most {MAX_GPUS}), or gpus = ["0", "1"] (ids of letters, digits and : . _ / -)',
                )
        return gpus

    def runtime_secrets(self, where: tuple, table: dict, label: str) -> dict:
        secrets = self.get(table, where, "secrets", dict, label=label) or {}
        for variable, secret in secrets.items():
            if not _VARIABLE_NAME.fullmatch(variable):
                raise self.fail(where + ("secrets", variable), f"{show(variable)} in the secrets of {label} is not a variable name", "use letters, digits and _ (not first a digit)")
            if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
                raise self.fail(
                    where + ("secrets", variable),
                    f"secret {variable} of {label} must name a secret in your secret store, not {describe(secret)}",
                    f'write {variable} = "secret-name" and store it with `njtui secrets set secret-name`; never the value itself',
                )
        return secrets

    def runtime_mounts(self, where: tuple, table: dict, label: str) -> list[Mount]:
        raw_mounts = self.get(table, where, "mounts", list, label=label) or []
        mounts = [self.mount(where + ("mounts", index), raw, label) for index, raw in enumerate(raw_mounts)]
        seen_at: dict[str, int] = {}
        for index, mount in enumerate(mounts):
            if mount.at in seen_at:
                raise self.fail(where + ("mounts", index, "at"), f"{label} has two mounts at {mount.at} (mounts {seen_at[mount.at] + 1} and {index + 1})", "give each mount its own directory")
            seen_at[mount.at] = index
        return mounts

    def idle_timeout(self, where: tuple, text: str, label: str) -> None:
        example = 'write it like "20m", "90s" or "1h30m"'
        try:
            seconds = parse_duration(text)
        except DurationError as exc:
            raise self.fail(where, f"{label} has a bad idle_timeout {show(text)}: {exc}", example) from None
        if not 0 < seconds <= MAX_IDLE_TIMEOUT:
            raise self.fail(
                where,
                f"{label} has idle_timeout {show(text)}; it must be more than 0 and at most {MAX_IDLE_TIMEOUT / 86400:g} days",
                f'{example}; at most "{MAX_IDLE_TIMEOUT / 86400:g}d"',
            )

    def memory(self, where: tuple, text: str, label: str) -> None:
        example = 'write it like "256MB" or "2GiB"'
        try:
            size = parse_size(text)
        except SizeError as exc:
            raise self.fail(where, f"{label} has a bad memory limit {show(text)}: {exc}", example) from None
        if size < MIN_MEMORY:
            raise self.fail(where, f"{label} has a bad memory limit {show(text)}: Docker needs at least {MIN_MEMORY // 1024**2}MiB", example)
        if size > MAX_MEMORY:
            raise self.fail(
                where,
                f"{label} has a bad memory limit {show(text)}: a runtime may have at most {MAX_MEMORY // 1024**4}TiB",
                f"{example}, at most {MAX_MEMORY // 1024**4}TiB",
            )

    def variables(self, where: tuple, env: dict, label: str) -> dict[str, str]:
        for key, value in env.items():
            if not _VARIABLE_NAME.fullmatch(key):
                raise self.fail(where + ("env", key), f"{show(key)} in the env of {label} is not a variable name", "use letters, digits and _ (not first a digit)")
            if not isinstance(value, str):
                raise self.fail(where + ("env", key), f"environment variable {key} of {label} must be a string, not {describe(value)}", f'quote it: {key} = "{value}"' if isinstance(value, (int, float)) else f'write it as a string: {key} = "…"')
        return dict(env)

    def mount(self, where: tuple, raw: Any, label: str) -> Mount:
        if not isinstance(raw, dict):
            raise self.fail(where, f"a mount of {label} must be a table, not {describe(raw)}", "write it as [[runtimes.ID.mounts]] with kind, source and at")
        kind = self.get(raw, where, "kind", str, required=True, label=f"a mount of {label}")
        if kind not in MOUNT_KINDS:
            raise self.fail(where + ("kind",), f"a mount of {label} has unknown kind {show(kind)}", f"use one of: {', '.join(MOUNT_KINDS)}")
        source = self.get(raw, where, "source", str, required=True, label=f"a mount of {label}")
        self.one_line(where + ("source",), source, f"the source of a mount of {label}")
        at = self.get(raw, where, "at", str, required=True, label=f"a mount of {label}")
        self.one_line(where + ("at",), at, f"the directory of a mount of {label}")
        if not at.startswith("/") or any(part == ".." for part in at.split("/")):
            raise self.fail(where + ("at",), f"a mount of {label} is at {show(at)}, which is not an absolute path", 'write the directory inside the runtime, e.g. at = "/data"')
        if kind == "dir" and not Path(source).expanduser().is_absolute():
            raise self.fail(where + ("source",), f"the dir mount of {label} has source {show(source)}, which is not an absolute path", "write the host directory's absolute path (~ works)")
        if kind == "s3" and not source.startswith("s3://"):
            raise self.fail(where + ("source",), f"the s3 mount of {label} has source {show(source)}", 'write it like "s3://bucket/prefix"')
        ref = self.get(raw, where, "ref", str, label=f"a mount of {label}")
        # git reads a ref that starts with "-" as an option; the rest is git's own ref rule.
        if ref is not None and (not ref or ref.startswith("-") or _GIT_REF_FORBIDDEN.search(ref) or ".." in ref):
            raise self.fail(where + ("ref",), f"a mount of {label} has ref {show(ref)}, which is not a git branch, tag or commit", 'write a branch, tag or commit, e.g. ref = "main" or ref = "v1.2"')
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

    def cell(self, index: int, raw: Any, runtimes: dict[str, RuntimeSpec], languages: list[str] | None = None) -> Cell:
        where = ("cells", index)
        label = f"cell {index + 1}"
        if not isinstance(raw, dict):
            raise self.fail(("cells",), f"{label} must be a table, not {describe(raw)}", "write each cell as a [[cells]] block")
        cell_id = self.get(raw, where, "id", str, required=True, label=label)
        if not is_cell_id(cell_id):
            raise self.fail(
                where + ("id",),
                f"{label} has an empty id" if not cell_id else f"{label} has id {show(cell_id)}, which is not a valid cell id",
                f'use {_ID_RULE}, unique in the notebook (njtui writes 6 hex digits, e.g. id = "{new_cell_id()}")',
            )
        label = f"cell {cell_id!r}"
        kind = self.get(raw, where, "kind", str, required=True, label=label)
        if kind not in CELL_KINDS:
            raise self.fail(where + ("kind",), f"{label} has unknown kind {show(kind)}", f"use one of: {', '.join(CELL_KINDS)}")
        source = self.get(raw, where, "source", str, required=True, label=label)
        language = self.get(raw, where, "language", str, label=label)
        runtime = self.get(raw, where, "runtime", str, label=label)
        if runtime is not None and runtime not in runtimes:
            known = ", ".join(runtimes) or "none defined"
            advice = f"define [runtimes.{runtime}] or use" if is_runtime_id(runtime) else "use"
            raise self.fail(where + ("runtime",), f"{label} names runtime {show(runtime)}, which the notebook does not define", f"{advice} one of: {known}")
        if kind == "code":
            languages = languages or list(LANGUAGES)
            if language is None and runtime is not None:
                language = runtimes[runtime].language
            if language is None:
                raise self.fail(where, f"code {label} has no `language`", f"add language = one of: {', '.join(languages)}")
            if language not in languages:
                advice = f"use one of: {', '.join(languages)}"
                if KERNEL_LANGUAGE.fullmatch(language):
                    advice += f' (or add a Jupyter runtime that runs {language}: [runtimes.ID] with type = "jupyter", kernel = "…", language = "{language}")'
                raise self.fail(where + ("language",), f"{label} has unknown language {show(language)}", advice)
            if runtime is not None and runtimes[runtime].language != language:
                raise self.fail(
                    where + ("runtime",),
                    f"{label} is {language} but its runtime {runtime!r} runs {runtimes[runtime].language}",
                    f"pick a {language} runtime or change the cell's language",
                )
        metadata = self.jupyter_json(where + ("metadata",), raw["metadata"], f"the metadata of {label}") if "metadata" in raw else {}
        attachments = self.jupyter_json(where + ("attachments",), raw["attachments"], f"the attachments of {label}") if "attachments" in raw else {}
        for name, bundle in attachments.items():
            # Base64 or text, as nbformat stores a MIME bundle; a JSON type holds the JSON itself.
            if not isinstance(bundle, dict) or not all(isinstance(data, str) or (mime.startswith("application/") and mime.endswith("json")) for mime, data in bundle.items()):
                raise self.fail(
                    where + ("attachments", name),
                    f"attachment {show(name)} of {label} must be a table of MIME type = base64 data",
                    'write it as {"image/png" = "iVBORw0…"}, as Jupyter stores an attachment',
                )
        return Cell(
            id=cell_id,
            kind=kind,
            source=source,
            language=language,
            runtime=runtime,
            metadata=metadata,
            attachments=attachments,
            extra={k: v for k, v in raw.items() if k not in _CELL_KEYS},
        )

    def jupyter_json(self, where: tuple, value: Any, what: str) -> dict[str, Any]:
        """Jupyter metadata or attachments (any JSON object), as the file holds them: a table, or
        a JSON object in a string when TOML cannot hold them (see notebook_layout.jupyter_value)."""
        advice = "write a table, or the JSON object in a string (as njtui writes it when a value is null)"
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except (ValueError, RecursionError) as exc:
                raise self.fail(where, f"{what} is a string but not JSON: {show(str(exc), 120)}", advice) from None
            if not isinstance(decoded, dict):
                raise self.fail(where, f"{what} must be a JSON object ({{…}}), not {describe(decoded)}", advice)
            return decoded
        if not isinstance(value, dict):
            raise self.fail(where, f"{what} must be a table, not {describe(value)}", advice)
        pending: list[tuple[tuple, Any]] = [(where, value)]
        while pending:
            at, item = pending.pop()
            if isinstance(item, dict):
                pending.extend((at + (key,), child) for key, child in item.items())
            elif isinstance(item, list):
                pending.extend((at + (index,), child) for index, child in enumerate(item))
            elif isinstance(item, (datetime.date, datetime.time)):
                raise self.fail(at, f"{what} holds a date or time ({show(item)}), which JSON, and so Jupyter, cannot", f'quote it as a string: "{item}"')
        return value

    def check_cell_runtimes(self, notebook: Notebook) -> None:
        # Each language's runtimes gathered once: per cell it would be cells × runtimes.
        by_language: dict[str, list[str]] = {}
        for spec in notebook.runtimes.values():
            by_language.setdefault(spec.language, []).append(spec.id)
        for index, cell in enumerate(notebook.cells):
            if not cell.is_code or cell.runtime is not None:
                continue
            language = cell.language or ""
            candidates = by_language.get(language, [])
            if len(candidates) > 1 and notebook.default_runtime(language) is None:
                raise self.fail(
                    ("cells", index),
                    f"cell {cell.id!r} names no runtime and {cell.language} has several ({', '.join(candidates)}) with none the default",
                    f'set `default = true` on one of them or give the cell `runtime = "{candidates[0]}"`',
                )


def show(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: repr, cut short, since it may be megabytes long."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "…"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def describe(value: Any) -> str:
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return f"{name} ({show(value)})" if not isinstance(value, (dict, list)) else name
    if isinstance(value, float):
        return f"a number ({show(value)})"
    return f"{type(value).__name__} ({show(value)})"
