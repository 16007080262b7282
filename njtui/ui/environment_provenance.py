"""Where a runtime's environment comes from, for its settings screen: an image, one of its
saved versions, or another runtime's saved version it imports (pinned); the chain below it;
the variables each level sets; and the source notebook of an import, opened over the settings
as Nextjournal's "little arrow" opens it.

What needs the engine or other notebook files (the newest version of an import's source, the
chain, each image's ENV) is read by `load_facts` in a worker; the text is made from the spec
and those facts alone, so it is the same picture for the same facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from rich.text import Text
from textual.binding import Binding

from njtui.model import EnvironmentImport, RuntimeSpec
from njtui.model.output import terminal_safe
from njtui.ui.environment_screens import saved_at_words

# "tools v3" (a runtime of this notebook) or "../base.toml#tools v3" (of another notebook,
# relative to this one): what the environment field takes for an import.
IMPORT_FIELD = re.compile(r"(?:(?P<notebook>[^#]+)#)?(?P<runtime>[A-Za-z0-9_-]{1,64}) v(?P<version>\d+)")


def parse_import(value: str) -> EnvironmentImport | None:
    match = IMPORT_FIELD.fullmatch(value.strip())
    if match is None:
        return None
    return EnvironmentImport(runtime=match["runtime"], version=int(match["version"]), notebook=match["notebook"])


def field_value(environment: str | EnvironmentImport) -> str:
    """What the environment field shows: the image, or the import as it is typed."""
    if isinstance(environment, EnvironmentImport):
        return f"{environment.notebook + '#' if environment.notebook else ''}{environment.runtime} v{environment.version}"
    return environment


def short_image(image: str | None) -> str:
    return image[:19] if image and image.startswith("sha256:") else (image or "")


def short_digest(digest: str) -> str:
    """ "HOST/REPO@sha256:<64 hex>" → "HOST/REPO@sha256:<12 hex>…": enough to tell versions
    apart on a line; `njtui env lineage` prints it whole."""
    repository, at, hash_ = digest.rpartition("@")
    return f"{repository}{at}{short_image(hash_)}…" if at and len(hash_) > 19 else digest


@dataclass
class ProvenanceFacts:
    """What the runner knows beyond the spec; None where it was not asked or not known."""

    newest: int | None = None  # the import's source's newest saved version
    source_path: str | None = None  # the notebook file that saved what it imports, when it is here
    chain: list[str] = field(default_factory=list)  # the lineage's labels, top first
    levels: list[tuple[str, dict[str, str]]] | None = None  # the variables each image level sets, base first
    problem: str | None = None


def has_provenance(spec: RuntimeSpec) -> bool:
    """More than a plain image: a saved version or an import, whose chain is worth reading."""
    return not spec.is_host and (spec.saved_version is not None or spec.imported is not None)


def load_facts(runner: Any, runtime_id: str) -> ProvenanceFacts:
    """Blocking (other notebook files, the engine): called in a worker."""
    facts = ProvenanceFacts()
    environments = runner.environments
    try:
        facts.newest = environments.newest_source_version(runtime_id)
        facts.source_path = environments.source_notebook(runtime_id)
        facts.chain = [step.label for step in environments.lineage(runtime_id)]
        # The notebook's and the runtime's own levels come from the screen, which may be editing them.
        facts.levels = environments.inherited_env(runtime_id)[:-2]
    except Exception as exc:  # noqa: BLE001 - a source notebook gone or an engine away: said, not fatal
        facts.problem = str(exc)
    return facts


def provenance_text(spec: RuntimeSpec, facts: ProvenanceFacts | None) -> Text:
    text = Text()
    if spec.is_host:
        text.append("Runs on this machine: no environment to save or import.", style="dim")
        return text
    saved = spec.boot_version
    imported = spec.imported
    if saved is not None:
        text.append(f"Boots from its saved version v{saved.version}", style="bold")
        text.append(f" · saved {saved_at_words(saved.saved_at)}")
        if saved.message:
            text.append(" · “")
            text.append(terminal_safe(saved.message))
            text.append("”")
        text.append(f"\n  image {short_image(saved.image)}")
        if saved.digest:
            text.append(f" · exported: {terminal_safe(short_digest(saved.digest))}", style="cyan")
        elif saved.host:
            text.append(f" · on engine {terminal_safe(saved.host)}, not exported", style="dim")
        text.append(f" · based on {terminal_safe(saved.base)}", style="dim")
        text.append(f"\n  v0 is {terminal_safe(field_value(spec.environment))}: reset to it with the versions screen (V)", style="dim")
    elif imported is not None:
        where = f" of {terminal_safe(imported.notebook)}" if imported.notebook else " of this notebook"
        text.append(f"Imports {terminal_safe(imported.runtime)} v{imported.version}{where}", style="bold")
        if imported.pinned:
            text.append(f"\n  pinned to {terminal_safe(short_digest(imported.digest) if imported.digest else short_image(imported.image))}: later saves of {terminal_safe(imported.runtime)} change nothing here")
        else:
            text.append("\n  not pinned yet: it is resolved when it boots or when set here", style="yellow")
    elif spec.saved_version is not None:
        text.append(f"Boots from saved version v{spec.saved_version}, which the notebook does not record", style="bold red")
    else:
        text.append(f"Boots from the image {terminal_safe(str(spec.environment))}", style="bold")
        text.append("\n  S in the runtimes panel saves what you install in it as version 1", style="dim")
    if facts is None:
        return text
    if imported is not None and facts.newest is not None and facts.newest > imported.version:
        text.append(f"\n  ⬆ {terminal_safe(imported.runtime)} has version {facts.newest}: Ctrl+N updates to version {facts.newest}", style="bold yellow")
    if facts.source_path:
        text.append(f"\n  ↗ Ctrl+O opens {terminal_safe(PurePath(facts.source_path).name)}, the notebook that saved it", style="cyan")
    if len(facts.chain) > 1:
        text.append("\n  chain: " + " → ".join(terminal_safe(label) for label in facts.chain), style="dim")
    if facts.problem:
        text.append(f"\n  ✗ {terminal_safe(facts.problem)}", style="red")
    return text


def layered_variables(levels: list[tuple[str, dict[str, str]]]) -> list[tuple[str, str, str, bool]]:
    """(name, value, level, wins) for every variable each level sets, later levels winning:
    the image levels from the base up, then the notebook, then the runtime."""
    rows = []
    for index, (label, values) in enumerate(levels):
        for name, value in values.items():
            overridden = any(name in later for _, later in levels[index + 1 :])
            rows.append((name, value, label, not overridden))
    order = {label: index for index, (label, _) in enumerate(levels)}
    return sorted(rows, key=lambda row: (row[0], order[row[2]]))


PROVENANCE_BINDINGS = [
    Binding("ctrl+o", "open_source", "open source notebook", show=False),
    Binding("ctrl+n", "update_import", "update to newest version", show=False),
]


def open_source_notebook(app: Any, path: str) -> None:
    """The notebook that saved an imported environment, over the screen that asked, with its
    own runner; Esc comes back."""
    from njtui.runner import Runner
    from njtui.store import load_notebook
    from njtui.ui.source_notebook import SourceNotebookScreen

    try:
        notebook = load_notebook(path)
    except Exception as exc:  # noqa: BLE001 - unreadable or gone since: said where the key was pressed
        app.notify(str(exc), title="Source notebook not opened", severity="error", timeout=10)
        return
    app.push_screen(SourceNotebookScreen(PurePath(path), notebook, Runner(path, notebook)))
