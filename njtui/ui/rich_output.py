"""Rich outputs (the protocol's MIME bundles, docs/protocol.md) drawn in a terminal, one model for
every runtime: the cell shows each bundle as the richest type a terminal can draw, the pager
shows every type a bundle has.

What a bundle holds is untrusted: every text is made terminal-safe (njtui.model.output) before
Rich sees it, Markdown links are drawn as text (no OSC 8), and HTML is converted to Markdown by
markdownify (its <script> and <style> content dropped) rather than shown. Images are decoded
from their bytes only when drawn, bounded in size (njtui.ui.images), SVG rasterised by resvg
(a self-contained wheel: no system library). A rendering is cached per width on its output, so
a cell streaming text under a plot redraws the plot from memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.json import JSON
from rich.markdown import Markdown
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text

from njtui.model.output import display_id_of, is_json_mime, terminal_safe
from njtui.ui import graphics
from njtui.ui.images import MAX_ROWS, DrawnImage, opened_image

RASTER_TYPES = ("image/png", "image/jpeg", "image/gif")
SVG_TYPE = "image/svg+xml"
# The richest a terminal can draw first, as Jupyter frontends rank them (JavaScript and widgets
# can't run here); JSON types beyond application/json come after it, text/plain last.
PREFERENCE = ("text/markdown", *RASTER_TYPES, SVG_TYPE, "text/html", "text/latex", "application/json")
MAX_RICH_ROWS = 24  # rows one rich output takes in a cell at most; the pager shows it all
MAX_RENDERED_CHARS = 256 * 1024  # larger text is shown as text/plain in a cell (Markdown of a huge table costs seconds)
MAX_IMAGE_BASE64 = 16 * 1024 * 1024  # an image output larger than this is not decoded (12 MiB of bytes)
MAX_SVG_CHARS = 2 * 1024 * 1024
SVG_RASTER_WIDTH = 640  # pixels: far more than half blocks need, enough for a graphics protocol
NOTE_STYLE = "dim italic"


def drawn_as_bundle(event: dict[str, Any]) -> bool:
    """Whether a `result`, `display` or `update_display` is drawn as its bundle: every display,
    and a result with more than text/plain or with a display id. A plain result stays the
    `Out[n]:` text line it was before there were rich outputs."""
    kind = event.get("type")
    if kind not in ("result", "display", "update_display"):
        return False
    data = event.get("data")
    return kind != "result" or (isinstance(data, dict) and bool(set(data) - {"text/plain"})) or display_id_of(event) is not None


def is_image_type(mime: str) -> bool:
    return mime in RASTER_TYPES or mime == SVG_TYPE


def chosen_type(data: dict[str, Any], *, images: bool = True) -> str | None:
    """The type a cell draws of a bundle: the first of PREFERENCE it has (`images`: False where
    the terminal can't draw pictures), then any JSON type, then text/plain; None for a bundle of
    nothing drawable."""
    for mime in PREFERENCE:
        if mime in data and (images or not is_image_type(mime)):
            return mime
    for mime in data:
        if is_json_mime(mime):
            return mime
    return "text/plain" if "text/plain" in data else None


def text_of(value: Any) -> str:
    """A text type's value as one string (nbformat may store a list of lines)."""
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return value if isinstance(value, str) else str(value)


def safe_text(value: Any) -> str:
    return terminal_safe(text_of(value), keep="\t\n")


def image_bytes(value: Any) -> bytes | str:
    """An image type's base64 value as bytes, or why it can't be decoded."""
    encoded = text_of(value)
    if len(encoded) > MAX_IMAGE_BASE64:
        return f"{len(encoded) * 3 // 4:,} bytes, too large to draw here"
    try:
        return base64.b64decode(encoded)
    except (binascii.Error, ValueError) as exc:
        return f"not base64: {exc}"


# resvg follows an <image href="/any/local/file.png">: an output from someone else's notebook
# must not draw (and so read) this machine's files. Only in-document references stay: a
# fragment (#id) or inline data. Entities and escapes in a reference are dropped with it.
_EXTERNAL_REFERENCE = re.compile(r"""\b(?:xlink:)?href\s*=\s*(["'])(?!\s*(?:#|data:))[^"']*\1""", re.IGNORECASE)


def svg_png(value: Any) -> bytes | str:
    """An SVG document rasterised to PNG bytes, or why it can't be."""
    source = _EXTERNAL_REFERENCE.sub("", text_of(value))
    if len(source) > MAX_SVG_CHARS:
        return f"{len(source):,} characters of SVG, too large to draw here"
    try:
        import resvg_py
    except ImportError:
        return "resvg-py is not installed"
    try:
        # System fonts are not loaded: it costs tens of milliseconds each time, and text in an
        # SVG drawn in half blocks is not readable anyway.
        return bytes(resvg_py.svg_to_bytes(svg_string=source, width=SVG_RASTER_WIDTH, skip_system_fonts=True))
    except (ValueError, OSError, RuntimeError) as exc:
        return str(exc) or type(exc).__name__


def _metadata_size(metadata: dict[str, Any], mime: str) -> tuple[int, int] | None:
    """The size (pixels) an image output's metadata asks for, when it gives both sides."""
    entry = metadata.get(mime) if isinstance(metadata, dict) else None
    if not isinstance(entry, dict):
        return None
    width, height = entry.get("width"), entry.get("height")
    if isinstance(width, int | float) and isinstance(height, int | float) and width > 0 and height > 0:
        return int(width), int(height)
    return None


def image_renderable(mime: str, value: Any, metadata: dict[str, Any]) -> RenderableType:
    """An image output drawn, or a line saying why it is not."""
    data = svg_png(value) if mime == SVG_TYPE else image_bytes(value)
    if isinstance(data, str):
        return Text(f"  ({mime}: {data})", style=NOTE_STYLE)
    image = opened_image(data, mime, _metadata_size(metadata, mime))
    if isinstance(image, str):
        return Text(f"  ({mime}: cannot draw it: {image})", style=NOTE_STYLE)
    return graphics.drawn(image)


def json_renderable(value: Any) -> RenderableType:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return Text(safe_text(value))
    # Control characters are escaped by json.dumps, C1 controls are not: made safe after it.
    return JSON(terminal_safe(json.dumps(value, indent=2, ensure_ascii=False, default=str), keep="\n"), indent=2, highlight=True)


def html_markdown(html: str) -> str:
    import markdownify

    return str(markdownify.markdownify(html, heading_style="ATX", bullets="•-*", strip=["img"]))


def text_renderable(mime: str, value: Any) -> RenderableType:
    """A text type drawn: Markdown, HTML (as Markdown), JSON, or the text itself."""
    if is_json_mime(mime):
        return json_renderable(value)
    text = safe_text(value)
    if mime == "text/markdown":
        return Markdown(text, hyperlinks=False)
    if mime == "text/html":
        return Markdown(terminal_safe(html_markdown(text), keep="\t\n"), hyperlinks=False)
    return Text(text.rstrip("\n"))


def mime_renderable(mime: str, value: Any, metadata: dict[str, Any]) -> RenderableType:
    if is_image_type(mime):
        return image_renderable(mime, value, metadata)
    return text_renderable(mime, value)


def too_large(mime: str, value: Any) -> bool:
    """Text too long to lay out in a cell (the pager lays it out once, off the UI thread)."""
    return not is_image_type(mime) and not is_json_mime(mime) and len(text_of(value)) > MAX_RENDERED_CHARS


class Clipped:
    """A renderable cut to `max_rows` rows under a two-column gutter, with a note of what was cut,
    its lines kept for the last width it was drawn at."""

    def __init__(self, renderable: RenderableType, max_rows: int = MAX_RICH_ROWS, gutter: str = "  ") -> None:
        self.renderable = renderable
        self.max_rows = max_rows
        self.gutter = gutter
        self._lines: tuple[int, list[list[Segment]]] | None = None

    def lines(self, console: Console, width: int) -> list[list[Segment]]:
        if self._lines is None or self._lines[0] != width:
            inner = max(1, width - len(self.gutter))
            options = console.options.update(width=inner, height=None, no_wrap=False, overflow="fold")
            self._lines = (width, console.render_lines(self.renderable, options, pad=False))
        return self._lines[1]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = self.lines(console, options.max_width)
        # Markdown starts and ends with blank lines: the cell's rows are dear.
        while lines and _blank(lines[-1]):
            lines = lines[:-1]
        while lines and _blank(lines[0]):
            lines = lines[1:]
        for line in lines[: self.max_rows]:
            yield Segment(self.gutter)
            yield from line
            yield Segment.line()
        if len(lines) > self.max_rows:
            yield Text(f"{self.gutter}… {len(lines) - self.max_rows:,} more rows · o opens the full output", style=NOTE_STYLE)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)


