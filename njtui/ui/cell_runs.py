"""Running cells from the notebook screen: each cell's output starts afresh at once, and the
cells reach their runtime in the order they were run."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from textual import work

from njtui.model import Cell, Notebook
from njtui.runner import Runner
from njtui.runner import RunnerError as BackendError
from njtui.ui.cell_output import CellOutputs
from njtui.ui.notebook_view import NotebookView


class CellRuns:
    """Mixed into NotebookScreen."""

    notebook: Notebook
    runner: Runner
    outputs: CellOutputs
    exec_cells: dict[str, str]
    _submissions: dict[str, deque[Cell]]
    _submit_lock: threading.Lock

    if TYPE_CHECKING:
        app: Any

        @property
        def view(self) -> NotebookView: ...

        def notify(self, message: str, **kwargs: Any) -> None: ...

    # Handlers in these mixins go by name: Textual collects @on handlers per class, and only
    # from classes built by its own metaclass.
    def on_notebook_view_run_requested(self, event: NotebookView.RunRequested) -> None:
        self.run_cells(event.cells)

    def run_cells(self, cells: list[Cell]) -> None:
        for cell in cells:
            output = self.outputs.for_cell(cell.id)
            output.begin(None, cell.source_hash)
            self.view.refresh_cell(cell.id)
        self.view.schedule_window()
        self.view.call_after_refresh(self.view.reveal_selected)
        self._execute(cells)

    def _execute(self, cells: list[Cell]) -> None:
        # Cells reach their runtime in the order they were run: one drain worker per runtime
        # takes them from a queue. A worker per keypress could submit the later cell first.
        for cell in cells:
            try:
                runtime_id = self.notebook.runtime_for(cell).id
            except KeyError as exc:
                self.execute_failed(cell, str(exc))
                continue
            with self._submit_lock:
                waiting = self._submissions.get(runtime_id)
                if waiting is not None:
                    waiting.append(cell)
                    continue
                self._submissions[runtime_id] = deque([cell])
            self._drain_submissions(runtime_id)

    @work(thread=True, group="runner")
    def _drain_submissions(self, runtime_id: str) -> None:
        while True:
            with self._submit_lock:
                waiting = self._submissions[runtime_id]
                if not waiting:
                    del self._submissions[runtime_id]
                    return
                cell = waiting.popleft()
            try:
                exec_id = self.runner.execute(cell)
            except (BackendError, KeyError) as exc:
                # The cells queued behind it would fail the same way, one boot attempt each.
                with self._submit_lock:
                    failed = [cell, *self._submissions.pop(runtime_id)]
                for index, each in enumerate(failed):
                    self.app.call_from_thread(self.execute_failed, each, str(exc), notify=index == 0)
                return
            self.app.call_from_thread(self._executing, cell, exec_id)

    def _executing(self, cell: Cell, exec_id: str) -> None:
        self.exec_cells[exec_id] = cell.id
        output = self.outputs.get(cell.id)
        if output is not None and output.exec_id is None:
            output.exec_id = exec_id

    def execute_failed(self, cell: Cell, reason: str, *, notify: bool = True) -> None:
        output = self.outputs.for_cell(cell.id)
        output.apply({"type": "done", "status": "error"})
        output.reason = reason
        output.add_text("note", f"[could not run: {reason}]\n")
        self.view.refresh_cell(cell.id)
        self.view.schedule_window()
        if notify:
            self.notify(reason, title="Runtime failed", severity="error")

    def action_run_all(self) -> None:
        self.run_cells(self.notebook.code_cells())
