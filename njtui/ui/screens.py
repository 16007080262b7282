"""Screens over the notebook: help, the full-output pager, pickers and the save prompt."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from njtui.model.output import terminal_safe
from njtui.store import toml_writer
from njtui.store.merge import MISSING, Conflict

KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "escape": "Esc",
    "enter": "Enter",
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "left_curly_bracket": "{",
    "right_curly_bracket": "}",
}


def key_label(keys: str) -> str:
    """ "shift+enter,ctrl+n" → "Shift+Enter / Ctrl+N", as people write keys."""
    labels = []
    for key in keys.split(","):
        *modifiers, name = key.split("+")
        name = KEY_NAMES.get(name, name.capitalize() if len(name) > 1 else name)
        if modifiers and len(name) == 1:
            name = name.upper()
        labels.append("+".join([*(modifier.capitalize() for modifier in modifiers), name]))
    return " / ".join(labels)


class HelpScreen(ModalScreen[None]):
    """Every key binding, grouped: generated from the bindings themselves."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, sections: Sequence[tuple[str, Iterable[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        text = Text()
        for title, rows in self.sections:
            text.append(f"{title}\n", style="bold underline")
            for keys, description in rows:
                text.append(f"  {keys:<28}", style="bold")
                text.append(f"{description}\n")
            text.append("\n")
        text.append("Esc closes this help. Ctrl+P lists every action by name.", style="dim")
        with VerticalScroll(id="help-box"):
            yield Static(text, id="help-text")

    def on_mount(self) -> None:
        box = self.query_one("#help-box")
        box.border_title = "Keys"
        box.focus()


class PickerScreen(ModalScreen[str | None]):
    """Choose one of a few options (a runtime, a language); Esc cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, title: str, options: Sequence[tuple[str, str | Text]], selected: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.options = options
        self.selected = selected

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield OptionList(*[Option(label, id=value) for value, label in self.options], id="picker")

    def on_mount(self) -> None:
        self.query_one("#picker-box").border_title = self.title_text
        picker = self.query_one(OptionList)
        ids = [value for value, _ in self.options]
        if self.selected in ids:
            picker.highlighted = ids.index(self.selected)
        picker.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)


class SavePromptScreen(ModalScreen[str]):
    """Quitting with unsaved changes: save, discard or stay."""

    BINDINGS = [
        Binding("s,y", "dismiss('save')", "save and quit", show=True),
        Binding("d,n", "dismiss('discard')", "quit without saving", show=True),
        Binding("escape,c", "dismiss('cancel')", "cancel", show=True),
    ]

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(
                Text.assemble(
                    ("Unsaved changes\n\n", "bold"),
                    f"{self.path} has changes that are not saved.\n\n",
                    ("s", "bold"),
                    " save and quit   ",
                    ("d", "bold"),
                    " quit without saving   ",
                    ("Esc", "bold"),
                    " cancel",
                ),
                id="prompt-text",
            )


class ConflictScreen(ModalScreen[str | None]):
    """Saving found parts changed differently here and in the file (by another program, an
    editor, a `git pull`): keep mine, take theirs, or first see both versions of each. The file
    is not touched until a choice is made; Esc leaves it so, with the changes still unsaved here."""

    BINDINGS = [
        Binding("m", "dismiss('ours')", "keep mine", show=True),
        Binding("t", "dismiss('theirs')", "take theirs", show=True),
        Binding("b", "toggle_both", "show both", show=True),
        Binding("escape", "dismiss(None)", "cancel", show=True),
    ]

    def __init__(self, path: str, conflicts: list[Conflict]) -> None:
        super().__init__()
        self.path = path
        self.conflicts = conflicts

    def compose(self) -> ComposeResult:
        count = len(self.conflicts)
        summary = Text.assemble(
            f"{self.path} changed on disk since njtui read it, and {count} ",
            "part was" if count == 1 else "parts were",
            " changed both there and here:\n",
        )
        for conflict in self.conflicts:
            summary.append(f"  • {terminal_safe(conflict.label)}\n", style="bold")
        summary.append("\nEverything else merges. Nothing is written until you choose.", style="dim")
        with Vertical(id="conflict-box"):
            yield Static(summary, id="conflict-summary")
            with VerticalScroll(id="conflict-both"):
                yield Static(self._both(), id="conflict-versions")
            yield Static(
                Text.assemble(("m", "bold"), " keep mine   ", ("t", "bold"), " take theirs   ", ("b", "bold"), " show both   ", ("Esc", "bold"), " cancel"),
                id="conflict-keys",
            )

    def _both(self) -> Text:
        text = Text()
        for index, conflict in enumerate(self.conflicts):
            if index:
                text.append("\n")
            text.append(f"{terminal_safe(conflict.label)}\n", style="bold underline")
            for title, value, style in (("mine (here, not saved)", conflict.ours, "green"), ("theirs (in the file now)", conflict.theirs, "yellow")):
                text.append(f"── {title} ──\n", style=f"bold {style}")
                text.append(terminal_safe(shown_value(value), keep="\t\n") + "\n")
        text.rstrip()
        return text

    def on_mount(self) -> None:
        box = self.query_one("#conflict-box")
        box.border_title = "Changed on disk"
        self.query_one("#conflict-both").display = False

    def action_toggle_both(self) -> None:
        both = self.query_one("#conflict-both")
        both.display = not both.display
        if both.display:
            both.focus()


def shown_value(value: object) -> str:
    """A version of a notebook part as the file would say it."""
    if value is MISSING:
        return "(removed)"
    if isinstance(value, str):
        return value.rstrip("\n") if value.strip() else repr(value)
    if isinstance(value, dict):
        return toml_writer.dumps(value).rstrip("\n")
    return toml_writer.format_value(value)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question before something that cannot be undone; Esc is no."""

    BINDINGS = [
        Binding("y,enter", "dismiss(True)", "yes", show=True),
        Binding("n,escape", "dismiss(False)", "no", show=True),
    ]

    def __init__(self, title: str, question: str, verb: str) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.verb = verb

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(
                Text.assemble((f"{self.title_text}\n\n", "bold"), terminal_safe(self.question), "\n\n", ("y", "bold"), f" {self.verb}   ", ("Esc", "bold"), " cancel"),
                id="prompt-text",
            )


class RecoveryScreen(ModalScreen[str]):
    """The last session ended with unsaved changes (they were journaled): restore them, throw
    them away, or decide later (they stay in the recovery file)."""

    BINDINGS = [
        Binding("r,enter", "dismiss('restore')", "restore", show=True),
        Binding("d", "dismiss('discard')", "discard", show=True),
        Binding("escape", "dismiss('later')", "later", show=True),
    ]

    def __init__(self, path: str, when: str, reason: str, recovery_file: str) -> None:
        super().__init__()
        self.path = path
        self.when = when
        self.reason = reason
        self.recovery_file = recovery_file

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(
                Text.assemble(
                    ("Unsaved changes found\n\n", "bold"),
                    f"{terminal_safe(self.path)} had changes that were not saved when njtui last stopped ({terminal_safe(self.reason)}, {self.when}).\n",
                    (f"They are kept in {terminal_safe(self.recovery_file)}.\n\n", "dim"),
                    ("r", "bold"),
                    " restore them   ",
                    ("d", "bold"),
                    " discard them   ",
                    ("Esc", "bold"),
                    " decide later",
                ),
                id="prompt-text",
            )
