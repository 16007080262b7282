"""Saved environments on a Docker engine: a runtime's container committed as a new image
version, its changes since what it booted from, versions listed and removed, a version pushed
to a registry with its digest.

A save commits only the container's writable layer, which holds nothing but the runtime's own
file system (see docker_container). Its configuration is the booted-from image's: the commit
gets that image's command, and labels that name the version; the container's own labels are
blanked so that a container started from the image by hand is not taken for a runtime.
"""

from __future__ import annotations

import datetime
import json
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from njtui.runner.backend import BackendError, ProgressCallback
from njtui.runner.docker_connection import container_file
from njtui.runner.docker_container import remove_container
from njtui.runner.env_changes import DELETED, DOCKER_KINDS, DPKG_STATUS, ENGINE_FILES, dpkg_packages, since_save, without_mounts
from njtui.runner.paths import open_private_root, runtime_root
from njtui.runner.private import NotPrivateError, PrivateDir

LABEL_ENV_NOTEBOOK = "org.njtui.env.notebook"
LABEL_ENV_RUNTIME = "org.njtui.env.runtime"
LABEL_ENV_VERSION = "org.njtui.env.version"
LABEL_ENV_BASE = "org.njtui.env.base"
LABEL_ENV_MESSAGE = "org.njtui.env.message"
MARK_LIFETIME = 30 * 86400.0  # a save's mark outlives any runtime's idle timeout
# overlay2 stacks at most 128 layers; a save past this many flattens the image to one layer.
FLATTEN_AT = 120
PROGRESS_INTERVAL = 0.1


@dataclass
class Committed:
    image: str
    tag: str
    size: int
    layers: int
    flattened: bool
    created: str


def engine_name(client) -> str:
    try:
        return str(client.info().get("Name") or "this engine")
    except Exception:  # noqa: BLE001 - a name for the record only
        return "this engine"


def words(exc: BaseException) -> str:
    """An engine error in words, with what to do where it is known."""
    text = str(getattr(exc, "explanation", None) or exc)
    lowered = text.lower()
    if engine_gone(exc):
        return f"the Docker engine stopped answering ({text}); nothing was saved or changed: start the engine again (is dockerd running?) and try again"
    if "no space left on device" in lowered:
        return f"the Docker engine's disk is full ({text}); free space (njtui env prune, docker system prune) and try again"
    if "unauthorized" in lowered or "authentication required" in lowered or "no basic auth credentials" in lowered:
        return f"the registry needs credentials ({text}); log in with `docker login REGISTRY` and try again"
    if "denied" in lowered:
        return f"the registry refused it ({text}); check that you may push to this repository"
    if "http 405" in lowered or "method not allowed" in lowered or "operation is unsupported" in lowered:
        # What a registry in read-only (maintenance) mode answers to an upload.
        return f"the registry refused the upload ({text}); check that you may push to this repository and that the registry is not read-only"
    if "connection refused" in lowered or "no such host" in lowered or "i/o timeout" in lowered:
        return f"the registry cannot be reached ({text}); check its address and that it is running"
    return text


def engine_gone(exc: BaseException) -> bool:
    """The connection to the engine itself failed (dockerd stopped or killed, its socket gone),
    as opposed to an error the engine answered with."""
    import requests

    return isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError))


def container_changes(container, mountpoints: list[str]) -> dict[str, str]:
    """path → A/C/D against the image the container was created from, njtui's mounts left out."""
    raw = container.diff() or []
    return without_mounts({item["Path"]: DOCKER_KINDS.get(item["Kind"], "C") for item in raw}, mountpoints)


