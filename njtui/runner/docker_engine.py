"""Reaching the Docker engine the user's set-up names, and reading the times it answers with."""

from __future__ import annotations

import os

from njtui.runner.backend import BackendError


def docker_client():
    """A client for the engine the user's Docker set-up names: DOCKER_HOST, else the current
    Docker context, else the local socket."""
    try:
        import docker
        from docker.context import ContextAPI
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise BackendError(f"the docker package is missing: {exc}") from None
    try:
        if os.environ.get("DOCKER_HOST"):
            base_url = os.environ["DOCKER_HOST"]
            tls = None
            if os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH"):
                return docker.from_env()
        else:
            context = ContextAPI.get_current_context()
            base_url = context.Host if context is not None and context.Host else None
            tls = context.TLSConfig if context is not None and context.Host else None
        if base_url is None:
            return docker.from_env()
        return docker.DockerClient(base_url=base_url, tls=tls or False, use_ssh_client=base_url.startswith("ssh://"))
    except Exception as exc:  # noqa: BLE001 - every way of failing to reach an engine reads the same to a user
        raise BackendError(f"Docker engine unreachable: {exc}") from None


def parse_time(value: str) -> float:
    """Seconds since the epoch of a time the engine gives (UTC, to the nanosecond); 0.0 for its
    zero time (0001-01-01: never) and for one that does not parse."""
    from datetime import datetime

    if not value or value.startswith("0001"):
        return 0.0
    try:
        return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0
