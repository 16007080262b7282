"""Which way pictures are drawn: decided once, before the app starts.

Sixel and the kitty graphics protocol draw real pixels, but only some terminals have them, and
knowing means asking the terminal: a query whose answer comes on the terminal's input. Once
Textual owns that input, the answer would arrive as keys (and a key typed at that moment would
be taken for the answer). So `prepare()` runs before the app: the user's choice
(`NJTUI_GRAPHICS=auto|kitty|sixel|blocks`, else `graphics = "…"` in the user config), else what
the environment says (kitty: `TERM=xterm-kitty`, `KITTY_WINDOW_ID`, ghostty; sixel: WezTerm,
iTerm2), else, on a terminal, a Primary Device Attributes query on /dev/tty, answered at once by
every terminal, whose answer lists 4 where sixel is there (given up after QUERY_TIMEOUT).

Kitty (and ghostty) pictures are drawn in real pixels with the protocol's Unicode placeholders
(njtui.ui.kitty), also through tmux when tmux passes them on (`allow-passthrough on`, decided
from tmux itself). Everywhere else pictures are colour half blocks: sixel needs a widget per
picture that the terminal places itself, outside Textual's cells (textual-image 0.12 does it by
writing to the terminal from inside a render, racing Textual's writer thread), so a sixel
terminal gets half blocks too, and `decision()` says so.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rich.console import RenderableType

from njtui.ui.config import GRAPHICS_CHOICES as CHOICES
from njtui.ui.images import DrawnImage

ENVIRONMENT_VARIABLE = "NJTUI_GRAPHICS"
QUERY_TIMEOUT = 0.2  # seconds: a terminal answers in milliseconds, also over SSH; none answers never


@dataclass(frozen=True)
class Decision:
    protocol: str  # kitty | sixel | blocks
    reason: str  # why, in words
    through_tmux: bool = False  # kitty's sequences go in tmux's passthrough wrapper


_decision = Decision("blocks", "not decided: the app draws half blocks")


def protocol() -> str:
    return _decision.protocol


def decision() -> Decision:
    return _decision


def from_environment(environ: Mapping[str, str]) -> Decision | None:
    """What the terminal is known to draw from its environment alone; None: not known."""
    inside_tmux = bool(environ.get("TMUX"))
    term = environ.get("TERM", "")
    program = environ.get("TERM_PROGRAM", "")
    if inside_tmux and tmux_passes_kitty():
        return Decision("kitty", "tmux passes kitty graphics through to the terminal it runs in", through_tmux=True)
    if inside_tmux or term.startswith(("tmux", "screen")):
        # tmux drops both protocols unless `allow-passthrough on`, and the sequences then need
        # wrapping for it: half blocks draw the same through it.
        return Decision("blocks", "inside tmux (or screen), which passes graphics through only when configured to")
    if term == "xterm-kitty" or environ.get("KITTY_WINDOW_ID"):
        return Decision("kitty", "kitty")
    if program == "ghostty" or term == "xterm-ghostty":
        return Decision("kitty", "ghostty")
    if program in ("WezTerm", "iTerm.app"):
        # Both draw sixel; neither draws kitty's Unicode placeholders, which a Textual screen needs.
        return Decision("sixel", program)
    return None


def tmux_passes_kitty() -> bool:
    """Inside tmux: whether it passes escape sequences through (`allow-passthrough on`) to a
    terminal that draws kitty's placeholders (the client's own TERM)."""
    import subprocess

    try:
        passthrough = subprocess.run(["tmux", "show", "-gv", "allow-passthrough"], capture_output=True, text=True, timeout=2).stdout.strip()
        outer = subprocess.run(["tmux", "display", "-p", "#{client_termname}"], capture_output=True, text=True, timeout=2).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return passthrough in ("on", "all") and outer in ("xterm-kitty", "xterm-ghostty")


def resolve(choice: str | None, environ: Mapping[str, str], *, ask_terminal: bool = True) -> Decision:
    """The protocol for `choice` (the setting: None or "auto" decides from the terminal)."""
    choice = (choice or "auto").strip().lower()
    if choice not in CHOICES:
        return Decision("blocks", f"unknown graphics setting {choice!r} (one of {', '.join(CHOICES)}): half blocks")
    if choice != "auto":
        return Decision(choice, "set by the user", through_tmux=bool(environ.get("TMUX")))
    known = from_environment(environ)
    if known is not None:
        return known
    if ask_terminal and query_sixel():
        return Decision("sixel", "the terminal answered that it draws sixel")
    return Decision("blocks", "the terminal draws no pixel graphics that are known")


def query_sixel(tty: str = "/dev/tty", timeout: float = QUERY_TIMEOUT) -> bool:
    """Asks the terminal (Primary Device Attributes, `ESC [ c`) whether it draws sixel: its
    answer `ESC [ ? 6x ; … c` lists 4 then. Only while njtui's own standard streams are that
    terminal, and never once Textual reads it."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    try:
        import termios
        import tty as tty_modes
    except ImportError:
        return False
    try:
        fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        os.close(fd)
        return False
    answer = b""
    try:
        tty_modes.setcbreak(fd, termios.TCSANOW)
        os.write(fd, b"\x1b[c")
        deadline = time.monotonic() + timeout
        while not answer.endswith(b"c") and len(answer) < 256:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            answer += os.read(fd, 256)
    except OSError:
        return False
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
        os.close(fd)
    start = answer.find(b"\x1b[?")
    if start < 0 or not answer.endswith(b"c"):
        return False
    return b"4" in answer[start + 3 : -1].split(b";")


def prepare(choice: str | None = None, environ: Mapping[str, str] | None = None) -> Decision:
    """Decides, before the app starts: the environment variable wins over `choice` (the user
    config's `graphics`)."""
    global _decision
    environ = os.environ if environ is None else environ
    setting = environ.get(ENVIRONMENT_VARIABLE) or choice
    _decision = resolve(setting, environ)
    return _decision


def drawn(image: DrawnImage) -> RenderableType:
    """A picture as this terminal draws it: kitty's placeholders where it has them
    (njtui.ui.kitty), half blocks elsewhere (sixel needs a widget per picture that the
    terminal, not Textual, places: not drawn yet, so half blocks there too)."""
    if _decision.protocol == "kitty":
        from njtui.ui.kitty import KittyImage

        return KittyImage(image, through_tmux=_decision.through_tmux)
    return image
