"""Files: notebooks (TOML), results of executions, and (later) secrets."""

from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError, StoreError
from njtui.store.notebook_file import dumps_notebook, load_notebook, parse_notebook, save_notebook

__all__ = [
    "NotebookError",
    "StoreError",
    "atomic_write_bytes",
    "dumps_notebook",
    "load_notebook",
    "parse_notebook",
    "save_notebook",
]
