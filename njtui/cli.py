"""The `njtui` command: open a notebook, run it headless, read its results, manage runtimes.

Exit status: 0 success, 1 a cell failed (or a runtime could not run it), 2 bad input (the
message names the file and line), 130 interrupted with Ctrl-C, 141 stdout closed by its reader.

This module parses the command line and dispatches; the commands live in njtui.commands.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from typing import TextIO

from njtui import __version__
from njtui.commands import env as env_command
from njtui.commands import notebook_io
from njtui.commands.common import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, UsageError
from njtui.commands.open import cmd_open
from njtui.commands.results import cmd_results
from njtui.commands.run import cmd_run
from njtui.commands.runtime import cmd_runtime
from njtui.commands.runtimes import cmd_runtimes
from njtui.commands.secrets import cmd_secrets
from njtui.commands.show import cmd_show
from njtui.store import NotebookError
from njtui.store.errors import StoreError

COMMANDS = ("open", "run", "show", "runtimes", "results", "secrets", "runtime", "env", "import", "export")


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
    env_command.add_parser(sub)
    notebook_io.add_parsers(sub)
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
