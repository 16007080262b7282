"""Screens about a runtime's environment: the message of a save, what changed since it booted,
and its saved versions.

They show data handed to them (EnvironmentChanges, VersionRow lists) and never ask the runner
themselves: the notebook screen reads the engine in its workers and asks for the actions the
keys here name, so these screens draw the same picture from the same data on any machine.
Every string that came from a container or a notebook (paths, package names, messages) is
drawn as plain Text, never as markup.
"""

from __future__ import annotations

from typing import Any, Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from njtui.model.output import terminal_safe
from njtui.model.size import format_size
from njtui.runner import EnvironmentChanges, VersionRow, counts_words

MESSAGE_WIDTH = 26
TRANSIENT_NOTE = "Transient: these changes are lost when the runtime restarts or resets, unless saved (S)."
CHANGE_STYLES = {"A": "green", "C": "yellow", "D": "red"}


def plain(text: str | None) -> Text:
    """Untrusted text as characters only: it cannot drive the terminal nor be read as markup."""
    return Text(terminal_safe(text or ""))


def progress_words(phase: str, detail: dict[str, Any]) -> str:
    """A runner progress report as the panel says it: "Saving… committing the file system",
    "Uploading 3.1/12.0 MB"."""
    done, total = detail.get("done"), detail.get("total")
    if total:
        shown_done, shown_total = format_size(done or 0), format_size(total)
        done_number, _, done_unit = shown_done.partition(" ")
        if done_unit == shown_total.partition(" ")[2]:
            shown_done = done_number  # "3.1/12.0 MB", as a person writes it
        return f"{phase} {shown_done}/{shown_total}"
    what = detail.get("what")
    return f"{phase}… {what}" if what else f"{phase}…"


def saved_at_words(saved_at: str, zone: bool = True) -> str:
    """ "2025-11-24T16:00:05Z" → "2025-11-24 16:00 UTC": the same on every machine."""
    if len(saved_at) >= 16 and saved_at[10] == "T":
        return f"{saved_at[:10]} {saved_at[11:16]}{' UTC' if zone else ''}"
    return saved_at


def lost_words(changes: EnvironmentChanges | None) -> str:
    """What a reset throws away, for its confirmation."""
    return changes.lost_words() if changes is not None else "nothing on its file system (it is not running)"


