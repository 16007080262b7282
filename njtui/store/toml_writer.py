"""Deterministic, diff-friendly TOML for njtui's files.

tomli-w formats the leaf values; this module lays out the document: scalars first, then
sub-tables, arrays of tables as `[[x]]` blocks (tomli-w inlines short ones), and multi-line
strings as literal `'''` blocks so a cell's source reads in the file exactly as in the editor
and editing one line changes one line of `git diff`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w

_BARE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_LITERAL_FORBIDDEN = frozenset(chr(i) for i in range(32) if chr(i) not in "\t\n") | {"\x7f"}


def format_key(key: str) -> str:
    if key and all(ch in _BARE_KEY_CHARS for ch in key):
        return key
    # A key is always a one-line basic string: multi-line strings are not keys in TOML.
    return tomli_w.dumps({"v": key})[len("v = ") :].rstrip("\n")


def format_value(value: Any) -> str:
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
    # A table holding only sub-tables needs no header of its own ([runtimes] before [runtimes.py]).
    if header is None or len(lines) > 1 or not nested:
        chunks.append("\n".join(lines) + "\n" if lines else "")
    for key, value in nested:
        child = path + (format_key(key),)
        dotted = ".".join(child)
        if isinstance(value, Mapping):
            _emit_table(chunks, child, value, header=f"[{dotted}]")
        else:
            for entry in value:
                _emit_table(chunks, child, entry, header=f"[[{dotted}]]")
