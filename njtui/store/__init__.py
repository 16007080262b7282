"""Files: notebooks (TOML), results of executions, and (later) secrets."""

from njtui.store.atomic import atomic_write_bytes
from njtui.store.errors import NotebookError, StoreError
from njtui.store.merge import Conflict
from njtui.store.notebook_file import (
    NotebookFile,
    SaveResult,
    TakeIn,
    dumps_notebook,
    edit_notebook,
    load_notebook,
    parse_notebook,
    save_notebook,
)

__all__ = [
    "Conflict",
    "NotebookError",
    "NotebookFile",
    "SaveResult",
    "StoreError",
    "TakeIn",
    "atomic_write_bytes",
    "dumps_notebook",
    "edit_notebook",
    "load_notebook",
    "parse_notebook",
    "save_notebook",
]
