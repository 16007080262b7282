"""Plain data: notebooks, cells, runtime settings, execution records. No I/O here."""

from njtui.model.duration import DurationError, format_duration, parse_duration
from njtui.model.notebook import (
    CELL_KINDS,
    DEFAULT_IDLE_TIMEOUT,
    FORMAT_VERSION,
    HOST_ENVIRONMENT,
    LANGUAGES,
    Cell,
    Notebook,
    RuntimeSpec,
    new_cell_id,
    source_hash,
)
from njtui.model.output import EXEC_STATUSES, ExecutionRecord

__all__ = [
    "CELL_KINDS",
    "DEFAULT_IDLE_TIMEOUT",
    "EXEC_STATUSES",
    "FORMAT_VERSION",
    "HOST_ENVIRONMENT",
    "LANGUAGES",
    "Cell",
    "DurationError",
    "ExecutionRecord",
    "Notebook",
    "RuntimeSpec",
    "format_duration",
    "new_cell_id",
    "parse_duration",
    "source_hash",
]
