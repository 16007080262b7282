"""`njtui runtime show|set`: shows a runtime's settings, or edits them in the notebook file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from njtui.commands.common import EXIT_OK, UsageError
from njtui.store import NotebookError

RUNTIME_SCALARS = {"name": str, "language": str, "type": str, "kernel": str, "environment": str, "machine": str, "cpus": float, "memory": str, "idle_timeout": str}
RUNTIME_SWITCHES = ("default", "mount_cuda", "export")


def _setting_value(key: str, text: str):
    if key in RUNTIME_SWITCHES:
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
    from njtui.store import NotebookFile

    path = Path(args.notebook)
    notebook_file = NotebookFile.load(path)
    if args.action == "show":
        return _show_runtime(args, notebook_file.notebook, path)
    return _set_runtime(args, notebook_file, path)


def _show_runtime(args: argparse.Namespace, notebook, path: Path) -> int:
    from njtui.runner import CONTAINER_ONLY
    from njtui.store import toml_writer
    from njtui.store.notebook_file import runtime_document

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


def _set_runtime(args: argparse.Namespace, notebook_file, path: Path) -> int:
    # set: KEY=VALUE, env.NAME=VALUE, secrets.NAME=SECRET, and -KEY to remove a key
    import copy

    from njtui.model import RuntimeSpec
    from njtui.store import edit_notebook
    from njtui.store.notebook_file import runtime_document

    notebook = notebook_file.notebook
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
            elif key in RUNTIME_SCALARS or key in RUNTIME_SWITCHES or key == "gpus":
                table[key] = _setting_value(key, value)
            else:
                raise UsageError(f"unknown setting {key!r}; settings: {', '.join([*RUNTIME_SCALARS, *RUNTIME_SWITCHES, 'gpus', 'env.NAME', 'secrets.NAME'])} (mounts: edit the file or the settings screen)")
        document.setdefault("runtimes", {})[args.runtime] = table

    try:
        # The file is edited in place (its comments stay) and merged with whatever changed in
        # it since it was read here, as every njtui save is.
        result = notebook_file.save(edit_notebook(notebook, edit, path))
    except NotebookError as exc:
        raise UsageError(f"{path}: not changed: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else "")) from None
    if result.status == "conflict":
        what = "; ".join(conflict.label for conflict in result.conflicts)
        raise UsageError(f"{path}: not changed: the file changed while this command ran, in the same settings ({what})\n  hint: run the command again to set them over the file's new values")
    print(f"saved runtime {args.runtime} of {path}; a running runtime applies the change when restarted")
    return EXIT_OK
