"""Where the runner finds backends: by name, from the `njtui.backends` entry-point group.

A package adds a backend by declaring it in its own metadata, e.g. in `pyproject.toml`:

    [project.entry-points."njtui.backends"]
    mine = "my_package.my_module:MyBackend"

njtui declares its own three the same way (host, docker, swarm). They are also known here by name, so a source tree run
without being installed (no metadata) still has them; an installed entry point of the same name
wins. Backends are made on first use: the Docker one reaches for an engine only then.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import entry_points

from njtui.model import RuntimeSpec
from njtui.runner.backend import Backend, BackendError

ENTRY_POINT_GROUP = "njtui.backends"
BUILT_IN = {"host": "njtui.runner.host:HostBackend", "docker": "njtui.runner.docker_backend:DockerBackend", "swarm": "njtui.runner.swarm_backend:SwarmBackend"}
# The backends a runtime's `engine` setting chooses between: a Swarm's, else one engine's.
ENGINE_BACKENDS = ("docker", "swarm")

# Backends registered in this process (tests, embedding programs): name → factory. A factory
# takes keyword options: `engine` and `engine_tls` for a runtime placed on an engine of its own.
_registered: dict[str, Callable[..., Backend]] = {}


def register(name: str, factory: Callable[..., Backend]) -> None:
    """Makes a backend known in this process, beside the installed ones."""
    _registered[name] = factory


def unregister(name: str) -> None:
    _registered.pop(name, None)


def _load(target: str) -> Callable[[], Backend]:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def factories() -> dict[str, Callable[..., Backend]]:
    """Every known backend's factory by name, loaded lazily (importing one costs only when made)."""
    found: dict[str, Callable[..., Backend]] = {name: _lazy(target) for name, target in BUILT_IN.items()}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = _lazy_entry(entry)
    found.update(_registered)
    return found


def _lazy(target: str) -> Callable[..., Backend]:
    return lambda **options: _load(target)(**options)


def _lazy_entry(entry) -> Callable[..., Backend]:
    return lambda **options: entry.load()(**options)


def backend_name(spec: RuntimeSpec) -> str:
    """The backend that runs `spec`: the one it names, else host or Docker by its environment."""
    if spec.backend:
        return spec.backend
    if spec.is_host:
        return "host"
    return "swarm" if spec.is_swarm else "docker"


def engine_of(spec: RuntimeSpec) -> tuple[str, str | None] | None:
    """The engine a runtime names for itself (engine, its TLS directory); None for the default
    one, and for a host runtime, which runs here whatever it names."""
    if spec.engine is None or spec.is_host:
        return None
    return spec.engine, spec.engine_tls


def placement_of(spec: RuntimeSpec) -> tuple[str, str | None, str | None]:
    """Where `spec` runs as its settings say: (backend name, engine, TLS directory)."""
    engine = engine_of(spec)
    return (backend_name(spec), *(engine or (None, None)))


class Backends(Mapping[str, Backend]):
    """The backends a runner uses, by name, each made on first use.

    Given instances (tests) are used as they are; otherwise every known backend is available."""

    def __init__(self, given: Mapping[str, Backend] | None = None) -> None:
        self._made: dict[str, Backend] = dict(given or {})
        self._factories = {} if given is not None else factories()
        # Backends for runtimes on engines of their own, by (name, engine, TLS directory).
        self._on_engines: dict[tuple[str, str, str | None], Backend] = {}

    def __getitem__(self, name: str) -> Backend:
        backend = self._made.get(name)
        if backend is None:
            factory = self._factories.get(name)
            if factory is None:
                raise KeyError(name)
            try:
                backend = factory()
            except BackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - a third party's backend failing to load is reported, not a crash
                raise BackendError(f"the backend {name!r} could not be loaded: {type(exc).__name__}: {exc}") from None
            self._made[name] = backend
            if backend.name != name:
                raise BackendError(f"the backend registered as {name!r} calls itself {backend.name!r}")
        return backend

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._made, *self._factories]))

    def __len__(self) -> int:
        return len(set(self._made) | set(self._factories))

    def for_spec(self, spec: RuntimeSpec) -> Backend:
        name, engine, engine_tls = placement_of(spec)
        try:
            return self.at(name, engine, engine_tls)
        except KeyError:
            known = ", ".join(sorted(self)) or "none"
            raise BackendError(f"runtime {spec.id}: no backend named {name!r} is installed (installed: {known}); fix `backend` in [runtimes.{spec.id}] or install the package that provides it") from None

    def at(self, name: str, engine: str | None, engine_tls: str | None) -> Backend:
        """The backend of a placement (see `placement_of`)."""
        return self[name] if engine is None else self.on_engine(name, engine, engine_tls)

    def on_engine(self, name: str, engine: str, engine_tls: str | None = None) -> Backend:
        """Backend `name` for runtimes on `engine` (made once per engine)."""
        key = (name, engine, engine_tls)
        backend = self._on_engines.get(key)
        if backend is not None:
            return backend
        factory = self._factories.get(name)
        if factory is None:
            raise KeyError(name)
        if name not in ENGINE_BACKENDS and name not in _registered:
            raise BackendError(f"the {name} backend does not run runtimes on other engines; leave `engine` out, or use the docker or swarm backend")
        try:
            backend = factory(engine=engine, engine_tls=engine_tls)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - as in __getitem__
            raise BackendError(f"the backend {name!r} could not be loaded for engine {engine!r}: {type(exc).__name__}: {exc}") from None
        self._on_engines[key] = backend
        return backend

    def of_notebook(self, specs: Iterable[RuntimeSpec], also: Iterable[tuple[str, str | None, str | None]] = ()) -> Iterator[tuple[str, Callable[[], Backend]]]:
        """(what, a getter of the backend) for every backend that may hold runtimes of a notebook
        with these runtimes: the default ones, those of the engines its runtimes name, and
        those of the placements `also` (where runtimes were booted before an edit). The
        getter raises BackendError for one that cannot be had (no engine there)."""
        for name in self:
            yield name, functools.partial(self.__getitem__, name)
        seen: set[tuple[str, str, str | None]] = set()
        on_engines = [(backend_name(spec), *engine) for spec in specs if (engine := engine_of(spec)) is not None]
        on_engines += [(name, engine, engine_tls) for name, engine, engine_tls in also if engine is not None]
        for key in on_engines:
            if key not in seen:
                seen.add(key)
                yield f"{key[0]} on {key[1]}", functools.partial(self.on_engine, *key)
