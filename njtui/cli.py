"""The `njtui` command: open a notebook, run it headless, read its results, manage runtimes.

Exit status: 0 success, 1 a cell failed (or a runtime could not run it), 2 bad input (the
message names the file and line), 130 interrupted with Ctrl-C, 141 stdout closed by its reader.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import select
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

import platformdirs

from njtui import __version__
from njtui.model import format_duration
from njtui.model.output import ExecutionRecord, terminal_safe
from njtui.runner import STOPPED_MID_CELL
from njtui.store import NotebookError, load_notebook
from njtui.store.errors import StoreError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# Stdout's reader went away (`njtui show NB | head`): the status SIGPIPE would have given.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
COMMANDS = ("open", "run", "show", "runtimes", "results", "secrets", "runtime")


class UsageError(Exception):
    pass


def runner_log_path() -> Path:
    return platformdirs.user_state_path("njtui") / "runner.log"


def _load(path: str):
    return load_notebook(Path(path))


def _select_cells(notebook, wanted: list[str] | None, path: str):
    cells = notebook.code_cells()
    if not wanted:
        return cells
    known = {cell.id: cell for cell in notebook.cells}
    chosen = []
    for cell_id in wanted:
        if cell_id not in known:
            raise NotebookError(path, f"no cell with id {cell_id!r}", hint=f"cell ids in this notebook: {', '.join(known) or 'none'}")
        if not known[cell_id].is_code:
            raise NotebookError(path, f"cell {cell_id!r} is a {known[cell_id].kind} cell, not code", hint="name a code cell")
        chosen.append(known[cell_id])
    return chosen


# -- output of executions, shared by `run` and `show`
class TextPrinter:
    """Output as the cell wrote it; on a terminal, without the escape sequences that would drive
    it (cursor moves, titles, the clipboard): output may come from someone else's notebook or
    results. Colours stay. A pipe gets the bytes unchanged."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out, self.err = out, err
        self.color = err.isatty() and "NO_COLOR" not in os.environ
        self._guarded = {id(stream) for stream in (out, err) if stream.isatty()}

    def _write(self, stream: TextIO, text: str) -> None:
        if id(stream) in self._guarded:
            text = terminal_safe(text, keep="\t\n\r", colours="NO_COLOR" not in os.environ)
        stream.write(text)

    def _dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[0m" if self.color else text

    def start(self, cell_id: str, label: str, count: int | None) -> None:
        self.out.flush()
        self.err.write(self._dim(f"── {cell_id} · {label}" + (f" · [{count}]" if count else "") + " ──") + "\n")
        self.err.flush()

    def event(self, cell_id: str, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "stream":
            stream = self.err if message.get("name") == "stderr" else self.out
            if stream is self.err:
                self.out.flush()
            self._write(stream, message.get("text", ""))
            stream.flush()
        elif kind == "result":
            self._write(self.out, message.get("data", {}).get("text/plain", "") + "\n")
            self.out.flush()
        elif kind == "error" and message.get("traceback"):
            self.out.flush()
            self._write(self.err, message["traceback"] if message["traceback"].endswith("\n") else message["traceback"] + "\n")
            self.err.flush()

    def done(self, cell_id: str, status: str, duration: float | None, reason: str | None = None, extra: str = "") -> None:
        self.out.flush()
        mark = {"ok": "✓", "error": "✗", "interrupted": "■", "lost": "✗"}.get(status, "·")
        text = f"{mark} {cell_id} {status}"
        if duration is not None:
            text += f" in {format_duration(duration)}"
        if reason:
            text += f" ({terminal_safe(reason)})"
        self.err.write(self._dim(text + extra) + "\n")
        self.err.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


class JsonPrinter:
    """JSON Lines: one event per line, in the order the runtime produced them."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def _write(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.out.flush()

    def start(self, cell_id: str, label: str, count: int | None, **extra: Any) -> None:
        self._write({"event": "start", "cell": cell_id, "count": count, "label": label, **extra})

    def event(self, cell_id: str, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "stream":
            self._write({"event": "stream", "cell": cell_id, "name": message.get("name"), "text": message.get("text", "")})
        elif kind == "result":
            self._write({"event": "result", "cell": cell_id, "count": message.get("count"), "data": message.get("data", {})})
        elif kind == "error":
            self._write(
                {"event": "error", "cell": cell_id, "ename": message.get("ename"), "evalue": message.get("evalue"), "traceback": message.get("traceback", "")}
            )
        elif kind == "files":
            self._write({"event": "files", "cell": cell_id, "version": message.get("version"), "files": message.get("files", [])})

    def done(self, cell_id: str, status: str, duration: float | None, reason: str | None = None, **extra: Any) -> None:
        event = {"event": "done", "cell": cell_id, "status": status, "duration": duration}
        if reason:
            event["reason"] = reason
        event.update({k: v for k, v in extra.items() if v is not None})
        self._write(event)

    def note(self, text: str) -> None:
        sys.stderr.write(text + "\n")


# -- njtui run
def cmd_run(args: argparse.Namespace) -> int:
    from njtui.runner import Runner, RunnerError, RunnerLog

    notebook = _load(args.notebook)
    cells = _select_cells(notebook, args.cell, args.notebook)
    printer: TextPrinter | JsonPrinter = JsonPrinter() if args.json else TextPrinter()
    log = RunnerLog(runner_log_path())
    log.subscribe(lambda entry: printer.note(f"njtui: {entry.runtime}: {entry.text}") if entry.level == "error" else None)
    runner = Runner(args.notebook, notebook, log=log)
    events: queue.Queue = queue.Queue()
    runner.subscribe(events.put)
    failures = 0
    interrupted = False
    ctrl_c = CtrlC()
    try:
        runner.sync_ended()
        for cell in cells:
            spec = runner.runtime_for(cell)
            label = f"{spec.environment} · {cell.language}"
            try:
                exec_id = runner.execute(cell)
            except RunnerError as exc:
                printer.done(cell.id, "error", None, reason=f"runtime {spec.id} did not start: {str(exc).splitlines()[0]}")
                failures += 1
                if not args.keep_going:
                    break
                continue
            status, interrupted_now = _follow(runner, events, exec_id, cell, spec.id, label, printer, ctrl_c)
            interrupted = interrupted or interrupted_now
            if interrupted:
                break
            if status != "ok":
                failures += 1
                if not args.keep_going or status == "interrupted":
                    break  # stopped from elsewhere: the next cell would boot a new runtime
    finally:
        ctrl_c.restore()
        runner.detach()
        log.close()
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failures else EXIT_OK


class CtrlC:
    """Counts Ctrl-C presses instead of raising, so a press is never lost mid-bookkeeping."""

    def __init__(self) -> None:
        self.presses = 0
        self._previous = signal.signal(signal.SIGINT, self._pressed)

    def _pressed(self, signum: int, frame: object) -> None:
        self.presses += 1

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _follow(runner, events, exec_id, cell, runtime_id, label, printer, ctrl_c: CtrlC):
    """Prints one execution's events until it is done; Ctrl-C interrupts it (twice: gives up)."""
    from njtui.runner import RuntimeMessage

    handled_presses = 0
    started = False
    while True:
        if ctrl_c.presses > handled_presses:
            if handled_presses:
                printer.done(cell.id, "interrupted", None, reason="gave up waiting for the runtime")
                return "interrupted", True
            handled_presses = ctrl_c.presses
            printer.note("njtui: interrupting… (Ctrl-C again to stop waiting)")
            runner.interrupt(runtime_id)
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        if not isinstance(event, RuntimeMessage):
            continue
        message = event.message
        if message.get("exec") != exec_id:
            continue
        kind = message.get("type")
        if kind == "start":
            started = True
            if isinstance(printer, JsonPrinter):
                printer.start(cell.id, label, message.get("count"), runtime=runtime_id, exec=exec_id)
            else:
                printer.start(cell.id, label, message.get("count"))
        elif kind == "done":
            if not started and isinstance(printer, JsonPrinter):
                printer.start(cell.id, label, None, runtime=runtime_id, exec=exec_id)
            status = message.get("status", "ok")
            reason = message.get("reason")
            if status == "interrupted" and not handled_presses and reason == STOPPED_MID_CELL:
                reason = "stopped by another client"  # this command stops no runtime
            extra = {"count": message.get("count"), "exit_code": message.get("exit_code")} if isinstance(printer, JsonPrinter) else {}
            printer.done(cell.id, status, message.get("duration"), reason=reason, **extra)
            # Exit status 130 is for a Ctrl-C here, not for a runtime someone else stopped.
            return status, bool(handled_presses) or (status == "interrupted" and reason is None)
        else:
            printer.event(cell.id, message)


# -- njtui show
def cmd_show(args: argparse.Namespace) -> int:
    from njtui.runner import Runner, RunnerLog
    from njtui.store.results import ResultsStore

    notebook = _load(args.notebook)
    cells = _select_cells(notebook, args.cell, args.notebook)
    printer: TextPrinter | JsonPrinter = JsonPrinter() if args.json else TextPrinter()
    # Attaching records what the runtimes did unseen, and repairs the store from their journals
    # after a failed write; an error there (the store still cannot be written) is said, and fails.
    errors: list[str] = []

    def said(entry) -> None:
        # A warning here is a runtime that could not be reached: what is shown may lag behind it.
        if entry.level in ("error", "warning"):
            printer.note(f"njtui: {entry.runtime}: {entry.text}")
        if entry.level == "error":
            errors.append(entry.text)

    log = RunnerLog()
    log.subscribe(said)
    runner = Runner(args.notebook, notebook, log=log)
    try:
        runner.attach_running()
        runner.wait_caught_up(timeout=10)
    finally:
        runner.detach()
    store = ResultsStore(args.notebook)
    for cell in cells:
        record = store.latest(cell.id)
        spec = notebook.runtime_for(cell)
        if record is None:
            if not args.json:
                printer.note(f"── {cell.id} · not run yet ──")
            continue
        _print_record(printer, store, record, cell, f"{spec.environment} · {cell.language}", args.json)
    return EXIT_FAILED if errors else EXIT_OK


def _print_record(printer, store, record: ExecutionRecord, cell, label: str, as_json: bool) -> None:
    stale = record.is_stale_for(cell.source_hash)
    if as_json:
        printer.start(cell.id, label, record.count, runtime=record.runtime, exec=record.exec_id, version=record.version)
    else:
        printer.start(cell.id, label + (" · stale: the source changed since" if stale else ""), record.count)
    for event in store.events(record):
        printer.event(cell.id, event)
    if as_json:
        printer.done(cell.id, record.status, record.duration, reason=record.reason, count=record.count, exit_code=record.exit_code, stale=stale or None)
    else:
        finished = "" if record.finished else " (still running; output so far)"
        printer.done(cell.id, record.status, record.duration, reason=record.reason, extra=finished)


# -- njtui runtimes
def cmd_runtimes(args: argparse.Namespace) -> int:
    from njtui.runner import Runner

    if args.action == "stop":
        if not args.all and not args.id:
            raise UsageError("say which runtime to stop: njtui runtimes stop ID (from `njtui runtimes`) or --all")
        stops = Runner.stop_runtimes(None if args.all else args.id)
        for problem in stops.problems:
            print(f"njtui: {problem}", file=sys.stderr)
        for entry in stops.stopped:
            what = f"{entry.runtime} of {_safe(entry.notebook)}"
            if entry.state == "exited":
                print(f"removed {entry.key} (exited {what}, notebook missing)")
            else:
                print(f"stopped {entry.key} ({what})")
        for entry, why in stops.failed:
            print(f"njtui: could not stop {entry.key} ({entry.runtime} of {_safe(entry.notebook)}): {why}", file=sys.stderr)
        if stops.failed:
            return EXIT_FAILED
        if not stops.stopped:
            if args.all:
                print("no runtimes running")
                return EXIT_OK
            print(f"njtui: no running runtime matches {args.id!r}; `njtui runtimes` lists them", file=sys.stderr)
            return EXIT_BAD_INPUT
        return EXIT_OK
    listing = Runner.list_runtimes()
    for problem in listing.problems:
        print(f"njtui: {problem}", file=sys.stderr)
    if args.json:
        for entry in listing.runtimes:
            print(json.dumps(entry.to_dict()))
        return EXIT_OK
    if not listing.runtimes:
        print("no runtimes running")
        return EXIT_OK
    _print_runtimes_table(listing.runtimes)
    return EXIT_OK


# The TUI's colours for runtime states: green running, yellow booting or busy, red error, grey
# stopped (a container kept after it exited).
_STATE_STYLES = {"running": "green", "busy": "yellow", "booting": "yellow", "exited": "bright_black"}


def _print_runtimes_table(entries) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Rich honours NO_COLOR and a terminal's width. A pipe gets one line per runtime however
    # long, so grep and awk see whole rows, unless COLUMNS asks for a width.
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    console = Console(file=sys.stdout, highlight=False, width=1_000_000 if piped else None)
    # No borders and no padding at the edges: rows start at column 0 and end at their last value.
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("ID", no_wrap=True, style="cyan")
    # Only the notebook's path may break over lines: an ID must stay whole to be copied.
    table.add_column("NOTEBOOK", overflow="fold")
    table.add_column("RUNTIME", no_wrap=True)
    table.add_column("BACKEND", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("PID", no_wrap=True, justify="right")
    table.add_column("IDLE", no_wrap=True, justify="right")
    for entry in entries:
        notebook = Text(_safe(_short_path(entry.notebook)))
        if entry.notebook_missing:
            notebook.append(" (notebook missing)", style="red")
        state = entry.detail or ("busy" if entry.busy else entry.state)
        idle = format_duration(entry.idle_for) if entry.idle_for is not None and not entry.busy else "-"
        table.add_row(
            _safe(entry.key),
            notebook,
            _safe(entry.runtime),
            _safe(entry.backend),
            Text(_safe(state), style=_STATE_STYLES.get("busy" if entry.busy else entry.state, "red")),
            str(entry.pid or "-"),
            idle,
        )
    console.print(table)


def _safe(text: str | None) -> str:
    """A value from a container label or a boot board entry, which any process of the user (or
    any image's author, for labels) may have written: inert on a terminal."""
    return terminal_safe(text or "")


def _short_path(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


# -- njtui results
def _printable(text: str) -> str:
    """A name from a results directory as it may reach a terminal: escapes stay inert."""
    return text if text.isprintable() else ascii(text)[1:-1]


def cmd_results(args: argparse.Namespace) -> int:
    """Lists or extracts result files. A results directory is shared, untrusted input: an entry
    that cannot be extracted safely is named in a warning and skipped, the rest extracted, and
    the exit status is 1."""
    from njtui.model.size import format_size
    from njtui.store.results import ResultsStore, valid_cell_id

    notebook = _load(args.notebook)
    store = ResultsStore(args.notebook)
    cells = _select_cells(notebook, [args.cell] if args.cell else None, args.notebook)
    found = 0
    refused = 0

    def warn(text: str) -> None:
        nonlocal refused
        refused += 1
        print(f"njtui: warning: {'not extracted: ' if args.extract else 'skipped: '}{_printable(text)}", file=sys.stderr)

    for cell in cells:
        if not valid_cell_id(cell.id):
            warn(f"cell {cell.id!r}: its id cannot name a directory (1 to 64 letters, digits, '-' or '_')")
            continue
        versions = store.versions(cell.id)
        if args.version is not None:
            if args.version not in versions:
                if args.cell:
                    known = ", ".join(map(str, versions)) or "none"
                    raise UsageError(f"cell {cell.id} has no version {args.version}; its versions: {known}")
                continue
            versions = [args.version]
        for version in versions:
            try:
                record = store.load(cell.id, version)
            except KeyError:
                continue  # pruned since it was listed
            if args.extract:
                under = ([cell.id] if not args.cell else []) + ([f"v{version}"] if args.version is None else [])
                written, warnings = store.extract(record, Path(args.extract), under)
                found += len(written)
                for path in written:
                    print(_printable(str(path)))
                for text in warnings:
                    warn(text)
                continue
            files, warnings = store.manifest(record)
            for text in warnings:
                warn(text)
            if not files:
                continue
            found += len(files)
            if args.json:
                for entry in files:
                    fields = {key: value for key, value in entry.items() if key not in ("cell", "version", "count", "path")}
                    print(json.dumps({"cell": cell.id, "version": version, "count": record.count, **fields, "path": str(store.blob_path(entry["sha256"]))}))
            else:
                print(f"── {cell.id} · version {version} · [{record.count}] {record.status} ──")
                for entry in files:
                    print(f"  {_printable(entry['name']):<32} {format_size(entry['size']):>10}  {_printable(entry['type'])}")
    if not found and not refused and not args.json:
        print("no result files" + (f" for cell {args.cell}" if args.cell else ""), file=sys.stderr)
    return EXIT_FAILED if refused else EXIT_OK


# -- njtui secrets
def cmd_secrets(args: argparse.Namespace) -> int:
    from njtui.store.secrets import SecretStore

    store = SecretStore()
    if args.action == "ls":
        for name in store.names():
            print(name)
        return EXIT_OK
    if not args.name:
        raise UsageError(f"say which secret: njtui secrets {args.action} NAME")
    if args.action == "rm":
        if not store.remove(args.name):
            print(f"njtui: no secret named {args.name!r}; `njtui secrets ls` lists them", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"removed secret {args.name}")
        return EXIT_OK
    # set: the value never comes from the command line, where shell history and `ps` see it.
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of secret {args.name}: ")
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise UsageError("the secret's value is empty; type it at the prompt or pipe it on stdin")
    store.set(args.name, value)
    print(f"stored secret {args.name} in {store.path}")
    return EXIT_OK


# -- njtui runtime set/show
RUNTIME_SCALARS = {"name": str, "language": str, "environment": str, "machine": str, "cpus": float, "memory": str, "idle_timeout": str}


def _setting_value(key: str, text: str):
    if key in ("default", "mount_cuda"):
        if text.lower() not in ("true", "false"):
            raise UsageError(f"{key} is true or false, not {text!r}")
        return text.lower() == "true"
    if key == "cpus":
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"cpus is a number, not {text!r}") from None
    if key == "gpus":
        if text.isdigit():
            return int(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def cmd_runtime(args: argparse.Namespace) -> int:
    import copy

    from njtui.model import RuntimeSpec
    from njtui.runner import CONTAINER_ONLY
    from njtui.store import NotebookFile, edit_notebook, toml_writer
    from njtui.store.notebook_file import runtime_document

    path = Path(args.notebook)
    notebook_file = NotebookFile.load(path)
    notebook = notebook_file.notebook
    if args.action == "show":
        spec = notebook.runtimes.get(args.runtime)
        if spec is None:
            raise UsageError(f"no runtime {args.runtime!r} in {path}; runtimes: {', '.join(notebook.runtimes) or 'none'}")
        table = runtime_document(spec)
        if args.json:
            print(json.dumps({"runtime": spec.id, **table, "inherited_env": notebook.env}))
            return EXIT_OK
        print(toml_writer.dumps({"runtimes": {spec.id: table}}), end="")
        if notebook.env:
            print("\n# inherited from the notebook's [env]: " + ", ".join(f"{k}={v}" for k, v in notebook.env.items()))
        if spec.is_host:
            unused = [key for key in CONTAINER_ONLY if table.get(key) not in (None, [], False)]
            if unused:
                print(f"# not applied to a host runtime: {', '.join(unused)}")
        return EXIT_OK
    # set: KEY=VALUE, env.NAME=VALUE, secrets.NAME=SECRET, and -KEY to remove a key
    spec = notebook.runtimes.get(args.runtime)
    if spec is None:
        language = next((a.split("=", 1)[1] for a in args.assignments if a.startswith("language=")), None)
        if language is None:
            raise UsageError(f"no runtime {args.runtime!r}; to add one, give its language: njtui runtime set {args.notebook} {args.runtime} language=python")
        spec = RuntimeSpec(args.runtime, language)

    def edit(document: dict) -> None:
        table = copy.deepcopy(document.get("runtimes", {}).get(args.runtime) or runtime_document(spec))
        for key in args.unset or []:
            container, _, name = key.partition(".")
            if name:
                table.get(container, {}).pop(name, None)
            else:
                table.pop(key, None)
        for assignment in args.assignments:
            if "=" not in assignment:
                raise UsageError(f"{assignment!r}: write KEY=VALUE (env.NAME=VALUE, secrets.NAME=SECRET; --unset KEY removes one)")
            key, value = assignment.split("=", 1)
            if key.startswith(("env.", "secrets.")):
                container, name = key.split(".", 1)
                table.setdefault(container, {})[name] = value
            elif key in RUNTIME_SCALARS or key in ("default", "mount_cuda", "gpus"):
                table[key] = _setting_value(key, value)
            else:
                raise UsageError(f"unknown setting {key!r}; settings: {', '.join([*RUNTIME_SCALARS, 'default', 'gpus', 'mount_cuda', 'env.NAME', 'secrets.NAME'])} (mounts: edit the file or the settings screen)")
        document.setdefault("runtimes", {})[args.runtime] = table

    try:
        # The file is edited in place (its comments stay) and merged with whatever changed in
        # it since it was read here, as every njtui save is.
        result = notebook_file.save(edit_notebook(notebook, edit, path))
    except NotebookError as exc:
        raise UsageError(f"{path}: not changed: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else "")) from None
    if result.status == "conflict":
        what = "; ".join(conflict.label for conflict in result.conflicts)
        raise UsageError(
            f"{path}: not changed: the file changed while this command ran, in the same settings ({what})"
            f"\n  hint: run the command again to set them over the file's new values"
        )
    print(f"saved runtime {args.runtime} of {path}; a running runtime applies the change when restarted")
    return EXIT_OK


# -- njtui NOTEBOOK
def cmd_open(args: argparse.Namespace) -> int:
    from njtui.model import Notebook
    from njtui.runner import Runner, RunnerLog
    from njtui.store import save_notebook
    from njtui.ui.app import NotebookApp

    if args.theme:
        from textual.theme import BUILTIN_THEMES

        from njtui.ui.config import remember_theme
        from njtui.ui.themes import discover_themes

        known = set(discover_themes().themes) | set(BUILTIN_THEMES)
        if args.theme not in known:
            raise UsageError(f"no theme named {args.theme!r}; themes: {', '.join(sorted(known))}")
        problem = remember_theme(args.theme)
        if problem:
            print(f"njtui: the theme is not remembered: {problem}", file=sys.stderr)
    path = Path(args.notebook)
    if path.exists() or path.is_symlink():
        notebook = _load(args.notebook)
    else:
        if path.suffix != ".toml":
            raise UsageError(f"{path}: no such notebook; a new notebook needs a name ending in .toml, e.g. {path.with_suffix('.toml')}")
        if not path.parent.is_dir():
            raise UsageError(f"{path}: the directory {path.parent} does not exist")
        notebook = Notebook(title=path.stem.replace("-", " ").replace("_", " ").capitalize())
        notebook.add_default_runtime("python")
        notebook.cells.append(notebook.new_cell(language="python"))
        save_notebook(notebook, path)
        print(f"njtui: created {path} with a default Python runtime", file=sys.stderr)
    runner = Runner(path, notebook, log=RunnerLog(runner_log_path()))
    app = NotebookApp(path, notebook, runner, theme_name=args.theme)
    message = app.run()
    runner.log.close()
    if message:
        print(message, file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="njtui", description="A keyboard-driven terminal notebook with reproducible runtimes.")
    parser.add_argument("--version", action="version", version=f"njtui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    open_ = sub.add_parser("open", help="open a notebook in the terminal UI (the default: njtui NOTEBOOK)")
    open_.add_argument("notebook")
    open_.add_argument("--theme", metavar="NAME", help="colour theme (remembered), e.g. njtui-dark or njtui-light")
    open_.set_defaults(handler=cmd_open)

    run = sub.add_parser("run", help="run a notebook's code cells headless, streaming output")
    run.add_argument("notebook")
    run.add_argument("--cell", action="append", metavar="ID", help="run only this cell (repeatable, in the order given)")
    run.add_argument("--keep-going", action="store_true", help="run the remaining cells after one fails")
    run.add_argument("--json", action="store_true", help="print JSON Lines events instead of text")
    run.set_defaults(handler=cmd_run)

    show = sub.add_parser("show", help="print the stored outputs of each cell's latest execution")
    show.add_argument("notebook")
    show.add_argument("--cell", action="append", metavar="ID")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)

    runtimes = sub.add_parser("runtimes", help="list live runtimes; `runtimes stop ID|--all` stops them")
    runtimes.add_argument("action", nargs="?", choices=("list", "stop"), default="list")
    runtimes.add_argument("id", nargs="?")
    runtimes.add_argument("--all", action="store_true")
    runtimes.add_argument("--json", action="store_true")
    runtimes.set_defaults(handler=cmd_runtimes)
    results = sub.add_parser("results", help="list or extract the files cells wrote to /results")
    results.add_argument("notebook")
    results.add_argument("cell", nargs="?", help="only this cell")
    results.add_argument("--version", type=int, help="only this version (execution) of the cell")
    results.add_argument("--extract", metavar="DIR", help="copy the files into DIR")
    results.add_argument("--json", action="store_true", help="one JSON object per file")
    results.set_defaults(handler=cmd_results)
    runtime = sub.add_parser("runtime", help="show or set a runtime's settings: runtime show NOTEBOOK RUNTIME, runtime set NOTEBOOK RUNTIME KEY=VALUE…")
    runtime.add_argument("action", choices=("show", "set"))
    runtime.add_argument("notebook")
    runtime.add_argument("runtime")
    runtime.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    runtime.add_argument("--unset", action="append", metavar="KEY", help="remove a setting (KEY, env.NAME or secrets.NAME)")
    runtime.add_argument("--json", action="store_true")
    runtime.set_defaults(handler=cmd_runtime)

    secrets = sub.add_parser("secrets", help="manage your secret store: set NAME (value from a prompt or stdin), ls, rm NAME")
    secrets.add_argument("action", choices=("set", "ls", "rm"))
    secrets.add_argument("name", nargs="?")
    secrets.set_defaults(handler=cmd_secrets)
    return parser


def _reader_gone(stream: TextIO) -> bool:
    """Whether `stream` is a pipe or socket nobody reads any more: poll reports an error or a
    hang-up on it."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _silence_closed_output() -> bool:
    """After a BrokenPipeError: whether it was stdout or stderr whose reader went away (`njtui
    show NB | head`); if so they now write to /dev/null, so that nothing more (the interpreter's
    last flush included) fails on them, as the Python docs on SIGPIPE advise."""
    gone = [stream for stream in (sys.stdout, sys.stderr) if _reader_gone(stream)]
    if not gone:
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in gone:
        os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "open")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    # SIGPIPE stays ignored (Python's default), for every command: restored to its default it
    # would kill the TUI on a write to a runtime's closed socket, not only on a closed stdout.
    try:
        status = args.handler(args)
        if args.handler is not cmd_open:
            sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except BrokenPipeError:
        if args.handler is cmd_open or not _silence_closed_output():
            raise  # a pipe of njtui's own broke (a runtime's socket): a bug to see, not to hide
        return EXIT_BROKEN_PIPE
    except (NotebookError, StoreError) as exc:
        print(f"njtui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as exc:
        print(f"njtui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
