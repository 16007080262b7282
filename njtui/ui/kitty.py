"""Pictures in real pixels through the kitty graphics protocol, inside a Textual screen.

Textual owns every cell of the screen and redraws them as it likes, so a picture cannot be
placed at a cursor position as a plain terminal program would. The protocol's Unicode
placeholders fit that model: the image is sent to the terminal once (an APC sequence written
beside Textual's output, never inside a cell), as a *virtual placement* of C×R cells, and the
cells that show it are ordinary text, U+10EEEE, whose foreground colour names the image and
whose combining marks give each row's number. Textual lays them out, scrolls and clips them
like any character; the terminal draws the picture's slice in each. Through tmux the APC goes
in tmux's passthrough wrapper (tmux passes it only with `allow-passthrough on`), and the
placeholders are plain text to tmux.

Kitty and ghostty draw placeholders. Elsewhere (and in the pager, which keeps text lines)
pictures are colour half blocks (njtui.ui.images).
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from typing import Any

from PIL import Image as PILImage
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

from njtui.ui.images import DrawnImage, fit

PLACEHOLDER = "\U0010eeee"
# The protocol's numbering of rows and columns by combining marks (its rowcolumn-diacritics
# table), as far as a picture here can reach: njtui draws at most 63 rows.
DIACRITICS = (
    "\u0305\u030d\u030e\u0310\u0312\u033d\u033e\u033f\u0346\u034a\u034b\u034c\u0350\u0351\u0352\u0357"
    "\u035b\u0363\u0364\u0365\u0366\u0367\u0368\u0369\u036a\u036b\u036c\u036d\u036e\u036f\u0483\u0484"
    "\u0485\u0486\u0487\u0592\u0593\u0594\u0595\u0597\u0598\u0599\u059c\u059d\u059e\u059f\u05a0\u05a1"
    "\u05a8\u05a9\u05ab\u05ac\u05af\u05c4\u0610\u0611\u0612\u0613\u0614\u0615\u0616\u0617\u0657\u0658"
)
CHUNK = 4096  # base64 bytes per APC, the protocol's limit
MAX_PIXELS_SENT = 1600  # the longer side of what is sent: a terminal cell row is never finer


def transmission(png: bytes, image_id: int, columns: int, rows: int, through_tmux: bool = False) -> str:
    """The escape sequences that give the terminal a PNG as image `image_id`, placed virtually
    over columns × rows cells, quietly (no answer comes back on the input Textual reads)."""
    data = base64.standard_b64encode(png).decode("ascii")
    chunks = [data[start : start + CHUNK] for start in range(0, len(data), CHUNK)] or [""]
    sequences = []
    for index, chunk in enumerate(chunks):
        more = int(index < len(chunks) - 1)
        keys = f"a=T,U=1,f=100,q=2,i={image_id},c={columns},r={rows},m={more}" if index == 0 else f"q=2,m={more}"
        sequence = f"\x1b_G{keys};{chunk}\x1b\\"
        if through_tmux:
            sequence = "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
        sequences.append(sequence)
    return "".join(sequences)


def placeholder_rows(image_id: int, columns: int, rows: int) -> list[str]:
    """Each row's cells: the first names its row and column 0; the rest follow on by one column."""
    return [PLACEHOLDER + DIACRITICS[row] + DIACRITICS[0] + PLACEHOLDER * (columns - 1) for row in range(rows)]


def image_id_of(png: bytes, columns: int, rows: int) -> int:
    """A 24-bit id (the foreground colour carries it) from the picture and the cells it covers:
    the same picture drawn twice at one size is sent once, and one at another size is another
    image, so neither placement moves the other. Never 0, which the protocol reserves."""
    return int.from_bytes(hashlib.sha256(png + f"{columns}x{rows}".encode()).digest()[:3], "big") or 1


class _Sent:
    """What each terminal connection (a Textual driver) has been sent already."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_driver: dict[int, set[int]] = {}

    def first_time(self, driver: Any, image_id: int) -> bool:
        with self._lock:
            sent = self._by_driver.setdefault(id(driver), set())
            if image_id in sent:
                return False
            sent.add(image_id)
            return True


_SENT = _Sent()


def _driver() -> Any:
    """The running app's terminal driver, when drawing for it on its own thread; else None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        from textual._context import active_app
    except ImportError:
        return None
    app = active_app.get(None)
    return getattr(app, "_driver", None) if app is not None and not getattr(app, "is_headless", False) else None


class KittyImage:
    """A picture drawn by the terminal in kitty's placeholders; half blocks where there is no
    terminal to send it to (a headless app, the pager's thread)."""

    def __init__(self, image: DrawnImage, through_tmux: bool = False) -> None:
        self.image = image
        self.through_tmux = through_tmux
        self._png: bytes | None = None

    def _png_bytes(self) -> bytes:
        if self._png is None:
            source = self.image.source
            with PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
                opened.seek(0)
                picture = opened.convert("RGBA")
            picture.thumbnail((MAX_PIXELS_SENT, MAX_PIXELS_SENT))
            encoded = io.BytesIO()
            picture.save(encoded, format="PNG")
            self._png = encoded.getvalue()
        return self._png

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        driver = _driver()
        if driver is None:
            yield self.image
            return
        columns, rows = fit(self.image.width_px, self.image.height_px, options.max_width - 2)
        rows = min(rows, len(DIACRITICS))
        try:
            png = self._png_bytes()
        except (OSError, ValueError, PILImage.DecompressionBombError):
            yield self.image  # says why it cannot be drawn
            return
        image_id = image_id_of(png, columns, rows)
        if _SENT.first_time(driver, image_id):
            # Written beside the frame, before it: the placement exists when its cells appear.
            driver.write(transmission(png, image_id, columns, rows, self.through_tmux))
        style = Style(color=Color.from_rgb((image_id >> 16) & 0xFF, (image_id >> 8) & 0xFF, image_id & 0xFF))
        for line in placeholder_rows(image_id, columns, rows):
            yield Segment("  ")
            yield Segment(line, style)
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return self.image.__rich_measure__(console, options)
