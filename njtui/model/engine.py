"""Where a runtime's container runs: the `engine` setting, as a person writes it.

- a Docker context's name (`gpu-box`): the context says the endpoint and its TLS material;
- a URL: `ssh://user@host`, `tcp://host:2376` (TLS material from `engine_tls`, a directory with
  ca.pem, cert.pem and key.pem), `unix:///path/to/docker.sock`;
- either of those after `swarm:`: the runtime is a one-replica service of the Swarm whose
  manager that names.

Nothing set: the engine the user's Docker set-up names (DOCKER_HOST, the current context)."""

from __future__ import annotations

import re
from dataclasses import dataclass

SWARM_PREFIX = "swarm:"
URL_SCHEMES = ("ssh", "tcp", "unix")
# Docker's own rule for a context's name.
CONTEXT_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.+-]{0,127}")
_URL = re.compile(r"(?P<scheme>[a-z]+)://(?P<rest>[^\s]*)")
ENGINE_ADVICE = 'write a Docker context\'s name (e.g. engine = "gpu-box"), a URL (ssh://user@host, tcp://host:2376, unix:///run/docker.sock), or either after "swarm:" for a Swarm'


class EngineError(ValueError):
    """An `engine` setting that names no engine; the message says why."""


@dataclass(frozen=True)
class EngineRef:
    text: str  # as written
    target: str  # the context's name or the URL, without "swarm:"
    swarm: bool

    @property
    def is_url(self) -> bool:
        return "://" in self.target

    @property
    def scheme(self) -> str | None:
        return self.target.split("://", 1)[0] if self.is_url else None


def parse_engine(text: str) -> EngineRef:
    swarm = text.startswith(SWARM_PREFIX)
    target = text[len(SWARM_PREFIX) :] if swarm else text
    if not target:
        raise EngineError(f"{text!r} names no engine")
    url = _URL.fullmatch(target)
    if url is not None:
        if url["scheme"] not in URL_SCHEMES:
            raise EngineError(f"{text!r} has scheme {url['scheme']!r}, which is not one of {', '.join(URL_SCHEMES)}")
        if not url["rest"] or url["rest"] == "/":
            raise EngineError(f"{text!r} names no host or socket")
    elif "://" in target or not CONTEXT_NAME.fullmatch(target):
        raise EngineError(f"{text!r} is neither a URL nor a Docker context's name")
    return EngineRef(text=text, target=target, swarm=swarm)
