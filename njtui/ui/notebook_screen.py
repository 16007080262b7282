"""The notebook screen: the cells, the runtimes panel and the runner log of one notebook.

The view (command mode) edits the cells and says so with messages; this screen keeps the
notebook's outputs, runs cells, saves, and shows the runtimes. Its timers, workers and its
subscription to the runner end with it.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static, TextArea

from njtui.model import Cell, Notebook
from njtui.runner import LogEntry, Runner, RuntimeChanged, RuntimeMessage, RuntimeState, RuntimeStatus
from njtui.store.notebook_file import NotebookFile
from njtui.store.recovery import RecoveryJournal
from njtui.ui.cell import CellEditor, CellWidget
from njtui.ui.cell_output import CellOutputs
from njtui.ui.cell_runs import CellRuns
from njtui.ui.completion import CompletionMenu, common_prefix
from njtui.ui.environment_actions import EnvironmentActions
from njtui.ui.file_sync import WATCH_SECONDS, FileSync
from njtui.ui.find_bar import FindActions, FindBar
from njtui.ui.keys import help_sections, palette_commands
from njtui.ui.notebook_view import NotebookView
from njtui.ui.pager import PagerScreen
from njtui.ui.panels import STATE_STYLES, RunnerLogPanel, RuntimesPanel
from njtui.ui.runner_bridge import RunnerBridge, RunnerEventsReady
from njtui.ui.runtime_actions import RuntimeActions
from njtui.ui.screens import HelpScreen

# The side panel's share of the terminal's width, and its bounds in columns.
SIDEBAR_SHARE = 1 / 3
SIDEBAR_MIN, SIDEBAR_MAX = 30, 80
# Narrower than this, the side panel starts hidden (the status line says what runtimes do).
NARROW = 70


class NotebookScreen(FileSync, RuntimeActions, EnvironmentActions, CellRuns, FindActions, Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "save", "save", priority=True),
        Binding("f2", "toggle_panel('runtimes')", "runtimes", show=False),
        Binding("f3", "toggle_panel('log')", "log", show=False),
        Binding("left_square_bracket", "resize_sidebar(4)", "wider side panel", show=False),
        Binding("right_square_bracket", "resize_sidebar(-4)", "narrower side panel", show=False),
        Binding("left_curly_bracket", "resize_runtimes(-2)", "shorter runtimes panel", show=False),
        Binding("right_curly_bracket", "resize_runtimes(2)", "taller runtimes panel", show=False),
        Binding("escape", "close_find", "close find", show=False),
    ]

    def __init__(self, path: Path, notebook: Notebook, runner: Runner) -> None:
        super().__init__()
        self.path = Path(path)
        self.notebook = notebook
        self.runner = runner
        self.store = runner.store
        # What was read from the file: saves merge with changes made there since (a three-way
        # merge), and changes made there while the notebook is open are taken in as they come.
        self.notebook_file = NotebookFile(self.path, notebook)
        self.journal = RecoveryJournal(self.path, notebook)
        self._watch_problem: str | None = None
        self.outputs = CellOutputs()
        self.exec_cells: dict[str, str] = {}
        self.statuses: dict[str, RuntimeStatus] = {}
        self.env_marks: dict[str, str] = {}
        self.env_work: dict[str, str] = {}
        self._env_checking: set[str] = set()
        self._env_recheck: set[str] = set()
        self.dirty = False
        self.sidebar_share: float | None = None  # None: SIDEBAR_SHARE within bounds, hidden when narrow; else set with [ and ]
        self._sidebar_auto_hidden = False
        self.runtimes_height: int | None = None  # None: as tall as its runtimes need, up to half
        self.find_text = ""
        self._find_origin: CellEditor | None = None
        self._completing: tuple[CellEditor, int, int] | None = None  # the editor and range a completion menu replaces
        self._submissions: dict[str, deque[Cell]] = {}
        self._submit_lock = threading.Lock()
        self._bridge: RunnerBridge | None = None
        self._pager: PagerScreen | None = None
        self.loaded = threading.Event()

    # -- layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield NotebookView(self.notebook.cells, self.outputs, self.environment_label, self.store.blob_path, new_cell=lambda language: self.notebook.new_cell(language=language), id="notebook")
            with Vertical(id="sidebar"):
                yield RuntimesPanel(id="runtimes")
                yield RunnerLogPanel(id="log")
        yield FindBar(id="find-bar")
        yield Static("", id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(FindBar).display = False
        self.view.dark = self.app.current_theme.dark if self.app.current_theme else True
        self._bridge = RunnerBridge(self, self.runner)
        self.apply_sizes(self.app.size.width)
        self.show_runtimes()
        self.runner_log_panel.add(list(self.runner.log.history))
        self.view.focus()
        self._ticker = self.set_interval(1.0, self._tick, pause=True)
        self.set_interval(WATCH_SECONDS, self.check_file)
        self._open_results()
        self.offer_recovery()

    def on_unmount(self) -> None:
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        self.journal.close()

    @property
    def view(self) -> NotebookView:
        return self.query_one(NotebookView)

    def environment_label(self, cell: Cell) -> str:
        if not cell.is_code:
            return ""
        try:
            return self.notebook.runtime_for(cell).environment_label
        except KeyError:
            return "?"

    # -- sizes
    def apply_sizes(self, width: int) -> None:
        sidebar = self.query_one("#sidebar")
        if self.sidebar_share is None:
            # Hidden because the terminal was narrow, shown again once it is not (F2/F3 hide it for good).
            if width < NARROW and sidebar.display:
                sidebar.display, self._sidebar_auto_hidden = False, True
            elif width >= NARROW and self._sidebar_auto_hidden:
                sidebar.display, self._sidebar_auto_hidden = True, False
            columns = max(SIDEBAR_MIN, min(SIDEBAR_MAX, width // 2, round(width * SIDEBAR_SHARE)))
        else:
            # Sized by hand with [ and ]: that share of the terminal, whatever its width now.
            columns = max(16, min(width - 20, round(width * self.sidebar_share)))
        sidebar.styles.width = columns
        if self.runtimes_height is not None:
            self.runtimes_panel.styles.height = self.runtimes_height
            self.runtimes_panel.styles.max_height = self.runtimes_height
        self.refresh_status_line()

    def on_resize(self, event) -> None:
        # The new size, from the event: the side panel follows this resize, not the last one.
        self.apply_sizes(event.size.width)

    def action_resize_sidebar(self, columns: int) -> None:
        sidebar = self.query_one("#sidebar")
        width = max(1, self.size.width)
        current = sidebar.outer_size.width if sidebar.display else 0
        self.sidebar_share = (current + columns) / width
        sidebar.display = True
        self.apply_sizes(width)

    def action_resize_runtimes(self, delta: int) -> None:
        current = self.runtimes_height or self.runtimes_panel.outer_size.height
        self.runtimes_height = max(4, min(40, current + delta))
        self.apply_sizes(self.size.width)

    def action_toggle_panel(self, which: str) -> None:
        self._sidebar_auto_hidden = False
        sidebar = self.query_one("#sidebar")
        panel = self.runtimes_panel if which == "runtimes" else self.runner_log_panel
        if not sidebar.display:
            self.runtimes_panel.display = self.runner_log_panel.display = False
            panel.display = True
        else:
            panel.display = not panel.display
        sidebar.display = self.runtimes_panel.display or self.runner_log_panel.display
        self.refresh_status_line()

    def refresh_status_line(self) -> None:
        """With the runtimes panel hidden, one line says what each runtime is doing."""
        lines, sidebars = self.query("#status-line").results(Static), self.query("#sidebar")
        line = next(lines, None)
        if line is None or not sidebars:
            return  # the screen is closing and has removed them; a late worker's result lands here
        hidden = not (sidebars.first().display and self.runtimes_panel.display)
        line.display = hidden
        if not hidden:
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        for runtime_id in self.listed_runtimes():
            status = self.statuses.get(runtime_id) or RuntimeStatus()
            if status.state == RuntimeState.RUNNING:
                state = "busy" if status.busy else "idle"
            else:
                state = status.phase or status.state.value
            text.append("● ", style=STATE_STYLES[status.state])
            text.append(f"{runtime_id} {self.env_work.get(runtime_id) or state}")
            if runtime_id in self.env_marks and status.state == RuntimeState.RUNNING:
                text.append(" Δ", style="bold yellow")
            text.append("  ")
        if self.env_marks:
            text.append("Δ changed: lost on restart unless saved (S)  ", style="yellow")
        text.append("F2 runtimes", style="dim")
        line.update(text)

    def action_cycle_focus(self) -> None:
        order = [self.view, self.runtimes_panel.query_one(OptionList), self.runner_log_panel.query_one("RichLog")]
        order = [widget for widget in order if widget.display and widget.parent is not None and widget.parent.display and self.query_one("#sidebar").display or widget is self.view]
        focused = self.focused
        index = next((i for i, widget in enumerate(order) if widget is focused), -1)
        order[(index + 1) % len(order)].focus()

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
        self.app.call_from_thread(self._show_loaded, loaded)
        try:
            self.runner.attach_running()
        except Exception as exc:  # noqa: BLE001 - a runtime that can't be reached must not stop the app
            self.runner.log.error(None, f"attaching to running runtimes failed: {exc}")
        self.loaded.set()
        # A notebook from elsewhere may boot versions saved on another engine: said now, in the
        # runner log, rather than as a pull error when a cell first runs.
        for runtime_id in list(self.notebook.runtimes):
            try:
                reason = self.runner.environments.unavailable(runtime_id)
            except Exception:  # noqa: BLE001 - only a warning ahead of time; the boot says it again
                reason = None
            if reason:
                self.runner.log.warning(runtime_id, reason)

    def _show_loaded(self, loaded: list) -> None:
        for cell_id, record, events, truncated, files in loaded:
            output = self.outputs.for_cell(cell_id)
            output.load(record, events, truncated)
            if files:
                output.set_files(files)
            if record.exec_id:
                self.exec_cells[record.exec_id] = cell_id
        self.view.refresh_all()
        self.view.call_after_refresh(self.view.reveal_selected)

    # -- runner events
    @on(RunnerEventsReady)
    def _runner_events(self) -> None:
        if self._bridge is None or not self.view.is_attached:
            return
        changed_cells: set[str] = set()
        runtimes_changed = False
        log_entries: list[LogEntry] = []
        for item in self._bridge.drain():
            if isinstance(item, RuntimeChanged):
                before = self.statuses.get(item.runtime_id)
                self.statuses[item.runtime_id] = item.status
                self.env_status_changed(item.runtime_id, before, item.status)
                runtimes_changed = True
            elif isinstance(item, RuntimeMessage):
                cell_id = self._apply_message(item.message)
                if cell_id is not None:
                    changed_cells.add(cell_id)
                if self._pager is not None and item.message.get("exec") == self._pager.record.exec_id:
                    self._pager.feed(item.message)
            elif isinstance(item, LogEntry):
                log_entries.append(item)
        if log_entries:
            self.runner_log_panel.add(log_entries)
        if runtimes_changed:
            self.show_runtimes()
        for cell_id in changed_cells:
            self.view.refresh_cell(cell_id)
        if changed_cells:
            self.view.schedule_window()
            self.view.call_after_refresh(self.view.reveal_selected)
        self._ticker.resume() if self._anything_running() else self._ticker.pause()

    def _apply_message(self, message: dict[str, Any]) -> str | None:
        exec_id = message.get("exec")
        if exec_id is None:
            return None
        cell_id = self.exec_cells.get(exec_id) or (message.get("meta") or {}).get("cell")
        if not cell_id:
            return None
        self.exec_cells[exec_id] = cell_id
        output = self.outputs.for_cell(cell_id)
        if output.exec_id is None and output.status in (None, "queued") or output.exec_id == exec_id:
            output.exec_id = exec_id
        elif message.get("type") in ("queued", "start") and output.finished:
            # An execution this app did not send (another client ran the cell): show it.
            output.begin(exec_id, None)
        else:
            return None
        return cell_id if output.apply(message) else None

    def _anything_running(self) -> bool:
        return any(output.status == "running" for output in self.outputs.values())

    def _tick(self) -> None:
        # Only while a cell runs: the one label that changes by itself is a running cell's time.
        if not self._anything_running():
            self._ticker.pause()
            return
        self.view.tick()

    # -- editing
    @on(NotebookView.Edited)
    def _edited(self, event: NotebookView.Edited) -> None:
        for cell in self.notebook.cells:
            if cell.runtime is not None and cell.runtime not in self.notebook.runtimes:
                cell.runtime = None  # pasted from elsewhere: its language's default runs it
        self.mark_dirty()
        if event.structural:
            self.show_runtimes()
        self._refresh_find()

    @on(NotebookView.EditRequested)
    async def _edit_requested(self) -> None:
        await self.edit_selected()

    async def edit_selected(self) -> CellEditor | None:
        view = self.view
        if view.selected_cell is None:
            return None
        view.reveal(view.selected)
        await view.settle()
        widget = view.widget_at(view.selected)
        return await widget.start_editing() if widget is not None else None

    @on(CellWidget.Clicked)
    def _cell_clicked(self, event: CellWidget.Clicked) -> None:
        index = self.view.index_of(event.cell_id)
        if index is not None:
            self.view.select(index, scroll=False)
            self.view.focus()

    @on(TextArea.Changed)
    def _source_changed(self, event: TextArea.Changed) -> None:
        editor = event.text_area
        widget = editor.parent
        if not isinstance(editor, CellEditor) or not isinstance(widget, CellWidget):
            return
        cell = widget.cell
        text = editor.text
        source = text + "\n" if text and not text.endswith("\n") else text
        if source != cell.source:
            cell.source = source
            self.mark_dirty()
            widget.refresh_cell()

    @on(CellEditor.Leave)
    async def _leave_edit(self) -> None:
        await self.stop_editing()
        self.view.focus()

    async def stop_editing(self) -> None:
        for widget in list(self.view.widgets.values()):
            if widget.editing:
                await widget.stop_editing()
        self.view.schedule_window()

    # -- completion
    @on(CellEditor.CompletionRequested)
    def _completion_requested(self, event: CellEditor.CompletionRequested) -> None:
        widget = event.editor.parent
        if not isinstance(widget, CellWidget) or not widget.cell.is_code:
            return
        try:
            runtime_id = self.notebook.runtime_for(widget.cell).id
        except KeyError:
            return
        self._complete(runtime_id, event.editor, event.code, event.cursor)

    @work(thread=True, exclusive=True, group="complete")
    def _complete(self, runtime_id: str, editor: CellEditor, code: str, cursor: int) -> None:
        completion = self.runner.complete(runtime_id, code, cursor)
        self.app.call_from_thread(self._show_completion, editor, code, cursor, completion)

    def _show_completion(self, editor: CellEditor, code: str, cursor: int, completion) -> None:
        if not editor.is_attached or editor.text != code:
            return  # typed on meanwhile: these matches are for text that is gone
        if completion is None:
            self.notify("completion asks the cell's runtime: start it first (s in the runtimes panel, or run a cell)", timeout=3)
            return
        matches = list(dict.fromkeys(completion.matches))
        if not matches:
            self.app.bell()
            return
        prefix = common_prefix(matches)
        if len(matches) == 1 or len(prefix) > completion.end - completion.start:
            editor.apply_completion(completion.start, completion.end, prefix if len(matches) > 1 else matches[0])
        if len(matches) > 1:
            self._completing = (editor, completion.start, completion.start + len(prefix) if len(prefix) > completion.end - completion.start else completion.end)
            offset = editor.cursor_screen_offset
            self.mount(CompletionMenu(matches, at=offset + (0, 1) - self.region.offset))

    @on(CompletionMenu.Chosen)
    def _completion_chosen(self, event: CompletionMenu.Chosen) -> None:
        for menu in self.query(CompletionMenu):
            menu.remove()
        if self._completing is None:
            return
        (editor, start, end), self._completing = self._completing, None
        if not editor.is_attached:
            return
        if event.text is not None:
            editor.apply_completion(start, end, event.text)
        editor.focus()
        if event.key:
            editor.insert(event.key)

    # -- running
    async def action_run_cell(self, mode: str) -> None:
        view = self.view
        cell = view.selected_cell
        if cell is None:
            return
        await self.stop_editing()
        view.focus()
        if cell.is_code:
            self.run_cells([cell])
        if mode == "next":
            if view.selected == len(self.notebook.cells) - 1:
                view.action_insert_cell("below")
            else:
                view.selected += 1
        elif mode == "insert":
            view.action_insert_cell("below")
            await view.settle()
            await self.edit_selected()
        else:
            view.reveal(view.selected)

    # -- screens over this one
    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(help_sections(self.app, self)))

    def palette_commands(self):
        return palette_commands(self)

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
        live = output is not None and output.exec_id == record.exec_id and not output.finished
        seen = output.last_output_seq if live and output is not None else 0
        pager = PagerScreen(self.store, record, f"Output of cell {cell.id} · [{record.count}]", live=live, seen_seq=seen)
        self._pager = pager
        self.app.push_screen(pager, lambda _: setattr(self, "_pager", None))
