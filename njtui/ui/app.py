"""The njtui terminal app: a notebook's cells beside its runtimes panel and the runner log.

The app talks to runtimes only through `njtui.runner.Runner` (the facade). Calls that
may block (booting, stopping) run in thread workers; what the runner reports arrives on its
threads, is queued by `RunnerBridge`, and reaches the app as one `RunnerEventsReady` message
per batch, so a cell printing 200,000 lines costs a few redraws, not 200,000.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Footer, OptionList, TextArea

from njtui.model import LANGUAGES, Cell, Notebook, RuntimeSpec
from njtui.runner import LogEntry, Runner, RuntimeChanged, RuntimeMessage, RuntimeState, RuntimeStatus
from njtui.runner import RunnerError as BackendError
from njtui.store import StoreError
from njtui.store.merge import describe_summary
from njtui.store.notebook_file import NotebookFile
from njtui.ui.cell import RUN_BINDINGS, CellEditor, CellWidget
from njtui.ui.cell_output import CellOutput
from njtui.ui.config import load_config, remember_theme
from njtui.ui.notebook_view import NotebookView
from njtui.ui.panels import RunnerLogPanel, RuntimesPanel
from njtui.ui.screens import ConflictScreen, HelpScreen, PagerScreen, PickerScreen, SavePromptScreen, key_label
from njtui.ui.settings_screen import RuntimeSettingsScreen
from njtui.ui.themes import DEFAULT_THEME, discover_themes

CHORD_SECONDS = 1.0
# How often the notebook file is looked at (one stat; read only when it changed).
WATCH_SECONDS = 0.5
NEW_RUNTIME = "\0new"


class RunnerEventsReady(Message):
    """Runner events are waiting in the bridge's queue."""


class RunnerBridge:
    """Carries runner events and log entries from runner threads to the app, in batches."""

    def __init__(self, app: App, runner: Runner) -> None:
        self.app = app
        self.runner = runner
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._posted = False
        runner.subscribe(self._put)
        runner.log.subscribe(self._put)

    def _put(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            if self._posted:
                return
            self._posted = True
        self.app.post_message(RunnerEventsReady())

    def drain(self) -> list[Any]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._posted = False
        return items

    def close(self) -> None:
        self.runner.unsubscribe(self._put)
        self.runner.log.unsubscribe(self._put)


@dataclass
class PaletteCommand:
    name: str
    action: str
    help: str = ""


class NotebookCommands(Provider):
    """Every action of the app in the command palette, named "category: action"."""

    def _commands(self) -> list[PaletteCommand]:
        app = self.app
        assert isinstance(app, NotebookApp)  # this provider is only in NotebookApp.COMMANDS
        return app.palette_commands()

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, partial(self.app.run_action, command.action), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), partial(self.app.run_action, command.action), help=command.help)


