"""The notebook screen's runtimes: the panel, what its keys do, a cell's runtime and language.

Calls that may block (booting, stopping) run in thread workers of the screen, so they end
with it; what they change arrives as runner events.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual import work
from textual.widgets import OptionList

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner import Runner, RuntimeState, RuntimeStatus
from njtui.runner import RunnerError as BackendError
from njtui.ui.panels import RunnerLogPanel, RuntimesPanel
from njtui.ui.screens import ConfirmScreen, PickerScreen
from njtui.ui.settings_screen import RuntimeSettingsScreen

if TYPE_CHECKING:
    from pathlib import Path

    from njtui.store.notebook_file import NotebookFile
    from njtui.ui.notebook_view import NotebookView

NEW_RUNTIME = "\0new"


class RuntimeActions:
    """Mixed into NotebookScreen."""

    path: Path
    notebook: Notebook
    runner: Runner
    notebook_file: NotebookFile
    statuses: dict[str, RuntimeStatus]
    env_marks: dict[str, str]
    env_work: dict[str, str]
    _shown_environments: dict[str, str] | None = None  # the environment labels the cells show

    if TYPE_CHECKING:

        @property
        def view(self) -> NotebookView: ...

        app: Any
        focused: Any

        def notify(self, message: str, **kwargs: Any) -> None: ...
        def mark_dirty(self) -> None: ...
        def action_save(self) -> bool: ...
        def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...
        def refresh_status_line(self) -> None: ...

    @property
    def runtimes_panel(self) -> RuntimesPanel:
        return self.query_one(RuntimesPanel)

    @property
    def runner_log_panel(self) -> RunnerLogPanel:
        return self.query_one(RunnerLogPanel)

    # -- which runtimes are shown
    def listed_runtimes(self) -> list[str]:
        """The notebook's runtimes, less those nobody asked for: a runtime no cell uses, that
        the file does not declare and that never ran here (switching a cell to Bash and back
        makes one)."""
        served = self.notebook.cells_served()
        declared = set((self.notebook_file.base or {}).get("runtimes") or {})
        return [rid for rid in self.notebook.runtimes if served.get(rid) or rid in declared or (rid in self.statuses and self.statuses[rid].state != RuntimeState.STOPPED)]

    def prune_unused_runtimes(self) -> None:
        listed = set(self.listed_runtimes())
        for runtime_id in [rid for rid in self.notebook.runtimes if rid not in listed]:
            del self.notebook.runtimes[runtime_id]

    def show_runtimes(self) -> None:
        pending = {rid: self.runner.pending_changes(rid) for rid in self.notebook.runtimes}
        nodes = {rid: node for rid, spec in self.notebook.runtimes.items() if spec.is_swarm and (node := self.swarm_node(rid))}
        self.runtimes_panel.show(self.notebook, self.statuses, pending, self.listed_runtimes(), self.env_marks, self.env_work, nodes)
        self.refresh_status_line()
        # A save, a reset or a settings change moves what a runtime boots from: each cell shows
        # it ("tools v2 · bash") at its bottom right.
        environments = {rid: spec.environment_label for rid, spec in self.notebook.runtimes.items()}
        if environments != self._shown_environments:
            first = self._shown_environments is None  # the cells were made with these
            self._shown_environments = environments
            if not first:
                self.view.refresh_all()

    def swarm_node(self, runtime_id: str) -> str | None:
        """The node a Swarm runtime landed on: its boot's "Starting" phase names it, and once
        it runs, its status does."""
        status = self.statuses.get(runtime_id)
        if status is None:
            return None
        if status.state == RuntimeState.BOOTING:
            return status.progress.get("node")
        return status.node if status.state == RuntimeState.RUNNING else None

    # -- what a runtime does
    @work(thread=True, group="runner")
    def runtime_do(self, runtime_id: str, what: str) -> None:
        try:
            if what == "start":
                self.runner.ensure(runtime_id)
            elif what == "stop":
                self.runner.stop(runtime_id)
            elif what == "restart":
                self.runner.restart(runtime_id)
            elif what == "interrupt":
                self.runner.interrupt(runtime_id)
        except BackendError as exc:
            self.app.call_from_thread(self.notify, str(exc), title=f"{what} {runtime_id} failed", severity="error")

    def selected_runtime(self) -> RuntimeSpec | None:
        cell = self.view.selected_cell
        if cell is None or not cell.is_code:
            return None
        return self.notebook.runtime_for(cell)

    def action_runtime_of_cell(self, what: str) -> None:
        spec = self.selected_runtime()
        if spec is not None:
            self.runtime_do(spec.id, what)

    def action_runtime_action(self, what: str) -> None:
        runtime_id = self.runtimes_panel.highlighted_runtime
        if runtime_id is None:
            return
        if what == "log":
            self.runner_log_panel.display = True
            self.runner_log_panel.set_filter(runtime_id)
            self.runner_log_panel.query_one("RichLog").focus()
            return
        if what == "stop" and runtime_id in self.statuses and self.statuses[runtime_id].state in (RuntimeState.RUNNING, RuntimeState.BOOTING):
            status = self.statuses[runtime_id]
            name = self.notebook.runtimes[runtime_id].name if runtime_id in self.notebook.runtimes else runtime_id
            lost = "the cell running in it is ended, and " if status.busy else ""
            question = f"Stop {name} ({runtime_id})? {lost}everything it holds in memory is lost."
            self.app.push_screen(ConfirmScreen("Stop runtime", question, "stop"), partial(self._stop_confirmed, runtime_id))
            return
        self.runtime_do(runtime_id, what)

    def _stop_confirmed(self, runtime_id: str, confirmed: bool | None) -> None:
        if confirmed:
            self.runtime_do(runtime_id, "stop")

    def action_runtime_settings(self, runtime_id: str | None = None) -> None:
        """The settings screen of a runtime: the panel's highlighted one, else the selected cell's."""
        if runtime_id is None:
            focused_panel = self.focused is not None and self.runtimes_panel in self.focused.ancestors_with_self
            runtime_id = self.runtimes_panel.highlighted_runtime if focused_panel else None
        if runtime_id is None:
            spec = self.selected_runtime()
            runtime_id = spec.id if spec is not None else self.runtimes_panel.highlighted_runtime
        if runtime_id is None or runtime_id not in self.notebook.runtimes:
            self.notify("no runtime to show settings of")
            return
        self.app.push_screen(
            RuntimeSettingsScreen(self.path, self.notebook, runtime_id, self.runner, self.runner.pending_changes(runtime_id), self._settings_saved),
            lambda _: self.show_runtimes(),
        )

    def _settings_saved(self) -> bool:
        saved = self.action_save()
        self.show_runtimes()
        self.view.refresh_all()
        return saved

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        # By name, not @on: Textual collects @on handlers only from its own classes, not mixins.
        if event.option_list.id == "runtime-list":
            self.action_runtime_action("log")

    def action_cycle_log_filter(self) -> None:
        choices: list[str | None] = [None, *self.notebook.runtimes]
        panel = self.runner_log_panel
        current = choices.index(panel.filter) if panel.filter in choices else 0
        panel.set_filter(choices[(current + 1) % len(choices)])

    # -- a cell's runtime and language
    def action_pick_runtime(self) -> None:
        cell = self.view.selected_cell
        if cell is None or not cell.is_code:
            self.notify("select a code cell to choose its runtime")
            return
        current = self.notebook.runtime_for(cell)
        options = [(spec.id, f"{spec.name} ({spec.id}) · {spec.environment_label} · {spec.language}{' · default' if spec.default else ''}") for spec in self.notebook.runtimes.values()]
        options.append((NEW_RUNTIME, f"new runtime… ({cell.language}, host)"))
        self.app.push_screen(PickerScreen(f"Runtime of cell {cell.id}", options, current.id), partial(self._runtime_picked, cell))

    def _runtime_picked(self, cell: Cell, runtime_id: str | None) -> None:
        if runtime_id is None:
            return
        if runtime_id == NEW_RUNTIME:
            spec = self._new_runtime(cell.language or "python")
        else:
            spec = self.notebook.runtimes[runtime_id]
        cell.language = spec.language
        default = self.notebook.default_runtime(spec.language)
        cell.runtime = None if default is not None and default.id == spec.id else spec.id
        self.mark_dirty()
        self.view.refresh_all()
        self.show_runtimes()
        self.notify(f"cell {cell.id} runs in {spec.name} ({spec.id})", timeout=2)

    def _new_runtime(self, language: str) -> RuntimeSpec:
        base = {"python": "py", "bash": "sh"}.get(language, language)
        number = 2
        while f"{base}{number}" in self.notebook.runtimes:
            number += 1
        spec = RuntimeSpec(id=f"{base}{number}", language=language)
        spec.name = f"{spec.name} {number}"
        if self.notebook.default_runtime(language) is None:
            spec.default = True
        self.notebook.runtimes[spec.id] = spec
        return spec

    def action_pick_language(self) -> None:
        cell = self.view.selected_cell
        if cell is None or not cell.is_code:
            self.notify("select a code cell to change its language")
            return
        self.app.push_screen(PickerScreen(f"Language of cell {cell.id}", [(lang, lang) for lang in self.notebook.languages()], cell.language), partial(self._language_picked, cell))

    def _language_picked(self, cell: Cell, language: str | None) -> None:
        if language is None or language == cell.language:
            return
        cell.language, cell.runtime = language, None
        self.notebook.runtime_for(cell)
        self.mark_dirty()
        self.view.rebuild()
        self.show_runtimes()
