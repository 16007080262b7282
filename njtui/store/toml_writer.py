"""Deterministic, diff-friendly TOML for njtui's files.

tomli-w formats the leaf values; this module lays out the document: scalars first, then
sub-tables, arrays of tables as `[[x]]` blocks (tomli-w inlines short ones), and multi-line
strings as literal `'''` blocks so a cell's source reads in the file exactly as in the editor
and editing one line changes one line of `git diff`.

A file a person wrote is not laid out anew: `update_text` edits its text in place with tomlkit,
which keeps the comments, blank lines, key order and quoting around what it changes; new
values, tables and cells still come in the layout above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import tomli_w
import tomlkit
from tomlkit.container import Container, OutOfOrderTableProxy
from tomlkit.items import AoT, InlineTable, Null, Table, Whitespace

_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_LITERAL_FORBIDDEN = frozenset(chr(i) for i in range(32) if chr(i) not in "\t\n") | {"\x7f"}


class Literal(str):
    """Text written as a TOML literal string ('…') where it can be, which needs no escapes:
    JSON in a string reads as JSON then, not as a thicket of \\"."""


def format_key(key: str) -> str:
    if key and all(ch in _BARE_KEY_CHARS for ch in key):
        return key
    # A key is always a one-line basic string: multi-line strings are not keys in TOML.
    return tomli_w.dumps({"v": key})[len("v = ") :].rstrip("\n")


def format_value(value: Any) -> str:
    if isinstance(value, Literal) and "'" not in value and not (_LITERAL_FORBIDDEN | {"\n"}) & set(value):
        return f"'{value}'"
    if isinstance(value, str) and "\n" in value:
        return _multiline_string(value)
    rendered = tomli_w.dumps({"v": value})
    return rendered[len("v = ") :].rstrip("\n")


def _multiline_string(text: str) -> str:
    # The plain basic form, as in the format's examples, when nothing in it needs escaping; text
    # with a backslash goes in a literal block, which needs none; escaping is the last resort.
    controls = bool(_LITERAL_FORBIDDEN & set(text))
    if not controls and "\\" not in text and '"""' not in text and not text.endswith('"'):
        return '"""\n' + text + '"""'
    if not controls and "'''" not in text and not text.endswith("'"):
        return "'''\n" + text + "'''"
    escaped = []
    for ch in text:
        if ch == "\\":
            escaped.append("\\\\")
        elif ch in _LITERAL_FORBIDDEN:
            escaped.append(f"\\u{ord(ch):04x}")
        else:
            escaped.append(ch)
    body = "".join(escaped).replace('"""', '""\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    return '"""\n' + body + '"""'


def _is_array_of_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text for `document`, keys in the mapping's order (scalars before tables)."""
    chunks: list[str] = []
    _emit_table(chunks, (), document, header=None)
    return "\n".join(chunk for chunk in chunks if chunk).rstrip("\n") + "\n"


def _emit_table(chunks: list[str], path: tuple[str, ...], table: Mapping[str, Any], header: str | None) -> None:
    lines = [] if header is None else [header]
    nested: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) or _is_array_of_tables(value):
            nested.append((key, value))
        else:
            lines.append(f"{format_key(key)} = {format_value(value)}")
    # A table holding only sub-tables needs no header of its own ([runtimes] before [runtimes.py]);
    # an entry of an array of tables does: its [[header]] is what makes it an entry.
    if header is None or len(lines) > 1 or not nested or header.startswith("[["):
        chunks.append("\n".join(lines) + "\n" if lines else "")
    for key, value in nested:
        child = path + (format_key(key),)
        dotted = ".".join(child)
        if isinstance(value, Mapping):
            _emit_table(chunks, child, value, header=f"[{dotted}]")
        else:
            for entry in value:
                _emit_table(chunks, child, entry, header=f"[[{dotted}]]")


# -- editing a person's file in place

