"""The keys people read about: help and the command palette, both made from the bindings, so
what they say is what the keys do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.binding import Binding
from textual.widgets import TextArea

from njtui.ui.cell import RUN_BINDINGS, CellEditor
from njtui.ui.find_bar import FindBar
from njtui.ui.notebook_view import CHORDS, NotebookView
from njtui.ui.panels import RunnerLogPanel, RuntimesPanel
from njtui.ui.screens import key_label

# The editor keys TextArea brings that people look for.
EDITOR_KEYS = ("select_all", "select_line", "undo", "redo", "cut", "copy", "paste", "delete_line", "cursor_word_left", "cursor_word_right")


def _rows(bindings) -> list[tuple[str, str]]:
    return [(key_label(binding.key), binding.description) for binding in bindings if binding.description]


def _editor_bindings() -> list[Binding]:
    own = [b for b in CellEditor.BINDINGS if isinstance(b, Binding) and b not in RUN_BINDINGS]
    inherited = [b for b in TextArea.BINDINGS if isinstance(b, Binding) and b.action in EDITOR_KEYS]
    extra = [Binding("tab", "", "complete (after a name) or indent"), Binding("enter", "", "new line, indented as the block needs")]
    return own + extra + inherited


def help_sections(app: Any, screen: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        ("Command mode (Esc)", _rows([b for b in NotebookView.BINDINGS if b not in RUN_BINDINGS])),
        ("Run (command and edit mode)", _rows(RUN_BINDINGS)),
        ("Edit mode (Enter)", _rows(_editor_bindings())),
        ("Everywhere", _rows(list(app.BINDINGS) + list(type(screen).BINDINGS)) + [("Ctrl+P", "command palette"), ("Tab", "next pane")]),
        ("Runtimes panel (Tab to reach it)", _rows(RuntimesPanel.BINDINGS)),
        ("Runner log", _rows(RunnerLogPanel.BINDINGS)),
        ("Find bar (/)", _rows(FindBar.BINDINGS) + [("Enter", "find"), ("n / N", "next / previous match, in command mode")]),
    ]


@dataclass
class PaletteCommand:
    name: str
    action: str
    help: str = ""
    namespace: Any = None  # where the action runs: the view, the screen or the app


def palette_commands(screen: Any) -> list[PaletteCommand]:
    """`screen`: the notebook screen, whose view, notebook and bindings these commands act on."""
    view = screen.view
    commands = []
    for binding in NotebookView.BINDINGS:
        if not isinstance(binding, Binding) or not binding.description:
            continue
        action = binding.action
        if action.startswith("chord("):
            action = CHORDS[action[len("chord('") : -2]]
        description = binding.description.replace(" (press twice)", "")
        category = "notebook" if binding.action.startswith(("run_all", "run_above", "run_below", "screen.find")) else "cell"
        target: Any = view
        if action.startswith("screen."):
            action, target = action.removeprefix("screen."), screen
        commands.append(PaletteCommand(f"{category}: {description}", action, key_label(binding.key), target))
    for binding in _screen_bindings(screen):
        if binding.description:
            commands.append(PaletteCommand(f"view: {binding.description}", binding.action, key_label(binding.key), screen))
    commands += [
        PaletteCommand("notebook: save", "save", "Ctrl+S", screen),
        PaletteCommand("runtimes: stop all", "stop_all", "", screen.app),
        PaletteCommand("view: next pane", "cycle_focus", "Tab", screen),
        PaletteCommand("log: cycle runtime filter", "cycle_log_filter", "f in the log", screen),
        PaletteCommand("app: quit (runtimes keep running)", "quit_app", "Ctrl+Q", screen.app),
        PaletteCommand("app: stop all runtimes and quit", "stop_all_and_quit", "", screen.app),
    ]
    for runtime_id, spec in screen.notebook.runtimes.items():
        for what in ("start", "stop", "restart", "interrupt"):
            commands.append(PaletteCommand(f"runtime: {what} {spec.name} ({runtime_id})", f"runtime_do({runtime_id!r}, {what!r})", "", screen))
        commands.append(PaletteCommand(f"runtime: settings of {spec.name} ({runtime_id})", f"runtime_settings({runtime_id!r})", "", screen))
        if not spec.is_host:
            for binding in RuntimesPanel.BINDINGS:
                if isinstance(binding, Binding) and binding.action.startswith("screen.env_action("):
                    what = binding.action[len("screen.env_action('") : -2]
                    commands.append(PaletteCommand(f"environment: {binding.description} of {spec.name} ({runtime_id})", f"env_do({runtime_id!r}, {what!r})", f"{key_label(binding.key)} in the runtimes panel", screen))
    for name in sorted(screen.app.available_themes):
        commands.append(PaletteCommand(f"theme: {name}", f"switch_theme({name!r})", "", screen.app))
    return commands


def _screen_bindings(screen: Any) -> list[Binding]:
    return [binding for binding in type(screen).BINDINGS if isinstance(binding, Binding) and binding.action not in ("save", "close_find")]
