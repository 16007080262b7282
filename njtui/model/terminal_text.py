"""Output as a terminal would show it, made safe to draw anywhere.

Output is untrusted: escape sequences in it would drive the terminal it is drawn on (move the
cursor over other text, retitle the window, write the clipboard). Yet programs also draw with
them: progress bars redraw one line with `\\r` and erase-line, and colours are SGR sequences.
So output is played on a model of one terminal line, and what comes out are finished lines
holding printable characters, tabs, and colour sequences only (SGR, rewritten from the line's
cells in one canonical form, so nothing the program wrote passes through as it wrote it).

Everything here is pure: no I/O and no Rich; the UI turns the SGR into styles
(njtui/ui/terminal_text.py); `njtui show` prints it or strips it.

What the line model does, as a terminal does it: `\\r` moves to column 0 and what follows
overwrites (a shorter redraw leaves the tail of the old text); `\\b` moves one column left;
`ESC[K`/`ESC[0K` erase to the end, `ESC[1K` to the cursor, `ESC[2K` the whole line;
`ESC[nG`, `ESC[nC`, `ESC[nD` move along the line (they cannot leave it); SGR changes the style
of what is written next and carries over overwrites and newlines. Every other control sequence
(cursor movement off the line, OSC titles, clipboard and hyperlinks, DCS/APC/PM/SOS strings,
mode changes), lone ESCs, C0 controls but tab and newline, and C1 controls are dropped, also
when a chunk boundary cuts them in two.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from functools import lru_cache
from itertools import groupby
from typing import Any

# A line longer than this wraps, as on a terminal that wide: memory stays bounded for output
# that never ends a line, and no text is lost.
MAX_COLUMNS = 65536

# Everything that is not printed as it is: C0 but tab, DEL, C1.
_SPECIAL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_SPECIAL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CSI_BODY = re.compile(r"[0-?]*[ -/]*")
_NF_BODY = re.compile(r"[ -/]*")
# Strings (OSC, DCS, SOS, PM, APC) end at BEL or ST (ESC \ or 8-bit), are cancelled by CAN/SUB
# or a new ESC, and, for a log's sake, end at a newline: one unterminated title sequence must
# not swallow the rest of the output (a terminal would; what leaks is text, which is harmless).
_STRING_END = re.compile(r"[\x07\x1b\x9c\x18\x1a\n]")
_STRING_INTRODUCERS = frozenset("]PX^_")
_C1_STRINGS = frozenset("\x90\x98\x9d\x9e\x9f")
# A sequence cut by a chunk boundary waits for the rest, up to this long; longer is junk and
# is skipped without being kept.
_MAX_PENDING = 256

_TEXT, _CONTROL, _CSI = 0, 1, 2
_GROUND, _STRING, _SKIP_CSI = 0, 1, 2

_SGR_PARAMS = re.compile(r"[0-9;:]*")
_ANY_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_TEXT_SGR_NEWLINE = re.compile(r"(\x1b\[[0-9;:]*m|\n)")
_CANONICAL_SGR = re.compile(r"\x1b\[[0-9;]*m")

# SGR attributes: the code that sets each, and the codes that clear it.
_ATTRIBUTES = {1: "1", 2: "2", 3: "3", 4: "4", 5: "5", 6: "6", 7: "7", 8: "8", 9: "9", 21: "21", 53: "53"}
_CLEARS = {22: ("1", "2"), 23: ("3",), 24: ("4", "21"), 25: ("5", "6"), 27: ("7",), 28: ("8",), 29: ("9",), 55: ("53",)}
_ATTRIBUTE_ORDER = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "21", "53")


class _Scanner:
    """The escape-sequence grammar (ECMA-48 as terminals parse it), over a stream of chunks:
    yields printable runs, single control characters and complete CSI sequences; drops
    everything else, and keeps a sequence cut by the end of a chunk until the next one."""

    def __init__(self) -> None:
        self._mode = _GROUND
        self._pending = ""

    @property
    def busy(self) -> bool:
        """In the middle of a sequence: the next chunk does not start on plain ground."""
        return self._mode != _GROUND or bool(self._pending)

    def scan(self, text: str) -> Iterator[tuple[int, str]]:
        if self._pending:
            text, self._pending = self._pending + text, ""
        pos, end = 0, len(text)
        if self._mode == _STRING:
            pos = self._skip_string(text, 0)
        elif self._mode == _SKIP_CSI:
            pos = _CSI_BODY.match(text).end()  # type: ignore[union-attr]  # matches the empty string
            if pos < end:
                self._mode = _GROUND
                pos += 1 if "@" <= text[pos] <= "~" else 0
        while pos < end:
            found = _SPECIAL.search(text, pos)
            if found is None:
                yield _TEXT, text[pos:]
                return
            start = found.start()
            if start > pos:
                yield _TEXT, text[pos:start]
            char = text[start]
            if char == "\x1b":
                if start + 1 == end:
                    self._pending = char
                    return
                after = text[start + 1]
                if after == "[":
                    pos = yield from self._csi(text, start, start + 2)
                elif after in _STRING_INTRODUCERS:
                    pos = self._skip_string(text, start + 2)
                elif " " <= after <= "/":
                    # ESC, intermediates, final: character sets and the like (ESC ( B).
                    body = _NF_BODY.match(text, start + 1).end()  # type: ignore[union-attr]
                    if body == end:
                        if end - start <= _MAX_PENDING:
                            self._pending = text[start:]
                        return  # an absurdly long run is dropped: the next chunk starts afresh
                    pos = body + 1 if "0" <= text[body] <= "~" else body
                elif "0" <= after <= "~":
                    pos = start + 2  # two-character escapes: save cursor, reset, index...
                else:
                    pos = start + 1  # a lone ESC: what follows it is read on its own
            elif char == "\x9b":
                pos = yield from self._csi(text, start, start + 1)
            elif char in _C1_STRINGS:
                pos = self._skip_string(text, start + 1)
            elif char <= "\x1f":
                yield _CONTROL, char
                pos = start + 1
            else:
                pos = start + 1  # DEL and the other C1 controls
            if self._mode != _GROUND or self._pending:
                return

    def _csi(self, text: str, start: int, body_start: int) -> Generator[tuple[int, str], None, int]:
        body = _CSI_BODY.match(text, body_start).end()  # type: ignore[union-attr]
        if body == len(text):
            if body - start <= _MAX_PENDING:
                self._pending = text[start:]
            else:
                self._mode = _SKIP_CSI
            return body
        if "@" <= text[body] <= "~":
            yield _CSI, text[body_start : body + 1]
            return body + 1
        return body  # broken off by another character, which is read on its own

    def _skip_string(self, text: str, pos: int) -> int:
        found = _STRING_END.search(text, pos)
        if found is None:
            self._mode = _STRING
            return len(text)
        self._mode = _GROUND
        at = found.start()
        char = text[at]
        if char == "\n":
            return at
        if char == "\x1b":
            if at + 1 == len(text):
                self._mode = _STRING
                self._pending = char
                return len(text)
            return at + 2 if text[at + 1] == "\\" else at
        return at + 1

    def end(self) -> None:
        """The stream ended: an unfinished sequence is dropped."""
        self._mode = _GROUND
        self._pending = ""


class _Style:
    """An SGR state: attributes and colours, kept as the canonical parameters that redraw it."""

    __slots__ = ("attributes", "background", "foreground")

    def __init__(self) -> None:
        self.attributes: set[str] = set()
        self.foreground: str | None = None
        self.background: str | None = None

    def apply(self, params: str) -> None:
        codes = params.split(";") if params else ["0"]
        index = 0
        while index < len(codes):
            sub = codes[index].split(":")
            index += 1
            try:
                number = int(sub[0]) if sub[0] else 0
            except ValueError:
                continue
            if number in (38, 48, 58):
                if len(sub) > 1:
                    colour = _extended_colour(sub[1:])
                else:
                    colour, used = _extended_colour_semicolons(codes, index)
                    index += used
                if colour is None or number == 58:
                    continue  # an underline colour (58) is not kept: few terminals draw it
                if number == 38:
                    self.foreground = "38;" + colour
                else:
                    self.background = "48;" + colour
            elif number == 0:
                self.attributes.clear()
                self.foreground = self.background = None
            elif number == 4 and len(sub) > 1:
                # Underline styles (4:3 curly...) show as an underline; 4:0 is none.
                if sub[1] in ("", "0"):
                    self.attributes.difference_update(("4", "21"))
                else:
                    self.attributes.add("4")
            elif number in _ATTRIBUTES:
                self.attributes.add(_ATTRIBUTES[number])
            elif number in _CLEARS:
                self.attributes.difference_update(_CLEARS[number])
            elif 30 <= number <= 37 or 90 <= number <= 97:
                self.foreground = str(number)
            elif 40 <= number <= 47 or 100 <= number <= 107:
                self.background = str(number)
            elif number == 39:
                self.foreground = None
            elif number == 49:
                self.background = None

    def canonical(self) -> str:
        parts = [code for code in _ATTRIBUTE_ORDER if code in self.attributes]
        if self.foreground:
            parts.append(self.foreground)
        if self.background:
            parts.append(self.background)
        return ";".join(parts)


@lru_cache(maxsize=4096)
def _sgr_after(state: str, params: str) -> str:
    """The canonical state after SGR `params` on `state`: a canonical state is itself the SGR
    that sets it up, so nothing but these strings needs keeping (and a few repeat a lot)."""
    style = _Style()
    if state:
        style.apply(state)
    style.apply(params)
    return style.canonical()


def _byte(value: str) -> str | None:
    try:
        number = int(value) if value else 0
    except ValueError:
        return None
    return str(min(255, number))


def _extended_colour(sub: list[str]) -> str | None:
    """38:5:n, 38:2::r:g:b or 38:2:r:g:b (colon sub-parameters) as "5;n" or "2;r;g;b"."""
    if not sub:
        return None
    if sub[0] == "5" and len(sub) >= 2:
        index = _byte(sub[1])
        return None if index is None else f"5;{index}"
    if sub[0] == "2":
        rgb = sub[-3:] if len(sub) >= 4 else None
        if rgb is None:
            return None
        values = [_byte(v) for v in rgb]
        if any(v is None for v in values):
            return None
        return "2;" + ";".join(v for v in values if v is not None)
    return None


def _extended_colour_semicolons(codes: list[str], index: int) -> tuple[str | None, int]:
    """38;5;n or 38;2;r;g;b: the colour and how many more parameters it used."""
    if index >= len(codes):
        return None, 0
    kind = codes[index]
    if kind == "5" and index + 1 < len(codes):
        return _extended_colour(["5", codes[index + 1]]), 2
    if kind == "2" and index + 3 < len(codes):
        return _extended_colour(["2", *codes[index + 1 : index + 4]]), 4
    return None, len(codes) - index  # incomplete: the rest of the sequence is its remains


def _transition(before: str, after: str) -> str:
    if after == before:
        return ""
    if not after:
        return "\x1b[0m"
    if not before:
        return f"\x1b[{after}m"
    return f"\x1b[0;{after}m"


class TerminalText:
    """One output stream (stdout, say) played on a terminal line: `feed` chunks as they come,
    get back the lines they finished; `current` is the line still being written."""

    def __init__(self, max_columns: int = MAX_COLUMNS) -> None:
        self.max_columns = max_columns
        self._scanner = _Scanner()
        # The line is kept as runs of (style, text) while it is only ever written at its end (most
        # output), and as one cell per column once something overwrites or erases within it.
        # A style None is a blank nothing was written to (erased, or skipped over).
        self._runs: list[tuple[str | None, str]] | None = []
        self._length = 0  # of the runs
        self._chars: list[str] = []
        self._styles: list[str | None] = []
        self._column = 0
        self._style = ""  # the SGR state, canonical: what each cell written now gets
        self._coloured = False  # some cell of the line has a style: it is rendered run by run
        self._erased = False  # some cell is a blank: trailing ones are cut when rendered
        self._version = 0
        self._rendered: tuple[int, str] | None = None

    @property
    def has_open(self) -> bool:
        """Something was written to the line that no newline has finished yet."""
        return bool(self._length if self._runs is not None else self._chars)

    @property
    def style(self) -> str:
        """The SGR state (canonical parameters, "" for the default): what text written next gets."""
        return self._style

    def feed(self, text: str) -> list[str]:
        """Plays a chunk; returns the lines it finished (SGR-only strings, no newline)."""
        done: list[str] = []
        if not text:
            return done
        self._version += 1
        if not self._scanner.busy and not self._style and _SPECIAL_BUT_NEWLINE.search(text) is None:
            # Plain text (the common case): lines are split off whole, not cell by cell.
            first, newline, rest = text.partition("\n")
            self._write(first, done)
            if not newline:
                return done
            done.append(self._finish())
            *complete, last = rest.split("\n")
            if any(len(line) > self.max_columns for line in complete):
                for line in complete:
                    self._write(line, done)
                    done.append(self._finish())
            else:
                done.extend(complete)
            self._write(last, done)
            return done
        if not self._scanner.busy and _SPECIAL_BUT_NEWLINE.search(_ANY_SGR.sub("", text)) is None:
            # Text and colours only (coloured logs): no escape grammar needed beyond SGR.
            for piece in _TEXT_SGR_NEWLINE.split(text):
                if piece == "\n":
                    done.append(self._finish())
                elif piece.startswith("\x1b"):
                    self._style = _sgr_after(self._style, piece[2:-1])
                elif piece:
                    self._write(piece, done)
            return done
        for kind, value in self._scanner.scan(text):
            if kind == _TEXT:
                self._write(value, done)
            elif kind == _CONTROL:
                self._control(value, done)
            else:
                self._csi(value)
        return done

    def _control(self, char: str, done: list[str]) -> None:
        if char == "\n":
            done.append(self._finish())
        elif char == "\r":
            self._column = 0
        elif char == "\b":
            self._column = max(0, self._column - 1)
        # Any other control (bell, shift in/out, form feed...) is dropped.

    def _csi(self, sequence: str) -> None:
        final, body = sequence[-1], sequence[:-1]
        if final == "m":
            if _SGR_PARAMS.fullmatch(body):
                self._style = _sgr_after(self._style, body)
            return
        if not body.isdigit() and body != "":
            return  # private or several parameters: nothing this model does
        count = int(body) if body else 0
        if final == "K":
            self._erase(count)
        elif final == "G":
            self._column = min(max(count, 1), self.max_columns) - 1
        elif final == "C":
            self._column = min(self._column + max(count, 1), self.max_columns - 1)
        elif final == "D":
            self._column = max(0, self._column - max(count, 1))

    def _erase(self, how: int) -> None:
        if self._runs is not None:
            if how == 0 and self._column >= self._length:
                return
            if how == 2:
                self._runs.clear()
                self._length = 0
                return
            self._to_cells()
        chars, styles, column = self._chars, self._styles, self._column
        if how == 0:
            del chars[column:], styles[column:]
        elif how == 1:
            upto = min(column + 1, len(chars))
            chars[:upto] = " " * upto
            styles[:upto] = [None] * upto
            self._erased = True
        elif how == 2:
            chars.clear()
            styles.clear()

    def _to_cells(self) -> None:
        assert self._runs is not None
        self._chars = list("".join(text for _, text in self._runs))
        self._styles = [style for style, text in self._runs for _ in range(len(text))]
        self._runs = None
        self._length = 0

    def _write(self, text: str, done: list[str]) -> None:
        while text:
            column = self._column
            if column >= self.max_columns:
                done.append(self._finish())
                column = 0
            room = self.max_columns - column
            piece, text = text[:room], text[room:]
            if self._style:
                self._coloured = True
            self._column = column + len(piece)
            runs = self._runs
            if runs is not None:
                if column >= self._length:
                    if column > self._length:
                        runs.append((None, " " * (column - self._length)))
                        self._erased = True
                    runs.append((self._style, piece))
                    self._length = self._column
                    continue
                self._to_cells()
            chars, styles = self._chars, self._styles
            if column > len(chars):
                gap = column - len(chars)
                chars.extend(" " * gap)
                styles.extend([None] * gap)
                self._erased = True
            if column == len(chars):
                chars.extend(piece)
                styles.extend([self._style] * len(piece))
            else:
                chars[column : self._column] = piece
                styles[column : self._column] = [self._style] * len(piece)

    def _render(self) -> str:
        if self._runs is not None:
            runs = self._runs
            if self._erased:
                end = len(runs)
                while end and runs[end - 1][0] is None:
                    end -= 1
                runs = runs[:end]
            if not self._coloured:
                return "".join(text for _, text in runs)
        else:
            chars, styles = self._chars, self._styles
            length = len(chars)
            if self._erased:
                while length and styles[length - 1] is None:
                    length -= 1
            if not self._coloured:
                return "".join(chars[:length])
            runs = []
            position = 0
            for style, run in groupby(styles[:length]):
                size = sum(1 for _ in run)
                runs.append((style, "".join(chars[position : position + size])))
                position += size
        out: list[str] = []
        state = ""
        for style, text in runs:
            style = style or ""
            if style != state:
                out.append(_transition(state, style))
                state = style
            out.append(text)
        out.append(_transition(state, ""))
        return "".join(out)

    def _finish(self) -> str:
        line = self._render()
        self._runs = []
        self._length = 0
        self._chars = []
        self._styles = []
        self._column = 0
        self._coloured = self._erased = False
        return line

    def current(self) -> str:
        """The line being written, as it shows now ("" when there is none)."""
        if self._rendered is None or self._rendered[0] != self._version:
            self._rendered = (self._version, self._render() if self.has_open else "")
        return self._rendered[1]

    def close(self) -> str | None:
        """Ends the line being written (the stream stopped, or another took over): the line,
        or None when it shows nothing (a progress bar that erased itself)."""
        self._version += 1
        if not self.has_open:
            self._column = 0
            return None
        line = self._finish()
        return line if strip_sgr(line).strip() else None

    def end(self) -> str | None:
        """The stream ended: closes the line and drops a sequence left unfinished."""
        self._scanner.end()
        return self.close()


def terminal_lines(text: str) -> list[str]:
    """A whole text as the lines a terminal shows for it."""
    terminal = TerminalText()
    lines = terminal.feed(text)
    last = terminal.end()
    if last is not None:
        lines.append(last)
    return lines


class OutputLines:
    """An execution's output events as the lines they show, by kind (stdout, stderr, result,
    error, note): each kind is its own stream, and a kind taking over ends the line another
    left open, as the cell has always shown it."""

    def __init__(self, max_columns: int = MAX_COLUMNS) -> None:
        self.max_columns = max_columns
        self._streams: dict[str, TerminalText] = {}
        self._open_kind: str | None = None

    def feed(self, kind: str, text: str) -> list[tuple[str, str]]:
        """Text of one kind; the lines it finished."""
        if not text:
            return []
        done = []
        if self._open_kind is not None and self._open_kind != kind:
            done.extend(self.close())
        stream = self._streams.get(kind)
        if stream is None:
            stream = self._streams[kind] = TerminalText(self.max_columns)
        done.extend((kind, line) for line in stream.feed(text))
        self._open_kind = kind if stream.has_open else None
        return done

    def feed_event(self, event: dict[str, Any]) -> list[tuple[str, str]]:
        """A protocol event (stream, result, error); other kinds show nothing."""
        kind = event.get("type")
        if kind == "stream":
            return self.feed("stderr" if event.get("name") == "stderr" else "stdout", str(event.get("text") or ""))
        if kind == "result":
            text = str((event.get("data") or {}).get("text/plain", ""))
            count = event.get("count")
            prefix = f"Out[{count}]: " if count is not None else ""
            return [*self.close(), *self.feed("result", prefix + text + "\n")]
        if kind == "error":
            traceback = str(event.get("traceback") or "")
            if traceback:
                text = traceback if traceback.endswith("\n") else traceback + "\n"
            elif event.get("ename") == "ExitStatus":
                text = f"{event.get('evalue') or 'non-zero exit status'}\n"
            else:
                text = f"{event.get('ename', 'Error')}: {event.get('evalue', '')}\n"
            return [*self.close(), *self.feed("error", text)]
        return []

    @property
    def open_line(self) -> tuple[str, str] | None:
        """The line still being written and its kind, as it shows now."""
        if self._open_kind is None:
            return None
        return self._open_kind, self._streams[self._open_kind].current()

    def close(self) -> list[tuple[str, str]]:
        """Ends the open line (something else is shown after it)."""
        if self._open_kind is None:
            return []
        kind, self._open_kind = self._open_kind, None
        line = self._streams[kind].close()
        return [] if line is None else [(kind, line)]

    def end(self) -> list[tuple[str, str]]:
        """The execution ended: the open line is finished and unfinished sequences dropped."""
        done = self.close()
        for stream in self._streams.values():
            stream.end()
        return done


def strip_sgr(line: str) -> str:
    """A sanitised line's plain text: what it shows, without colours (for a pipe, a search,
    or measuring its width)."""
    if "\x1b" not in line:
        return line
    plain = _CANONICAL_SGR.sub("", line)
    return plain if "\x1b" not in plain else sanitize(plain)


def truncate(line: str, limit: int) -> tuple[str, int]:
    """A sanitised line cut after `limit` shown characters, never inside a colour sequence (a
    style left open is reset), and how many characters were cut off."""
    if len(line) <= limit:
        return line, 0
    if "\x1b" not in line:
        return line[:limit], len(line) - limit
    out: list[str] = []
    shown = cut = position = 0
    styled = False
    for match in _CANONICAL_SGR.finditer(line):
        shown, cut = _take(line[position : match.start()], limit, shown, cut, out)
        if not cut:
            out.append(match.group())
            styled = match.group() not in ("\x1b[0m", "\x1b[m")
        position = match.end()
    shown, cut = _take(line[position:], limit, shown, cut, out)
    if cut and styled:
        out.append("\x1b[0m")
    return "".join(out), cut


def _take(text: str, limit: int, shown: int, cut: int, out: list[str]) -> tuple[int, int]:
    """Appends what of `text` fits before `limit`: the characters shown and cut so far."""
    kept = min(max(0, limit - shown), len(text))
    out.append(text[:kept])
    return shown + kept, cut + len(text) - kept


def expand_tabs(line: str, tab_size: int = 8) -> str:
    """A sanitised line with its tabs turned into the spaces a terminal shows for them
    (colour sequences take no columns)."""
    if "\t" not in line:
        return line
    out: list[str] = []
    column = 0
    for piece in re.split(r"(\x1b\[[0-9;]*m)", line):
        if piece.startswith("\x1b"):
            out.append(piece)
            continue
        for index, part in enumerate(piece.split("\t")):
            if index:
                spaces = tab_size - column % tab_size
                out.append(" " * spaces)
                column += spaces
            out.append(part)
            column += len(part)
    return "".join(out)


def sanitize(text: str, keep: str = "\t", colours: bool = False) -> str:
    """`text` with every escape sequence and control character removed but the controls in
    `keep` and, with `colours`, SGR sequences (as written: they change nothing but the look).
    No line model: `\\r` and erasing are not applied (a stream written to a terminal as it
    comes gets them applied there)."""
    scanner = _Scanner()
    out: list[str] = []
    for kind, value in scanner.scan(text):
        if kind == _TEXT:
            out.append(value if "\t" in keep or "\t" not in value else value.replace("\t", ""))
        elif kind == _CONTROL:
            if value in keep:
                out.append(value)
        elif colours and value[-1] == "m" and _SGR_PARAMS.fullmatch(value[:-1]):
            out.append(f"\x1b[{value}")
    return "".join(out)