def _blank(line: list[Segment]) -> bool:
    return not "".join(segment.text for segment in line).strip()


def cell_renderable(data: dict[str, Any], metadata: dict[str, Any], *, images: bool = True) -> tuple[RenderableType, int]:
    """What a cell draws for one bundle, and a guess of its height in rows (for a cell not yet
    drawn). `images`: False where pictures can't be drawn (no colours): another type is drawn."""
    mime = chosen_type(data, images=images)
    if mime is None:
        kinds = ", ".join(terminal_safe(str(key)) for key in data) or "nothing"
        return Text(f"  ({kinds}: not drawn here · o opens the full output)", style=NOTE_STYLE), 1
    value = data[mime]
    if too_large(mime, value):
        plain = data.get("text/plain")
        note = Text(f"  ({mime}, {len(text_of(value)):,} characters: o opens it in full)", style=NOTE_STYLE)
        if plain is None:
            return note, 1
        return Group(Clipped(Text(safe_text(plain).rstrip("\n"))), note), MAX_RICH_ROWS + 1
    renderable = mime_renderable(mime, value, metadata)
    if is_image_type(mime):
        return renderable, MAX_ROWS
    rows = min(MAX_RICH_ROWS, text_of(value).count("\n") + 1) if not is_json_mime(mime) else MAX_RICH_ROWS
    return Clipped(renderable), rows


def pager_parts(data: dict[str, Any], metadata: dict[str, Any]) -> Iterable[tuple[str, RenderableType]]:
    """Every type of a bundle, each labelled, in full: what the pager shows of it."""
    order = [mime for mime in (*PREFERENCE, "text/plain") if mime in data]
    order += [mime for mime in data if mime not in order]
    for mime in order:
        value = data[mime]
        label = terminal_safe(str(mime))
        if is_image_type(mime) or is_json_mime(mime) or mime.startswith("text/"):
            if mime in ("text/markdown", "text/html"):
                # The source as written, then as drawn: a search finds both.
                yield f"{label} (source)", Text(safe_text(value).rstrip("\n"))
            yield label, mime_renderable(mime, value, metadata)
        else:
            yield label, Text(f"({len(text_of(value)):,} characters, not drawn in a terminal)", style=NOTE_STYLE)


def drawn_lines(renderable: RenderableType, console: Console, width: int) -> list[list[Segment]]:
    return console.render_lines(renderable, console.options.update(width=width, height=None), pad=False)


__all__ = ["Clipped", "DrawnImage", "cell_renderable", "chosen_type", "pager_parts"]
