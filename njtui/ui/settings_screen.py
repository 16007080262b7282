"""A runtime's settings: general, variables (with what it inherits), secrets, mounts, machine.

Edits are checked by the same validation as a notebook file read from disk before they are
kept; Ctrl+S saves them into the notebook. A running runtime is never changed in place: the
screen and the runtimes panel say "restart to apply" with what changed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Label, Select, Static, Switch, TabbedContent, TabPane
from textual.worker import get_current_worker

from njtui.model import LANGUAGES, EnvironmentImport, Notebook, RuntimeSpec
from njtui.model.engine import ENGINE_ADVICE, SWARM_PREFIX, EngineError, EngineRef, parse_engine
from njtui.model.output import terminal_safe
from njtui.model.settings import MOUNT_KINDS, Mount
from njtui.model.size import format_size
from njtui.store import NotebookError
from njtui.store.machines import load_machines
from njtui.store.notebook_file import edit_notebook, runtime_document
from njtui.store.secrets import SecretStore
from njtui.ui.environment_provenance import PROVENANCE_BINDINGS, ProvenanceFacts, field_value, has_provenance, layered_variables, load_facts, open_source_notebook, parse_import, provenance_text

ENGINE_CHECK_DELAY = 0.3  # seconds without typing before the environment is checked
CONTAINER_ONLY_NOTE = "Not applied to host runtimes: engine, mounts, machine type, CPUs, memory, GPUs and CUDA take effect in Docker runtimes only."
SWARM_MACHINE_HINT = "machine types are the Swarm nodes' njtui.machine labels"


def engine_meaning(engine: EngineRef) -> str:
    """What a valid `engine` setting makes of the runtime, in words."""
    target = terminal_safe(engine.target)  # a URL may hold any character but a space
    where = f"the engine of Docker context {target}" if not engine.is_url else f"the engine at {target}"
    if engine.swarm:
        return f"✓ a one-replica service of the Swarm whose manager is {where}"
    if engine.scheme == "tcp":
        return f"✓ its container runs on {where}, with the TLS material below"
    return f"✓ its container runs on {where}"


def dir_mount_note(spec: RuntimeSpec) -> str:
    """A directory mount names a directory where the container runs: said where that is not here."""
    if spec.is_host or spec.engine is None or not any(mount.kind == "dir" for mount in spec.mounts):
        return ""
    try:
        engine = parse_engine(spec.engine)
    except EngineError:
        return ""
    target = terminal_safe(engine.target)
    if engine.swarm:
        return f"dir mounts name a directory on the Swarm node the runtime lands on (Swarm {target}), not on this machine"
    return f"dir mounts name a directory on the machine of engine {target}, not on this one"


def inherited_variables(image_env: dict[str, str], notebook_env: dict[str, str], runtime_env: dict[str, str]) -> list[tuple[str, str, str, bool]]:
    """(name, value, source, wins) for every variable the runtime gets, later sources winning."""
    rows = []
    layers = (("image", image_env), ("notebook", notebook_env), ("runtime", runtime_env))
    for index, (source, values) in enumerate(layers):
        for name, value in sorted(values.items()):
            overridden = any(name in later for _, later in layers[index + 1 :])
            rows.append((name, value, source, not overridden))
    return sorted(rows, key=lambda row: (row[0], ["image", "notebook", "runtime"].index(row[2])))


class RuntimeSettingsScreen(Screen[bool]):
    BINDINGS = [
        Binding("ctrl+s", "save", "save", priority=True),
        Binding("escape", "close", "close"),
        Binding("delete,ctrl+d", "remove_row", "remove row"),
        Binding("ctrl+i", "toggle_inherited", "show inherited", show=False),
        *PROVENANCE_BINDINGS,
    ]

    def __init__(self, path, notebook: Notebook, runtime_id: str, runner, pending: list[str], on_saved: Callable[[], bool | None]) -> None:
        super().__init__()
        self.path = path
        self.notebook = notebook
        self.spec = copy.deepcopy(notebook.runtimes[runtime_id])
        self.runner = runner
        self.pending = pending
        self.on_saved = on_saved
        self.show_inherited = True
        self.image_env: dict[str, str] = {}
        self.dirty = False
        self._engine_check: Timer | None = None
        self.engine_problem: str | None = None  # why the engine field names no engine
        self.facts: ProvenanceFacts | None = None  # where the environment comes from, beyond the spec

    # -- layout
    def compose(self) -> ComposeResult:
        spec = self.spec
        yield Static(self._title(), id="settings-title")
        yield Static(self._pending_text(), id="settings-pending")
        with TabbedContent(id="settings-tabs"):
            with TabPane("General", id="tab-general"):
                with VerticalScroll():
                    yield Label("Name")
                    yield Input(spec.name, id="name")
                    if spec.is_jupyter:
                        # The kernel fixes the language; another kernel is another runtime.
                        yield Label("Type")
                        yield Static(f"Jupyter kernel {terminal_safe(spec.kernel or '')} · {terminal_safe(spec.language)}", id="runtime-type")
                    else:
                        yield Label("Language")
                        yield Select([(language, language) for language in LANGUAGES], value=spec.language, allow_blank=False, id="language")
                    yield Label("Environment: host, an image reference, or a saved version to import (tools v3, ../base.toml#tools v3)")
                    yield Input(field_value(spec.environment), id="environment")
                    yield Static("", id="environment-status", classes="field-status")
                    yield Static(provenance_text(spec, None), id="provenance")
                    yield Label("Images on the engine (Enter picks one)")
                    yield DataTable(id="images", cursor_type="row")
                    yield Label("Idle timeout (e.g. 20m, 1h30m)")
                    yield Input(spec.idle_timeout or "", placeholder="20m", id="idle_timeout")
                    with Horizontal(classes="switch-row"):
                        yield Switch(value=bool(spec.export), id="export")
                        yield Label("Export environment: push each save to the notebook's registry")
            with TabPane("Variables", id="tab-variables"):
                with Vertical():
                    with Horizontal(classes="switch-row"):
                        yield Switch(value=True, id="inherited")
                        yield Label("Show inherited (image ENV, the notebook's \\[env]); the ✓ row wins")
                    yield DataTable(id="variables", cursor_type="row")
                    yield Input(placeholder="NAME=value adds or changes a variable; Delete removes the selected one", id="variable-input")
            with TabPane("Secrets", id="tab-secrets"):
                with Vertical():
                    yield Static("A secret is a variable of the runtime's processes and a file in /run/secrets (a tmpfs); the notebook keeps only its name.", classes="note")
                    yield DataTable(id="secrets", cursor_type="row")
                    yield Input(placeholder="VARIABLE=secret-name adds a secret reference", id="secret-input")
                    yield Input(placeholder="secret-name=value stores a value in your secret store (never in the notebook)", password=True, id="secret-value")
            with TabPane("Mounts", id="tab-mounts"):
                with Vertical():
                    yield Static(self._host_note(), classes="note host-note")
                    yield Static("", id="mount-engine-note", classes="note")
                    yield DataTable(id="mounts", cursor_type="row")
                    yield Input(placeholder="KIND SOURCE AT [ref=REF] [rw]   e.g.  git https://host/repo.git /src/repo ref=v1.2", id="mount-input")
            with TabPane("Machine", id="tab-machine"):
                with VerticalScroll():
                    yield Static(self._host_note(), classes="note host-note")
                    yield Label("Engine: where its container runs (empty: your default Docker engine)")
                    yield Input(spec.engine or "", placeholder="gpu-box, ssh://user@host, tcp://host:2376, unix:///run/docker.sock, swarm:…", id="engine")
                    yield Static("", id="engine-setting-status", classes="field-status")
                    with Vertical(id="engine-tls-row"):
                        yield Label("Engine TLS: a directory with ca.pem, cert.pem and key.pem")
                        yield Input(spec.engine_tls or "", placeholder="e.g. ~/.docker/tls/gpu-box", id="engine_tls")
                    yield Label("Machine type")
                    yield Static(SWARM_MACHINE_HINT, id="swarm-machine-hint", classes="field-status")
                    yield Select(self._machine_options(spec.machine), value=spec.machine or "", allow_blank=False, id="machine")
                    yield Input(spec.machine or "", placeholder="a njtui.machine label of the Swarm's nodes, e.g. gpu", id="swarm-machine")
                    yield Label("CPUs (overrides the machine type)")
                    yield Input("" if spec.cpus is None else str(spec.cpus), placeholder="e.g. 1.5", id="cpus")
                    yield Label("Memory (overrides the machine type)")
                    yield Input(spec.memory or "", placeholder="e.g. 256MB, 4GiB", id="memory")
                    yield Label("GPUs: a count, or device ids separated by commas")
                    yield Input("" if spec.gpus is None else (",".join(spec.gpus) if isinstance(spec.gpus, list) else str(spec.gpus)), placeholder="0", id="gpus")
                    with Horizontal(classes="switch-row"):
                        yield Switch(value=bool(spec.mount_cuda), id="mount_cuda")
                        yield Label("Mount CUDA: the host's toolkit, read-only, on PATH and LD_LIBRARY_PATH")
        yield Static("", id="settings-error")
        yield Footer()

    def _title(self) -> Text:
        return Text.assemble(("Settings of runtime ", "bold"), (f"{self.spec.name} ({self.spec.id})", "bold"), f"  ·  {self.path}")

    def _pending_text(self) -> Text:
        if not self.pending:
            return Text("")
        return Text(f"⟳ restart to apply: {', '.join(self.pending)}", style="bold yellow")

    def _host_note(self) -> str:
        return CONTAINER_ONLY_NOTE if self.spec.is_host else ""

    @staticmethod
    def _machine_options(machine: str | None) -> list[tuple[str, str]]:
        presets = load_machines()
        options = [(f"{name}  ({values.get('cpus')} CPUs, {values.get('memory')}{', ' + str(values['gpus']) + ' GPU' if values.get('gpus') else ''})", name) for name, values in sorted(presets.items())]
        if machine and machine not in presets:
            # Named by a notebook from elsewhere, or a Swarm's label: kept until another is picked.
            options.append((f"{terminal_safe(machine)}  (not defined on this machine: pick another)", machine))
        return [("custom", ""), *options]

    def _show_engine(self) -> None:
        """The engine field's verdict, and what depends on the engine: the TLS directory (a
        tcp:// engine's), the machine type (a Swarm's node labels, or this machine's presets)
        and what a dir mount names."""
        spec = self.spec
        status = self.query_one("#engine-setting-status", Static)
        field = self.query_one("#engine", Input)
        engine: EngineRef | None = None
        self.engine_problem = None
        if spec.engine is not None:
            try:
                engine = parse_engine(spec.engine)
            except EngineError as exc:
                self.engine_problem = f"engine {exc}"
        field.set_class(self.engine_problem is not None, "-invalid")
        if self.engine_problem is not None:
            # Refused even for a host runtime: the notebook file would not load.
            status.update(Text(f"✗ {self.engine_problem}; {ENGINE_ADVICE}", style="bold red"))
        elif spec.is_host:
            status.update(Text("does not apply: a host runtime runs on this machine", style="dim"))
        elif engine is None:
            status.update(Text("your default Docker engine (DOCKER_HOST, else the current context)", style="dim"))
        else:
            status.update(Text(engine_meaning(engine), style="green"))
        tcp = engine is not None and engine.scheme == "tcp"
        self.query_one("#engine-tls-row").display = tcp
        # A Swarm's choices are known only to its manager, which the UI does not ask.
        swarm = engine is not None and engine.swarm and not spec.is_host
        self.query_one("#swarm-machine-hint").display = swarm
        self.query_one("#swarm-machine").display = swarm
        select = self.query_one("#machine", Select)
        if select.display == swarm:
            select.display = not swarm
            if not swarm:
                # Back from a Swarm: a label typed there is one of the choices.
                select.set_options(self._machine_options(spec.machine))
                select.value = spec.machine or ""
            else:
                self.query_one("#swarm-machine", Input).value = spec.machine or ""
        self._show_mount_note()

    def on_mount(self) -> None:
        for note in self.query(".host-note"):
            note.display = self.spec.is_host
        self._show_engine()
        variables = self.query_one("#variables", DataTable)
        variables.add_columns("name", "value", "from", "")
        secrets = self.query_one("#secrets", DataTable)
        secrets.add_columns("variable", "secret", "in your store")
        mounts = self.query_one("#mounts", DataTable)
        mounts.add_columns("kind", "source", "ref", "at", "access")
        images = self.query_one("#images", DataTable)
        images.add_columns("image", "size", "age")
        self.refresh_tables()
        self.load_engine_facts(self.spec.environment)
        self.load_provenance()

    def _images_engine(self) -> tuple[str | None, str | None]:
        """The engine the runtime's images are on (as edited, not yet saved); None: the default."""
        if self.spec.engine is None:
            return None, None
        try:
            parse_engine(self.spec.engine)
        except EngineError:
            return None, None
        return self.spec.engine, self.spec.engine_tls

    @work(thread=True, exclusive=True, group="settings-engine")
    def load_engine_facts(self, environment: str | EnvironmentImport) -> None:
        """Images, the image's ENV and whether the reference resolves (an import: pinned to
        the image its version names): asked of the runner off the UI thread (an engine may be
        slow or away)."""
        problem: str | None
        engine, engine_tls = self._images_engine()
        try:
            images = self.runner.local_images(engine, engine_tls)
        except Exception as exc:  # noqa: BLE001 - shown, not fatal
            images, problem = [], str(exc)
        else:
            problem = None
        resolved = None
        try:
            if isinstance(environment, EnvironmentImport):
                resolved = environment if environment.pinned else self._pin(environment)
                reference = resolved.image or resolved.digest or ""
                status, ok = f"✓ {resolved.label()}: pinned (below: to what)", True
            else:
                reference = environment
                status, ok = f"✓ {environment}: {self.runner.check_environment(environment, engine, engine_tls)}", True
        except Exception as exc:  # noqa: BLE001
            reference, status, ok = "", f"✗ {exc}", False
        image_env = self.runner.image_env(reference, engine, engine_tls) if reference else {}
        if not get_current_worker().is_cancelled:  # a newer reference is being checked
            self.app.call_from_thread(self._engine_facts, images, problem, image_env, status, ok, resolved)

    def _pin(self, imported: EnvironmentImport) -> EnvironmentImport:
        """The import resolved to its version's image, leaving the notebook as it is: the
        settings apply on Ctrl+S, and set_import pins the runtime in the notebook it holds."""
        live = self.notebook.runtimes[self.spec.id]
        before = live.environment
        try:
            return self.runner.environments.set_import(self.spec.id, imported.runtime, imported.version, imported.notebook)
        finally:
            live.environment = before

    @work(thread=True, exclusive=True, group="settings-provenance")
    def load_provenance(self) -> None:
        spec = self.notebook.runtimes.get(self.spec.id)
        if spec is not None and has_provenance(spec):
            facts = load_facts(self.runner, self.spec.id)
            self.app.call_from_thread(self._provenance_loaded, facts)

    def _provenance_loaded(self, facts: ProvenanceFacts) -> None:
        self.facts = facts
        self.query_one("#provenance", Static).update(provenance_text(self.spec, facts))
        self.refresh_tables()

    def _engine_facts(self, images, problem, image_env, status, ok, resolved=None) -> None:
        if resolved is not None and isinstance(self.spec.environment, EnvironmentImport) and field_value(resolved) == field_value(self.spec.environment):
            self.spec.environment = resolved
        self.query_one("#provenance", Static).update(provenance_text(self.spec, self.facts))
        self.image_env = image_env
        table = self.query_one("#images", DataTable)
        table.clear()
        now = time.time()
        for image in images:
            age = now - image["created"] if image["created"] else None
            shown_age = "-" if age is None else f"{int(age // 86400)}d" if age >= 86400 else f"{int(age // 3600)}h"
            table.add_row(image["reference"], format_size(image["size"]), shown_age, key=image["reference"])
        if problem:
            table.add_row(f"(no engine: {problem[:60]})", "", "")
        field = self.query_one("#environment", Input)
        field.set_class(not ok, "-invalid")
        self.query_one("#environment-status", Static).update(Text(status, style="green" if ok else "bold red"))
        self.environment_ok = ok
        self.refresh_tables()

    def refresh_tables(self) -> None:
        variables = self.query_one("#variables", DataTable)
        variables.clear()
        if self.show_inherited and self.facts is not None and self.facts.levels:
            # A saved version or an import: what each image of its chain sets, base first.
            rows = layered_variables([*self.facts.levels, ("notebook", self.notebook.env), ("runtime", self.spec.env)])
        elif self.show_inherited:
            rows = inherited_variables(self.image_env, self.notebook.env, self.spec.env)
        else:
            rows = [(name, value, "runtime", True) for name, value in sorted(self.spec.env.items())]
        for name, value, source, wins in rows:
            style = "" if wins else "dim strike"
            variables.add_row(Text(name, style=style), Text(value, style=style), source, "✓" if wins else "overridden", key=f"{source}\x1f{name}")
        secrets = self.query_one("#secrets", DataTable)
        secrets.clear()
        try:
            stored = set(SecretStore().names())
            store_problem = None
        except Exception as exc:  # noqa: BLE001 - e.g. a store others can read: say so
            stored, store_problem = set(), str(exc).splitlines()[0]
        for variable, name in sorted(self.spec.secrets.items()):
            state = Text("✓ stored", style="green") if name in stored else Text(store_problem or f"✗ missing: njtui secrets set {name}", style="red")
            secrets.add_row(variable, name, state, key=variable)
        mounts = self.query_one("#mounts", DataTable)
        mounts.clear()
        for index, mount in enumerate(self.spec.mounts):
            mounts.add_row(mount.kind, mount.source, mount.ref or "", mount.at, "read-only" if mount.read_only else "read-write", key=str(index))
        self._show_mount_note()

    def _show_mount_note(self) -> None:
        note = self.query_one("#mount-engine-note", Static)
        text = dir_mount_note(self.spec)
        note.update(text)
        note.display = bool(text)

    # -- editing
    def _error(self, message: str) -> None:
        self.query_one("#settings-error", Static).update(Text(message, style="bold red"))

    def _changed(self) -> None:
        self.dirty = True
        self._error("")
        self.refresh_tables()

    @on(Input.Submitted, "#variable-input")
    def _add_variable(self, event: Input.Submitted) -> None:
        name, sep, value = event.value.partition("=")
        if not sep or not name.strip():
            self._error("write NAME=value")
            return
        self.spec.env[name.strip()] = value
        event.input.value = ""
        self._changed()

    @on(Input.Submitted, "#secret-input")
    def _add_secret(self, event: Input.Submitted) -> None:
        variable, sep, name = event.value.partition("=")
        if not sep or not variable.strip() or not name.strip():
            self._error("write VARIABLE=secret-name")
            return
        self.spec.secrets[variable.strip()] = name.strip()
        event.input.value = ""
        self._changed()

    @on(Input.Submitted, "#secret-value")
    def _store_secret(self, event: Input.Submitted) -> None:
        name, sep, value = event.value.partition("=")
        event.input.value = ""
        if not sep or not name.strip() or not value:
            self._error("write secret-name=value")
            return
        try:
            SecretStore().set(name.strip(), value)
        except Exception as exc:  # noqa: BLE001
            self._error(str(exc))
            return
        self.app.notify(f"stored secret {name.strip()} in your secret store", timeout=3)
        self.refresh_tables()

    @on(Input.Submitted, "#mount-input")
    def _add_mount(self, event: Input.Submitted) -> None:
        words = event.value.split()
        if len(words) < 3 or words[0] not in MOUNT_KINDS:
            self._error(f"write KIND SOURCE AT [ref=REF] [rw] with KIND one of {', '.join(MOUNT_KINDS)}")
            return
        kind, source, at, *options = words
        ref = next((option.split("=", 1)[1] for option in options if option.startswith("ref=")), None)
        self.spec.mounts.append(Mount(kind, source, at, read_only="rw" not in options, ref=ref))
        event.input.value = ""
        self._changed()

    @on(DataTable.RowSelected, "#images")
    def _pick_image(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.query_one("#environment", Input).value = event.row_key.value
            self._field_changed("environment", event.row_key.value)

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("name", "environment", "idle_timeout", "cpus", "memory", "gpus", "engine", "engine_tls", "swarm-machine"):
            self._field_changed(event.input.id, event.value)

    def _field_changed(self, field: str, value: str) -> None:
        spec = self.spec
        value = value.strip()
        if field == "name":
            spec.name = value or spec.name
        elif field == "environment":
            if value != field_value(spec.environment):
                imported = parse_import(value)
                spec.environment = imported if imported is not None else value
                # Asked once typing pauses: each check may go over the network to a registry.
                if self._engine_check is not None:
                    self._engine_check.stop()
                environment = spec.environment
                self._engine_check = self.set_timer(ENGINE_CHECK_DELAY, lambda: self.load_engine_facts(environment))
        elif field == "idle_timeout":
            spec.idle_timeout = value or None
        elif field == "cpus":
            try:
                spec.cpus = float(value) if value else None
            except ValueError:
                self._error(f"cpus: {value!r} is not a number")
                return
        elif field == "memory":
            spec.memory = value or None
        elif field == "gpus":
            spec.gpus = None if not value else int(value) if value.isdigit() else [part.strip() for part in value.split(",") if part.strip()]
        elif field in ("engine", "engine_tls"):
            if field == "engine":
                spec.engine = value or None
            # Kept in the field while the engine is edited; in the notebook only for a tcp:// engine.
            tls = self.query_one("#engine_tls", Input).value.strip()
            spec.engine_tls = tls or None if (spec.engine or "").removeprefix(SWARM_PREFIX).startswith("tcp://") else None
            self._show_engine()
        elif field == "swarm-machine":
            if (value or None) == spec.machine:
                return  # filled in as the Swarm's field was shown: not an edit
            spec.machine = value or None
        self.dirty = True
        self._error("")

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "language" and event.value != self.spec.language:
            self.spec.language = str(event.value)
            self.dirty = True
        elif event.select.id == "machine":
            machine = str(event.value) or None
            if machine != self.spec.machine:
                self.spec.machine = machine
                self.dirty = True

    @on(Switch.Changed)
    def _switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "inherited":
            self.show_inherited = event.value
            self.refresh_tables()
        elif event.switch.id == "mount_cuda" and bool(self.spec.mount_cuda) != event.value:
            self.spec.mount_cuda = event.value
            self.dirty = True
        elif event.switch.id == "export" and bool(self.spec.export) != event.value:
            self.spec.export = True if event.value else None  # off: the key leaves the file
            self.dirty = True

    def action_toggle_inherited(self) -> None:
        switch = self.query_one("#inherited", Switch)
        switch.value = not switch.value

    def action_open_source(self) -> None:
        """The "little arrow": the notebook that saved the environment this runtime imports."""
        if self.facts is None or not self.facts.source_path:
            self._error("this runtime does not import an environment from a notebook here")
            return
        open_source_notebook(self.app, self.facts.source_path)

    def action_update_import(self) -> None:
        imported = self.spec.imported
        newest = self.facts.newest if self.facts is not None else None
        if imported is None or newest is None or newest <= imported.version:
            self._error("no newer saved version to update to" if imported is not None else "this runtime does not import an environment")
            return
        self.query_one(TabbedContent).active = "tab-general"
        # Through the field, as if typed: resolved (pinned) in a worker, saved with Ctrl+S.
        self.query_one("#environment", Input).value = field_value(EnvironmentImport(imported.runtime, newest, imported.notebook))

    def action_remove_row(self) -> None:
        focused = self.focused
        if not isinstance(focused, DataTable) or focused.row_count == 0:
            return
        key = focused.coordinate_to_cell_key(focused.cursor_coordinate).row_key.value
        if key is None:  # a row added without a key: only the images table's "no engine" line
            return
        if focused.id == "variables":
            source, _, name = key.partition("\x1f")
            if source != "runtime":
                self._error(f"{name} comes from the {source}; it can be overridden here, not removed")
                return
            self.spec.env.pop(name, None)
        elif focused.id == "secrets":
            self.spec.secrets.pop(key, None)
        elif focused.id == "mounts":
            del self.spec.mounts[int(key)]
        else:
            return
        self._changed()

    # -- saving
    def candidate(self) -> Notebook:
        """The notebook with these settings, validated as a file read from disk would be."""
        probe = copy.deepcopy(self.notebook)
        probe.runtimes[self.spec.id] = self.spec
        if not probe.default_runtime(self.spec.language):
            self.spec.default = True

        def edit(document: dict) -> None:
            document.setdefault("runtimes", {})[self.spec.id] = runtime_document(self.spec)

        return edit_notebook(self.notebook, edit, self.path)

    def action_save(self) -> None:
        if self.engine_problem is not None:
            self._error(f"not saved: {self.engine_problem}")
            self.query_one(TabbedContent).active = "tab-machine"
            return
        if getattr(self, "environment_ok", True) is False:
            self._error(f"environment: {self.query_one('#environment-status', Static).content}")
            self.query_one(TabbedContent).active = "tab-general"
            return
        try:
            checked = self.candidate()
        except NotebookError as exc:
            self._error(f"not saved: {exc.message}" + (f" — {exc.hint}" if exc.hint else ""))
            return
        self.notebook.runtimes[self.spec.id] = checked.runtimes[self.spec.id]
        for cell in self.notebook.cells:
            if cell.runtime == self.spec.id and cell.language != self.spec.language:
                cell.language = self.spec.language
        self.dirty = False
        # The notebook's save merges with changes made to the file meanwhile; False: it did
        # not write (a conflict to settle in its dialog, or an error it reported).
        saved = self.on_saved()
        self.pending = self.runner.pending_changes(self.spec.id)
        self.query_one("#settings-pending", Static).update(self._pending_text())
        self.load_provenance()
        if saved is not False:
            self.app.notify("settings saved" + (" — restart the runtime to apply them" if self.pending else ""), timeout=3)

    def action_close(self) -> None:
        if self.dirty:
            self._error("unsaved settings: Ctrl+S saves, Esc again leaves without saving")
            self.dirty = False
            return
        self.dismiss(True)


__all__ = ["RuntimeSettingsScreen", "inherited_variables", "RuntimeSpec"]
