"""`njtui open` (and plain `njtui NOTEBOOK`): opens a notebook in the terminal UI, creating it
when it does not exist yet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from njtui.commands.common import EXIT_OK, UsageError, notebook_at, runner_log_path


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
        notebook = notebook_at(args.notebook)
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
    from njtui.ui import graphics
    from njtui.ui.config import load_config

    # Asked before Textual owns the terminal's input: the answer would otherwise arrive as keys.
    graphics.prepare(load_config().graphics)
    runner = Runner(path, notebook, log=RunnerLog(runner_log_path()))
    app = NotebookApp(path, notebook, runner, theme_name=args.theme)
    message = app.run()
    runner.log.close()
    if app.return_code:
        # Textual printed the error; what matters to the person is where their work is.
        if app.recovery_file is not None:
            print(f"njtui: stopped by an unexpected error; your unsaved changes are kept in {app.recovery_file}: open {path} again to restore them", file=sys.stderr)
        else:
            print("njtui: stopped by an unexpected error; nothing was unsaved", file=sys.stderr)
        return app.return_code
    if message:
        print(message, file=sys.stderr)
    return EXIT_OK