class MessageScreen(ModalScreen[str | None]):
    """The message of a save, asked before it starts; Enter saves, Esc cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, title: str, note: str) -> None:
        super().__init__()
        self.title_text = title
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text.assemble((f"{self.title_text}\n\n", "bold"), terminal_safe(self.note)), id="prompt-text")
            yield Input(placeholder="what changed, e.g. installed ripgrep", id="save-message")
            yield Static(Text.assemble(("Enter", "bold"), " save   ", ("Esc", "bold"), " cancel"), classes="prompt-keys")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())


class EnvironmentDiffScreen(Screen[None]):
    """What changed in a running runtime's file system since what it booted from: packages
    first, then counts per top directory, then every path (a DataTable draws only the rows in
    view, so 10,000 paths cost what 40 do)."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "close"),
        Binding("S", "save", "save environment"),
    ]

    def __init__(self, changes: EnvironmentChanges, name: str, on_save: Any = None) -> None:
        super().__init__()
        self.changes = changes
        self.runtime_name = name
        self.on_save = on_save

    def compose(self) -> ComposeResult:
        changes = self.changes
        header = Text()
        header.append(f"Changes of {terminal_safe(self.runtime_name)} since {terminal_safe(changes.since)}", style="bold")
        header.append(f"   {len(changes.paths)} paths: {counts_words(changes.counts())} · {len(changes.packages)} packages\n")
        header.append(TRANSIENT_NOTE, style="yellow")
        yield Static(header, id="diff-header")
        yield Static(Text("Packages", style="bold"), classes="diff-title")
        if changes.packages:
            yield DataTable(id="diff-packages", cursor_type="row", zebra_stripes=True)
        else:
            yield Static(Text("no package changes (dpkg, Python)", style="dim"), classes="diff-none")
        yield Static(Text("Paths by top directory", style="bold"), classes="diff-title")
        yield DataTable(id="diff-groups", cursor_type="row")
        yield Static(Text("Every path", style="bold"), classes="diff-title")
        yield DataTable(id="diff-paths", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        changes = self.changes
        if changes.packages:
            packages = self.query_one("#diff-packages", DataTable)
            packages.add_columns("manager", "name", "before", "", "after")
            packages.add_rows(
                (plain(change.manager), plain(change.name), plain(change.before) if change.before else Text("(new)", style="green"), "→", plain(change.after) if change.after else Text("(removed)", style="red")) for change in changes.packages
            )
        groups = self.query_one("#diff-groups", DataTable)
        groups.add_columns("directory", "added", "changed", "deleted", "all")
        groups.add_rows((plain(top), str(count["A"]), str(count["C"]), str(count["D"]), str(sum(count.values()))) for top, count in changes.groups())
        paths = self.query_one("#diff-paths", DataTable)
        paths.add_columns("", "path")
        paths.add_rows((Text(change.change, style=CHANGE_STYLES.get(change.change, "")), plain(change.path)) for change in changes.paths)
        if not changes.paths:
            paths.add_row("", Text("no changes: the file system is what it booted from", style="dim"))
        (self.query("#diff-packages").first(DataTable) if changes.packages else paths).focus()

    def action_save(self) -> None:
        if self.on_save is not None:
            self.dismiss()
            self.on_save(self.changes.runtime)


class VersionActions(Protocol):
    def env_reset(self, runtime_id: str, version: int | None = None) -> None: ...
    def env_remove(self, runtime_id: str, version: int) -> None: ...
    def env_export(self, runtime_id: str, version: int | None = None) -> None: ...


class VersionsScreen(Screen[None]):
    """A runtime's saved versions: when, what for, how big, where the image is, who uses it,
    and which one it boots from. Row 0 is the environment it started from (reset to it)."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "close"),
        Binding("r", "reset", "reset to this version"),
        Binding("delete,d", "remove", "remove version"),
        Binding("x", "export", "export"),
    ]

    def __init__(self, runtime_id: str, base: str, rows: list[VersionRow], actions: VersionActions | None = None) -> None:
        super().__init__()
        self.runtime_id = runtime_id
        self.base = base
        self.rows = rows
        self.actions = actions

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Saved versions of ", "bold"), (terminal_safe(self.runtime_id), "bold"), ("   ▶ the version it boots from · ⇡ exported to a registry", "dim")), id="versions-header")
        yield DataTable(id="versions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="versions-detail")
        yield Static("", id="versions-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#versions", DataTable)
        table.add_column("", width=1)
        table.add_column("version")
        table.add_column("saved (UTC)")
        table.add_column("message", width=MESSAGE_WIDTH)  # a long message is cut: the rest of the row stays in view
        table.add_columns("size", "where", "used by")
        self.show_rows(self.rows)
        booting = next((index + 1 for index, row in enumerate(self.rows) if row.boots), 0)  # row 0 is v0
        table.move_cursor(row=booting)
        table.focus()

    def show_rows(self, rows: list[VersionRow]) -> None:
        self.rows = rows
        table = self.query_one("#versions", DataTable)
        cursor = table.cursor_row
        table.clear()
        boots_base = not any(row.boots for row in rows)
        table.add_row("▶" if boots_base else "", "v0", Text("(started from)", style="dim"), plain(self.base), "", "", "", key="0")
        for row in rows:
            where_style = {"this engine": "green", "registry": "cyan"}.get(row.where, "yellow")
            where = Text(row.where, style=where_style)
            if row.digest and row.where != "registry":
                where.append(" ⇡", style="cyan")
            table.add_row(
                Text("▶", style="bold green") if row.boots else "",
                f"v{row.version}",
                saved_at_words(row.saved_at, zone=False),
                Text(terminal_safe(row.message), no_wrap=True, overflow="ellipsis") if row.message else Text("(no message)", style="dim"),
                format_size(row.size) if row.size else "-",
                where,
                plain(", ".join(row.used_by)) if row.used_by else Text("nothing", style="dim"),
                key=str(row.version),
            )
        table.move_cursor(row=min(cursor, table.row_count - 1))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted version whole: what a row cuts short (its message, image, digest,
        every user)."""
        key = event.row_key.value
        row = next((row for row in self.rows if key is not None and str(row.version) == key), None)
        detail = Text(no_wrap=False)
        if row is None:
            detail.append("v0: ", style="bold")
            detail.append(terminal_safe(self.base))
            detail.append(" · r resets to it (the environment the runtime started from)", style="dim")
        else:
            detail.append(f"v{row.version}: ", style="bold")
            detail.append(terminal_safe(row.message or "(no message)"))
            detail.append(f"\n  image {row.image}", style="dim")
            if row.digest:
                detail.append(f"\n  exported: {terminal_safe(row.digest)}", style="cyan")
            detail.append("\n  used by: ", style="dim")
            detail.append(terminal_safe(", ".join(row.used_by) or "nothing (d removes it)"))
        self.query_one("#versions-detail", Static).update(detail)

    def status(self, message: str, error: bool = False) -> None:
        self.query_one("#versions-status", Static).update(Text(terminal_safe(message), style="bold red" if error else "yellow"))

    def selected_version(self) -> int | None:
        table = self.query_one("#versions", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return int(key) if key is not None and key.isdigit() else None

    def _selected_saved(self) -> int | None:
        version = self.selected_version()
        if not version:
            self.status("v0 is the environment the runtime started from: there is no saved image to remove or export")
            return None
        return version

    def action_reset(self) -> None:
        version = self.selected_version()
        if version is not None and self.actions is not None:
            self.actions.env_reset(self.runtime_id, version)

    def action_remove(self) -> None:
        version = self._selected_saved()
        if version is not None and self.actions is not None:
            self.actions.env_remove(self.runtime_id, version)

    def action_export(self) -> None:
        version = self._selected_saved()
        if version is not None and self.actions is not None:
            self.actions.env_export(self.runtime_id, version)
