"""`njtui env`: save a runtime's file system as a new version of its environment, see what
changed since, reset, list and remove versions, export to a registry, import another
runtime's saved version (pinned), show the chain down to the base image.

Exit status: 0 done, 1 failed (the engine, the registry, a runtime that is not running), 2 bad
input (a notebook that does not parse, a runtime or version that does not exist). A command
that fails leaves the notebook file as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from njtui.commands.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UsageError, runner_log_path
from njtui.model.size import format_size


def add_parser(sub) -> None:
    env = sub.add_parser("env", help="environments: save, diff, reset, ls, rm, prune, export, import, lineage (njtui env ACTION -h)")
    actions = env.add_subparsers(dest="env_action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, runtime: str = "required") -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("notebook")
        if runtime == "required":
            parser.add_argument("runtime")
        elif runtime == "optional":
            parser.add_argument("runtime", nargs="?")
        parser.set_defaults(handler=cmd_env)
        return parser

    action("save", "snapshot a running runtime's file system as its next version").add_argument("-m", "--message", default="", help="what changed, in words")
    action("diff", "what changed in a running runtime since what it boots from").add_argument("--json", action="store_true")
    reset = action("reset", "a fresh runtime from the last saved version (or --version N; 0: the environment it started from)")
    reset.add_argument("--version", type=int)
    reset.add_argument("--yes", action="store_true", help="do not ask before losing the changes")
    action("ls", "list saved versions: date, message, size, who uses each", "optional").add_argument("--json", action="store_true")
    rm = action("rm", "remove saved versions nothing uses")
    rm.add_argument("versions", nargs="+", type=int, metavar="VERSION")
    action("prune", "remove every saved version of the notebook's runtimes that nothing uses", "optional").add_argument("--json", action="store_true")
    export = action("export", "push a saved version to a registry; prints its reference with the digest")
    export.add_argument("--registry", metavar="HOST[:PORT]/PATH", help="instead of the notebook's `registry`")
    export.add_argument("--version", type=int, help="instead of the version the runtime boots from")
    use = action("import", "make RUNTIME's environment another runtime's saved version, pinned")
    use.add_argument("source", metavar="SOURCE_RUNTIME")
    use.add_argument("version", type=int, metavar="VERSION")
    use.add_argument("--from", dest="source_notebook", metavar="NOTEBOOK", help="the notebook that saved it (default: this one)")
    action("lineage", "the chain of environments a runtime boots from, down to the base image").add_argument("--json", action="store_true")


def cmd_env(args: argparse.Namespace) -> int:
    from njtui.runner import EnvironmentReferenceError, Runner, RunnerError, RunnerLog
    from njtui.store import NotebookFile

    path = Path(args.notebook)
    notebook_file = NotebookFile.load(path)
    notebook = notebook_file.notebook
    runtime_id = getattr(args, "runtime", None)
    if runtime_id is not None and runtime_id not in notebook.runtimes:
        raise UsageError(f"{path}: no runtime {runtime_id!r}; runtimes: {', '.join(notebook.runtimes) or 'none'}")
    log = RunnerLog(runner_log_path())
    runner = Runner(path, notebook, log=log)
    try:
        # Not attached to the runtimes: the environments find their containers themselves, and
        # attaching would replay each runtime's journal first.
        return _ACTIONS[args.env_action](args, runner, notebook_file)
    except EnvironmentReferenceError as exc:
        print(f"njtui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _NotWritten as exc:
        print(f"njtui: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RunnerError as exc:
        print(f"njtui: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        runner.environments.settle()
        runner.detach()
        log.close()


_last_progress: dict[str, Any] = {"phase": "", "at": 0.0}


def _progress(phase: str, detail: dict[str, Any]) -> None:
    """Progress on stderr: one line rewritten in place on a terminal, else a line a second."""
    done, total = detail.get("done"), detail.get("total")
    now = time.monotonic()
    if not sys.stderr.isatty() and phase == _last_progress["phase"] and now - _last_progress["at"] < 1.0 and done != total:
        return
    _last_progress.update(phase=phase, at=now)
    amount = f" {format_size(done or 0)}/{format_size(total)}" if total else (f" {format_size(done)}" if done else "")
    text = f"{phase}{amount} {detail.get('what', detail.get('image', ''))}".rstrip()
    if sys.stderr.isatty():
        print(f"\r\x1b[K{text}", end="", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def _end_progress() -> None:
    if sys.stderr.isatty():
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)


def _write(notebook_file, notebook, path: Path) -> None:
    """The notebook's new state into its file, merged with any change made there meanwhile."""
    from njtui.store import NotebookError

    try:
        result = notebook_file.save(notebook)
    except NotebookError as exc:
        raise _NotWritten(f"{path}: not changed: {exc.message}") from None
    if result.status == "conflict":
        raise _NotWritten(f"{path}: not changed: the file changed while this command ran, in the same parts ({'; '.join(c.label for c in result.conflicts)}); run the command again")


