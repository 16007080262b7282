"""The runtime agents: scripts that run as they are (on the host, or copied into a container).

Only the scripts are here, and which one a runtime runs; nothing in this package is imported by
the agents themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from njtui.runner.backend import BackendError

if TYPE_CHECKING:
    from njtui.model import RuntimeSpec

AGENTS_DIR = Path(__file__).parent
AGENT_SCRIPTS = {"python": "agent.py", "bash": "agent.sh"}  # native runtimes: language → script
JUPYTER_BRIDGE = "jupyter_agent.py"  # Jupyter-type runtimes, any language: it imports agent.py


@dataclass(frozen=True)
class AgentCommand:
    """What starts a runtime's agent, wherever it runs: an interpreter ("python" or "bash",
    found by each backend where the agent runs), the script, the files it needs beside it, and
    its arguments after the journal's path."""

    interpreter: str
    script: str
    files: tuple[str, ...]
    arguments: tuple[str, ...]


def agent_command_for(spec: RuntimeSpec) -> AgentCommand:
    """BackendError for a native runtime of a language no agent speaks."""
    idle = ("--idle-timeout", str(spec.idle_timeout_seconds))
    if spec.is_jupyter:
        # Secrets come over the connection after start; a kernel's environment is fixed when it
        # starts, so the bridge waits for them before starting it.
        awaits = ("--await-secrets",) if spec.secrets else ()
        return AgentCommand("python", JUPYTER_BRIDGE, (JUPYTER_BRIDGE, AGENT_SCRIPTS["python"]), ("--kernel", spec.kernel or "", *idle, *awaits))
    script = AGENT_SCRIPTS.get(spec.language)
    if script is None:
        raise BackendError(f"no agent for language {spec.language!r}")
    return AgentCommand("python" if spec.language == "python" else "bash", script, (script,), idle)
