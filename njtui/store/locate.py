"""Finds where a table, key or value is in TOML text, for error messages; measures nesting.

tomllib gives positions only for syntax errors; a notebook that parses but says something
wrong (a duplicate cell id, an unknown runtime) still deserves "file:line:column". This scanner
knows just enough TOML to follow comments, strings, table headers, keys, arrays and inline
tables, so it records the path of every key and array element as tomllib will build it
(("cells", 2, "id") for the id of the third [[cells]]).

It makes one pass and never goes back: each step consumes at least one character, and its
regular expressions are single character classes matched from a fixed position (they cannot
backtrack), so any text costs time linear in its length.

It also refuses, before tomllib sees the text, what tomllib cannot survive: values nested
deeper than MAX_DEPTH (arrays, inline tables, dotted keys and headers together; tomllib
recurses on arrays and inline tables, takes quadratic time and memory on long dotted keys, and
everything after it walks the data recursively), and bare values longer than MAX_BARE_VALUE
(an integer of thousands of digits makes tomllib raise ValueError, not TOMLDecodeError).
"""

from __future__ import annotations

import bisect
import re
import tomllib
from dataclasses import dataclass

MAX_DEPTH = 32
# Characters: more than any number, date or boolean a person writes needs (a 64-bit binary
# integer with _ between all its digits is 129).
MAX_BARE_VALUE = 256

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]*")
_BLANK = re.compile(r"[ \t]*")
_SPACE = re.compile(r"[ \t\r\n]*")
_BARE_VALUE = re.compile(r"[^ \t\r\n,\[\]{}#\"'=]*")  # a number, date, boolean, or junk
_BASIC_RUN = re.compile(r'[^"\\\n]*')
_MULTILINE_BASIC_RUN = re.compile(r'[^"\\]*')
_LITERAL_RUN = re.compile(r"[^'\n]*")


def _match_end(pattern: re.Pattern[str], text: str, position: int) -> int:
    """Where `pattern` stops matching at `position`: each pattern above also matches nothing."""
    match = pattern.match(text, position)
    assert match is not None  # a pattern of the form [...]* matches at every position
    return match.end()


@dataclass
class Refusal:
    """Text tomllib must not be given, at `offset`."""

    offset: int
    message: str
    hint: str


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


@dataclass
class _Frame:
    """An open array or inline table while scanning a value."""

    kind: str  # "[" or "{"
    path: tuple
    index: int = 0  # arrays: the element being read
    expect_value: bool = True  # arrays: after "[" or ",", where the next element starts
    expect_key: bool = True  # inline tables: after "{" or ","
    value_path: tuple = ()  # inline tables: the key whose value is being read