class _NotWritten(Exception):
    pass


def _save(args, runner, notebook_file) -> int:
    from njtui.runner import RunnerError

    spec = runner.notebook.runtimes[args.runtime]
    previous = spec.saved_version
    saved = runner.environments.save(args.runtime, args.message, progress=_progress)
    _end_progress()
    try:
        _write(notebook_file, runner.notebook, Path(args.notebook))
    except _NotWritten as exc:
        runner.environments.forget_save(args.runtime, saved, previous)
        print(f"njtui: {exc}; the saved image was removed again", file=sys.stderr)
        return EXIT_FAILED
    flattened = " (flattened to one layer: the image had neared the engine's layer limit)" if saved.flattened else ""
    print(f"saved {args.runtime} v{saved.version} ({saved.tag}, {format_size(saved.size)}){flattened}; it boots from this version from now on")
    if spec.export:
        try:
            return _export_and_record(args, runner, notebook_file, None, saved.version)
        except RunnerError as exc:
            print(f"njtui: saved {args.runtime} v{saved.version}, but exporting it failed: {exc}\n  the version is saved and recorded; export it later with: njtui env export {args.notebook} {args.runtime}", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK


def _diff(args, runner, notebook_file) -> int:
    from njtui.runner import counts_words

    changes = runner.environments.changes(args.runtime)
    if args.json:
        print(json.dumps(changes.to_json()))
        return EXIT_OK
    counts = changes.counts()
    if not changes:
        print(f"{args.runtime}: no changes since {changes.since}")
        return EXIT_OK
    print(f"{args.runtime}: changes since {changes.since} — transient: gone when the runtime restarts, unless saved (njtui env save)")
    if changes.packages:
        print("packages:")
        width = max(len(change.name) for change in changes.packages)
        for change in changes.packages:
            print(f"  {change.manager:<6}  {change.name:<{width}}  {change.before or '(new)'} → {change.after or '(removed)'}")
    print(f"paths: {counts['A']} added, {counts['C']} changed, {counts['D']} deleted")
    for top, group in changes.groups():
        print(f"  {top}  {counts_words(group)}")
    for change in changes.paths:
        print(f"    {change.change} {change.path}")
    return EXIT_OK


def _reset(args, runner, notebook_file) -> int:
    spec = runner.notebook.runtimes[args.runtime]
    target = args.version if args.version is not None else spec.saved_version
    if args.version is not None and args.version != 0 and spec.version(args.version) is None:
        raise UsageError(f"runtime {args.runtime} has no saved version {args.version} (versions: {', '.join(str(v.version) for v in spec.versions) or 'none'}; 0 is the environment it started from)")
    declared = spec.declared_environment
    to_words = declared if not target else f"{args.runtime} v{target}"
    lost = runner.environments.changes(args.runtime).lost_words() if runner.environments.running(args.runtime) else "nothing (it is not running)"
    question = f"reset {args.runtime} to {to_words}? lost: {lost}"
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"{question}\n  pass --yes to reset without asking")
        answer = input(f"{question} [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not reset")
            return EXIT_OK
    runner.environments.reset(args.runtime, args.version)
    if args.version is not None:
        _write(notebook_file, runner.notebook, Path(args.notebook))
    print(f"reset {args.runtime}: running fresh from {to_words}")
    return EXIT_OK


