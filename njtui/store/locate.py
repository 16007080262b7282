"""Finds the line of a table or key in TOML text, for error messages.

tomllib gives positions only for syntax errors; a notebook that parses but says something
wrong (a duplicate cell id, an unknown runtime) still deserves "file:line". This scanner knows
just enough TOML to skip multi-line strings and read table headers and key names.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*(\]\]?)\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*=""")
_KEY_PART = re.compile(r"""\s*([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')\s*(?:\.|$)""")

Path = tuple  # elements: str for table keys, int for the n-th [[array]] entry


def _split_key(text: str) -> tuple[str, ...]:
    parts = []
    for match in _KEY_PART.finditer(text):
        part = match.group(1)
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


class Locator:
    def __init__(self, text: str) -> None:
        self.tables: dict[tuple, int] = {}
        self.keys: dict[tuple, int] = {}
        self._scan(text)

    def _scan(self, text: str) -> None:
        current: tuple = ()
        aot_counts: dict[tuple, int] = {}
        open_quote: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if open_quote is not None:
                if line.count(open_quote) % 2 == 1:
                    open_quote = None
                continue
            header = _HEADER.match(line)
            if header and header.group(1) == header.group(3)[::-1].replace("]", "["):
                name = _split_key(header.group(2))
                if header.group(1) == "[[":
                    index = aot_counts.get(name, 0)
                    aot_counts[name] = index + 1
                    current = name + (index,)
                else:
                    current = self._resolve(name, aot_counts)
                self.tables.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                path = current + _split_key(key.group(1))
                self.keys.setdefault(path, number)
                rest = line[key.end():]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        open_quote = quote
                        break

    @staticmethod
    def _resolve(name: tuple, aot_counts: dict[tuple, int]) -> tuple:
        """[cells.meta] after the 3rd [[cells]] belongs to cells entry 2."""
        resolved: tuple = ()
        for part in name:
            resolved = resolved + (part,)
            if resolved in aot_counts:
                resolved = resolved + (aot_counts[resolved] - 1,)
        return resolved

    def line_of(self, path: tuple) -> int | None:
        """The line of a key, else of its table, else of the nearest enclosing table."""
        while path:
            if path in self.keys:
                return self.keys[path]
            if path in self.tables:
                return self.tables[path]
            path = path[:-1]
        return None
