"""The njtui terminal app: themes, the notebook screen, quitting, and what happens on a crash.

The app talks to runtimes only through `njtui.runner.Runner` (the facade); the notebook screen
does the rest. An unexpected error anywhere writes the unsaved work to the recovery file first
(it is journaled as it is made anyway), then the app exits with status 1 and `njtui open` says
where the work is.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from njtui.model import Notebook
from njtui.runner import Runner, RuntimeState
from njtui.ui.config import load_config, remember_theme
from njtui.ui.notebook_screen import NotebookScreen
from njtui.ui.screens import SavePromptScreen
from njtui.ui.themes import DEFAULT_THEME, discover_themes


class NotebookCommands(Provider):
    """Every action of the notebook screen in the command palette, named "category: action"."""

    def _commands(self):
        app = self.app
        assert isinstance(app, NotebookApp)  # this provider is only in NotebookApp.COMMANDS
        # The notebook screen under the palette: a source notebook opened from the settings
        # screen sits over the app's own one.
        screen = next((screen for screen in reversed(app.screen_stack) if isinstance(screen, NotebookScreen)), app.notebook_screen)
        return screen.palette_commands()

    def _run(self, command) -> None:
        self.app.call_later(self.app.run_action, command.action, command.namespace)

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, partial(self._run, command), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), partial(self._run, command), help=command.help)


class NotebookApp(App[str]):
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {NotebookCommands}
    TITLE = "njtui"

    BINDINGS = [Binding("ctrl+q", "quit_app", "quit", priority=True)]

    def __init__(self, path: Path, notebook: Notebook, runner: Runner | None = None, *, theme_name: str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.notebook = notebook
        self.runner = runner or Runner(self.path, notebook)
        self.store = self.runner.store
        self.notebook_screen = NotebookScreen(self.path, notebook, self.runner)
        self.recovery_file: Path | None = None  # where the unsaved work went, after a crash
        theme_set = discover_themes()
        self.theme_errors = theme_set.errors
        for theme in theme_set.themes.values():
            self.register_theme(theme)
        self.initial_theme = theme_name or load_config().theme or DEFAULT_THEME
        self._remember_themes = False

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
        self.push_screen(self.notebook_screen)

    def show_notebook(self, path: Path, notebook: Notebook, runner: Runner):
        """Shows another notebook in place of this one; this one's runtimes keep running."""
        previous = self.runner
        self.path, self.notebook, self.runner, self.store = Path(path), notebook, runner, runner.store
        self.notebook_screen = NotebookScreen(self.path, notebook, runner)
        self.title = notebook.title or self.path.name
        self.sub_title = str(self.path)
        previous.detach()
        return self.switch_screen(self.notebook_screen)

    # What tests and the palette reach through the app: the notebook screen's parts.
    @property
    def view(self):
        return self.notebook_screen.view

    @property
    def outputs(self):
        return self.notebook_screen.outputs

    @property
    def statuses(self):
        return self.notebook_screen.statuses

    @property
    def dirty(self) -> bool:
        return self.notebook_screen.dirty

    @property
    def runtimes_panel(self):
        return self.notebook_screen.runtimes_panel

    @property
    def runner_log_panel(self):
        return self.notebook_screen.runner_log_panel

    # -- a crash keeps the work
    def _handle_exception(self, error: Exception) -> None:
        try:
            self.recovery_file = self.notebook_screen.journal.flush(f"an unexpected error: {type(error).__name__}") if self.notebook_screen.dirty else None
        finally:
            super()._handle_exception(error)

    # -- themes
    def action_switch_theme(self, name: str) -> None:
        self.theme = name

    def watch_theme(self, name: str) -> None:
        if self._remember_themes:
            problem = remember_theme(name)
            if problem:
                self.notify(problem, title="Theme not remembered", severity="warning")
        if not self.notebook_screen.is_mounted:
            return
        view = self.view
        view.dark = self.current_theme.dark
        view.rebuild()

    # -- quitting
    def action_quit_app(self) -> None:
        if self.notebook_screen.dirty:
            self.push_screen(SavePromptScreen(str(self.path)), self._save_prompt_answered)
        else:
            self.leave()

    def _save_prompt_answered(self, answer: str | None) -> None:
        if answer == "save":
            self.notebook_screen.save(then=self.leave)  # after the conflict dialog, if saving needs one
        elif answer == "discard":
            self.notebook_screen.journal.discard()
            self.leave()

    def leave(self) -> None:
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
        self.call_from_thread(self.leave)

    def action_stop_all(self) -> None:
        self._stop_all()

    @work(thread=True, group="runner")
    def _stop_all(self) -> None:
        self.runner.stop_all()