def _mark_name(container_id: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{12,64}", container_id):
        raise ValueError(f"not a container id: {container_id!r}")
    return f"{container_id}.json"


def _marks(*, create: bool) -> PrivateDir:
    """The marks' directory in the runtime root, opened and checked (njtui.runner.private):
    marks are read and written at its descriptor."""
    with open_private_root(runtime_root()) as root:
        return root.subdir("env-marks", create=create)


def read_mark(container) -> dict[str, Any] | None:
    """What the last save of this container recorded, if this machine saved it. Kept on the
    client's side (the runtime root), not in the container: reading a file out of a running
    container costs more than the commit itself."""
    return read_mark_of(container.id)


def read_mark_of(container_id: str) -> dict[str, Any] | None:
    try:
        name = _mark_name(container_id)
        with _marks(create=False) as marks:
            mark = json.loads(marks.read(name))
    except (OSError, ValueError, NotPrivateError):
        return None
    return mark if isinstance(mark, dict) else None


def write_mark(container, mark: dict[str, Any]) -> None:
    name = _mark_name(container.id)
    with _marks(create=True) as marks:
        marks.write(name, json.dumps(mark).encode())
        # Marks of containers gone long ago (removed outside njtui) go with the next save.
        cutoff = time.time() - MARK_LIFETIME
        for stale in marks.names():
            try:
                if stale.endswith(".json") and marks.lstat(stale).st_mtime < cutoff:
                    marks.unlink(stale)
            except OSError:
                pass


def forget_mark(container_id: str) -> None:
    """The container is gone: so is what its saves recorded."""
    try:
        name = _mark_name(container_id)
        with _marks(create=False) as marks:
            marks.unlink(name)
    except (OSError, ValueError, NotPrivateError):
        pass


def touched_since(container, since_ns: int, roots: list[str] | None = None) -> set[str] | None:
    """Paths of the container's root file system (under `roots`, default all of it) whose inode
    changed after `since_ns` (the engine's clock), asked of GNU find in the container; None where
    it cannot answer."""
    seconds = f"@{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
    try:
        result = container.exec_run(["find", *(roots or ["/"]), "-xdev", "-newerct", seconds, "-print"], stdout=True, stderr=False)
    except Exception:  # noqa: BLE001
        return None
    if result.exit_code not in (0, 1):
        return None
    return {line for line in result.output.decode("utf-8", "surrogateescape").splitlines() if line and line not in ENGINE_FILES}


def current_changes(container, mountpoints: list[str]) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The container's changes since what it now boots from: since its image, or, once it was
    saved while running, since that save. Also the save's mark, if any."""
    now = container_changes(container, mountpoints)
    mark = read_mark(container)
    if mark is None or not isinstance(mark.get("changes"), dict):
        return now, None
    # Only a path both diffs show alike needs asking; find walks just the top directories
    # holding one (not /usr of the whole image), or not at all.
    alike = [path for path, kind in now.items() if kind != DELETED and mark["changes"].get(path) == kind]
    roots = sorted({"/" + path.strip("/").split("/", 1)[0] for path in alike})
    touched = touched_since(container, int(mark.get("created_ns") or 0), roots) if roots else set()
    if touched is None:
        touched = set(now)  # no way to tell: a path changed before the save counts as changed again
    return since_save(now, mark["changes"], touched), mark


def _text(data: bytes | None) -> str:
    return data.decode("utf-8", "replace") if data is not None else ""


def image_file(client, image: str, path: str) -> bytes | None:
    """A file of an image, through a container created (never started) from it."""
    container = client.containers.create(image, command=["true"], labels={})
    try:
        return container_file(container, path)
    finally:
        remove_container(container)


def dpkg_before_after(client, container, image: str) -> tuple[dict[str, str], dict[str, str]]:
    """Installed packages in `image` (what the container counts its changes from) and now."""
    return dpkg_packages(_text(image_file(client, image, DPKG_STATUS))), dpkg_packages(_text(container_file(container, DPKG_STATUS)))


def commit(client, container, *, repository: str, tag: str, labels: dict[str, str], base_image: str, progress: ProgressCallback | None) -> Committed:
    """The container's file system as a new image, tagged repository:tag; flattened to one layer
    when the base has too many to stack another."""
    base = client.images.get(base_image)
    config = base.attrs.get("Config") or {}
    blank = {name: "" for name in container.labels if name.startswith("org.njtui.") and name not in labels}
    conf = {"Labels": {**blank, **labels}, "Cmd": config.get("Cmd") or ["/bin/sh"]}
    layers = len((base.attrs.get("RootFS") or {}).get("Layers") or [])
    if layers >= FLATTEN_AT:
        image = _flatten(client, container, repository, tag, conf, config, progress)
        flattened = True
    else:
        if progress:
            progress("Saving", {"what": "committing the file system"})
        result = client.api.commit(container.id, repository=repository, tag=tag, conf=conf)
        image = client.images.get(result["Id"])
        flattened = False
    size = max(int(image.attrs.get("Size", 0)) - (0 if flattened else int(base.attrs.get("Size", 0))), 0)
    return Committed(
        image=image.id,
        tag=f"{repository}:{tag}",
        size=size,
        layers=len((image.attrs.get("RootFS") or {}).get("Layers") or []),
        flattened=flattened,
        created=image.attrs.get("Created", ""),
    )


def _flatten(client, container, repository: str, tag: str, conf: dict[str, Any], config: dict[str, Any], progress: ProgressCallback | None):
    """The container's whole file system as a one-layer image (export, then import with the
    base's configuration): the layer limit no longer applies, the history starts again."""
    changes = [f"ENV {item}" for item in config.get("Env") or [] if "=" in item]
    changes.append(f"CMD {json.dumps(conf['Cmd'])}")
    if config.get("Entrypoint"):
        changes.append(f"ENTRYPOINT {json.dumps(config['Entrypoint'])}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("User"):
        changes.append(f"USER {config['User']}")
    changes.extend(f"LABEL {json.dumps(name)}={json.dumps(value)}" for name, value in conf["Labels"].items() if value)
    with tempfile.TemporaryFile() as spool:
        done, last = 0, 0.0
        for chunk in client.api.export(container.id):
            spool.write(chunk)
            done += len(chunk)
            if progress and time.monotonic() - last > PROGRESS_INTERVAL:
                progress("Saving", {"what": "flattening: exporting the file system", "done": done})
                last = time.monotonic()
        spool.seek(0)
        if progress:
            progress("Saving", {"what": "flattening: importing one layer", "done": done, "total": done})
        # Not import_image_from_stream: for a file it declares a chunked body that requests then
        # sends with a Content-Length, and the engine reads the tar as chunks ("header line too long").
        output = client.api.import_image_from_data(spool, repository=repository, tag=tag, changes=changes)
    image_id = None
    for line in str(output).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("error"):
            # The engine answers 200 and reports a failed import (a full disk) in the stream.
            raise BackendError(f"flattening the image failed: {words(Exception(event['error']))}")
        if isinstance(event, dict):
            image_id = event.get("status") or image_id
    return client.images.get(image_id or f"{repository}:{tag}")


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def created_ns(created: str) -> int:
    """The engine's RFC 3339 creation time (nanoseconds) as integer nanoseconds."""
    text = created.rstrip("Z")
    whole, _, fraction = text.partition(".")
    seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)


def push(client, image: str, target: str, tag: str, progress: ProgressCallback | None) -> str:
    """Pushes `image` as target:tag; its manifest digest (sha256:…)."""
    import docker

    reference = f"{target}:{tag}"
    tagged_before = image_exists(client, reference)
    try:
        client.api.tag(image, target, tag)
    except docker.errors.APIError as exc:
        raise BackendError(f"could not tag the image for {target}: {words(exc)}") from None
    try:
        return _push_tagged(client, target, tag, progress)
    except BackendError:
        if not tagged_before:
            # The tag was only the push's: a refused push leaves no registry-named tag behind.
            try:
                client.api.remove_image(reference, force=False, noprune=True)
            except Exception:  # noqa: BLE001 - the engine may be gone; nothing else to undo
                pass
        raise


def _push_tagged(client, target: str, tag: str, progress: ProgressCallback | None) -> str:
    import docker

    layers: dict[str, tuple[int, int]] = {}
    digest = None
    last = 0.0
    try:
        for event in client.api.push(target, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise BackendError(f"push to {target} failed: {words(Exception(event['error']))}")
            detail = event.get("progressDetail") or {}
            if event.get("status") == "Pushing" and detail.get("total"):
                layers[event.get("id", "")] = (min(detail.get("current", 0), detail["total"]), detail["total"])
            elif event.get("status") in ("Pushed", "Layer already exists", "Mounted from") and event.get("id") in layers:
                layers[event["id"]] = (layers[event["id"]][1], layers[event["id"]][1])
            if (event.get("aux") or {}).get("Digest"):
                digest = event["aux"]["Digest"]
            if progress and time.monotonic() - last > PROGRESS_INTERVAL:
                progress("Uploading", {"done": sum(d for d, _ in layers.values()), "total": sum(t for _, t in layers.values()), "image": f"{target}:{tag}"})
                last = time.monotonic()
    except BackendError:
        raise
    except docker.errors.APIError as exc:
        raise BackendError(f"push to {target} failed: {words(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the engine went away mid-push
        raise BackendError(f"push to {target} failed: {words(exc)}") from None
    if progress:
        total = sum(t for _, t in layers.values())
        progress("Uploading", {"done": total, "total": total, "image": f"{target}:{tag}"})
    if digest is None:
        raise BackendError(f"push to {target} ended without the registry naming a digest")
    return str(digest)


def image_exists(client, reference: str) -> bool:
    import docker

    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        raise BackendError(f"image {reference}: {words(exc)}") from None
