"""Three-way merge of notebook documents, structurally: by cell id, runtime id and key.

Someone saving a notebook (the TUI, `njtui runtime set`) holds three versions of it: the base
(what it read), ours (what it is saving) and theirs (what the file holds now, when another
program, editor or `git pull` changed it meanwhile). A part changed on one side only takes that
side's version; a part changed on both sides the same way is no conflict; a part changed
differently on both sides is a conflict, and nothing is written until someone chooses. The
parts are the notebook's keys, each runtime's keys (each variable of its `env` and `secrets`),
and each cell's keys, so an edit of one cell merges with an edit of another, or with a new
runtime setting, silently. Text is never merged line by line: two edits of one cell's source
are one conflict, shown whole.

Documents are notebook_document()'s mappings (`cells` a list of tables with unique ids), as
the file's validation made them; nothing here reads or writes a file.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class _Missing:
    """A part one version does not have (never had, or removed)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __deepcopy__(self, memo):
        return self


MISSING: Any = _Missing()
SIDES = ("ours", "theirs")


@dataclass(frozen=True)
class Conflict:
    """One part changed differently on both sides: `path` is ("cells", cell id, key…),
    ("runtimes", runtime id, key…) or a notebook key; a side without the part holds MISSING."""

    path: tuple
    base: Any
    ours: Any
    theirs: Any

    @property
    def label(self) -> str:
        head, *rest = self.path
        if head == "cells" and rest:
            what = f"cell {rest[0]}"
        elif head == "runtimes" and rest:
            what = f"runtime {rest[0]}"
        elif head == "env" and rest:
            return f"variable {rest[0]} of the notebook's [env]" + self._removed()
        else:
            return ".".join(str(part) for part in self.path) + self._removed()
        if len(rest) > 1:
            what += ": " + ".".join(str(part) for part in rest[1:])
        return what + self._removed()

    def _removed(self) -> str:
        if self.ours is MISSING:
            return " (removed here, changed in the file)"
        if self.theirs is MISSING:
            return " (removed in the file, kept here)"
        return ""


@dataclass
class Merge:
    """The merged document, each conflict taking the side asked for (ours when none was)."""

    document: dict[str, Any]
    conflicts: list[Conflict] = field(default_factory=list)


def keyed(document: dict[str, Any]) -> dict[str, Any]:
    """The document with `cells` as a mapping by id, the way it merges: an OrderedDict, whose
    equality counts the order, so that moving a cell is a change."""
    result = dict(document)
    if "cells" in document:
        result["cells"] = OrderedDict((cell["id"], cell) for cell in document["cells"])
    return result


def unkeyed(document: dict[str, Any]) -> dict[str, Any]:
    result = dict(document)
    if "cells" in document:
        if document["cells"]:
            result["cells"] = list(document["cells"].values())
        else:
            del result["cells"]
    return result


def merge_documents(
    base: dict[str, Any],
    ours: dict[str, Any],
    theirs: dict[str, Any],
    *,
    prefer: str | None = None,
    hold_cells: Iterable[str] = (),
    hold_runtimes: Iterable[str] = (),
) -> Merge:
    """Merges ours and theirs over base. `prefer` ("ours" or "theirs") settles every conflict
    that way (each is still reported). Held cells and runtimes are ones the user is editing
    right now: a change of theirs to one of them is reported as a conflict and not taken, so
    it waits for the next save's merge instead of vanishing under the edit."""
    if prefer not in (None, *SIDES):
        raise ValueError(f"prefer must be 'ours', 'theirs' or None, not {prefer!r}")
    merger = _Merger(prefer)
    b, o, t = keyed(base), keyed(ours), copy.copy(keyed(theirs))
    for section, held in (("cells", hold_cells), ("runtimes", hold_runtimes)):
        for item_id in held:
            merger.hold(section, item_id, b, o, t)
    merged = merger.value((), b, o, t)
    return Merge(unkeyed(merged if merged is not MISSING else {}), merger.conflicts)


def advance_base(base: dict[str, Any], theirs: dict[str, Any], conflicts: Iterable[Conflict]) -> dict[str, Any]:
    """The base after taking theirs in: theirs, except where a conflict waits, which keeps the
    old base so the next merge still sees both sides' changes there."""
    old = keyed(base)
    result = copy.deepcopy(keyed(theirs))
    for conflict in conflicts:
        _set_path(result, conflict.path, _get_path(old, conflict.path), list(old.get("cells", {})))
    return unkeyed(result)


