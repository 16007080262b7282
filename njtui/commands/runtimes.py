"""`njtui runtimes`: lists the live runtimes of every notebook in a table, and stops them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from njtui.commands.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UsageError
from njtui.commands.output import safe
from njtui.model import format_duration


def cmd_runtimes(args: argparse.Namespace) -> int:
    from njtui.runner import Runner

    if args.action == "stop":
        return _stop_runtimes(args)
    listing = Runner.list_runtimes()
    for problem in listing.problems:
        print(f"njtui: {problem}", file=sys.stderr)
    # State refused as not private: what is listed may not be all, and the user must act.
    status = EXIT_FAILED if listing.refused else EXIT_OK
    if args.json:
        for entry in listing.runtimes:
            print(json.dumps(entry.to_dict()))
        return status
    if not listing.runtimes:
        print("no runtimes running")
        return status
    _print_runtimes_table(listing.runtimes)
    return status


def _stop_runtimes(args: argparse.Namespace) -> int:
    from njtui.runner import Runner

    if not args.all and not args.id:
        raise UsageError("say which runtime to stop: njtui runtimes stop ID (from `njtui runtimes`) or --all")
    stops = Runner.stop_runtimes(None if args.all else args.id)
    for problem in stops.problems:
        print(f"njtui: {problem}", file=sys.stderr)
    for entry in stops.stopped:
        what = f"{entry.runtime} of {safe(entry.notebook)}"
        if entry.state == "exited":
            print(f"removed {entry.key} (exited {what}, notebook missing)")
        else:
            print(f"stopped {entry.key} ({what})")
    for entry, why in stops.failed:
        print(f"njtui: could not stop {entry.key} ({entry.runtime} of {safe(entry.notebook)}): {why}", file=sys.stderr)
    if stops.failed or stops.refused:
        return EXIT_FAILED
    if not stops.stopped:
        if args.all:
            print("no runtimes running")
            return EXIT_OK
        print(f"njtui: no running runtime matches {args.id!r}; `njtui runtimes` lists them", file=sys.stderr)
        return EXIT_BAD_INPUT
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
    # "local": the engine DOCKER_HOST or the current context names (or this machine, for a host
    # runtime); else the runtime's `engine` setting as written, so it can be grepped for, and a
    # Swarm runtime's node.
    table.add_column("ENGINE", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("PID", no_wrap=True, justify="right")
    table.add_column("IDLE", no_wrap=True, justify="right")
    for entry in entries:
        notebook = Text(safe(_short_path(entry.notebook)))
        if entry.notebook_missing:
            notebook.append(" (notebook missing)", style="red")
        state = entry.detail or ("busy" if entry.busy else entry.state)
        idle = format_duration(entry.idle_for) if entry.idle_for is not None and not entry.busy else "-"
        table.add_row(
            safe(entry.key),
            notebook,
            safe(entry.runtime),
            safe(entry.backend),
            safe((entry.engine or "local") + (f" ({entry.node})" if entry.node else "")),
            Text(safe(state), style=_STATE_STYLES.get("busy" if entry.busy else entry.state, "red")),
            str(entry.pid or "-"),
            idle,
        )
    console.print(table)


def _short_path(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path
