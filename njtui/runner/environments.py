"""Environments a runtime saves, imports and is reset to: the runner's side of `njtui env` and
the UI's environment screens. One `Environments` serves one Runner (one notebook).

The notebook records what each runtime boots from (see njtui.model.environment); the engine
holds the images. Every method here changes the notebook model only after the engine did its
part, so a failure leaves the model (and so the file its caller writes) as it was; the caller
writes the file, and calls `forget_save` if that fails, so no image stays tagged for a version
the file does not name.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from njtui.model import EnvironmentImport, Notebook, RuntimeSpec, SavedVersion, environment_repository
from njtui.runner import docker_environments as engine
from njtui.runner.backend import IMAGES, BackendError, ProgressCallback, RuntimeInfo
from njtui.runner.docker_container import LABEL_KEY, volume_targets
from njtui.runner.env_changes import DPKG_STATUS, EnvironmentChanges, PathChange, package_changes, python_changes
from njtui.runner.paths import notebook_identity, runtime_key
from njtui.store.environment_uses import forget_image, record_use, recorded_users
from njtui.store.errors import NotebookError

if TYPE_CHECKING:
    from njtui.runner.runner import Runner

_OWN_VERSION = re.compile(r"v(\d+)")
_IMPORT_BASE = re.compile(r"(?:(?P<notebook>.+)#)?(?P<runtime>[A-Za-z0-9_-]{1,64}) v(?P<version>\d+)")


class EnvironmentReferenceError(BackendError):
    """An environment named that does not exist: a runtime, version or notebook, or imports
    in a cycle. Bad input, where other BackendErrors are failures."""


@dataclass
class VersionRow:
    runtime: str
    version: int
    saved_at: str
    message: str
    size: int
    image: str
    digest: str | None
    where: str  # "this engine", "registry", "not here"
    used_by: list[str] = field(default_factory=list)
    boots: bool = False  # the runtime boots from it

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LineageStep:
    label: str  # "chain.toml: py v1", "njtui/python:3.11"
    image: str | None  # image id, when known here
    digest: str | None = None
    saved_at: str = ""
    message: str = ""
    how: str = ""  # "saved", "imported", "image"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def base_words(spec: RuntimeSpec) -> str:
    """What a runtime booted from, as a saved version records it: "v2", "tools v1",
    "../base.toml#tools v1", or the image reference."""
    if spec.saved_version is not None:
        return f"v{spec.saved_version}"
    imported = spec.imported
    if imported is not None:
        return f"{imported.notebook + '#' if imported.notebook else ''}{imported.runtime} v{imported.version}"
    return str(spec.environment)


class Environments:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._marking: dict[str, threading.Thread] = {}  # container id → its save's record being taken
        self._marking_lock = threading.Lock()
        self._engine: str | None = None

    # -- the engine
    @property
    def notebook(self) -> Notebook:
        return self.runner.notebook

    def spec(self, runtime_id: str) -> RuntimeSpec:
        spec = self.notebook.runtimes.get(runtime_id)
        if spec is None:
            raise EnvironmentReferenceError(f"no runtime {runtime_id!r} in {self.runner.path}; runtimes: {', '.join(self.notebook.runtimes) or 'none'}")
        return spec

    def _client(self, spec: RuntimeSpec):
        backend = self.runner.backend_for(spec)
        if not backend.supports(IMAGES) or not hasattr(backend, "client"):
            raise BackendError(f"runtime {spec.id} runs on the {backend.name} backend ({spec.environment_label}): only runtimes in images have an environment to save; give it an image environment first")
        return backend.client

    def _images_client(self):
        backend = self.runner._images()
        if backend is None or not hasattr(backend, "client"):
            raise BackendError("no installed backend runs images")
        return backend.client

    def _container(self, spec: RuntimeSpec):
        """The runtime's running container: this runner's session's, else found by its label
        (a command saves or compares without attaching to the runtime, which replays its journal)."""
        client = self._client(spec)
        session = self.runner.sessions.get(spec.id)
        try:
            if session is not None and not session.closed.is_set():
                return client, client.containers.get(session.info.details["container"])
            key = f"{LABEL_KEY}={runtime_key(self.runner.path, spec.id)}"
            running = client.containers.list(filters={"label": key, "status": "running"})
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"runtime {spec.id}'s container cannot be reached: {engine.words(exc)}") from None
        if not running:
            raise BackendError(f"runtime {spec.id} is not running, so there is nothing to save or compare: start it (run one of its cells), make your changes, then save")
        return client, running[0]

    def saved_as(self, info: RuntimeInfo) -> int | None:
        """The version a running container was last saved as, if this machine saved it."""
        container = info.details.get("container")
        mark = engine.read_mark_of(container) if isinstance(container, str) else None
        version = mark.get("version") if mark else None
        return version if isinstance(version, int) else None

    def running(self, runtime_id: str) -> bool:
        """Whether the runtime has a running container to save or compare."""
        try:
            self._container(self.spec(runtime_id))
            return True
        except BackendError:
            return False

    def repository(self, runtime_id: str) -> str:
        return environment_repository(Path(self.runner.path).stem, runtime_id)

    # -- booting
    def boot_image(self, spec: RuntimeSpec) -> str:
        """The image a Docker runtime boots from: its saved version, its import (pinned now if
        it is not yet), or its environment."""
        saved = self._saved_source(spec, pin=True)
        if saved is None:
            return str(spec.environment)
        image, digest, what, host = saved
        client = self._client(spec)
        if image and engine.image_exists(client, image):
            record_use(image, notebook_identity(self.runner.path), spec.id)
            return image
        if digest:
            return digest  # pulled by the backend, with its progress
        raise BackendError(self._not_here(spec, what, host))

    def unavailable(self, runtime_id: str) -> str | None:
        """Why a runtime cannot boot its saved or imported environment on this engine (saved on
        another host and never exported), in words; None when it can, or cannot tell. Asked when
        a notebook opens, so the runtime says so before anyone runs a cell."""
        spec = self.spec(runtime_id)
        saved = self._saved_source(spec, pin=False)
        if saved is None:
            return None
        image, digest, what, host = saved
        try:
            if digest or (image and engine.image_exists(self._client(spec), image)):
                return None
        except BackendError:
            return None
        return self._not_here(spec, what, host)

    def _saved_source(self, spec: RuntimeSpec, *, pin: bool) -> tuple[str | None, str | None, str, str] | None:
        """(image id, digest, what it is in words, the host it was saved on) of the saved
        environment a runtime boots from: its saved version, or the version it imports (pinned
        first with `pin`, else None while unpinned); None when it boots a plain image."""
        saved = spec.boot_version
        if saved is not None:
            return saved.image, saved.digest, f"its saved version {saved.version}", saved.host
        imported = spec.imported
        if imported is None or (not imported.pinned and not pin):
            return None
        if not imported.pinned:
            imported = self.pin(spec.id)
        return imported.image, imported.digest, f"the environment it imports ({imported.label()})", self._source_host(spec)

    @staticmethod
    def _not_here(spec: RuntimeSpec, what: str, host: str) -> str:
        return (
            f"runtime {spec.id} boots from {what}, which was saved on {host or 'another Docker engine'}, not exported, so this engine cannot get it: "
            f"export it there (njtui env export NOTEBOOK RUNTIME), or reset this runtime to another version (njtui env reset NOTEBOOK {spec.id} --version N; 0 is the environment it started from)"
        )

    def _source_host(self, spec: RuntimeSpec) -> str:
        try:
            _, source, _ = self._source(spec)
            imported = spec.imported
            saved = source.version(imported.version) if imported is not None else None
            return saved.host if saved is not None else ""
        except BackendError:
            return ""

    # -- imports
    def _source(self, spec: RuntimeSpec) -> tuple[Notebook, RuntimeSpec, str]:
        return import_source(self.runner.path, self.notebook, spec)

    def check_chain(self, spec: RuntimeSpec) -> None:
        """Refuses imports that come back to where they start (py imports tools, tools imports py)."""
        seen: list[tuple[str, str]] = [(self.runner.path, spec.id)]
        notebook, path, current = self.notebook, self.runner.path, spec
        while current.imported is not None and not current.imported.pinned:
            imported = current.imported
            step = (source_path(path, imported.notebook), imported.runtime)
            if step in seen:
                names = " imports ".join(f"{Path(p).name}:{r}" if p != self.runner.path else r for p, r in [*seen, step])
                raise EnvironmentReferenceError(f'these environments import each other in a cycle: {names}; let one of them start from an image (environment = "IMAGE")')
            seen.append(step)
            try:
                notebook, current, path = import_source(path, notebook, current)
            except BackendError:
                return  # the pin reports what is missing

    def pin(self, runtime_id: str) -> EnvironmentImport:
        """Resolves a runtime's import to the image id (and digest) of the version it names,
        and stores that in the model: later saves of the source change nothing here."""
        spec = self.spec(runtime_id)
        imported = spec.imported
        if imported is None:
            raise EnvironmentReferenceError(f"runtime {runtime_id} does not import an environment")
        self.check_chain(spec)
        _, source, path = self._source(spec)
        saved = source.version(imported.version)
        if saved is None:
            known = ", ".join(str(v.version) for v in source.versions) or "none yet: save it first (njtui env save)"
            raise EnvironmentReferenceError(f"runtime {source.id} of {Path(path).name} has no saved version {imported.version} (saved versions: {known})")
        pinned = dataclasses.replace(imported, image=saved.image, digest=saved.digest)
        spec.environment = pinned
        record_use(saved.image, notebook_identity(self.runner.path), runtime_id)
        return pinned

    def set_import(self, runtime_id: str, source_runtime: str, version: int, notebook: str | None = None) -> EnvironmentImport:
        """Makes a runtime's environment another runtime's saved version, pinned; the model is
        unchanged if it cannot be resolved."""
        spec = self.spec(runtime_id)
        before = spec.environment
        spec.environment = EnvironmentImport(runtime=source_runtime, version=version, notebook=notebook)
        try:
            return self.pin(runtime_id)
        except BackendError:
            spec.environment = before
            raise

    def newest_source_version(self, runtime_id: str) -> int | None:
        """The newest version the import's source has saved: "update to version N"."""
        spec = self.spec(runtime_id)
        if spec.imported is None:
            return None
        _, source, _ = self._source(spec)
        return max((saved.version for saved in source.versions), default=None)

    def source_notebook(self, runtime_id: str) -> str | None:
        """The notebook file that saved the environment a runtime imports, when it is here."""
        spec = self.spec(runtime_id)
        if spec.imported is None:
            return None
        try:
            return self._source(spec)[2]
        except BackendError:
            return None

    # -- saving
    def save(self, runtime_id: str, message: str = "", progress: ProgressCallback | None = None) -> SavedVersion:
        """The running runtime's file system as its next version, which it boots from from now on."""
        spec = self.spec(runtime_id)
        with self.runner._lock(runtime_id):
            client, container = self._container(spec)
            self._settle(container.id)
            mark = engine.read_mark(container)
            booted_from = container.attrs.get("Image", "")
            base, base_image = self._counted_from(spec, container, mark)
            repository = self.repository(runtime_id)
            number = self._next_version(client, spec, repository)
            labels = {
                engine.LABEL_ENV_NOTEBOOK: notebook_identity(self.runner.path),
                engine.LABEL_ENV_RUNTIME: runtime_id,
                engine.LABEL_ENV_VERSION: str(number),
                engine.LABEL_ENV_BASE: base,
                engine.LABEL_ENV_MESSAGE: message,
            }
            try:
                committed = engine.commit(client, container, repository=repository, tag=str(number), labels=labels, base_image=booted_from, progress=progress)
            except BackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - the engine's errors and its going away
                self._untag(client, f"{repository}:{number}")
                raise BackendError(f"saving runtime {runtime_id} failed: {engine.words(exc)}") from None
            self._mark_later(runtime_id, container, volume_targets(spec), {"version": number, "image": committed.image, "created_ns": engine.created_ns(committed.created)})
            saved = SavedVersion(
                version=number,
                image=committed.image,
                tag=committed.tag,
                base=base,
                base_image=base_image,
                saved_at=engine.utc_now(),
                message=message,
                host=self._engine_name(client),
                size=committed.size,
                flattened=committed.flattened,
            )
            if committed.flattened:
                self.runner.log.info(runtime_id, f"the image had {committed.layers} layers, near the engine's limit: version {number} was flattened to one layer")
            spec.versions.append(saved)
            spec.saved_version = number
            session = self.runner.sessions.get(runtime_id)
            if session is not None and isinstance(session.info.details.get("settings"), dict):
                session.info.details["settings"]["environment"] = spec.environment_label  # it runs what it now boots from
            record_use(committed.image, notebook_identity(self.runner.path), runtime_id)
            self.runner.log.info(runtime_id, f"saved version {number} ({committed.tag}, {committed.size} bytes)")
            return saved

    def _mark_later(self, runtime_id: str, container, mountpoints: list[str], mark: dict[str, Any]) -> None:
        """Records what the save took, for "changed since this save", after the save returns:
        the engine's diff walks the whole image and costs more than the commit itself. A save
        or a look at the changes of the same container waits for it (`_settle`). A path deleted
        in the moment between the commit and the diff is not seen as deleted since the save;
        one added or changed then is (its inode is newer than the save)."""

        def take() -> None:
            try:
                engine.write_mark(container, {**mark, "changes": engine.container_changes(container, mountpoints)})
            except Exception as exc:  # noqa: BLE001 - the save stands; only "changed since" is coarser
                self.runner.log.warning(runtime_id, f"could not record what the save took ({engine.words(exc)}): changes made before it may show as changed")

        thread = threading.Thread(target=take, name=f"njtui-save-mark-{runtime_id}", daemon=True)
        with self._marking_lock:
            self._marking[container.id] = thread
        thread.start()

    def _settle(self, container_id: str | None = None) -> None:
        """Waits for the records of saves still being taken (of one container, or all)."""
        with self._marking_lock:
            if container_id is None:
                threads = list(self._marking.values())
                self._marking.clear()
            else:
                thread = self._marking.pop(container_id, None)
                threads = [thread] if thread is not None else []
        for thread in threads:
            thread.join()

    def settle(self) -> None:
        """Before the process ends: what its saves record is written."""
        self._settle()

    def _engine_name(self, client) -> str:
        if self._engine is None:
            self._engine = engine.engine_name(client)
        return self._engine

    def forget_save(self, runtime_id: str, saved: SavedVersion, previous: int | None) -> None:
        """Undoes a save whose notebook could not be written: the model as it was, the image untagged."""
        spec = self.spec(runtime_id)
        if saved in spec.versions:
            spec.versions.remove(saved)
        spec.saved_version = previous
        try:
            self._remove_image(self._client(spec), saved.image)
        except BackendError:
            pass

    def _counted_from(self, spec: RuntimeSpec, container, mark: dict[str, Any] | None) -> tuple[str, str]:
        """What a running container's changes count from, in a saved version's words ("v2",
        "njtui/bash:5", "tools v1"), and its image id: its last save, else what it booted from."""
        if mark:
            return f"v{mark['version']}", str(mark["image"])
        booted_from = container.attrs.get("Image", "")
        return self._booted_words(spec, booted_from), booted_from

    def _booted_words(self, spec: RuntimeSpec, image: str) -> str:
        for saved in spec.versions:
            if saved.image == image:
                return f"v{saved.version}"
        imported = spec.imported
        if imported is not None and imported.image == image:
            return base_words(spec)
        if isinstance(spec.environment, str):
            return spec.environment
        return image

    def _next_version(self, client, spec: RuntimeSpec, repository: str) -> int:
        numbers = [saved.version for saved in spec.versions]
        try:
            for image in client.images.list(name=repository):
                numbers.extend(int(tag.rsplit(":", 1)[1]) for tag in image.tags if tag.rsplit(":", 1)[1].isdigit())
        except Exception:  # noqa: BLE001 - the notebook's own count then
            pass
        return max(numbers, default=0) + 1

    # -- what changed
    def changes(self, runtime_id: str, *, packages: bool = True) -> EnvironmentChanges:
        spec = self.spec(runtime_id)
        client, container = self._container(spec)
        self._settle(container.id)
        try:
            paths, mark = engine.current_changes(container, volume_targets(spec))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"the changes of runtime {runtime_id} cannot be read: {engine.words(exc)}") from None
        since, since_image = self._counted_from(spec, container, mark)
        if _OWN_VERSION.fullmatch(since):
            since = f"{runtime_id} {since}"  # as the diff says it: "tools v2", as after a save
        result = EnvironmentChanges(runtime=runtime_id, since=since, paths=[PathChange(path, kind) for path, kind in sorted(paths.items())])
        if packages:
            if DPKG_STATUS in paths:
                before, after = engine.dpkg_before_after(client, container, since_image)
                result.packages.extend(package_changes("dpkg", before, after))
            result.packages.extend(python_changes(paths))
        return result

    def changed(self, runtime_id: str) -> bool:
        return bool(self.changes(runtime_id, packages=False))

    # -- reset
    def reset(self, runtime_id: str, version: int | None = None) -> None:
        """A fresh container from the last saved version, or from `version` (0: the environment
        it started from): what the running one changed is gone."""
        spec = self.spec(runtime_id)
        if version is not None and version != 0 and spec.version(version) is None:
            known = ", ".join(str(saved.version) for saved in spec.versions) or "none"
            raise EnvironmentReferenceError(f"runtime {runtime_id} has no saved version {version} (versions: {known}; 0 is the environment it started from)")
        with self.runner._lock(runtime_id):
            previous = spec.saved_version
            self.runner.stop(runtime_id)
            if version is not None:
                spec.saved_version = version or None
            try:
                self.runner.ensure(runtime_id)
            except BackendError:
                spec.saved_version = previous
                raise

    # -- versions
    def versions(self, runtime_id: str | None = None) -> list[VersionRow]:
        specs = [self.spec(runtime_id)] if runtime_id else list(self.notebook.runtimes.values())
        client = None
        try:
            client = self._images_client()
        except BackendError:
            pass
        rows = []
        for spec in specs:
            local = self._local_versions(client, spec.id) if client is not None else {}
            for saved in spec.versions:
                here = client is not None and engine.image_exists(client, saved.image)
                where = "this engine" if here else ("registry" if saved.digest else "not here")
                rows.append(VersionRow(spec.id, saved.version, saved.saved_at, saved.message, saved.size, saved.image, saved.digest, where, self.users(spec.id, saved.version, saved.image), spec.saved_version == saved.version))
            known = {saved.version for saved in spec.versions}
            for number, image in sorted(local.items()):
                if number not in known:
                    attrs = image.attrs
                    rows.append(VersionRow(spec.id, number, attrs.get("Created", "")[:19] + "Z", image.labels.get(engine.LABEL_ENV_MESSAGE, ""), 0, image.id, None, "this engine (not in the notebook)", self.users(spec.id, number, image.id)))
        return rows

    def _local_versions(self, client, runtime_id: str) -> dict[int, Any]:
        filters = {"label": [f"{engine.LABEL_ENV_NOTEBOOK}={notebook_identity(self.runner.path)}", f"{engine.LABEL_ENV_RUNTIME}={runtime_id}"]}
        found = {}
        try:
            for image in client.images.list(filters=filters):
                number = image.labels.get(engine.LABEL_ENV_VERSION, "")
                if number.isdigit():
                    found[int(number)] = image
        except Exception:  # noqa: BLE001
            pass
        return found

    def users(self, runtime_id: str, version: int, image: str) -> list[str]:
        """Who uses a version: this notebook's runtimes, then other notebooks on this machine."""
        users = []
        for spec in self.notebook.runtimes.values():
            if spec.id == runtime_id and spec.saved_version == version:
                users.append(f"{spec.id} (boots from it)")
            imported = spec.imported
            if imported is not None and imported.notebook is None and imported.runtime == runtime_id and imported.version == version:
                users.append(f"{spec.id} (imports it)")
        for path, runtimes in recorded_users(image).items():
            if path == notebook_identity(self.runner.path):
                continue
            for other in self._still_using(path, image, runtimes):
                users.append(f"{path}: {other}")
        return users

    @staticmethod
    def _still_using(path: str, image: str, runtimes: list[str]) -> list[str]:
        from njtui.store import load_notebook

        try:
            notebook = load_notebook(path)
        except (NotebookError, OSError):
            return []
        using = []
        for runtime_id in runtimes:
            spec = notebook.runtimes.get(runtime_id)
            if spec is None:
                continue
            boots = spec.boot_version
            imported = spec.imported
            if (boots is not None and boots.image == image) or (imported is not None and imported.image == image):
                using.append(runtime_id)
        return using

    def remove(self, runtime_id: str, numbers: list[int]) -> list[str]:
        """Removes versions from the engine; refuses one anything uses. A version that was
        exported stays in the notebook (it can be pulled again); one that was not goes from it."""
        spec = self.spec(runtime_id)
        client = self._client(spec)
        local = self._local_versions(client, runtime_id)
        removed = []
        for number in numbers:
            saved = spec.version(number)
            image = saved.image if saved is not None else (local[number].id if number in local else None)
            if image is None:
                raise EnvironmentReferenceError(f"runtime {runtime_id} has no version {number} (versions: {', '.join(str(v.version) for v in spec.versions) or 'none'})")
            users = self.users(runtime_id, number, image)
            if users:
                raise BackendError(f"version {number} of {runtime_id} is in use ({'; '.join(users)}): not removed")
            self._remove_image(client, image, f"{self.repository(runtime_id)}:{number}")
            if saved is not None and not saved.digest:
                spec.versions.remove(saved)
            removed.append(f"{runtime_id} v{number}")
        return removed

    def prune(self, runtime_id: str | None = None) -> list[str]:
        """Removes every version of this notebook's runtimes on the engine that nothing uses."""
        specs = [self.spec(runtime_id)] if runtime_id else list(self.notebook.runtimes.values())
        removed = []
        for spec in specs:
            try:
                client = self._client(spec)
            except BackendError:
                continue
            local = self._local_versions(client, spec.id)
            for number, image in sorted(local.items()):
                # A container still made from it (a runtime saved while running goes on running
                # its old version until restarted) uses it too: pruned once that one is gone.
                if not self.users(spec.id, number, image.id) and not self._containers_on(client, image.id):
                    removed.extend(self.remove(spec.id, [number]))
        return removed

    @staticmethod
    def _containers_on(client, image: str) -> list[str]:
        """Names of the containers made from exactly this image. The engine's `ancestor`
        filter also matches containers of every image built on it: a runtime running v2 would
        hold v1."""
        try:
            containers = client.containers.list(all=True, filters={"ancestor": image}, ignore_removed=True)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"the containers using {image[:19]} cannot be listed: {engine.words(exc)}") from None
        return [container.name for container in containers if container.attrs.get("Image") == image]

    def _remove_image(self, client, image: str, tag: str | None = None) -> None:
        import docker

        try:
            containers = self._containers_on(client, image)
            if containers:
                raise BackendError(f"a container still runs from {image[:19]} ({', '.join(containers)}): stop it first (njtui runtimes stop ID), then remove the version")
            client.api.remove_image(image, force=True)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            # A later version saved from this one is built on its layers: the engine keeps them
            # (they go with the last version that needs them), and removing the tag is all a
            # removal can do; the version no longer appears anywhere.
            if tag is None or "dependent child images" not in engine.words(exc):
                raise BackendError(f"image {image[:19]} could not be removed: {engine.words(exc)}") from None
            self._untag(client, tag)
        forget_image(image)

    @staticmethod
    def _untag(client, reference: str) -> None:
        try:
            client.api.remove_image(reference, force=True)
        except Exception:  # noqa: BLE001 - nothing was tagged
            pass

    # -- export
    def export(self, runtime_id: str, registry: str | None = None, version: int | None = None, progress: ProgressCallback | None = None) -> str:
        """Pushes a saved version (the one the runtime boots from, else the newest) to the
        registry; records and returns its reference with the digest."""
        spec = self.spec(runtime_id)
        registry = registry or self.notebook.registry
        if not registry:
            raise EnvironmentReferenceError('no registry to export to: set registry = "HOST[:PORT]/PATH" in the notebook, or pass --registry')
        number = version or spec.saved_version or max((saved.version for saved in spec.versions), default=None)
        saved = spec.version(number) if number is not None else None
        if saved is None:
            raise EnvironmentReferenceError(f"runtime {runtime_id} has no saved version{' ' + str(version) if version else ''} to export: save it first (njtui env save)")
        client = self._client(spec)
        if not engine.image_exists(client, saved.image):
            raise BackendError(f"version {saved.version} of {runtime_id} is not on this engine (saved on {saved.host or 'another engine'}): export it where it was saved")
        target = f"{registry}/{self.repository(runtime_id).split('/', 1)[1]}"
        digest = engine.push(client, saved.image, target, str(saved.version), progress)
        saved.digest = f"{target}@{digest}"
        self.runner.log.info(runtime_id, f"exported version {saved.version} as {saved.digest}")
        return saved.digest

    # -- provenance
    def lineage(self, runtime_id: str) -> list[LineageStep]:
        """What a runtime boots from, level by level, down to the base image."""
        steps: list[LineageStep] = []
        seen: set[tuple[str, str, int]] = set()
        client = None
        try:
            client = self._images_client()
        except BackendError:
            pass
        notebook, path, spec = self.notebook, self.runner.path, self.spec(runtime_id)
        if spec.saved_version is None and spec.imported is not None and not spec.imported.pinned:
            self.check_chain(spec)
        version = spec.saved_version
        words = base_words(spec) if version is None else f"v{version}"
        while True:
            own = _OWN_VERSION.fullmatch(words)
            imported = _IMPORT_BASE.fullmatch(words) if own is None else None
            if own is not None:
                number = int(own.group(1))
                key = (path, spec.id, number)
                if key in seen:
                    raise BackendError(f"the versions of {spec.id} name each other as bases ({words}): the notebook's versions were edited by hand")
                seen.add(key)
                saved = spec.version(number)
                if saved is None:
                    # Removed from the notebook (env rm), but its image may remain, untagged,
                    # under a later version that was saved on top of it: its labels go on.
                    image = self._version_image(client, path, spec.id, number)
                    if image is None:
                        steps.append(LineageStep(f"{Path(path).name}: {spec.id} v{number}", None, how="saved (removed: no longer on this engine)"))
                        return steps
                    steps.append(LineageStep(f"{Path(path).name}: {spec.id} v{number}", image.id, None, "", image.labels.get(engine.LABEL_ENV_MESSAGE, ""), "saved (removed from the notebook)"))
                    words = image.labels.get(engine.LABEL_ENV_BASE, "")
                    continue
                steps.append(LineageStep(f"{Path(path).name}: {spec.id} v{number}", saved.image, saved.digest, saved.saved_at, saved.message, "saved"))
                words = saved.base
            elif imported is not None:
                from_path = source_path(path, imported["notebook"])
                try:
                    from njtui.store import load_notebook

                    notebook = self.notebook if from_path == self.runner.path else load_notebook(from_path)
                except (NotebookError, OSError):
                    steps.append(LineageStep(f"{imported['notebook']}: {imported['runtime']} v{imported['version']}", None, how="imported (its notebook is not here)"))
                    return steps
                source = notebook.runtimes.get(imported["runtime"])
                if source is None:
                    steps.append(LineageStep(f"{Path(from_path).name}: {imported['runtime']} v{imported['version']}", None, how="imported (no such runtime there now)"))
                    return steps
                path, spec = from_path, source
                words = f"v{imported['version']}"
            else:
                image_id = None
                if client is not None and words:
                    try:
                        image_id = client.images.get(words).id
                    except Exception:  # noqa: BLE001 - not on this engine
                        image_id = None
                steps.append(LineageStep(words, image_id, words if "@sha256:" in words else None, how="image"))
                return steps
            if len(steps) > 256:
                raise BackendError("the chain of environments is longer than 256 levels: a cycle of hand-edited versions")

    @staticmethod
    def _version_image(client, notebook_path: str, runtime_id: str, number: int):
        """A saved version's image found by its labels, tagged or not; None if gone."""
        if client is None:
            return None
        labels = [f"{engine.LABEL_ENV_NOTEBOOK}={notebook_identity(notebook_path)}", f"{engine.LABEL_ENV_RUNTIME}={runtime_id}", f"{engine.LABEL_ENV_VERSION}={number}"]
        try:
            found = client.images.list(all=True, filters={"label": labels})
        except Exception:  # noqa: BLE001 - the engine is not there: the chain ends here
            return None
        return found[0] if found else None

    def inherited_env(self, runtime_id: str) -> list[tuple[str, dict[str, str]]]:
        """The environment variables each level sets, from the base image up: each image's
        ENV (what it sets or changes over the level below), then the notebook's, then the runtime's."""
        spec = self.spec(runtime_id)
        levels: list[tuple[str, dict[str, str]]] = []
        try:
            steps = list(reversed(self.lineage(runtime_id)))
        except BackendError:
            steps = []
        below: dict[str, str] = {}
        for step in steps:
            reference = step.image or step.digest
            env = self.runner.image_env(reference) if reference else {}
            levels.append((step.label, {name: value for name, value in env.items() if below.get(name) != value}))
            below = env or below
        levels.append(("notebook [env]", dict(self.notebook.env)))
        levels.append((f"runtime {spec.id}", dict(spec.env)))
        return levels