class _Merger:
    def __init__(self, prefer: str | None) -> None:
        self.prefer = prefer
        self.conflicts: list[Conflict] = []

    def hold(self, section: str, item_id: str, b: dict, o: dict, t: dict) -> None:
        before = b.get(section, {}).get(item_id, MISSING)
        mine = o.get(section, {}).get(item_id, MISSING)
        other = t.get(section, {}).get(item_id, MISSING)
        if other == before or other == mine:
            return
        self.conflicts.append(Conflict((section, item_id), before, mine, other))
        # Theirs is merged as if it had left the item alone; the conflict keeps what it did.
        items = dict(t.get(section, {}))
        order = list(items)
        if before is MISSING:
            items.pop(item_id)
            order.remove(item_id)
        else:
            if item_id not in items:  # theirs removed it: back where the base had it
                base_order = list(b.get(section, {}))
                _insert_after_predecessor(order, item_id, base_order[: base_order.index(item_id)])
            items[item_id] = before
        t[section] = type(o.get(section) or b.get(section) or {})((key, items[key]) for key in order)

    def value(self, path: tuple, b: Any, o: Any, t: Any) -> Any:
        if o == t:
            return o
        if o == b:
            return t
        if t == b:
            return o
        tables = all(isinstance(v, dict) or v is MISSING for v in (b, o, t))
        # A cell or runtime removed on one side and changed on the other is one conflict, whole:
        # merging it key by key could leave half a runtime. Below that, a table no side has is
        # an empty one (the file omits empty tables).
        item = len(path) == 2 and path[0] in ("cells", "runtimes")
        if tables and not item:
            b, o, t = (OrderedDict() if v is MISSING else v for v in (b, o, t))
            return self.cells(b, o, t) if path == ("cells",) else self.mapping(path, b, o, t)
        if tables and o is not MISSING and t is not MISSING:
            return self.mapping(path, {} if b is MISSING else b, o, t)
        self.conflicts.append(Conflict(path, b, o, t))
        return t if self.prefer == "theirs" else o

    def mapping(self, path: tuple, b: dict, o: dict, t: dict) -> dict:
        result = {}
        keys = list(o) + [k for k in t if k not in o] + [k for k in b if k not in o and k not in t]
        for key in keys:
            merged = self.value(path + (key,), b.get(key, MISSING), o.get(key, MISSING), t.get(key, MISSING))
            if merged is not MISSING:
                result[key] = merged
        return result

    def cells(self, b: dict, o: dict, t: dict) -> dict:
        merged = self.mapping(("cells",), b, o, t)
        order = merge_order(list(b), list(o), list(t), set(merged))
        return OrderedDict((cell_id, merged[cell_id]) for cell_id in order)


def merge_order(base: list[str], ours: list[str], theirs: list[str], keep: set[str]) -> list[str]:
    """The order of the merged cells: the side that moved cells gives it (ours when both did,
    as the person saving sees it), and the other side's new cells go after the cell they
    followed there."""
    common = set(base) & set(ours) & set(theirs)

    def moved(order: list[str]) -> bool:
        return [i for i in order if i in common] != [i for i in base if i in common]

    skeleton, other = (theirs, ours) if moved(theirs) and not moved(ours) else (ours, theirs)
    result = [i for i in skeleton if i in keep]
    for index, cell_id in enumerate(other):
        if cell_id in keep and cell_id not in result:
            _insert_after_predecessor(result, cell_id, other[:index])
    for cell_id in keep:  # a cell restored from the base (removed on both sides' lists)
        if cell_id not in result:
            _insert_after_predecessor(result, cell_id, base[: base.index(cell_id)] if cell_id in base else [])
    return result


def _insert_after_predecessor(order: list[str], item: str, before: list[str]) -> None:
    for predecessor in reversed(before):
        if predecessor in order:
            order.insert(order.index(predecessor) + 1, item)
            return
    order.insert(0, item)


def _get_path(tree: Any, path: tuple) -> Any:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return MISSING
        tree = tree[part]
    return copy.deepcopy(tree)


def _set_path(tree: dict, path: tuple, value: Any, base_order: list[str]) -> None:
    *parents, last = path
    for depth, part in enumerate(parents):
        if not isinstance(tree.get(part), dict):
            if value is MISSING:
                return
            tree[part] = {}
        tree[part] = type(tree[part])(tree[part])
        if path[: depth + 1] == ("cells",) and len(path) == 2 and last not in tree[part] and value is not MISSING:
            # A cell the base had and theirs removed goes back where the base had it.
            cells = tree[part]
            order = list(cells)
            _insert_after_predecessor(order, last, base_order[: base_order.index(last)] if last in base_order else [])
            cells[last] = value
            tree[part] = OrderedDict((cell_id, cells[cell_id]) for cell_id in order)
            return
        tree = tree[part]
    if value is MISSING:
        tree.pop(last, None)
    else:
        tree[last] = value


def summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    """What differs from `before` to `after`, by part: {"runtimes": ids, "cells": ids, "notebook": keys}."""
    b, a = keyed(before), keyed(after)
    changed: dict[str, list[str]] = {"runtimes": [], "cells": [], "notebook": []}
    for section in ("runtimes", "cells"):
        old, new = b.get(section, {}), a.get(section, {})
        changed[section] = [key for key in list(new) + [k for k in old if k not in new] if old.get(key, MISSING) != new.get(key, MISSING)]
    if section_order_changed(b, a):
        changed["notebook"].append("cell order")
    changed["notebook"] += [key for key in dict.fromkeys(list(a) + list(b)) if key not in ("runtimes", "cells") and b.get(key, MISSING) != a.get(key, MISSING)]
    return changed


def section_order_changed(b: dict, a: dict) -> bool:
    old, new = list(b.get("cells", {})), list(a.get("cells", {}))
    common = set(old) & set(new)
    return [i for i in old if i in common] != [i for i in new if i in common]


def describe_summary(changed: dict[str, list[str]]) -> str:
    """ "1 runtime, 2 cells updated" for a log line; "" when nothing changed."""
    parts = []
    for section, singular in (("runtimes", "runtime"), ("cells", "cell")):
        count = len(changed.get(section, []))
        if count:
            parts.append(f"{count} {singular}{'s' if count > 1 else ''}")
    notebook = changed.get("notebook", [])
    if notebook:
        parts.append(", ".join(notebook))
    return (", ".join(parts) + " updated") if parts else ""
