"""Runtimes: lifecycle, backends, the agent protocol's client side, recording, the runner log.

This package's names are the runner's public API: the UI and the `njtui` command import from
`njtui.runner` only, never from its submodules, so the backends and the protocol can change
behind `Runner`.

The names are resolved on first use (PEP 562): importing any submodule runs this file first,
and the host relay imports `njtui.runner.protocol` on every boot, where loading the runner (and
with it the Docker SDK) would only slow the start of each runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name → (submodule, name there).
_EXPORTS = {
    "Runner": ("runner", "Runner"),
    # What Runner.complete answers: the matches, and the span of the code they replace.
    "Completion": ("session", "Completion"),
    "RuntimeChanged": ("events", "RuntimeChanged"),
    "RuntimeMessage": ("events", "RuntimeMessage"),
    "RuntimeEntry": ("listing", "RuntimeEntry"),
    "RuntimeListing": ("listing", "RuntimeListing"),
    "RuntimeStops": ("listing", "RuntimeStops"),
    "RuntimeState": ("state", "RuntimeState"),
    "RuntimeStatus": ("state", "RuntimeStatus"),
    "LogEntry": ("log", "LogEntry"),
    "RunnerLog": ("log", "RunnerLog"),
    # The one error the runner raises: a runtime could not be started, reached or stopped.
    "RunnerError": ("backend", "BackendError"),
    # The RunnerError of a boot a stop gave up on (the runtime is stopped, not failed).
    "BootCancelled": ("backend", "BootCancelled"),
    # The reason in the `done` of a cell its runtime was stopped in the middle of.
    "STOPPED_MID_CELL": ("protocol", "STOPPED_MID_CELL"),
    # Settings a host runtime does not apply.
    "CONTAINER_ONLY": ("launch", "CONTAINER_ONLY"),
    # Environments (Runner.environments): what changed, versions, provenance.
    "EnvironmentChanges": ("env_changes", "EnvironmentChanges"),
    "PathChange": ("env_changes", "PathChange"),
    "PackageChange": ("env_changes", "PackageChange"),
    # "2 added, 1 deleted", from EnvironmentChanges.counts() or one of its groups.
    "counts_words": ("env_changes", "counts_words"),
    "VersionRow": ("environments", "VersionRow"),
    "LineageStep": ("environments", "LineageStep"),
    # A RunnerError for an environment named that does not exist (bad input, not a failure).
    "EnvironmentReferenceError": ("environments", "EnvironmentReferenceError"),
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from njtui.runner.backend import BackendError as RunnerError
    from njtui.runner.backend import BootCancelled
    from njtui.runner.env_changes import EnvironmentChanges, PackageChange, PathChange, counts_words
    from njtui.runner.environments import EnvironmentReferenceError, LineageStep, VersionRow
    from njtui.runner.events import RuntimeChanged, RuntimeMessage
    from njtui.runner.launch import CONTAINER_ONLY
    from njtui.runner.listing import RuntimeEntry, RuntimeListing, RuntimeStops
    from njtui.runner.log import LogEntry, RunnerLog
    from njtui.runner.protocol import STOPPED_MID_CELL
    from njtui.runner.runner import Runner
    from njtui.runner.session import Completion
    from njtui.runner.state import RuntimeState, RuntimeStatus


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        # AttributeError, not KeyError: `from njtui.runner import protocol` relies on it to fall
        # back to importing the submodule.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
