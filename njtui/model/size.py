"""Memory sizes as people write them in notebook files: "256MB", "2GiB", "1.5G", "512m"."""

import math
import re

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
# Longer than any size a person writes; a cap keeps the parse cheap on hostile input.
_MAX_LENGTH = 64


class SizeError(ValueError):
    pass


def parse_size(text: str) -> int:
    """Bytes in `text`. Decimal units (MB = 10^6) unless written binary (MiB = 2^20); a bare
    letter (512m, 2g) is binary, as Docker reads it."""
    match = _SIZE.fullmatch(text) if len(text) <= _MAX_LENGTH else None
    if match is None:
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
        raise SizeError(f"{shown} is not a size; write it like 256MB, 2GiB or 512m")
    number, unit, binary, byte = match.groups()
    base = 1024 if binary or (unit and not byte) else 1000
    count = float(number) * base ** _POWERS[unit.lower()]
    if not math.isfinite(count):
        raise SizeError(f"{text!r} is too large to be a size")
    return int(count)


def format_size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
