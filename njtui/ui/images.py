"""Images drawn in a cell: those it left in /results (under its output) and its rich outputs'
images (image/png, image/jpeg, image/gif; image/svg+xml once rasterised), in their place.

They are drawn as coloured half blocks: "▀" with a foreground and a background colour, two
pixels a cell, decoded and resampled by Pillow. That works in every 256-colour and truecolor
terminal, through tmux and over SSH, which is where njtui is used. Sixel and the kitty graphics
protocol need a query to the terminal to know they are there, and that query cannot be made
while Textual owns the terminal's input (textual-image makes it when imported, which also eats
a key typed at that moment); tmux drops them too unless configured to pass them through. So which protocol draws is
decided before the app starts (njtui.ui.graphics); half blocks are what every terminal gets.
The file list under the cell stays the exact record.
"""

from __future__ import annotations

import io
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from PIL import Image as PILImage
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

DRAWN_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
MAX_IMAGES_PER_CELL = 2  # the rest stay in the file list; `njtui results --extract` has them all
MAX_COLUMNS = 48
MAX_ROWS = 12
MAX_FILE_BYTES = 32 * 1024 * 1024  # decoding happens on the UI thread: larger files are listed only
# Decoding happens on the UI thread: an image is drawn only when its pixels are few enough to
# decode in a moment (checked from its header, before decoding).
MAX_PIXELS = 40_000_000
_CACHE_SIZE = 32


def fit(width_px: int, height_px: int, max_columns: int) -> tuple[int, int]:
    """Columns and rows that keep the image's aspect (a half-cell pixel is about square)."""
    columns = max(1, min(MAX_COLUMNS, max_columns, width_px))
    rows = max(1, math.ceil(columns * height_px / width_px / 2))
    if rows > MAX_ROWS:
        rows = MAX_ROWS
        columns = max(1, min(columns, round(rows * 2 * width_px / height_px)))
    return columns, rows


class DrawnImage:
    """One image (a file, or bytes of an output), sized to the width it is given when drawn.
    `width_px` and `height_px` set its shape (an output's metadata may ask for a size)."""

    def __init__(self, source: Path | bytes, width_px: int, height_px: int, name: str | None = None) -> None:
        self.source = source
        self.name = name or (source.name if isinstance(source, Path) else "image")
        self.width_px = width_px
        self.height_px = height_px
        self._rows: tuple[tuple[int, int], list[list[Segment]]] | None = None  # the last size drawn

    def _open(self) -> IO[bytes] | Path:
        return io.BytesIO(self.source) if isinstance(self.source, bytes) else self.source

    def _draw(self, columns: int, rows: int) -> list[list[Segment]]:
        if self._rows is not None and self._rows[0] == (columns, rows):
            return self._rows[1]
        with PILImage.open(self._open()) as opened:
            opened.seek(0)  # the first frame of an animation
            opened.draft("RGB", (columns, rows * 2))  # a JPEG decodes at a fraction of its size; others ignore it
            pixels = opened.convert("RGB").resize((columns, rows * 2), PILImage.Resampling.BOX)
        data = pixels.tobytes()  # RGB, row after row
        stride = columns * 3
        lines = []
        for row in range(rows):
            upper = data[2 * row * stride : (2 * row + 1) * stride]
            lower = data[(2 * row + 1) * stride : (2 * row + 2) * stride]
            lines.append([Segment("▀", _style(upper[i : i + 3], lower[i : i + 3])) for i in range(0, stride, 3)])
        self._rows = ((columns, rows), lines)
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns, rows = fit(self.width_px, self.height_px, options.max_width - 2)
        try:
            lines = self._draw(columns, rows)
        except (OSError, ValueError, PILImage.DecompressionBombError) as exc:  # the file went, or decodes to nothing
            yield Text(f"  (cannot draw {self.name}: {exc})", style="dim italic")
            return
        for line in lines:
            yield Segment("  ")
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        columns = fit(self.width_px, self.height_px, options.max_width - 2)[0] + 2
        return Measurement(columns, columns)


def _style(top: bytes, bottom: bytes) -> Style:
    return Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))


def estimated_rows(files: list[dict[str, Any]]) -> int:
    """Rows the images of a cell take at most, for a cell not yet drawn (the view measures it then)."""
    drawable = [entry for entry in files if entry.get("type") in DRAWN_TYPES and entry.get("sha256")]
    return MAX_ROWS * min(len(drawable), MAX_IMAGES_PER_CELL)


_opened: OrderedDict[str, DrawnImage | str] = OrderedDict()


def drawn_images(files: list[dict[str, Any]], blob_path: Callable[[str], Path]) -> list[DrawnImage | Text]:
    """What to draw for a cell's files: images, or a line saying why one can't be drawn."""
    drawn: list[DrawnImage | Text] = []
    for entry in files:
        if entry.get("type") not in DRAWN_TYPES or not entry.get("sha256"):
            continue
        if len(drawn) == MAX_IMAGES_PER_CELL:
            break
        if entry.get("size", 0) > MAX_FILE_BYTES:
            drawn.append(Text(f"  ({entry['name']} is too large to draw here)", style="dim italic"))
            continue
        digest = entry["sha256"]
        image = _opened.get(digest)
        if image is None:
            image = _open(blob_path(digest))
            _opened[digest] = image
            while len(_opened) > _CACHE_SIZE:
                _opened.popitem(last=False)
        drawn.append(image if isinstance(image, DrawnImage) else Text(f"  (cannot draw {entry['name']}: {image})", style="dim italic"))
    return drawn


def _open(path: Path) -> DrawnImage | str:
    return opened_image(path)


def opened_image(source: Path | bytes, name: str | None = None, size: tuple[int, int] | None = None) -> DrawnImage | str:
    """An image ready to draw, or why it can't be: only its header is read here. `size`: the
    shape to draw it in (pixels), when its output's metadata asks for one."""
    try:
        with PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
            width, height = opened.size
    except (OSError, ValueError, PILImage.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    if width <= 0 or height <= 0:
        return "empty image"
    if width * height > MAX_PIXELS:
        return f"{width}×{height} pixels, too many to draw here"
    if size is not None and size[0] > 0 and size[1] > 0:
        width, height = size
    return DrawnImage(source, width, height, name)
