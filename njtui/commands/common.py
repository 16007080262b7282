"""What every subcommand shares: its exit statuses, the error for bad usage, the runner log's
path, and loading a notebook and picking its cells from the command line's arguments."""

from __future__ import annotations

import signal
from pathlib import Path

import platformdirs

from njtui.store import NotebookError, load_notebook

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# Stdout's reader went away (`njtui show NB | head`): the status SIGPIPE would have given.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class UsageError(Exception):
    pass


def runner_log_path() -> Path:
    return platformdirs.user_state_path("njtui") / "runner.log"


def notebook_at(path: str):
    return load_notebook(Path(path))


def select_cells(notebook, wanted: list[str] | None, path: str):
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
