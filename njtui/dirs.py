"""`mkdir -p` without its surprise: the directories it makes only on the way to the one asked
for get mode 0700, not the umask's.

POSIX `mkdir -p -m 700 A/B/C`, os.makedirs(…, mode=0o700) and Path.mkdir(parents=True,
mode=0o700) all give the mode to C alone, and make A and B with the umask's mode (0755): a
directory njtui makes only to reach its own is nobody else's to list. Only the standard
library: the host relay imports this (through njtui.runner.private) on every boot.
"""

from __future__ import annotations

import os
from pathlib import Path

# The mode of every directory made on the way to another.
PARENTS_MODE = 0o700


def make_dirs(path: Path | str, mode: int = 0o700) -> None:
    """`path` with `mode` if it is missing, and each missing directory above it with mode 0700
    (PARENTS_MODE). Directories that exist are left as they are, `path` included; one that is
    not a directory is an error (NotADirectoryError, FileExistsError at its first use)."""
    path = Path(os.path.abspath(path))
    pending = [path]
    while pending:
        current = pending[-1]
        try:
            os.mkdir(current, mode if current == path else PARENTS_MODE)
        except FileNotFoundError:
            if current.parent == current:
                raise
            pending.append(current.parent)  # made first, then `current` again
            continue
        except FileExistsError:
            pass
        pending.pop()
