"""Durations as people write them in notebook files: "20m", "90s", "1h30m", "1.5h"."""

import math
import re

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Longer than any duration a person writes; a cap keeps the parse cheap on hostile input.
_MAX_LENGTH = 64


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in `text`, finite and not negative; a bare number counts as seconds."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise DurationError("empty duration")
    shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
    if len(compact) > _MAX_LENGTH:
        raise DurationError(f"{shown} is too long to be a duration; write it like 20m, 90s, 1h30m or 2.5h")
    # float() would also take "nan", "inf", "1e999" and "-5": only plain digits are a number here.
    if _NUMBER.fullmatch(compact):
        total = float(compact)
    else:
        position = 0
        total = 0.0
        while position < len(compact):
            match = _PART.match(compact, position)
            if match is None:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(compact) or position == 0:
            raise DurationError(f"{shown} is not a duration; write it like 20m, 90s, 1h30m or 2.5h")
    if not math.isfinite(total):
        raise DurationError(f"{shown} is too large to be a duration")
    return total


def format_duration(seconds: float) -> str:
    """Short human form: 0.42s, 12.3s, 4m05s, 2h03m."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