class NotebookApp(App[str]):
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {NotebookCommands}
    TITLE = "njtui"

    BINDINGS = [
        Binding("ctrl+s", "save", "save", priority=True),
        Binding("ctrl+q", "quit_app", "quit", priority=True),
        Binding("f2", "toggle_panel('runtimes')", "runtimes", show=False),
        Binding("f3", "toggle_panel('log')", "log", show=False),
        Binding("left_square_bracket", "resize_sidebar(4)", "wider side panel", show=False),
        Binding("right_square_bracket", "resize_sidebar(-4)", "narrower side panel", show=False),
        Binding("left_curly_bracket", "resize_runtimes(-2)", "shorter runtimes panel", show=False),
        Binding("right_curly_bracket", "resize_runtimes(2)", "taller runtimes panel", show=False),
    ]

    def __init__(self, path: Path, notebook: Notebook, runner: Runner | None = None, *, theme_name: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.notebook = notebook
        self.runner = runner or Runner(self.path, notebook)
        self.store = self.runner.store
        # What was read from the file: saves merge with changes made there since (a three-way
        # merge), and changes made there while the notebook is open are taken in as they come.
        self.notebook_file = NotebookFile(self.path, notebook)
        self._watch_problem: str | None = None
        self.outputs: dict[str, CellOutput] = {}
        self.exec_cells: dict[str, str] = {}
        self.statuses: dict[str, RuntimeStatus] = {}
        self.dirty = False
        self.sidebar_width: int | None = None  # None: a third of the terminal, 26 to 40 columns
        self.runtimes_height: int | None = None  # None: as tall as its runtimes need, up to half
        self.deleted: list[tuple[int, Cell]] = []
        self.cell_clipboard: list[Cell] = []
        self._chord: tuple[str, float] | None = None
        self._submissions: dict[str, deque[Cell]] = {}
        self._submit_lock = threading.Lock()
        self._bridge: RunnerBridge | None = None
        self._loaded = threading.Event()
        theme_set = discover_themes()
        self.theme_errors = theme_set.errors
        for theme in theme_set.themes.values():
            self.register_theme(theme)
        self.initial_theme = theme_name or load_config().theme or DEFAULT_THEME
        self._remember_themes = False

    # -- layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield NotebookView(self.notebook.cells, self.outputs, self.environment_label, self.store.blob_path, id="notebook")
            with Vertical(id="sidebar"):
                yield RuntimesPanel(id="runtimes")
                yield RunnerLogPanel(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.notebook.title or self.path.name
        self.sub_title = str(self.path)
        if self.initial_theme in self.available_themes:
            self.theme = self.initial_theme
        else:
            self.notify(f"no theme named {self.initial_theme!r}; themes: {', '.join(sorted(self.available_themes))}", severity="warning")
            if DEFAULT_THEME in self.available_themes:
                self.theme = DEFAULT_THEME
        for error in self.theme_errors:
            self.notify(error, title="Theme not loaded", severity="warning", timeout=10)
        self._remember_themes = True
        self._apply_sizes()
        self.view.dark = self.current_theme.dark if self.current_theme else True
        self._bridge = RunnerBridge(self, self.runner)
        self._show_runtimes()
        self.runner_log_panel.add(list(self.runner.log.history))
        self.view.focus()
        self.set_interval(1.0, self._tick)
        self.set_interval(WATCH_SECONDS, self._watch_file)
        self._open_results()

    @property
    def view(self) -> NotebookView:
        return self.query_one(NotebookView)

    @property
    def runtimes_panel(self) -> RuntimesPanel:
        return self.query_one(RuntimesPanel)

    @property
    def runner_log_panel(self) -> RunnerLogPanel:
        return self.query_one(RunnerLogPanel)

    def environment_label(self, cell: Cell) -> str:
        if not cell.is_code:
            return ""
        try:
            return self.notebook.runtime_for(cell).environment
        except KeyError:
            return "?"

    def _apply_sizes(self) -> None:
        self.query_one("#sidebar").styles.width = self.sidebar_width or max(30, min(40, self.size.width // 3))
        if self.runtimes_height is not None:
            self.runtimes_panel.styles.height = self.runtimes_height
            self.runtimes_panel.styles.max_height = self.runtimes_height

    # -- outputs from the results store, then live runtimes
    @work(thread=True, exclusive=True, group="open")
    def _open_results(self) -> None:
        """Latest stored output of each cell, then attach to runtimes still running."""
        loaded = []
        for cell in list(self.notebook.cells):
            if not cell.is_code:
                continue
            record = self.store.latest(cell.id)
            if record is None:
                continue
            events, truncated = self.store.tail_events(record)
            loaded.append((cell.id, record, events, truncated, self.store.files(record)))
        self.call_from_thread(self._show_loaded, loaded)
        try:
            self.runner.attach_running()
        except Exception as exc:  # noqa: BLE001 - a runtime that can't be reached must not stop the app
            self.runner.log.error(None, f"attaching to running runtimes failed: {exc}")
        self._loaded.set()

    def _show_loaded(self, loaded: list) -> None:
        for cell_id, record, events, truncated, files in loaded:
            output = self.outputs.setdefault(cell_id, CellOutput())
            output.load(record, events, truncated)
            if files:
                output.set_files(files)
            if record.exec_id:
                self.exec_cells[record.exec_id] = cell_id
        self.view.refresh_all()

    # -- runner events
    @on(RunnerEventsReady)
    def _runner_events(self) -> None:
        if self._bridge is None or self._screen_torn_down():
            return
        changed_cells: set[str] = set()
        runtimes_changed = False
        log_entries: list[LogEntry] = []
        for item in self._bridge.drain():
            if isinstance(item, RuntimeChanged):
                self.statuses[item.runtime_id] = item.status
                runtimes_changed = True
            elif isinstance(item, RuntimeMessage):
                cell_id = self._apply_message(item.message)
                if cell_id is not None:
                    changed_cells.add(cell_id)
            elif isinstance(item, LogEntry):
                log_entries.append(item)
        if log_entries:
            self.runner_log_panel.add(log_entries)
        if runtimes_changed:
            self._show_runtimes()
        for cell_id in changed_cells:
            self.view.refresh_cell(cell_id)
        if changed_cells:
            self.view.schedule_window()
            self.view.call_after_refresh(self.view.reveal_selected)

    def _apply_message(self, message: dict[str, Any]) -> str | None:
        exec_id = message.get("exec")
        if exec_id is None:
            return None
        cell_id = self.exec_cells.get(exec_id) or (message.get("meta") or {}).get("cell")
        if not cell_id:
            return None
        self.exec_cells[exec_id] = cell_id
        output = self.outputs.setdefault(cell_id, CellOutput())
        if output.exec_id is None and output.status in (None, "queued") or output.exec_id == exec_id:
            output.exec_id = exec_id
        elif message.get("type") in ("queued", "start") and output.finished:
            # An execution this app did not send (another client ran the cell): show it.
            output.begin(exec_id, None)
        else:
            return None
        return cell_id if output.apply(message) else None

    def _screen_torn_down(self) -> bool:
        # Timers and runner events still arrive while the app exits and removes its widgets.
        try:
            return not self.view.is_attached
        except NoMatches:
            return True

    def _tick(self) -> None:
        if self._screen_torn_down():
            return
        self.view.tick()
        if any(status.state == RuntimeState.RUNNING for status in self.statuses.values()):
            self._show_runtimes()

    # -- selection and editing
    def action_select_relative(self, delta: int) -> None:
        self.view.select(self.view.selected + delta)

    def action_select_index(self, index: int) -> None:
        self.view.select(index if index >= 0 else len(self.notebook.cells) - 1)

    def action_select_page(self, direction: int) -> None:
        view = self.view
        target = view.scroll_y + direction * view.viewport_height
        tops = 0
        for index, cell in enumerate(view.cells):
            tops += view._height_of(cell)
            if tops > target:
                view.select(index)
                return
        view.select(len(view.cells) - 1)

    async def action_edit_cell(self) -> None:
        view = self.view
        if view.selected_cell is None:
            await self._insert(0, self.notebook.new_cell(language="python"))
        view.scroll_to_cell(view.selected)
        await view.settle()
        widget = view.widget_at(view.selected)
        if widget is not None:
            await widget.start_editing()

    @on(CellWidget.Clicked)
    def _cell_clicked(self, event: CellWidget.Clicked) -> None:
        ids = [cell.id for cell in self.notebook.cells]
        if event.cell_id in ids:
            self.view.select(ids.index(event.cell_id), scroll=False)
            self.view.focus()

    @on(TextArea.Changed)
    def _source_changed(self, event: TextArea.Changed) -> None:
        editor = event.text_area
        if not isinstance(editor, CellEditor):
            return
        widget = editor.parent
        if not isinstance(widget, CellWidget):  # a cell's editor is mounted in its CellWidget
            return
        cell = widget.cell
        text = editor.text
        source = text + "\n" if text and not text.endswith("\n") else text
        if source != cell.source:
            cell.source = source
            self.dirty = True
            widget.refresh_cell()

    @on(CellEditor.Leave)
    async def _leave_edit(self, event: CellEditor.Leave) -> None:
        await self.action_leave_edit()

    async def action_leave_edit(self) -> None:
        await self._stop_editing()
        self.view.focus()

    async def _stop_editing(self) -> None:
        for widget in list(self.view.widgets.values()):
            if widget.editing:
                await widget.stop_editing()
        self.view.schedule_window()

    # -- running
    async def action_run_cell(self, mode: str) -> None:
        view = self.view
        cell = view.selected_cell
        if cell is None:
            return
        await self._stop_editing()
        self.view.focus()
        if cell.is_code:
            self.run_cells([cell])
        if mode == "next":
            if view.selected == len(self.notebook.cells) - 1:
                await self._insert(view.selected + 1, self._new_cell_like(cell))
            else:
                view.select(view.selected + 1)
        elif mode == "insert":
            await self._insert(view.selected + 1, self._new_cell_like(cell))
            await self.action_edit_cell()

    def run_cells(self, cells: list[Cell]) -> None:
        for cell in cells:
            output = self.outputs.setdefault(cell.id, CellOutput())
            output.begin(None, cell.source_hash)
            self.view.refresh_cell(cell.id)
        self.view.schedule_window()
        self._execute(cells)

    def _execute(self, cells: list[Cell]) -> None:
        # Cells reach their runtime in the order they were run: one drain worker per runtime
        # takes them from a queue. A worker per keypress could submit the later cell first.
        for cell in cells:
            try:
                runtime_id = self.notebook.runtime_for(cell).id
            except KeyError as exc:
                self._execute_failed(cell, str(exc))
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
                    self.call_from_thread(self._execute_failed, each, str(exc), notify=index == 0)
                return
            self.call_from_thread(self._executing, cell, exec_id)

    def _executing(self, cell: Cell, exec_id: str) -> None:
        self.exec_cells[exec_id] = cell.id
        output = self.outputs.get(cell.id)
        if output is not None and output.exec_id is None:
            output.exec_id = exec_id

    def _execute_failed(self, cell: Cell, reason: str, *, notify: bool = True) -> None:
        output = self.outputs.setdefault(cell.id, CellOutput())
        output.apply({"type": "done", "status": "error"})
        output.reason = reason
        output.add_text("note", f"[could not run: {reason}]\n")
        self.view.refresh_cell(cell.id)
        self.view.schedule_window()
        if notify:
            self.notify(reason, title="Runtime failed", severity="error")

    def action_run_all(self) -> None:
        self.run_cells(self.notebook.code_cells())

    def _selected_runtime(self) -> RuntimeSpec | None:
        cell = self.view.selected_cell
        if cell is None or not cell.is_code:
            return None
        return self.notebook.runtime_for(cell)

    async def action_chord(self, name: str) -> None:
        """Two presses of the same key (d d, i i, 0 0) within a second, as Jupyter has it."""
        now = time.monotonic()
        if self._chord is not None and self._chord[0] == name and now - self._chord[1] < CHORD_SECONDS:
            self._chord = None
            await self.run_action({"delete": "delete_cell", "interrupt": "interrupt_cell", "restart": "restart_cell"}[name])
            return
        self._chord = (name, now)

    def action_interrupt_cell(self) -> None:
        spec = self._selected_runtime()
        if spec is not None:
            self.runtime_do(spec.id, "interrupt")

    def action_restart_cell(self) -> None:
        spec = self._selected_runtime()
        if spec is not None:
            self.runtime_do(spec.id, "restart")

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
            self.call_from_thread(self.notify, str(exc), title=f"{what} {runtime_id} failed", severity="error")

    def action_runtime_action(self, what: str) -> None:
        runtime_id = self.runtimes_panel.highlighted_runtime
        if runtime_id is None:
            return
        if what == "log":
            self.runner_log_panel.display = True
            self.runner_log_panel.set_filter(runtime_id)
            self.runner_log_panel.query_one("RichLog").focus()
            return
        self.runtime_do(runtime_id, what)

    def action_runtime_settings(self, runtime_id: str | None = None) -> None:
        """The settings screen of a runtime: the panel's highlighted one, else the selected cell's."""
        if runtime_id is None:
            focused_panel = self.focused is not None and self.runtimes_panel in self.focused.ancestors_with_self
            runtime_id = self.runtimes_panel.highlighted_runtime if focused_panel else None
        if runtime_id is None:
            spec = self._selected_runtime()
            runtime_id = spec.id if spec is not None else self.runtimes_panel.highlighted_runtime
        if runtime_id is None or runtime_id not in self.notebook.runtimes:
            self.notify("no runtime to show settings of")
            return
        self.push_screen(
            RuntimeSettingsScreen(self.path, self.notebook, runtime_id, self.runner, self.runner.pending_changes(runtime_id), self._settings_saved),
            lambda _: self._show_runtimes(),
        )

    def _settings_saved(self) -> bool:
        saved = self.action_save()
        self._show_runtimes()
        self.view.refresh_all()
        return saved

    def _show_runtimes(self) -> None:
        pending = {rid: self.runner.pending_changes(rid) for rid in self.notebook.runtimes}
        self.runtimes_panel.show(self.notebook, self.statuses, pending)

    @on(OptionList.OptionSelected, "#runtime-list")
    def _runtime_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_runtime_action("log")

    def action_cycle_log_filter(self) -> None:
        choices: list[str | None] = [None, *self.notebook.runtimes]
        panel = self.runner_log_panel
        current = choices.index(panel.filter) if panel.filter in choices else 0
        panel.set_filter(choices[(current + 1) % len(choices)])

    # -- structure
    def _new_cell_like(self, cell: Cell | None) -> Cell:
        language = cell.language if cell is not None and cell.is_code else "python"
        return self.notebook.new_cell(language=language or "python")

    async def _insert(self, index: int, cell: Cell) -> None:
        index = max(0, min(index, len(self.notebook.cells)))
        self.notebook.cells.insert(index, cell)
        self.dirty = True
        self.view.selected = index
        self.view.rebuild()
        self.view.select(index)
        self._show_runtimes()

    async def action_insert_cell(self, where: str) -> None:
        selected = self.view.selected_cell
        index = self.view.selected + (1 if where == "below" and selected is not None else 0)
        await self._insert(index, self._new_cell_like(selected))

    def action_delete_cell(self) -> None:
        view = self.view
        if not self.notebook.cells:
            return
        index = view.selected
        cell = self.notebook.cells.pop(index)
        self.deleted.append((index, cell))
        self.dirty = True
        view.selected = min(index, len(self.notebook.cells) - 1)
        view.rebuild()
        view.select(view.selected)
        self._show_runtimes()

    async def action_undo_delete(self) -> None:
        if not self.deleted:
            self.notify("nothing to undo")
            return
        index, cell = self.deleted.pop()
        if cell.id in self.notebook.cell_ids():
            cell = copy.deepcopy(cell)
            cell.id = self.notebook.new_cell().id
        await self._insert(index, cell)

    def action_copy_cells(self) -> None:
        cell = self.view.selected_cell
        if cell is not None:
            self.cell_clipboard = [copy.deepcopy(cell)]
            self.notify("cell copied", timeout=1.5)

    def action_cut_cells(self) -> None:
        cell = self.view.selected_cell
        if cell is not None:
            self.cell_clipboard = [copy.deepcopy(cell)]
            self.action_delete_cell()

    async def action_paste_cells(self) -> None:
        if not self.cell_clipboard:
            self.notify("nothing to paste")
            return
        index = self.view.selected + (1 if self.notebook.cells else 0)
        for offset, original in enumerate(self.cell_clipboard):
            cell = copy.deepcopy(original)
            cell.id = self.notebook.new_cell().id
            if cell.runtime is not None and cell.runtime not in self.notebook.runtimes:
                cell.runtime = None
            await self._insert(index + offset, cell)

    def action_set_kind(self, kind: str) -> None:
        cell = self.view.selected_cell
        if cell is None or cell.kind == kind:
            return
        if kind == "markdown":
            cell.extra["language"] = cell.language
            cell.kind, cell.language, cell.runtime = "markdown", None, None
        else:
            cell.kind = "code"
            cell.language = cell.extra.pop("language", None) or "python"
            self.notebook.runtime_for(cell)  # the language gets its default runtime if it has none
        self.dirty = True
        self.view.rebuild()
        self.view.select(self.view.selected)
        self._show_runtimes()

    def action_pick_runtime(self) -> None:
        cell = self.view.selected_cell
        if cell is None or not cell.is_code:
            self.notify("select a code cell to choose its runtime")
            return
        current = self.notebook.runtime_for(cell)
        options = [(spec.id, f"{spec.name} ({spec.id}) · {spec.environment} · {spec.language}{' · default' if spec.default else ''}") for spec in self.notebook.runtimes.values()]
        options.append((NEW_RUNTIME, f"new runtime… ({cell.language}, host)"))
        self.push_screen(PickerScreen(f"Runtime of cell {cell.id}", options, current.id), partial(self._runtime_picked, cell))

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
        self.dirty = True
        self.view.refresh_all()
        self._show_runtimes()
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
        self.push_screen(PickerScreen(f"Language of cell {cell.id}", [(lang, lang) for lang in LANGUAGES], cell.language), partial(self._language_picked, cell))

    def _language_picked(self, cell: Cell, language: str | None) -> None:
        if language is None or language == cell.language:
            return
        cell.language, cell.runtime = language, None
        self.notebook.runtime_for(cell)
        self.dirty = True
        self.view.rebuild()
        self.view.select(self.view.selected)
        self._show_runtimes()

    # -- screens
    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_sections()))

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        def rows(bindings) -> list[tuple[str, str]]:
            return [(key_label(binding.key), binding.description) for binding in bindings if binding.description]

        return [
            ("Command mode (Esc)", rows([b for b in NotebookView.BINDINGS if b not in RUN_BINDINGS])),
            ("Run (command and edit mode)", rows(RUN_BINDINGS)),
            ("Everywhere", rows(self.BINDINGS) + [("Ctrl+P", "command palette"), ("Esc", "leave edit mode")]),
            ("Runtimes panel (Tab to reach it)", rows(RuntimesPanel.BINDINGS)),
            ("Runner log", rows(RunnerLogPanel.BINDINGS)),
        ]

    def action_open_pager(self) -> None:
        cell = self.view.selected_cell
        if cell is None or not cell.is_code:
            return
        output = self.outputs.get(cell.id)
        record = None
        if output is not None and output.exec_id:
            record = self.store.find_exec(cell.id, output.exec_id)
        record = record or self.store.latest(cell.id)
        if record is None:
            self.notify("this cell has no stored output yet")
            return
        self.push_screen(PagerScreen(self.store, record, f"Output of cell {cell.id} · [{record.count}] {record.status}"))

    def action_toggle_panel(self, which: str) -> None:
        panel = self.runtimes_panel if which == "runtimes" else self.runner_log_panel
        panel.display = not panel.display
        self.query_one("#sidebar").display = self.runtimes_panel.display or self.runner_log_panel.display

    def action_resize_sidebar(self, delta: int) -> None:
        current = self.sidebar_width or self.query_one("#sidebar").outer_size.width
        self.sidebar_width = max(20, min(100, current + delta))
        self._apply_sizes()

    def action_resize_runtimes(self, delta: int) -> None:
        current = self.runtimes_height or self.runtimes_panel.outer_size.height
        self.runtimes_height = max(4, min(40, current + delta))
        self._apply_sizes()

    NOTEBOOK_SCREEN_ACTIONS = {"run_cell", "save", "toggle_panel", "resize_sidebar", "resize_runtimes"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Over a pager or a picker, the notebook's own keys are neither shown nor acted on.
        if action in self.NOTEBOOK_SCREEN_ACTIONS and len(self.screen_stack) > 1:
            return False
        if action == "edit_cell" and isinstance(self.focused, CellEditor):
            return False
        return True

    def on_resize(self) -> None:
        self._apply_sizes()

    def action_cycle_focus(self) -> None:
        order = [self.view, self.runtimes_panel.query_one(OptionList), self.runner_log_panel.query_one("RichLog")]
        order = [widget for widget in order if widget.display and widget.parent is not None and widget.parent.display]
        focused = self.focused
        index = next((i for i, widget in enumerate(order) if widget is focused), -1)
        order[(index + 1) % len(order)].focus()

    # -- saving and quitting
    def action_save(self) -> bool:
        return self._save()

    def _save(self, prefer: str | None = None, then=None) -> bool:
        """Saves, merged with what changed in the file since it was read. A part changed both
        here and there opens the conflict dialog, and the file waits for its answer; `then`
        runs once the notebook is saved."""
        try:
            result = self.notebook_file.save(self.notebook, prefer=prefer)
        except (StoreError, OSError) as exc:
            self.notify(str(exc), title="Not saved", severity="error", timeout=10)
            return False
        if result.status == "conflict":
            self.push_screen(ConflictScreen(str(self.path), result.conflicts), partial(self._conflict_answered, then))
            return False
        assert result.notebook is not None  # a "saved" result holds the notebook now in the file
        self._take_in_notebook(result.notebook)
        self.dirty = False
        taken = describe_summary(result.taken_in)
        merged = f" (merged with the file's changes: {taken})" if taken else ""
        self.notify(f"saved {self.path.name}{merged}", timeout=2 if not merged else 4)
        if merged:
            self.runner.log.info(None, f"saved, merged with changes on disk: {taken}")
        if not result.layout_kept:
            self.notify("its layout could not be edited in place: the file was written anew, without its comments", title="Comments not kept", severity="warning", timeout=10)
        if then is not None:
            then()
        return True

    def _conflict_answered(self, then, choice: str | None) -> None:
        if choice in ("ours", "theirs"):
            self._save(prefer=choice, then=then)
        else:
            self.notify("not saved: the file is as it was, your changes are still here", timeout=4)

    # -- the file, changed while it is open
    def _watch_file(self) -> None:
        """Takes in what changed in the file while it is open, at once, except what is being
        edited here: cells in an editor, runtimes with their settings open, and anything the
        conflict dialog is deciding about wait for the next save's merge."""
        if self._screen_torn_down() or isinstance(self.screen, ConflictScreen):
            return
        held_cells = {widget.cell.id for widget in self.view.widgets.values() if widget.editing}
        held_runtimes = {screen.spec.id for screen in self.screen_stack if isinstance(screen, RuntimeSettingsScreen)}
        try:
            taken = self.notebook_file.take_in(self.notebook, hold_cells=held_cells, hold_runtimes=held_runtimes)
        except (StoreError, OSError) as exc:
            # Polled twice a second: a problem that lasts (the directory unreadable) is said once.
            if str(exc) != self._watch_problem:
                self._watch_problem = str(exc)
                self.runner.log.warning(None, f"cannot watch the notebook file: {exc}")
            return
        self._watch_problem = None
        if taken is None:
            return
        if taken.error is not None:
            self.runner.log.warning(None, f"{taken.error.location}: {taken.error.message}")
            return
        changes = describe_summary(taken.changed)
        if changes:
            assert taken.notebook is not None  # a TakeIn without an error holds the merged notebook
            self._take_in_notebook(taken.notebook)
            self.runner.log.info(None, f"notebook changed on disk: {changes}")
        if taken.waiting:
            parts = ", ".join(conflict.label for conflict in taken.waiting)
            self.runner.log.info(None, f"changed on disk and being edited here, merged on save: {parts}")

    def _take_in_notebook(self, merged: Notebook) -> None:
        """Makes the open notebook `merged`, in place (the runner and the view hold it), keeping
        the Cell objects of cells that stay so their widgets and outputs stay too."""
        notebook = self.notebook
        notebook.title, notebook.env, notebook.format_version, notebook.extra = merged.title, merged.env, merged.format_version, merged.extra
        runtimes = {rid: notebook.runtimes[rid] if notebook.runtimes.get(rid) == spec else spec for rid, spec in merged.runtimes.items()}
        runtimes_changed = runtimes != notebook.runtimes or list(runtimes) != list(notebook.runtimes)
        notebook.runtimes.clear()
        notebook.runtimes.update(runtimes)
        existing = {cell.id: cell for cell in notebook.cells}
        cells, changed, structural = [], [], False
        for new in merged.cells:
            cell = existing.get(new.id)
            if cell is None:
                cells.append(new)
                structural = True
                continue
            if cell != new:
                structural |= (cell.kind, cell.language) != (new.kind, new.language)
                cell.kind, cell.source, cell.language, cell.runtime, cell.extra = new.kind, new.source, new.language, new.runtime, new.extra
                changed.append(cell.id)
            cells.append(cell)
        structural |= [cell.id for cell in cells] != [cell.id for cell in notebook.cells]
        view = self.view
        selected = view.selected_cell.id if view.selected_cell is not None else None
        # An editor still showing what the cell held before is closed: the cell shows what it holds now.
        stale_editors = [widget for cell_id in changed if (widget := view.widgets.get(cell_id)) is not None and widget.editing]
        notebook.cells[:] = cells
        self.title = notebook.title or self.path.name
        if stale_editors:
            self.call_later(self._close_editors, stale_editors)
        if structural:
            ids = [cell.id for cell in cells]
            view.selected = ids.index(selected) if selected in ids else min(view.selected, max(0, len(ids) - 1))
            view.rebuild()
            view.select(view.selected, scroll=False)
        else:
            for cell_id in changed:
                view.refresh_cell(cell_id)
            view.schedule_window()
        if runtimes_changed or structural or changed:
            self._show_runtimes()
        # A settings screen with nothing unsaved continues from the merged runtime: its next
        # save must not take back what the merge brought in.
        for screen in self.screen_stack:
            if isinstance(screen, RuntimeSettingsScreen) and not screen.dirty and notebook.runtimes.get(screen.spec.id, screen.spec) != screen.spec:
                screen.spec = copy.deepcopy(notebook.runtimes[screen.spec.id])
                screen.refresh_tables()

    async def _close_editors(self, widgets: list) -> None:
        for widget in widgets:
            if widget.is_attached:
                await widget.stop_editing()
        self.view.focus()

    def action_quit_app(self) -> None:
        if self.dirty:
            self.push_screen(SavePromptScreen(str(self.path)), self._save_prompt_answered)
        else:
            self._leave()

    def _save_prompt_answered(self, answer: str | None) -> None:
        if answer == "save":
            self._save(then=self._leave)  # after the conflict dialog, if saving needs one
        elif answer == "discard":
            self._leave()

    def _leave(self) -> None:
        running = [rid for rid, status in self.statuses.items() if status.state == RuntimeState.RUNNING]
        self.runner.detach()
        if running:
            names = ", ".join(running)
            self.exit(f"njtui: left {len(running)} runtime{'s' if len(running) > 1 else ''} running ({names}); each stops by itself when idle, or now with `njtui runtimes stop --all`")
        else:
            self.exit("")

    def action_stop_all_and_quit(self) -> None:
        self._stop_all_then_exit()

    @work(thread=True, group="runner")
    def _stop_all_then_exit(self) -> None:
        self.runner.stop_all()
        self.call_from_thread(self._leave)

    def action_stop_all(self) -> None:
        self._stop_all()

    @work(thread=True, group="runner")
    def _stop_all(self) -> None:
        self.runner.stop_all()

    def palette_commands(self) -> list[PaletteCommand]:
        commands = [
            PaletteCommand("cell: run and select next", "run_cell('next')", "Shift+Enter / Ctrl+N"),
            PaletteCommand("cell: run", "run_cell('stay')", "Ctrl+Enter / Ctrl+R"),
            PaletteCommand("cell: run and insert below", "run_cell('insert')", "Alt+Enter / Ctrl+B"),
            PaletteCommand("cell: edit", "edit_cell", "Enter"),
            PaletteCommand("cell: insert above", "insert_cell('above')", "a"),
            PaletteCommand("cell: insert below", "insert_cell('below')", "b"),
            PaletteCommand("cell: delete", "delete_cell", "d d"),
            PaletteCommand("cell: undo delete", "undo_delete", "z"),
            PaletteCommand("cell: copy", "copy_cells", "c"),
            PaletteCommand("cell: cut", "cut_cells", "x"),
            PaletteCommand("cell: paste below", "paste_cells", "v"),
            PaletteCommand("cell: make markdown", "set_kind('markdown')", "m"),
            PaletteCommand("cell: make code", "set_kind('code')", "y"),
            PaletteCommand("cell: change runtime", "pick_runtime", "r"),
            PaletteCommand("cell: change language", "pick_language", "l"),
            PaletteCommand("cell: interrupt its runtime", "interrupt_cell", "i i"),
            PaletteCommand("cell: restart its runtime", "restart_cell", "0 0"),
            PaletteCommand("cell: open full output", "open_pager", "o"),
            PaletteCommand("cell: settings of its runtime", "runtime_settings", "e"),
            PaletteCommand("notebook: run all cells", "run_all"),
            PaletteCommand("notebook: save", "save", "Ctrl+S"),
            PaletteCommand("runtimes: stop all", "stop_all"),
            PaletteCommand("view: toggle runtimes panel", "toggle_panel('runtimes')", "F2"),
            PaletteCommand("view: toggle runner log", "toggle_panel('log')", "F3"),
            PaletteCommand("view: next pane", "cycle_focus", "Tab"),
            PaletteCommand("log: cycle runtime filter", "cycle_log_filter", "f in the log"),
            PaletteCommand("app: help", "help", "?"),
            PaletteCommand("app: quit (runtimes keep running)", "quit_app", "Ctrl+Q"),
            PaletteCommand("app: stop all runtimes and quit", "stop_all_and_quit"),
        ]
        for runtime_id, spec in self.notebook.runtimes.items():
            for what in ("start", "stop", "restart", "interrupt"):
                commands.append(PaletteCommand(f"runtime: {what} {spec.name} ({runtime_id})", f"runtime_do({runtime_id!r}, {what!r})"))
            commands.append(PaletteCommand(f"runtime: settings of {spec.name} ({runtime_id})", f"runtime_settings({runtime_id!r})"))
        for name in sorted(self.available_themes):
            commands.append(PaletteCommand(f"theme: {name}", f"switch_theme({name!r})"))
        return commands

    def action_switch_theme(self, name: str) -> None:
        self.theme = name

    def watch_theme(self, name: str) -> None:
        if self._remember_themes:
            problem = remember_theme(name)
            if problem:
                self.notify(problem, title="Theme not remembered", severity="warning")
        try:
            view = self.view
        except Exception:  # noqa: BLE001 - not composed yet
            return
        view.dark = self.current_theme.dark
        view.rebuild()

    async def on_unmount(self) -> None:
        if self._bridge is not None:
            self._bridge.close()