def source_path(importing_path: str, notebook: str | None) -> str:
    """The path of the notebook an import names: its own when it names none, else relative to
    the importing notebook's directory."""
    return importing_path if notebook is None else str((Path(importing_path).parent / notebook).resolve())


def import_source(importing_path: str, importing_notebook: Notebook, spec: RuntimeSpec) -> tuple[Notebook, RuntimeSpec, str]:
    """The notebook, runtime and notebook path that a runtime's import names."""
    from njtui.store import load_notebook

    imported = spec.imported
    assert imported is not None
    path = source_path(importing_path, imported.notebook)
    if imported.notebook is None:
        notebook = importing_notebook
    else:
        if not Path(path).is_file():
            raise EnvironmentReferenceError(f"runtime {spec.id} imports {imported.label()} from {imported.notebook}, which is not there ({path}); fix the path in its environment, or import another environment")
        try:
            notebook = load_notebook(path)
        except NotebookError as exc:
            raise EnvironmentReferenceError(f"runtime {spec.id} imports from {imported.notebook}, which cannot be read: {exc}") from None
    source = notebook.runtimes.get(imported.runtime)
    if source is None:
        raise EnvironmentReferenceError(f"runtime {spec.id} imports runtime {imported.runtime!r} of {Path(path).name}, which has no such runtime (runtimes: {', '.join(notebook.runtimes) or 'none'})")
    return notebook, source, path
