"""The side panels: the notebook's runtimes with their state, and the live runner log."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import OptionList, RichLog
from textual.widgets.option_list import Option

from njtui.model import Notebook
from njtui.model.engine import SWARM_PREFIX
from njtui.model.output import terminal_safe
from njtui.runner import LogEntry, RuntimeState, RuntimeStatus

STATE_STYLES = {
    RuntimeState.STOPPED: "grey50",
    RuntimeState.BOOTING: "yellow",
    RuntimeState.RUNNING: "green",
    RuntimeState.ERROR: "red",
}
# "output": what a background process or thread wrote after its cell ended (exec null).
LEVEL_STYLES = {"info": "", "warning": "yellow", "error": "bold red", "agent": "cyan", "output": "magenta"}
PROGRESS_WIDTH = 12


def _size(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}GB"


def progress_bar(done: float, total: float, width: int = PROGRESS_WIDTH) -> str:
    filled = int(width * min(1.0, done / total)) if total else 0
    return "█" * filled + "░" * (width - filled)


def stated_reason(status: RuntimeStatus) -> str | None:
    """The reason under a stopped or failed runtime, less the state word the row shows already."""
    if status.state not in (RuntimeState.ERROR, RuntimeState.STOPPED) or not status.reason:
        return None
    reason = status.reason.strip()
    word = status.state.value
    if reason.lower() == word:
        return None
    return reason[len(word) + 1 :].strip() if reason.lower().startswith(word + ":") else reason


def where_it_runs(engine: str | None, node: str | None = None) -> str | None:
    """Where a runtime runs, when not on the default engine (which shows nothing, as before
    engines could be named): "on gpu-box", "on Swarm njtui-node1", "on njtui-node3 of Swarm njtui-node1"."""
    if engine is None:
        return None
    if engine.startswith(SWARM_PREFIX):
        swarm = f"Swarm {engine[len(SWARM_PREFIX) :]}"
        return f"on {node} of {swarm}" if node else f"on {swarm}"
    return f"on {engine}"


def runtime_row(
    runtime_id: str,
    name: str,
    environment: str,
    language: str,
    cells: int,
    status: RuntimeStatus,
    pending: list[str] | None = None,
    changed: str | None = None,
    working: str | None = None,
    where: str | None = None,
) -> Text:
    """Two lines: state dot, name and state; then environment · language · cells served. Then,
    when they apply: where it runs (on an engine other than the default), what a boot phase is
    waiting for, the download, the reason it stopped, settings waiting for a restart, what an
    environment action is doing, and "Δ changed" with what changed since it booted."""
    style = STATE_STYLES[status.state]
    row = Text(no_wrap=True, overflow="ellipsis")
    row.append("● ", style=style)
    row.append(name, style="bold")
    row.append(f" ({runtime_id}) ", style="dim")
    if status.state == RuntimeState.RUNNING:
        if status.busy:
            row.append("busy", style=style)
        elif status.idle_since:
            # No running count of idle time: an idle panel has nothing to redraw.
            row.append("idle", style=style)
        else:
            row.append("running", style=style)
    elif status.state == RuntimeState.BOOTING:
        phase, _, waiting_on = (status.phase or "booting").partition(": ")
        row.append(terminal_safe(phase), style=style)
    else:
        row.append(status.state.value, style=style)
    running = status.state == RuntimeState.RUNNING
    if changed and running:
        row.append("  Δ changed", style="bold yellow")
    row.append(f"\n  {environment} · {language} · {cells} cell{'s' if cells != 1 else ''}", style="dim")
    if where:
        # A line of its own: an engine's URL is long, and the panel narrow.
        row.append(f"\n  {terminal_safe(where)}", style="dim")
    if status.state == RuntimeState.BOOTING and waiting_on:
        # What the phase waits for ("no suitable node (insufficient resources on 3 nodes)", in
        # the Swarm's words) gets a line of its own, wrapped, rather than cut off after the name.
        row.append(f"\n  {terminal_safe(waiting_on)}", style=style)
    if status.state == RuntimeState.BOOTING and status.progress.get("total"):
        done, total = status.progress.get("done") or 0, status.progress["total"]
        row.append(f"\n  {progress_bar(done, total)} {_size(done)}/{_size(total)}", style=style)
    reason = stated_reason(status)
    if reason:
        # A reason may quote what an agent or engine printed: shown, never interpreted.
        row.append(f"\n  {terminal_safe(reason)}", style=style if status.state == RuntimeState.ERROR else "dim")
    if pending and status.state == RuntimeState.RUNNING:
        row.append(f"\n  ⟳ restart to apply: {', '.join(pending)}", style="bold yellow")
    if working:
        row.append(f"\n  {terminal_safe(working)}", style="bold cyan")
    if changed and running:
        # Nextjournal's default, said where the mark is: a runtime's changes are not kept.
        row.append(f"\n  Δ {terminal_safe(changed)}: lost on restart unless saved (S)", style="yellow")
    return row


class RuntimesPanel(Vertical):
    """Each runtime of the notebook: dot, name, state, environment, language, cells, whether it is busy or idle."""

    BINDINGS = [
        Binding("s", "screen.runtime_action('start')", "start", show=True),
        Binding("x", "screen.runtime_action('stop')", "stop", show=True),
        Binding("R", "screen.runtime_action('restart')", "restart", show=True),
        Binding("i", "screen.runtime_action('interrupt')", "interrupt", show=True),
        Binding("L", "screen.runtime_action('log')", "log", show=True),
        Binding("e", "screen.runtime_settings", "settings", show=True),
        Binding("S", "screen.env_action('save')", "save environment", show=False),
        Binding("D", "screen.env_action('diff')", "environment changes", show=False),
        Binding("V", "screen.env_action('versions')", "environment versions", show=False),
        Binding("X", "screen.env_action('reset')", "reset environment", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield OptionList(id="runtime-list")

    def on_mount(self) -> None:
        self.border_title = "Runtimes"

    @property
    def highlighted_runtime(self) -> str | None:
        options = self.query_one(OptionList)
        if options.highlighted is None or options.option_count == 0:
            return None
        return options.get_option_at_index(options.highlighted).id

    def show(
        self,
        notebook: Notebook,
        statuses: dict[str, RuntimeStatus],
        pending: dict[str, list[str]] | None = None,
        listed: list[str] | None = None,
        changed: dict[str, str] | None = None,
        working: dict[str, str] | None = None,
        nodes: dict[str, str] | None = None,
    ) -> None:
        """`nodes`: the Swarm node each Swarm runtime landed on, where known."""
        found = self.query(OptionList)
        if not found:
            return  # the app is closing and has removed the list; a late timer or message lands here
        options = found.first()
        highlighted = self.highlighted_runtime
        rows = []
        served_counts = notebook.cells_served()
        for runtime_id, spec in notebook.runtimes.items():
            if listed is not None and runtime_id not in listed:
                continue
            status = statuses.get(runtime_id) or RuntimeStatus()
            served = served_counts.get(runtime_id, 0)
            row = runtime_row(
                runtime_id,
                spec.name,
                spec.environment_label,
                spec.language if not spec.is_jupyter else f"{spec.language} · kernel {terminal_safe(spec.kernel or '')}",
                served,
                status,
                (pending or {}).get(runtime_id),
                (changed or {}).get(runtime_id),
                (working or {}).get(runtime_id),
                # A host runtime runs here whatever its engine says.
                None if spec.is_host else where_it_runs(spec.engine, (nodes or {}).get(runtime_id)),
            )
            rows.append(Option(row, id=runtime_id))
        options.clear_options()
        options.add_options(rows)
        if rows:
            ids = [option.id for option in rows]
            options.highlighted = ids.index(highlighted) if highlighted in ids else 0


class RunnerLogPanel(Vertical):
    """What the runtimes do, live; `f` cycles the filter through the notebook's runtimes."""

    BINDINGS = [Binding("f", "screen.cycle_log_filter", "filter", show=True)]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filter: str | None = None
        self.entries: list[LogEntry] = []

    def compose(self) -> ComposeResult:
        yield RichLog(id="runner-log", max_lines=2000, wrap=True, min_width=16, markup=False, auto_scroll=True)

    def on_mount(self) -> None:
        self._retitle()

    def _retitle(self) -> None:
        self.border_title = "Runner log" + (f" · {self.filter}" if self.filter else "")

    @staticmethod
    def _line(entry: LogEntry) -> Text:
        line = Text(no_wrap=False)
        line.append(time.strftime("%H:%M:%S ", time.localtime(entry.at)), style="dim")
        line.append(f"{entry.runtime or '-'} ", style="bold")
        line.append(terminal_safe(entry.text), style=LEVEL_STYLES.get(entry.level, ""))
        return line

    def on_resize(self) -> None:
        # Rewrapping on a resize leaves the log short of its end: it keeps following.
        log = self.query_one(RichLog)
        if log.auto_scroll:
            log.call_after_refresh(log.scroll_end, animate=False, immediate=True)

    def add(self, entries: list[LogEntry]) -> None:
        self.entries.extend(entries)
        del self.entries[:-2000]
        log = self.query_one(RichLog)
        for entry in entries:
            if self.filter is None or entry.runtime == self.filter:
                log.write(self._line(entry))

    def set_filter(self, runtime_id: str | None) -> None:
        self.filter = runtime_id
        self._retitle()
        log = self.query_one(RichLog)
        log.clear()
        for entry in self.entries:
            if runtime_id is None or entry.runtime == runtime_id:
                log.write(self._line(entry))
