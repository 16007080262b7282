"""Reaching the Docker engine the user's set-up names, and reading the times it answers with."""

from __future__ import annotations

import json
import os
from pathlib import Path

from njtui.model.engine import EngineError, parse_engine
from njtui.runner.backend import BackendError, EngineGone

TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


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


def engine_client(engine: str, tls_dir: str | None = None):
    """A client for the engine a runtime's `engine` setting names (without its "swarm:"): a
    Docker context's endpoint and TLS material, or a URL (a tcp:// one with the TLS material in
    `tls_dir`, else $DOCKER_CERT_PATH). Not yet asked anything: the first call finds out
    whether it answers."""
    try:
        import docker
        from docker.constants import MINIMUM_DOCKER_API_VERSION
        from docker.tls import TLSConfig
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise BackendError(f"the docker package is missing: {exc}") from None
    try:
        ref = parse_engine(engine)
    except EngineError as exc:
        raise BackendError(f"engine {exc}") from None
    tls: object = False
    if not ref.is_url:
        base_url, tls = context_endpoint(ref.target)
    else:
        base_url = ref.target
        if ref.scheme == "tcp":
            directory = tls_dir or os.environ.get("DOCKER_CERT_PATH")
            if not directory:
                raise BackendError(f"engine {engine!r} is reached over tcp:// without TLS, which lets anyone on the network run anything there; set engine_tls to a directory with {', '.join(TLS_FILES)} (or use a Docker context that has them)")
            folder = Path(directory).expanduser()
            missing = [name for name in TLS_FILES if not (folder / name).is_file()]
            if missing:
                raise BackendError(f"engine {engine!r}: the TLS directory {folder} lacks {', '.join(missing)}")
            tls = TLSConfig(client_cert=(str(folder / "cert.pem"), str(folder / "key.pem")), ca_cert=str(folder / "ca.pem"), verify=True)
    try:
        # ssh:// through the ssh program, as the docker CLI does: the user's ssh config (keys,
        # known hosts, jump hosts) applies.
        # With TLS the API version is asked below, once requests is told to keep to the engine's CA.
        version = MINIMUM_DOCKER_API_VERSION if tls else None
        client = docker.DockerClient(base_url=base_url, tls=tls, use_ssh_client=base_url.startswith("ssh://"), version=version)
    except Exception as exc:  # noqa: BLE001 - every way of failing to reach an engine reads the same to a user
        raise BackendError(f"Docker engine {engine!r} unreachable: {exc}") from None
    if tls:
        # requests lets $REQUESTS_CA_BUNDLE (set on many machines) replace the engine's own CA
        # for each request, and the engine's certificate then fails to verify.
        client.api.trust_env = False
        try:
            client.api._version = client.api._retrieve_server_version()
        except Exception as exc:  # noqa: BLE001 - as above
            raise BackendError(f"Docker engine {engine!r} unreachable: {exc}") from None
    return client


def docker_config_dir() -> Path:
    """Where the docker CLI keeps its configuration and contexts."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def context_endpoint(name: str) -> tuple[str, object]:
    """A Docker context's engine endpoint and TLS configuration, read where the docker CLI
    keeps them. (The Docker SDK's own reader looks relative to the current directory when
    there is no config.json, which a machine set up with contexts only need not have.)"""
    import hashlib

    from docker.tls import TLSConfig

    context_id = hashlib.sha256(name.encode()).hexdigest()
    contexts = docker_config_dir() / "contexts"
    meta = contexts / "meta" / context_id / "meta.json"
    try:
        endpoint = json.loads(meta.read_text(encoding="utf-8"))["Endpoints"]["docker"]
        host = endpoint["Host"]
    except FileNotFoundError:
        known = sorted(_context_names(contexts / "meta"))
        raise EngineGone(f"no Docker context named {name!r} here (contexts: {', '.join(known) or 'none'}, in {contexts}); create it with `docker context create {name} --docker host=…`, or name the engine by URL") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"Docker context {name!r} could not be read ({meta}): {exc}") from None
    tls_dir = contexts / "tls" / context_id / "docker"
    if not host.startswith("tcp://"):
        return host, False
    files = {each: tls_dir / f"{each}.pem" for each in ("ca", "cert", "key")}
    if not files["cert"].is_file():
        raise BackendError(f"Docker context {name!r} reaches {host} without TLS client material, which lets anyone on the network run anything there; recreate it with ca=, cert= and key=")
    verify = not endpoint.get("SkipTLSVerify", False)
    ca = str(files["ca"]) if files["ca"].is_file() else None
    return host, TLSConfig(client_cert=(str(files["cert"]), str(files["key"])), ca_cert=ca, verify=verify)


def _context_names(meta_dir: Path) -> list[str]:
    names = []
    for meta in meta_dir.glob("*/meta.json"):
        try:
            names.append(str(json.loads(meta.read_text(encoding="utf-8"))["Name"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return names


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
