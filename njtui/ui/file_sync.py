"""The notebook screen and its file: saving (merged with what changed on disk), taking in
changes made there while it is open, and the recovery journal of unsaved work."""

from __future__ import annotations

import copy
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from njtui.model import Notebook
from njtui.store import StoreError
from njtui.store.merge import describe_summary
from njtui.store.notebook_file import NotebookFile
from njtui.store.notebook_layout import notebook_document
from njtui.store.recovery import Recovery, RecoveryJournal, find_recovery
from njtui.ui.screens import ConflictScreen, RecoveryScreen
from njtui.ui.settings_screen import RuntimeSettingsScreen

if TYPE_CHECKING:
    from njtui.runner import Runner
    from njtui.ui.notebook_view import NotebookView

# How often the notebook file is looked at (one stat; read only when it changed).
WATCH_SECONDS = 1.0


class FileSync:
    """Mixed into NotebookScreen."""

    path: Path
    notebook: Notebook
    runner: Runner
    notebook_file: NotebookFile
    journal: RecoveryJournal
    dirty: bool
    _watch_problem: str | None

    if TYPE_CHECKING:

        @property
        def view(self) -> NotebookView: ...

        app: Any

        def notify(self, message: str, **kwargs: Any) -> None: ...
        def show_runtimes(self) -> None: ...
        def prune_unused_runtimes(self) -> None: ...
        def call_later(self, callback: Any, *args: Any) -> bool: ...

    def mark_dirty(self) -> None:
        """Something a person changed is not saved yet: it is journaled at once. An edit's
        message can arrive after a save that already wrote the edit (`d d` then Ctrl+S, typed
        fast): a clean notebook that reads as the file does stays clean."""
        if not self.dirty and notebook_document(self.notebook) == self.notebook_file.base:
            return
        self.dirty = True
        self.journal.record(self.notebook)

    # -- saving
    def action_save(self) -> bool:
        return self.save()

    def save(self, prefer: str | None = None, then=None, otherwise=None) -> bool:
        """Saves, merged with what changed in the file since it was read. A part changed both
        here and there opens the conflict dialog, and the file waits for its answer; `then`
        runs once the notebook is saved, `otherwise` once it is certain it was not (an error,
        or the conflict dialog cancelled)."""
        self.prune_unused_runtimes()
        try:
            result = self.notebook_file.save(self.notebook, prefer=prefer)
        except (StoreError, OSError) as exc:
            self.notify(str(exc), title="Not saved", severity="error", timeout=10)
            if otherwise is not None:
                otherwise()
            return False
        if result.status == "conflict":
            self.app.push_screen(ConflictScreen(str(self.path), result.conflicts), partial(self._conflict_answered, then, otherwise))
            return False
        assert result.notebook is not None  # a "saved" result holds the notebook now in the file
        self.take_in_notebook(result.notebook)
        self.dirty = False
        self.journal.set_base(result.notebook)
        self.journal.discard()
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

    def _conflict_answered(self, then, otherwise, choice: str | None) -> None:
        if choice in ("ours", "theirs"):
            self.save(prefer=choice, then=then, otherwise=otherwise)
        else:
            self.notify("not saved: the file is as it was, your changes are still here", timeout=4)
            if otherwise is not None:
                otherwise()

    # -- unsaved work from a session that ended without saving
    def offer_recovery(self) -> None:
        try:
            recovery = find_recovery(self.path)
        except StoreError as exc:
            self.notify(str(exc), title="Recovery file not read", severity="warning", timeout=15)
            return
        if recovery is None:
            return
        if notebook_document(recovery.notebook) == notebook_document(self.notebook):
            self.journal.discard()  # the file already holds it
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(recovery.saved_at))
        self.app.push_screen(RecoveryScreen(str(self.path), when, recovery.reason, str(recovery.path)), partial(self._recovery_answered, recovery))

    def _recovery_answered(self, recovery: Recovery, answer: str | None) -> None:
        if answer == "restore":
            # Merged as a save would be: from the file as it was then, with what changed there since.
            self.notebook_file = NotebookFile(self.path, recovery.base or self.notebook)
            self.take_in_notebook(recovery.notebook)
            self.mark_dirty()
            self.check_file()
            self.notify("unsaved changes restored: Ctrl+S saves them", timeout=6)
        elif answer == "discard":
            self.journal.discard()
            self.notify("the unsaved changes of the last session were thrown away", timeout=4)

    # -- the file, changed while it is open
    def check_file(self) -> None:
        """Takes in what changed in the file while it is open, at once, except what is being
        edited here: cells in an editor, runtimes with their settings open, and anything the
        conflict dialog is deciding about wait for the next save's merge."""
        if not self.view.is_attached or isinstance(self.app.screen, ConflictScreen):
            return
        held_cells = {widget.cell.id for widget in self.view.widgets.values() if widget.editing}
        held_runtimes = {screen.spec.id for screen in self.app.screen_stack if isinstance(screen, RuntimeSettingsScreen)}
        try:
            taken = self.notebook_file.take_in(self.notebook, hold_cells=held_cells, hold_runtimes=held_runtimes)
        except (StoreError, OSError) as exc:
            # Polled: a problem that lasts (the directory unreadable) is said once.
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
            self.take_in_notebook(taken.notebook)
            self.runner.log.info(None, f"notebook changed on disk: {changes}")
            if self.dirty:
                self.journal.record(self.notebook)
        if taken.waiting:
            parts = ", ".join(conflict.label for conflict in taken.waiting)
            self.runner.log.info(None, f"changed on disk and being edited here, merged on save: {parts}")

    def take_in_notebook(self, merged: Notebook) -> None:
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
        self.app.title = notebook.title or self.path.name
        if stale_editors:
            self.call_later(self._close_editors, stale_editors)
        if structural:
            # Undo steps recorded before the file changed would bring back cells as they were
            # then, beside the file's (with the same ids): the history starts again here.
            view.undo_stack.clear()
            view.redo_stack.clear()
            ids = [cell.id for cell in cells]
            view.rebuild_at(ids.index(selected) if selected in ids else view.selected)
        else:
            for cell_id in changed:
                view.refresh_cell(cell_id)
            view.schedule_window()
        if runtimes_changed or structural or changed:
            self.show_runtimes()
        # A settings screen with nothing unsaved continues from the merged runtime: its next
        # save must not take back what the merge brought in.
        for screen in self.app.screen_stack:
            if isinstance(screen, RuntimeSettingsScreen) and not screen.dirty and notebook.runtimes.get(screen.spec.id, screen.spec) != screen.spec:
                screen.spec = copy.deepcopy(notebook.runtimes[screen.spec.id])
                screen.refresh_tables()

    async def _close_editors(self, widgets: list) -> None:
        for widget in widgets:
            if widget.is_attached:
                await widget.stop_editing()
        self.view.focus()
