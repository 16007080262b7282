"""`njtui show`: prints the stored outputs of each cell's latest execution."""

from __future__ import annotations

import argparse

from njtui.commands.common import EXIT_FAILED, EXIT_OK, notebook_at, select_cells
from njtui.commands.output import JsonPrinter, TextPrinter
from njtui.model.output import ExecutionRecord


def cmd_show(args: argparse.Namespace) -> int:
    from njtui.runner import Runner, RunnerLog
    from njtui.store.results import ResultsStore

    notebook = notebook_at(args.notebook)
    cells = select_cells(notebook, args.cell, args.notebook)
    # Stored output is shown as a terminal showed it: progress bars as their last state.
    printer: TextPrinter | JsonPrinter = JsonPrinter() if args.json else TextPrinter(played=True)
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
        _print_record(printer, store, record, cell, f"{spec.environment_label} · {cell.language}", args.json)
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