# A comment or blank line belongs to what follows it: the lines between one table's last key
# and the next header read as that next table's heading (tomlkit files them under the earlier
# table). So when a table is removed, the comment lines at its end stay, handed to whatever now
# precedes them; when a table is inserted, the comment lines at the insertion point move below
# it, still heading what they headed. Nothing a person wrote is dropped but the removed
# table's own lines.


class _Element:
    """A step into an array of tables in a path to a new table (see _new_item)."""


ELEMENT = _Element()


def update_text(text: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """`text`, a TOML document that reads as `old`, edited in place to read as `new`: only what
    differs between the two is touched, so comments, blank lines, key order and the quoting a
    person chose stay wherever their values do. Cells (`[[cells]]`) are matched by their ids.
    The caller checks that the result reads as `new` (and falls back on `dumps` when it does
    not); tomlkit errors propagate."""
    document = tomlkit.parse(text)
    _patch_table(document, old, new, (), [])
    edited = tomlkit.dumps(document)
    if "\r\n" in text and "\n" not in text.replace("\r\n", ""):
        # A file with Windows line ends keeps them on the lines added (TOML reads a multi-line
        # string's CRLF as LF, so values do not change).
        edited = re.sub(r"(?<!\r)\n", "\r\n", edited)
    return edited


def _patch_table(container: Any, old: Mapping[str, Any], new: Mapping[str, Any], path: tuple, ancestors: list) -> None:
    for key in [key for key in old if key not in new]:
        if key in container:
            _remove(container, key, ancestors)
    for key, value in new.items():
        before = old.get(key, _ABSENT)
        if before == value:
            continue  # also where `old` holds a default the file does not spell out
        if key not in container:
            _add(container, key, value, path + (key,), ancestors)
            continue
        current = container[key]
        if isinstance(current, OutOfOrderTableProxy):
            # A table whose parts are spread over the file ([a] … [[b]] … [a.c]): tomlkit
            # rewrites such a table whole when it changes, dropping its comments, so njtui
            # lays the file out anew instead, and says so.
            raise ValueError(f"the table {key!r} is split over the file; tomlkit cannot edit it in place")
        inside = ancestors + [(container, key)]
        if before is _ABSENT:
            before = {} if isinstance(value, Mapping) else [] if _is_array_of_tables(value) else before
        if isinstance(value, Mapping) and isinstance(before, Mapping) and isinstance(current, (Table, InlineTable)):
            _patch_table(current, before, value, path + (key,), inside)
        elif _is_array_of_tables(value) and isinstance(before, list) and isinstance(current, AoT):
            if path + (key,) == ("cells",) and all(isinstance(e, Mapping) and "id" in e for e in (*before, *value)):
                _patch_cells(current, before, value, inside)
            else:
                _patch_by_position(current, before, value, path + (key,), inside)
        else:
            container[key] = _new_item(path + (key,), value) if isinstance(value, Mapping) else _value_item(value)


def _patch_cells(aot: AoT, old: list, new: list, ancestors: list) -> None:
    """Cells matched by id: removed ones go, moved ones move, new ones come in njtui's layout."""
    old_of = {entry["id"]: entry for entry in old}
    new_of = {entry["id"]: entry for entry in new}
    present = [_id_of(table) for table in aot.body]
    for index in reversed(range(len(aot.body))):
        if present[index] not in new_of:
            _detach_element(aot, index, ancestors)
            del present[index]
    for index, (cell_id, cell) in enumerate(new_of.items()):
        if index < len(present) and present[index] == cell_id:
            table = aot.body[index]
        elif cell_id in present:
            # A moved cell takes the comment lines heading it along.
            at = present.index(cell_id)
            table, heading = _detach_element(aot, at, ancestors, with_heading=True)
            del present[at]
            table = _insert_element(aot, index, table, ancestors, heading)
            present.insert(index, cell_id)
        else:
            _insert_element(aot, index, _new_item(("cells", ELEMENT), cell), ancestors)
            present.insert(index, cell_id)
            continue
        before = old_of.get(cell_id)
        if before is not None and before != cell:
            _patch_table(table, before, cell, ("cells", ELEMENT), ancestors + [(aot, index)])


def _patch_by_position(aot: AoT, old: list, new: list, path: tuple, ancestors: list) -> None:
    for index in range(min(len(old), len(new), len(aot.body))):
        if old[index] != new[index]:
            _patch_table(aot.body[index], old[index], new[index], path + (ELEMENT,), ancestors + [(aot, index)])
    for index in reversed(range(len(new), len(aot.body))):
        _detach_element(aot, index, ancestors)
    for index in range(len(aot.body), len(new)):
        _insert_element(aot, index, _new_item(path + (ELEMENT,), new[index]), ancestors)


def _id_of(table: Table) -> Any:
    value = table.get("id")
    return value.unwrap() if value is not None and hasattr(value, "unwrap") else value


_ABSENT = object()


def _container_of(item: Any) -> Any:
    """The tomlkit Container holding a table's body (None for an inline table)."""
    if isinstance(item, tomlkit.TOMLDocument):
        return item
    if isinstance(item, Table):
        return item.value
    return None


def _value_item(value: Any) -> Any:
    # njtui's own formatting, so a new multi-line source reads as njtui writes one.
    return tomlkit.value(format_value(value))


def _new_item(path: tuple, value: Any) -> Any:
    """A table or array of tables as njtui lays it out at `path` (ELEMENT: an entry of an
    array of tables), ready to go into a person's document."""
    tree: Any = value
    for part in reversed(path):
        tree = [tree] if part is ELEMENT else {part: tree}
    item: Any = tomlkit.parse(dumps(tree))
    for part in path:
        item = item[0] if part is ELEMENT else item[part]
    return item


def _last_container(item: Any) -> Any:
    """The container whose text ends where `item`'s text ends (a table's last sub-table's…)."""
    if isinstance(item, AoT):
        return _last_container(item.body[-1]) if item.body else None
    container = _container_of(item)
    if container is None:
        return None
    for key, child in reversed(container.body):
        if key is None or isinstance(child, Null):
            continue
        if isinstance(child, (Table, AoT)):
            deeper = _last_container(child)
            return deeper if deeper is not None else container
        return container
    return container


def _take_trailing(container: Any) -> list:
    """Pops the comment and blank lines at the end of `container` (there is no key after them)."""
    taken = []
    while container is not None and container.body and container.body[-1][0] is None:
        taken.append(container.body.pop())
    taken.reverse()
    return [entry for entry in taken if not isinstance(entry[1], Null)]


def _give_trailing(container: Any, block: list) -> None:
    if container is not None:
        container.body.extend(block)


def _ends_blank(container: Any) -> bool:
    return bool(container.body) and container.body[-1][0] is None and isinstance(container.body[-1][1], Whitespace) and "\n" in container.body[-1][1].as_string()


def _separate(container: Any) -> None:
    """A blank line at the end of `container`, before the header that now follows it."""
    if container is not None and container.body and not _ends_blank(container):
        container.body.append((None, tomlkit.nl()))


def _spot_before(container: Any, key: Any, ancestors: list) -> tuple[Any, int | None]:
    """Where text placed just before `key`'s header in `container` goes: the end of the table
    rendered before it (index None), or a position among `container`'s own lines."""
    body = container.body
    index = next((i for i, (k, _) in enumerate(body) if k is not None and k.key == key), None)
    if index is None:
        return container, None
    for previous_key, previous in reversed(body[:index]):
        if previous_key is None or isinstance(previous, Null):
            if isinstance(previous, Null):
                continue
            return container, index
        if isinstance(previous, (Table, AoT)):
            return _last_container(previous), None
        return container, index
    # Nothing before it here: a [a.b] header's implicit [a] renders no text of its own.
    if ancestors and isinstance(container, Container) and _is_super(ancestors[-1]):
        parent, parent_key = ancestors[-1]
        return _spot_before(_container_of(parent), parent_key, ancestors[:-1])
    return container, index


def _is_super(entry: tuple) -> bool:
    parent, key = entry
    if isinstance(parent, AoT):
        return False
    child = parent[key] if isinstance(parent, tomlkit.TOMLDocument) else parent.get(key)
    return isinstance(child, Table) and child.is_super_table()


def _put_at(spot: tuple[Any, int | None], block: list) -> None:
    container, index = spot
    if not block or container is None:
        return
    preceding = container.body[:index] if index is not None else container.body
    previous = next((entry for _, entry in reversed(preceding) if not isinstance(entry, Null)), None)
    if isinstance(previous, Whitespace) and isinstance(block[0][1], Whitespace) and "\n" in previous.as_string():
        block = block[1:]
        if not block:
            return
    if index is None:
        _give_trailing(container, block)
        return
    # Lines in the middle of a container: its key index moves down by as many entries.
    for map_key, value in list(container._map.items()):
        if isinstance(value, tuple):
            container._map[map_key] = tuple(v + len(block) if v >= index else v for v in value)
        elif value >= index:
            container._map[map_key] = value + len(block)
    container.body[index:index] = block


def _remove(container: Any, key: str, ancestors: list) -> None:
    item = container[key]
    inner = _container_of(container)
    if isinstance(item, AoT) and inner is not None:
        for index in reversed(range(len(item.body))):
            _detach_element(item, index, ancestors + [(container, key)])
        del container[key]
    elif isinstance(item, Table) and inner is not None:
        block = _take_trailing(_last_container(item))
        spot = _spot_before(inner, key, ancestors)
        del container[key]
        _put_at(spot, block)
    else:
        del container[key]


def _add(container: Any, key: str, value: Any, path: tuple, ancestors: list) -> None:
    inner = _container_of(container)
    if inner is None:  # an inline table
        container[key] = _value_item(value)
        return
    if isinstance(value, Mapping) or _is_array_of_tables(value):
        # A table goes after everything the container holds, ahead of the lines that headed
        # what came next.
        last = _last_container(container)
        block = _take_trailing(last)
        _separate(last)
        container[key] = _new_item(path, value)
        _give_trailing(_last_container(container[key]), block)
        return
    # A key goes after the container's last key, ahead of comment lines heading what follows.
    block = _take_trailing(inner)
    container[key] = _value_item(value)
    _give_trailing(inner, block)


def _insert_element(aot: AoT, index: int, table: Table, ancestors: list, heading: list | None = None) -> Table:
    """Puts a table into an array of tables at `index`: the lines heading the entry that was
    there stay with that entry, below the new one; `heading` (lines that came with a moved
    entry) go above it."""
    before = _spot_before_element(aot, index, ancestors)
    block = _take_trailing(before[0]) if before[1] is None else []
    if heading:
        _put_at(before, heading)
    elif before[1] is None:
        _separate(before[0])
    aot.insert(index, table)
    table = aot.body[index]
    if block:
        _give_trailing(_last_container(table), block)
    elif index < len(aot.body) - 1:
        _separate(_last_container(table))
    return table


def _spot_before_element(aot: AoT, index: int, ancestors: list) -> tuple[Any, int | None]:
    if index > 0:
        return _last_container(aot.body[index - 1]), None
    if ancestors:
        parent, key = ancestors[-1]
        inner = _container_of(parent)
        if inner is not None:
            return _spot_before(inner, key, ancestors[:-1])
    return None, None


def _detach_element(aot: AoT, index: int, ancestors: list, *, with_heading: bool = False) -> Any:
    """Takes an entry out of an array of tables, leaving the lines at its end to what preceded
    it; with `with_heading`, also takes the lines heading it and returns (table, those lines)."""
    table = aot.body[index]
    spot = _spot_before_element(aot, index, ancestors)
    heading = _take_trailing(spot[0]) if with_heading and spot[1] is None else []
    block = _take_trailing(_last_container(table))
    del aot[index]
    _put_at(spot, block)
    return (table, heading) if with_heading else table
