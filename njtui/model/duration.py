"""Durations as people write them in notebook files: "20m", "90s", "1h30m", "1.5h"."""

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in `text`; a bare number counts as seconds."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise DurationError("empty duration")
    try:
        return float(compact)
    except ValueError:
        pass
    position = 0
    total = 0.0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(compact) or position == 0:
        raise DurationError(f"{text!r} is not a duration; write it like 20m, 90s, 1h30m or 2.5h")
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
