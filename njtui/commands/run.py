"""`njtui run`: runs a notebook's code cells headless, streaming their output as it comes."""

from __future__ import annotations

import argparse
import queue
import signal

from njtui.commands.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, notebook_at, runner_log_path, select_cells
from njtui.commands.output import JsonPrinter, TextPrinter
from njtui.runner import STOPPED_MID_CELL


def cmd_run(args: argparse.Namespace) -> int:
    from njtui.runner import Runner, RunnerError, RunnerLog

    notebook = notebook_at(args.notebook)
    cells = select_cells(notebook, args.cell, args.notebook)
    printer: TextPrinter | JsonPrinter = JsonPrinter() if args.json else TextPrinter()
    log = RunnerLog(runner_log_path())
    log.subscribe(lambda entry: printer.note(f"njtui: {entry.runtime}: {entry.text}") if entry.level == "error" else None)
    runner = Runner(args.notebook, notebook, log=log)
    events: queue.Queue = queue.Queue()
    runner.subscribe(events.put)
    failures = 0
    told_of_changes: set[str] = set()
    interrupted = False
    ctrl_c = CtrlC()
    try:
        runner.sync_ended()
        for cell in cells:
            spec = runner.runtime_for(cell)
            label = f"{spec.environment_label} · {cell.language}"
            try:
                exec_id = runner.execute(cell)
            except RunnerError as exc:
                printer.done(cell.id, "error", None, reason=f"runtime {spec.id} did not start: {str(exc).splitlines()[0]}")
                failures += 1
                if not args.keep_going:
                    break
                continue
            if spec.id not in told_of_changes:
                told_of_changes.add(spec.id)
                _tell_of_pending_changes(runner, spec.id, printer)
            status, interrupted_now = _follow(runner, events, exec_id, cell, spec.id, label, printer, ctrl_c)
            interrupted = interrupted or interrupted_now
            if interrupted:
                break
            if status != "ok":
                failures += 1
                if not args.keep_going or status == "interrupted":
                    break  # stopped from elsewhere: the next cell would boot a new runtime
    finally:
        ctrl_c.restore()
        runner.detach()
        log.close()
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failures else EXIT_OK


def _tell_of_pending_changes(runner, runtime_id: str, printer) -> None:
    """A runtime found running was started before its settings were edited: this run uses the
    settings it started with, which a user who just edited them must be told."""
    changes = runner.pending_changes(runtime_id)
    session = runner.sessions.get(runtime_id)
    if changes and session is not None:
        printer.note(f"njtui: {runtime_id}: already running, with the settings it started with; changed since: {', '.join(changes)}, which apply when it restarts (njtui runtimes stop {session.info.key}, then run again)")


class CtrlC:
    """Counts Ctrl-C presses instead of raising, so a press is never lost mid-bookkeeping."""

    def __init__(self) -> None:
        self.presses = 0
        self._previous = signal.signal(signal.SIGINT, self._pressed)

    def _pressed(self, signum: int, frame: object) -> None:
        self.presses += 1

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _follow(runner, events, exec_id, cell, runtime_id, label, printer, ctrl_c: CtrlC):
    """Prints one execution's events until it is done; Ctrl-C interrupts it (twice: gives up)."""
    from njtui.runner import RuntimeMessage

    handled_presses = 0
    started = False
    while True:
        if ctrl_c.presses > handled_presses:
            if handled_presses:
                printer.done(cell.id, "interrupted", None, reason="gave up waiting for the runtime")
                return "interrupted", True
            handled_presses = ctrl_c.presses
            printer.note("njtui: interrupting… (Ctrl-C again to stop waiting)")
            runner.interrupt(runtime_id)
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        if not isinstance(event, RuntimeMessage):
            continue
        message = event.message
        if message.get("exec") != exec_id:
            continue
        kind = message.get("type")
        if kind == "start":
            started = True
            if isinstance(printer, JsonPrinter):
                printer.start(cell.id, label, message.get("count"), runtime=runtime_id, exec=exec_id)
            else:
                printer.start(cell.id, label, message.get("count"))
        elif kind == "done":
            if not started and isinstance(printer, JsonPrinter):
                printer.start(cell.id, label, None, runtime=runtime_id, exec=exec_id)
            status = message.get("status", "ok")
            reason = message.get("reason")
            if status == "interrupted" and not handled_presses and reason == STOPPED_MID_CELL:
                reason = "stopped by another client"  # this command stops no runtime
            extra = {"count": message.get("count"), "exit_code": message.get("exit_code")} if isinstance(printer, JsonPrinter) else {}
            printer.done(cell.id, status, message.get("duration"), reason=reason, **extra)
            # Exit status 130 is for a Ctrl-C here, not for a runtime someone else stopped.
            return status, bool(handled_presses) or (status == "interrupted" and reason is None)
        else:
            printer.event(cell.id, message)