def _ls(args, runner, notebook_file) -> int:
    rows = runner.environments.versions(args.runtime)
    if args.json:
        print(json.dumps([row.to_json() for row in rows]))
        return EXIT_OK
    if not rows:
        print("no saved versions" + (f" of {args.runtime}" if args.runtime else ""))
        return EXIT_OK
    for row in rows:
        mark = "*" if row.boots else " "
        print(f"{mark} {row.runtime} v{row.version:<3} {row.saved_at:<20} {format_size(row.size):>9}  {row.where:<12} {row.message}")
        print(f"    {row.digest or row.image[:19]}  used by: {', '.join(row.used_by) or 'nothing'}")
    return EXIT_OK


def _rm(args, runner, notebook_file) -> int:
    removed = runner.environments.remove(args.runtime, args.versions)
    _write(notebook_file, runner.notebook, Path(args.notebook))
    print("removed " + ", ".join(removed))
    return EXIT_OK


def _prune(args, runner, notebook_file) -> int:
    removed = runner.environments.prune(args.runtime)
    if removed:
        _write(notebook_file, runner.notebook, Path(args.notebook))
    if args.json:
        print(json.dumps(removed))
    else:
        print("removed " + ", ".join(removed) if removed else "nothing to prune: every saved version is in use")
    return EXIT_OK


def _export(args, runner, notebook_file) -> int:
    from njtui.store.environment_fields import is_registry

    if args.registry is not None and not is_registry(args.registry):
        raise UsageError(f"--registry {args.registry!r} is not HOST[:PORT]/PATH, e.g. localhost:5000/team")
    return _export_and_record(args, runner, notebook_file, args.registry, args.version)


def _export_and_record(args, runner, notebook_file, registry: str | None, version: int | None) -> int:
    reference = runner.environments.export(args.runtime, registry, version, progress=_progress)
    _end_progress()
    try:
        _write(notebook_file, runner.notebook, Path(args.notebook))
    except _NotWritten as exc:
        print(f"njtui: {exc} (the push itself succeeded)", file=sys.stderr)
        print(reference)
        return EXIT_FAILED
    print(reference)
    return EXIT_OK


def _import(args, runner, notebook_file) -> int:
    source = args.source_notebook
    if source is not None:
        # Stored relative to the importing notebook, so the two can move together.
        source = os.path.relpath(Path(source).resolve(), Path(args.notebook).resolve().parent)
    pinned = runner.environments.set_import(args.runtime, args.source, args.version, source)
    _write(notebook_file, runner.notebook, Path(args.notebook))
    print(f"{args.runtime} now imports {pinned.label()}, pinned to {pinned.digest or pinned.image}; restart it to boot from it")
    return EXIT_OK


def _lineage(args, runner, notebook_file) -> int:
    steps = runner.environments.lineage(args.runtime)
    if args.json:
        print(json.dumps([step.to_json() for step in steps]))
        return EXIT_OK
    for depth, step in enumerate(steps):
        pin = step.digest or step.image or "not on this engine"
        note = f"  {step.saved_at} {step.message!r}" if step.saved_at else ""
        print(f"{'  ' * depth}{'└ ' if depth else ''}{step.label}  [{step.how}]  {pin}{note}")
    return EXIT_OK


_ACTIONS = {
    "save": _save,
    "diff": _diff,
    "reset": _reset,
    "ls": _ls,
    "rm": _rm,
    "prune": _prune,
    "export": _export,
    "import": _import,
    "lineage": _lineage,
}

__all__ = ["add_parser", "cmd_env"]
