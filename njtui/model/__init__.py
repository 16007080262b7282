"""Plain data: notebooks, cells, runtime settings, execution records. No I/O here."""

from njtui.model.duration import DurationError, format_duration, parse_duration
from njtui.model.environment import EnvironmentImport, SavedVersion, environment_repository
from njtui.model.notebook import (
    CELL_ID,
    CELL_KINDS,
    DEFAULT_IDLE_TIMEOUT,
    FORMAT_VERSION,
    HOST_ENVIRONMENT,
    LANGUAGES,
    MAX_IDLE_TIMEOUT,
    RUNTIME_ID,
    RUNTIME_TYPES,
    Cell,
    Notebook,
    RuntimeSpec,
    is_cell_id,
    is_runtime_id,
    new_cell_id,
    source_hash,
)
from njtui.model.output import EXEC_STATUSES, ExecutionRecord

__all__ = [
    "CELL_ID",
    "CELL_KINDS",
    "DEFAULT_IDLE_TIMEOUT",
    "EXEC_STATUSES",
    "FORMAT_VERSION",
    "HOST_ENVIRONMENT",
    "LANGUAGES",
    "MAX_IDLE_TIMEOUT",
    "RUNTIME_ID",
    "RUNTIME_TYPES",
    "Cell",
    "DurationError",
    "EnvironmentImport",
    "ExecutionRecord",
    "Notebook",
    "RuntimeSpec",
    "SavedVersion",
    "environment_repository",
    "format_duration",
    "is_cell_id",
    "is_runtime_id",
    "new_cell_id",
    "parse_duration",
    "source_hash",
]
