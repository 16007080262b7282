"""The notebook that saved an environment another notebook imports, opened over the screen
that asked (the settings of the importing runtime), as Nextjournal's "little arrow" opens it:
a whole notebook screen, with its own runner, and Esc or q goes back."""

from __future__ import annotations

from textual.binding import Binding

from njtui.ui.find_bar import FindBar
from njtui.ui.notebook_screen import NotebookScreen


class SourceNotebookScreen(NotebookScreen):
    BINDINGS = [Binding("q", "close_source", "back", show=True)]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._warned_unsaved = False

    def on_mount(self) -> None:
        super().on_mount()
        self.notify(f"{self.path.name}: the notebook that saved the environment. Esc or q goes back.", timeout=4)

    def action_close_find(self) -> None:
        if self.query_one(FindBar).display or self.view.highlights:
            super().action_close_find()
        else:
            self.action_close_source()

    def action_close_source(self) -> None:
        if self.dirty and not self._warned_unsaved:
            # Said once: the second Esc leaves (what was typed stays in the recovery journal).
            self._warned_unsaved = True
            self.notify(f"{self.path.name} has unsaved changes: Ctrl+S saves them, Esc again goes back without saving", severity="warning", timeout=6)
            return
        self.dismiss()

    def on_unmount(self) -> None:
        super().on_unmount()
        # The app's worker, not this screen's (those end with it); its runtimes keep running
        # and stop when idle, as any notebook's do when it is closed.
        self.app.run_worker(self.runner.detach, thread=True, group="source-runner")