class Locator:
    def __init__(self, text: str) -> None:
        self.text = text
        self.keys: dict[tuple, int] = {}  # key or array element → offset of its start
        self.tables: dict[tuple, int] = {}  # table header → offset of its "["
        self.first: dict[tuple, int] = {}  # any path → offset of the first key or table under it
        self.refusal: Refusal | None = None
        self._newlines: list[int] | None = None
        try:
            self._scan()
        except _Refused as refused:
            self.refusal = refused.refusal

    # -- answers

    def position(self, offset: int) -> tuple[int, int]:
        """(line, column), both from 1, of a character offset."""
        if self._newlines is None:
            self._newlines = [match.start() for match in re.finditer("\n", self.text)]
        line = bisect.bisect_left(self._newlines, offset)
        line_start = self._newlines[line - 1] + 1 if line else 0
        return line + 1, offset - line_start + 1

    def offset_of(self, path: tuple) -> int:
        """Where a key is, else its table, else the first thing under it, else the nearest
        enclosing one; the start of the text when nothing encloses it (a top-level key)."""
        while path:
            for recorded in (self.keys, self.tables, self.first):
                if path in recorded:
                    return recorded[path]
            path = path[:-1]
        return 0

    def locate(self, path: tuple) -> tuple[int, int]:
        return self.position(self.offset_of(path))

    # -- the scan

    def _record(self, table: dict[tuple, int], path: tuple, offset: int) -> None:
        self._check_depth(len(path), offset)
        table.setdefault(path, offset)
        for length in range(1, len(path) + 1):
            self.first.setdefault(path[:length], offset)

    @staticmethod
    def _check_depth(depth: int, offset: int) -> None:
        if depth > MAX_DEPTH:
            raise _Refused(
                Refusal(
                    offset,
                    f"values are nested more than {MAX_DEPTH} levels deep here (tables, arrays and dotted keys together)",
                    "a notebook needs only a few levels; flatten this value",
                )
            )

    def _line_end(self, position: int) -> int:
        end = self.text.find("\n", position)
        return len(self.text) if end < 0 else end

    def _scan(self) -> None:
        text, size = self.text, len(self.text)
        current: tuple = ()
        array_counts: dict[tuple, int] = {}  # [[name]] (resolved) → entries so far
        position = 0
        while position < size:
            position = _match_end(_SPACE, text, position)
            if position >= size:
                break
            char = text[position]
            if char == "#":
                position = self._line_end(position)
                continue
            if char == "[":
                double = text.startswith("[[", position)
                parts, end = self._key(position + (2 if double else 1), 0)
                end = _match_end(_BLANK, text, end)
                if parts and text.startswith("]]" if double else "]", end):
                    if double:
                        name = self._resolve(parts[:-1], array_counts, position) + parts[-1:]
                        self._check_depth(len(name), position)
                        index = array_counts.get(name, 0)
                        array_counts[name] = index + 1
                        current = name + (index,)
                    else:
                        current = self._resolve(parts, array_counts, position)
                    self._record(self.tables, current, position)
                position = self._line_end(max(end, position + 1))
                continue
            parts, end = self._key(position, len(current))
            end = _match_end(_BLANK, text, end)
            if not parts or not text.startswith("=", end):
                position = self._line_end(max(end, position + 1))
                continue
            path = current + parts
            self._record(self.keys, path, position)
            position = self._line_end(self._value(end + 1, path))

    def _resolve(self, name: tuple, array_counts: dict[tuple, int], offset: int) -> tuple:
        """[cells.meta] after the 3rd [[cells]] belongs to cells entry 2."""
        resolved: tuple = ()
        for part in name:
            resolved = resolved + (part,)
            if resolved in array_counts:
                resolved = resolved + (array_counts[resolved] - 1,)
            self._check_depth(len(resolved), offset)
        return resolved

    def _key(self, position: int, depth: int) -> tuple[tuple, int]:
        """A (dotted) key from `position`: its parts, and where it ends; () when there is none.
        `depth` is that of the table it is in, so a key too deep is refused as it is read."""
        text, size = self.text, len(self.text)
        start = position
        parts: list[str] = []
        while True:
            position = _match_end(_BLANK, text, position)
            if position >= size:
                break
            char = text[position]
            if char == '"' or char == "'":
                end = self._string(position)
                parts.append(self._key_text(position, end))
                position = end
            else:
                end = _match_end(_BARE_KEY, text, position)
                if end == position:
                    break
                parts.append(text[position:end])
                position = end
            self._check_depth(depth + len(parts), start)
            after = _match_end(_BLANK, text, position)
            if not text.startswith(".", after):
                break
            position = after + 1
        return tuple(parts), position

    def _key_text(self, start: int, end: int) -> str:
        token = self.text[start:end]
        if len(token) < 2 or token[-1] != token[0] or token.startswith(("'''", '"""')):
            return token  # not a valid quoted key; tomllib will say so
        if token[0] == "'" or "\\" not in token:
            return token[1:-1]
        try:  # escapes (\u0000, \") are decoded as tomllib decodes them, so paths match
            return tomllib.loads(f"k = {token}")["k"]
        except Exception:  # noqa: BLE001 - any failure just means the raw text is used
            return token[1:-1]

    def _string(self, position: int) -> int:
        """The end of the string that starts at `position` (just past its closing quotes; at the
        end of the line or text when it is not closed)."""
        text, size = self.text, len(self.text)
        if text.startswith('"""', position):
            position += 3
            while True:
                position = _match_end(_MULTILINE_BASIC_RUN, text, position)
                if position >= size:
                    return size
                if text[position] == "\\":
                    position += 2
                elif text.startswith('"""', position):
                    return self._extra_quotes(position + 3, '"')
                else:
                    position += 1
        if text.startswith("'''", position):
            end = text.find("'''", position + 3)
            return size if end < 0 else self._extra_quotes(end + 3, "'")
        if text[position] == "'":
            end = _match_end(_LITERAL_RUN, text, position + 1)
            return end + 1 if end < size and text[end] == "'" else end
        position += 1
        while True:
            position = _match_end(_BASIC_RUN, text, position)
            if position >= size or text[position] == "\n":
                return position
            if text[position] == '"':
                return position + 1
            # a backslash escapes the next character, unless that ends the line
            position += 2 if position + 1 < size and text[position + 1] != "\n" else 1

    def _extra_quotes(self, position: int, quote: str) -> int:
        """A multi-line string may end with up to two quotes of its content before the three
        that close it (\"\"\"a\"\"\"\" is 'a\"')."""
        for _ in range(2):
            if self.text.startswith(quote, position):
                position += 1
        return position

    def _value(self, position: int, path: tuple) -> int:
        """Reads the value of the key at `path` from `position`; returns where it ends. Arrays
        and inline tables are followed with an explicit stack, never by recursion."""
        text, size = self.text, len(self.text)
        stack: list[_Frame] = []
        while position < size:
            position = _match_end(_SPACE if stack else _BLANK, text, position)
            if position >= size:
                break
            char = text[position]
            if char == "#":
                if not stack:
                    return position
                position = self._line_end(position)
                continue
            if not stack and char in "\r\n":
                return position
            frame = stack[-1] if stack else None
            if frame is not None and frame.kind == "{" and frame.expect_key and char != "}":
                position = self._inline_table_key(position, frame)
                if frame.expect_key:
                    return position  # not TOML; tomllib will say where
                continue
            # Closers and commas are handled here, not in a helper: they are most of what a long
            # array is made of, and the work done per character of such text is kept small.
            if char in "]}":
                if frame is None or frame.kind != ("[" if char == "]" else "{"):
                    return position
                stack.pop()
                position += 1
                if not stack:
                    return position
                continue
            if char == ",":
                if frame is None:
                    return position
                if frame.kind == "[":
                    frame.index += 1
                    frame.expect_value = True
                else:
                    frame.expect_key = True
                position += 1
                continue
            # A value starts here (or, in malformed text, something that is not one).
            value_path = self._value_path(frame, path, position)
            if char in "[{":
                if value_path is None:
                    return position  # two values without a comma between: not TOML
                stack.append(_Frame(kind=char, path=value_path))
                position += 1
                continue
            position = self._scalar(position)
            if not stack:
                return position
        return position

    def _inline_table_key(self, position: int, frame: _Frame) -> int:
        """Reads `key =` of an inline table's entry from `position`: where its value starts, with
        the frame now expecting that value; where the text stops being TOML, with the frame
        still expecting a key."""
        parts, end = self._key(position, len(frame.path))
        end = _match_end(_BLANK, self.text, end)
        if not parts or not self.text.startswith("=", end):
            return end
        frame.value_path = frame.path + parts
        self._record(self.keys, frame.value_path, position)
        frame.expect_key = False
        return end + 1

    def _value_path(self, frame: _Frame | None, path: tuple, position: int) -> tuple | None:
        """The path of the value starting at `position`: the key's own at the top, the key's in
        an inline table, the next element's in an array (recorded here); None for a second
        value in an array without a comma before it."""
        if frame is None:
            return path
        if frame.kind == "{":
            return frame.value_path
        if not frame.expect_value:
            return None
        value_path = frame.path + (frame.index,)
        self._record(self.keys, value_path, position)
        frame.expect_value = False
        return value_path

    def _scalar(self, position: int) -> int:
        """The end of the string, number, date or boolean (or junk) that starts at `position`."""
        text = self.text
        if text[position] == '"' or text[position] == "'":
            return self._string(position)
        end = max(_match_end(_BARE_VALUE, text, position), position + 1)
        if end - position > MAX_BARE_VALUE:
            raise _Refused(
                Refusal(
                    position,
                    f"a bare value {end - position:,} characters long, which no number, date or boolean is",
                    "TOML integers are 64-bit; quote text to make it a string",
                )
            )
        return end
