"""What a runner tells its subscribers: state changes of runtimes and messages of executions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from njtui.runner.state import RuntimeStatus


@dataclass(frozen=True)
class RuntimeChanged:
    runtime_id: str
    status: RuntimeStatus


@dataclass(frozen=True)
class RuntimeMessage:
    runtime_id: str
    message: dict[str, Any]


RunnerEvent = RuntimeChanged | RuntimeMessage
Listener = Callable[[RunnerEvent], None]
