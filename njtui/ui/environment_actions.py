"""The notebook screen's environments: save a runtime's file system (then export it, when the
runtime says so), see what changed, list, remove and export versions, reset, and the
"Δ changed" mark of the runtimes panel.

Every runner call here may take seconds (Docker commits, diffs, pushes): each runs in a thread
worker of the screen and hands its result to the UI thread with call_from_thread. The notebook
file is written through the screen's own save (merged with changes on disk, the conflict
dialog when both changed), and a save of the environment whose file write fails is undone.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from textual import work

from njtui.model import Notebook, RuntimeSpec, SavedVersion
from njtui.runner import EnvironmentChanges, Runner, RuntimeState, RuntimeStatus
from njtui.runner import RunnerError as BackendError
from njtui.ui.environment_screens import EnvironmentDiffScreen, MessageScreen, VersionsScreen, lost_words, progress_words
from njtui.ui.screens import ConfirmScreen

if TYPE_CHECKING:
    from njtui.ui.notebook_view import NotebookView
    from njtui.ui.panels import RuntimesPanel

PROGRESS_EVERY = 0.2  # seconds between progress redraws of one runtime


class EnvironmentActions:
    """Mixed into NotebookScreen."""

    notebook: Notebook
    runner: Runner
    statuses: dict[str, RuntimeStatus]
    env_marks: dict[str, str]  # runtime → what changed, while its file system differs from what it booted from
    env_work: dict[str, str]  # runtime → what an environment action is doing now ("Saving…")
    _env_checking: set[str]
    _env_recheck: set[str]

    if TYPE_CHECKING:
        app: Any

        @property
        def view(self) -> NotebookView: ...
        @property
        def runtimes_panel(self) -> RuntimesPanel: ...

        def notify(self, message: str, **kwargs: Any) -> None: ...
        def show_runtimes(self) -> None: ...
        def save(self, prefer: str | None = None, then: Any = None, otherwise: Any = None) -> bool: ...
        def selected_runtime(self) -> RuntimeSpec | None: ...

    # -- which runtime
    def action_env_action(self, what: str) -> None:
        """A key of the runtimes panel: the highlighted runtime."""
        runtime_id = self.runtimes_panel.highlighted_runtime
        if runtime_id is not None:
            self.env_do(runtime_id, what)

    def action_env_of_cell(self, what: str) -> None:
        """A key on a cell: its runtime."""
        spec = self.selected_runtime()
        if spec is None:
            self.notify("select a code cell: its runtime's environment is saved")
            return
        self.env_do(spec.id, what)

    def action_env_do(self, runtime_id: str, what: str) -> None:
        self.env_do(runtime_id, what)

    def env_do(self, runtime_id: str, what: str) -> None:
        actions = {"save": self.env_save, "diff": self.env_diff, "versions": self.env_versions, "reset": self.env_reset}
        actions[what](runtime_id)

    def _env_spec(self, runtime_id: str, *, running: bool) -> RuntimeSpec | None:
        """The runtime, if it has an environment to act on; else says why not."""
        spec = self.notebook.runtimes.get(runtime_id)
        if spec is None:
            self.notify(f"no runtime {runtime_id!r}")
            return None
        if spec.is_host:
            self.notify(f"{spec.name} ({runtime_id}) runs on this machine: only runtimes in images have an environment to save; give it an image environment in its settings (e)", severity="warning", timeout=6)
            return None
        if runtime_id in self.env_work:
            self.notify(f"{runtime_id} is busy: {self.env_work[runtime_id]}", timeout=3)
            return None
        status = self.statuses.get(runtime_id)
        if running and (status is None or status.state != RuntimeState.RUNNING):
            self.notify(f"{spec.name} ({runtime_id}) is not running, so its file system has nothing new: run one of its cells (or s in the runtimes panel), make your changes, then save", severity="warning", timeout=6)
            return None
        return spec

    def _env_set_work(self, runtime_id: str, words: str | None) -> None:
        if words is None:
            self.env_work.pop(runtime_id, None)
        else:
            self.env_work[runtime_id] = words
        self.show_runtimes()

    def _env_progress(self, runtime_id: str):
        """A runner progress callback (called on a worker thread) that redraws the panel at
        most every PROGRESS_EVERY seconds, and always at the end."""
        last = [0.0]

        def report(phase: str, detail: dict[str, Any]) -> None:
            now = time.monotonic()
            finished = bool(detail.get("total")) and detail.get("done") == detail.get("total")
            if now - last[0] < PROGRESS_EVERY and not finished:
                return
            last[0] = now
            self.app.call_from_thread(self._env_set_work, runtime_id, progress_words(phase, detail))

        return report

    def _env_failed(self, runtime_id: str, what: str, error: Exception) -> None:
        self._env_set_work(runtime_id, None)
        self.notify(str(error), title=f"{what} {runtime_id} failed", severity="error", timeout=12)
        self.env_check(runtime_id)

    # -- save
    def env_save(self, runtime_id: str) -> None:
        spec = self._env_spec(runtime_id, running=True)
        if spec is None:
            return
        number = max((saved.version for saved in spec.versions), default=0) + 1
        note = f"{spec.name} ({runtime_id})'s file system becomes version {number} of its environment, and it boots from that from now on."
        if spec.export:
            note += f" Then it is exported to {self.notebook.registry or 'the notebook registry'}."
        self.app.push_screen(MessageScreen("Save environment", note), partial(self._env_message, runtime_id))

    def _env_message(self, runtime_id: str, message: str | None) -> None:
        if message is None:
            return
        self._env_set_work(runtime_id, "Saving…")
        self._env_save_worker(runtime_id, message)

    @work(thread=True, group="environments")
    def _env_save_worker(self, runtime_id: str, message: str) -> None:
        previous = self.notebook.runtimes[runtime_id].saved_version
        try:
            saved = self.runner.environments.save(runtime_id, message, progress=self._env_progress(runtime_id))
        except BackendError as exc:
            self.app.call_from_thread(self._env_failed, runtime_id, "save", exc)
            return
        self.app.call_from_thread(self._env_saved, runtime_id, saved, previous)

    def _env_saved(self, runtime_id: str, saved: SavedVersion, previous: int | None) -> None:
        self._env_set_work(runtime_id, "Saving… writing the notebook")
        self.save(then=partial(self._env_save_written, runtime_id, saved), otherwise=partial(self._env_save_not_written, runtime_id, saved, previous))

    def _env_save_written(self, runtime_id: str, saved: SavedVersion) -> None:
        self._env_set_work(runtime_id, None)
        self.env_marks.pop(runtime_id, None)
        flattened = " (flattened to one layer: the image had neared the engine's layer limit)" if saved.flattened else ""
        self.notify(f"saved {runtime_id} v{saved.version}{flattened}: it boots from this version from now on", timeout=5)
        spec = self.notebook.runtimes.get(runtime_id)
        if spec is not None and spec.export:
            self.env_export(runtime_id, saved.version)
        self.env_check(runtime_id)
        self._env_refresh_versions(runtime_id)

    def _env_save_not_written(self, runtime_id: str, saved: SavedVersion, previous: int | None) -> None:
        self._env_set_work(runtime_id, "Saving… undoing")
        self._env_forget_worker(runtime_id, saved, previous)

    @work(thread=True, group="environments")
    def _env_forget_worker(self, runtime_id: str, saved: SavedVersion, previous: int | None) -> None:
        self.runner.environments.forget_save(runtime_id, saved, previous)
        self.app.call_from_thread(self._env_forgotten, runtime_id, saved)

    def _env_forgotten(self, runtime_id: str, saved: SavedVersion) -> None:
        self._env_set_work(runtime_id, None)
        self.show_runtimes()
        self.notify(f"version {saved.version} of {runtime_id} was not kept: the notebook file could not be written, so its image was removed again", title="Not saved", severity="error", timeout=10)
        self.env_check(runtime_id)

    # -- export
    def env_export(self, runtime_id: str, version: int | None = None) -> None:
        if runtime_id in self.env_work and not self.env_work[runtime_id].startswith("Saving"):
            self.notify(f"{runtime_id} is busy: {self.env_work[runtime_id]}", timeout=3)
            return
        self._env_set_work(runtime_id, "Uploading…")
        self._env_export_worker(runtime_id, version)

    @work(thread=True, group="environments")
    def _env_export_worker(self, runtime_id: str, version: int | None) -> None:
        try:
            reference = self.runner.environments.export(runtime_id, None, version, progress=self._env_progress(runtime_id))
        except BackendError as exc:
            self.app.call_from_thread(self._env_failed, runtime_id, "export", exc)
            return
        self.app.call_from_thread(self._env_exported, runtime_id, reference)

    def _env_exported(self, runtime_id: str, reference: str) -> None:
        self._env_set_work(runtime_id, None)
        if self.save(otherwise=lambda: self.notify(f"the push succeeded ({reference}) but the notebook file was not written: save it to record the digest", severity="warning", timeout=10)):
            self.notify(f"exported {runtime_id}: {reference}", timeout=6)
        self._env_refresh_versions(runtime_id)

    # -- what changed
    def env_diff(self, runtime_id: str) -> None:
        spec = self._env_spec(runtime_id, running=True)
        if spec is None:
            return
        self.notify(f"reading the changes of {runtime_id}…", timeout=2)
        self._env_diff_worker(runtime_id)

    @work(thread=True, group="environments")
    def _env_diff_worker(self, runtime_id: str) -> None:
        try:
            changes = self.runner.environments.changes(runtime_id)
        except BackendError as exc:
            self.app.call_from_thread(self._env_failed, runtime_id, "diff", exc)
            return
        self.app.call_from_thread(self._env_show_diff, runtime_id, changes)

    def _env_show_diff(self, runtime_id: str, changes: EnvironmentChanges) -> None:
        spec = self.notebook.runtimes.get(runtime_id)
        name = f"{spec.name} ({runtime_id})" if spec is not None else runtime_id
        self._env_mark(runtime_id, changes)
        self.app.push_screen(EnvironmentDiffScreen(changes, name, on_save=self.env_save))

    # -- the Δ mark
    def env_status_changed(self, runtime_id: str, before: RuntimeStatus | None, after: RuntimeStatus) -> None:
        """A runtime's status moved: a cell that finished may have changed its file system, a
        runtime that stopped has no changes left (they were transient)."""
        if after.state != RuntimeState.RUNNING:
            self.env_marks.pop(runtime_id, None)
            return
        if before is None or before.state != RuntimeState.RUNNING or (before.busy and not after.busy):
            self.env_check(runtime_id)

    def env_check(self, runtime_id: str) -> None:
        spec = self.notebook.runtimes.get(runtime_id)
        status = self.statuses.get(runtime_id)
        if spec is None or spec.is_host or status is None or status.state != RuntimeState.RUNNING:
            if self.env_marks.pop(runtime_id, None) is not None:
                self.show_runtimes()
            return
        if runtime_id in self._env_checking:
            self._env_recheck.add(runtime_id)  # once the running check ends: it may predate the change
            return
        self._env_checking.add(runtime_id)
        self._env_check_worker(runtime_id)

    @work(thread=True, group="environment-checks")
    def _env_check_worker(self, runtime_id: str) -> None:
        try:
            changes: EnvironmentChanges | None = self.runner.environments.changes(runtime_id, packages=False)
        except BackendError:
            changes = None  # stopped meanwhile, or not reachable: nothing to mark
        self.app.call_from_thread(self._env_checked, runtime_id, changes)

    def _env_checked(self, runtime_id: str, changes: EnvironmentChanges | None) -> None:
        self._env_checking.discard(runtime_id)
        self._env_mark(runtime_id, changes)
        if runtime_id in self._env_recheck:
            self._env_recheck.discard(runtime_id)
            self.env_check(runtime_id)

    def _env_mark(self, runtime_id: str, changes: EnvironmentChanges | None) -> None:
        if changes:
            self.env_marks[runtime_id] = f"{len(changes.paths)} path{'s' if len(changes.paths) != 1 else ''} since {changes.since}"
        else:
            self.env_marks.pop(runtime_id, None)
        self.show_runtimes()

    # -- versions
    def env_versions(self, runtime_id: str) -> None:
        if self._env_spec(runtime_id, running=False) is None:
            return
        self._env_versions_worker(runtime_id, push=True)

    @work(thread=True, group="environments")
    def _env_versions_worker(self, runtime_id: str, push: bool) -> None:
        try:
            rows = self.runner.environments.versions(runtime_id)
        except BackendError as exc:
            self.app.call_from_thread(self._env_failed, runtime_id, "versions of", exc)
            return
        self.app.call_from_thread(self._env_show_versions, runtime_id, rows, push)

    def _env_show_versions(self, runtime_id: str, rows: list, push: bool) -> None:
        screen = self.app.screen
        if isinstance(screen, VersionsScreen) and screen.runtime_id == runtime_id:
            screen.show_rows(rows)
        elif push:
            spec = self.notebook.runtimes[runtime_id]
            self.app.push_screen(VersionsScreen(runtime_id, spec.declared_environment, rows, self))

    def _env_refresh_versions(self, runtime_id: str) -> None:
        if isinstance(self.app.screen, VersionsScreen):
            self._env_versions_worker(runtime_id, push=False)

    def env_remove(self, runtime_id: str, version: int) -> None:
        question = f"Remove version {version} of {runtime_id} from this engine? Its image is deleted; a version that was never exported is gone for good."
        self.app.push_screen(ConfirmScreen("Remove saved version", question, "remove"), partial(self._env_remove_confirmed, runtime_id, version))

    def _env_remove_confirmed(self, runtime_id: str, version: int, confirmed: bool | None) -> None:
        if confirmed:
            self._env_remove_worker(runtime_id, version)

    @work(thread=True, group="environments")
    def _env_remove_worker(self, runtime_id: str, version: int) -> None:
        try:
            removed = self.runner.environments.remove(runtime_id, [version])
        except BackendError as exc:
            self.app.call_from_thread(self._env_versions_problem, runtime_id, str(exc))
            return
        self.app.call_from_thread(self._env_removed, runtime_id, removed)

    def _env_versions_problem(self, runtime_id: str, message: str) -> None:
        screen = self.app.screen
        if isinstance(screen, VersionsScreen):
            screen.status(message, error=True)
        else:
            self.notify(message, severity="error", timeout=10)

    def _env_removed(self, runtime_id: str, removed: list[str]) -> None:
        self.save()
        self.notify("removed " + ", ".join(removed), timeout=4)
        self._env_refresh_versions(runtime_id)

    # -- reset
    def env_reset(self, runtime_id: str, version: int | None = None) -> None:
        if self._env_spec(runtime_id, running=False) is None:
            return
        self._env_reset_ask_worker(runtime_id, version)

    @work(thread=True, group="environments")
    def _env_reset_ask_worker(self, runtime_id: str, version: int | None) -> None:
        changes = None
        status = self.statuses.get(runtime_id)
        if status is not None and status.state == RuntimeState.RUNNING:
            try:
                changes = self.runner.environments.changes(runtime_id)
            except BackendError:
                changes = None
        self.app.call_from_thread(self._env_reset_ask, runtime_id, version, changes)

    def _env_reset_ask(self, runtime_id: str, version: int | None, changes: EnvironmentChanges | None) -> None:
        spec = self.notebook.runtimes[runtime_id]
        declared = spec.declared_environment
        target = version if version is not None else spec.saved_version
        to_words = f"v{target} (saved)" if target else f"the environment it started from ({declared})"
        status = self.statuses.get(runtime_id)
        busy = "the cell running in it is ended; " if status is not None and status.busy else ""
        question = f"Reset {spec.name} ({runtime_id}) to {to_words}? A fresh container starts from it. Lost: {busy}{lost_words(changes)}."
        self.app.push_screen(ConfirmScreen("Reset environment", question, "reset"), partial(self._env_reset_confirmed, runtime_id, version))

    def _env_reset_confirmed(self, runtime_id: str, version: int | None, confirmed: bool | None) -> None:
        if not confirmed:
            return
        self._env_set_work(runtime_id, "Resetting…")
        self._env_reset_worker(runtime_id, version)

    @work(thread=True, group="environments")
    def _env_reset_worker(self, runtime_id: str, version: int | None) -> None:
        try:
            self.runner.environments.reset(runtime_id, version)
        except BackendError as exc:
            self.app.call_from_thread(self._env_failed, runtime_id, "reset", exc)
            return
        self.app.call_from_thread(self._env_reset_done, runtime_id, version)

    def _env_reset_done(self, runtime_id: str, version: int | None) -> None:
        self._env_set_work(runtime_id, None)
        self.env_marks.pop(runtime_id, None)
        if version is not None:
            self.save()  # what it boots from changed
        self.notify(f"reset {runtime_id}: running fresh", timeout=4)
        self.env_check(runtime_id)
        self._env_refresh_versions(runtime_id)
