"""Images, the environments of Docker runtimes: pulling one with its progress in booting
phases, listing those on the engine, telling where a reference resolves, reading an image's
environment."""

from __future__ import annotations

import time
from typing import Any

from njtui.runner.backend import BackendError, ProgressCallback
from njtui.runner.docker_engine import parse_time

PROGRESS_INTERVAL = 0.1


class PullProgress:
    """Turns the engine's pull stream into booting phases: Preparing Download (resolving and
    waiting for layers), Downloading (bytes done / total over all layers), Restoring (the
    engine extracting the layers into the image)."""

    def __init__(self, progress: ProgressCallback | None, reference: str) -> None:
        self.progress = progress
        self.reference = reference
        self.downloads: dict[str, tuple[int, int]] = {}
        self.extracts: dict[str, tuple[int, int]] = {}
        self._last = 0.0
        self.phase = ""

    def _report(self, phase: str, detail: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or (phase == self.phase and not force and now - self._last < PROGRESS_INTERVAL):
            return
        self.phase, self._last = phase, now
        self.progress(phase, {"image": self.reference, **detail})

    def feed(self, event: dict[str, Any]) -> None:
        if "error" in event:
            raise BackendError(f"image {self.reference} could not be pulled: {event['error']}")
        status = event.get("status", "")
        layer = event.get("id", "")
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            self.downloads[layer] = (detail.get("current", 0), detail["total"])
        elif status in ("Download complete", "Verifying Checksum") and layer in self.downloads:
            self.downloads[layer] = (self.downloads[layer][1], self.downloads[layer][1])
        elif status == "Extracting" and detail.get("total"):
            self.extracts[layer] = (detail.get("current", 0), detail["total"])
        if self.extracts:
            done = sum(current for current, _ in self.extracts.values())
            total = sum(total for _, total in self.extracts.values())
            self._report("Restoring", {"done": done, "total": total})
        elif self.downloads:
            done = sum(current for current, _ in self.downloads.values())
            total = sum(total for _, total in self.downloads.values())
            self._report("Downloading", {"done": done, "total": total}, force=done == total)
        else:
            self._report("Preparing Download", {"status": status})


def ensure_image(client, reference: str, progress: ProgressCallback | None = None) -> None:
    """The image on the engine, pulled (its progress reported) when it is not there yet."""
    import docker

    try:
        client.images.get(reference)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise BackendError(f"image {reference}: {exc.explanation or exc}") from None
    repository, tag = split_reference(reference)
    tracker = PullProgress(progress, reference)
    tracker._report("Preparing Download", {"status": "resolving"}, force=True)
    try:
        for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
            tracker.feed(event)
    except docker.errors.NotFound:
        raise BackendError(f"image not found: {reference} (not on this engine, and no registry has it){_pinned_advice(reference)}") from None
    except docker.errors.APIError as exc:
        explanation = str(exc.explanation or exc)
        if "not found" in explanation or "does not exist" in explanation or "manifest unknown" in explanation:
            raise BackendError(f"image not found: {reference} ({explanation}){_pinned_advice(reference)}") from None
        raise BackendError(f"image {reference} could not be pulled: {explanation}") from None
    except BackendError:
        raise
    except Exception as exc:  # noqa: BLE001 - a registry that can't be reached
        raise BackendError(f"image {reference} could not be pulled: {exc}") from None


def _pinned_advice(reference: str) -> str:
    if "@sha256:" not in reference:
        return ""
    return "; the registry does not have this exact image (deleted, or never pushed there): ask whoever exported it to export it again, or choose another environment"


def image_env(image) -> dict[str, str]:
    """The environment variables an image sets (its `ENV`)."""
    return dict(item.split("=", 1) for item in image.attrs.get("Config", {}).get("Env") or [] if "=" in item)


def tagged_images(images: list) -> list[dict[str, Any]]:
    """One row per tag of the engine's images: reference, size in bytes, creation time."""
    rows = []
    for image in images:
        for tag in image.tags:
            rows.append({"reference": tag, "size": image.attrs.get("Size", 0), "created": parse_time(image.attrs.get("Created", ""))})
    return sorted(rows, key=lambda item: item["reference"])


def check_image(client, reference: str) -> str:
    """Where an image reference resolves ("on this engine", "in its registry"); a
    BackendError saying why when it does not."""
    import docker

    try:
        client.images.get(reference)
        return "on this engine"
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise BackendError(f"{reference}: {exc.explanation or exc}") from None
    try:
        client.api.inspect_distribution(reference)
        return "in its registry (pulled at boot)"
    except docker.errors.APIError as exc:
        raise BackendError(f"image {reference} is neither on this engine nor in a registry it can reach ({exc.explanation or exc})") from None


def split_reference(reference: str) -> tuple[str, str]:
    """(repository, tag or digest) of an image reference; the tag is "latest" when none is given."""
    name, _, digest = reference.partition("@")
    if digest:
        return name, digest
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
        return repository, tag
    return name, "latest"
