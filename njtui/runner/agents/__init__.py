"""The runtime agents: scripts that run as they are (on the host, or copied into a container).

Only the scripts are here; nothing in this package is imported by njtui itself.
"""

from pathlib import Path

AGENTS_DIR = Path(__file__).parent
AGENT_SCRIPTS = {"python": "agent.py", "bash": "agent.sh"}  # language → script
