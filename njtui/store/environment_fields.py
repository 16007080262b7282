"""The environment keys of a runtime's table, read and written: `environment` as an image or
an import table, `saved_version`, `export`, the `versions` array, and the notebook's `registry`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from njtui.model import HOST_ENVIRONMENT, EnvironmentImport, SavedVersion, is_runtime_id
from njtui.model.settings import is_image_reference

if TYPE_CHECKING:
    from njtui.store.notebook_validator import Validator

IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
DIGEST_REFERENCE = re.compile(r".+@sha256:[0-9a-f]{64}")
# HOST[:PORT]/PATH: a registry and the repository path under it that saved versions go to.
_REGISTRY = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_IMPORT_KEYS = ("runtime", "version", "notebook", "image", "digest")
_VERSION_KEYS = ("version", "image", "tag", "base", "base_image", "saved_at", "message", "host", "size", "digest", "flattened")
ENVIRONMENT_KEYS = ("saved_version", "versions", "export")


def is_registry(text: str) -> bool:
    return _REGISTRY.fullmatch(text) is not None


def read_registry(validator: Validator, data: dict) -> str | None:
    registry = validator.get(data, (), "registry", str, label="the notebook")
    if registry is not None and not is_registry(registry):
        raise validator.fail(("registry",), f"registry {registry!r} is not HOST[:PORT]/PATH", 'write it like registry = "localhost:5000/team" (a registry host and a lower-case path)')
    return registry


def read_environment(validator: Validator, where: tuple, table: dict, label: str) -> str | EnvironmentImport | None:
    raw = table.get("environment")
    if raw is None:
        return None
    if isinstance(raw, dict):
        return _read_import(validator, where + ("environment",), raw, label)
    environment = validator.get(table, where, "environment", str, label=label)
    if not environment.strip():
        raise validator.fail(where + ("environment",), f"{label} has an empty environment", f'write environment = "{HOST_ENVIRONMENT}" or an image reference')
    if environment != HOST_ENVIRONMENT and not is_image_reference(environment):
        raise validator.fail(
            where + ("environment",),
            f"{label} has environment {environment[:60]!r}, which is not an image reference",
            'write "host", an image like "njtui/python:3.11" or "registry.example.org:5000/team/image@sha256:…", or another runtime\'s saved version: { runtime = "tools", version = 1 }',
        )
    return environment


def _read_import(validator: Validator, where: tuple, raw: dict, label: str) -> EnvironmentImport:
    what = f"the environment of {label}"
    example = 'write { runtime = "tools", version = 1 }, or { notebook = "../base.toml", runtime = "tools", version = 1 }'
    unknown = [key for key in raw if key not in _IMPORT_KEYS]
    if unknown:
        raise validator.fail(where + (unknown[0],), f"{what} has an unknown key `{unknown[0]}`", f"{example}; njtui adds image (and digest) when it pins it")
    runtime = validator.get(raw, where, "runtime", str, required=True, label=what)
    if not is_runtime_id(runtime):
        raise validator.fail(where + ("runtime",), f"{what} names runtime {runtime[:60]!r}, which is not a runtime id", example)
    version = validator.get(raw, where, "version", int, required=True, label=what)
    if version < 1:
        raise validator.fail(where + ("version",), f"{what} names version {version}; versions count from 1", example)
    notebook = validator.get(raw, where, "notebook", str, label=what)
    validator.one_line(where + ("notebook",), notebook, f"the notebook of {what}")
    if notebook is not None and (not notebook.strip() or not notebook.endswith(".toml")):
        # A shared notebook names this path: only another notebook file is ever read through it.
        raise validator.fail(where + ("notebook",), f"{what} names notebook {notebook[:60]!r}, which is not a notebook file (.toml)", "leave `notebook` out for a runtime of this notebook, or write the .toml file's path relative to this notebook")
    image = validator.get(raw, where, "image", str, label=what)
    if image is not None and not IMAGE_ID.fullmatch(image):
        raise validator.fail(where + ("image",), f"{what} is pinned to {image[:60]!r}, which is not an image id", "remove `image`: njtui pins the import again when the runtime next boots")
    digest = validator.get(raw, where, "digest", str, label=what)
    if digest is not None and not (DIGEST_REFERENCE.fullmatch(digest) and is_image_reference(digest)):
        raise validator.fail(where + ("digest",), f"{what} has digest {digest[:60]!r}, which is not REGISTRY/REPO@sha256:…", "remove `digest`, or write the reference `njtui env export` printed")
    return EnvironmentImport(runtime=runtime, version=version, notebook=notebook, image=image, digest=digest)


def read_saved(validator: Validator, where: tuple, table: dict, label: str) -> tuple[int | None, list[SavedVersion], bool | None]:
    """A runtime's saved_version, versions and export."""
    raw_versions = validator.get(table, where, "versions", list, label=label) or []
    versions = [_read_version(validator, where + ("versions", index), raw, label) for index, raw in enumerate(raw_versions)]
    seen: set[int] = set()
    for index, saved in enumerate(versions):
        if saved.version in seen:
            raise validator.fail(where + ("versions", index, "version"), f"{label} has version {saved.version} twice", "keep one [[runtimes.ID.versions]] entry per version")
        seen.add(saved.version)
    saved_version = validator.get(table, where, "saved_version", int, label=label)
    if saved_version is not None and saved_version not in seen:
        known = ", ".join(str(number) for number in sorted(seen)) or "none"
        raise validator.fail(where + ("saved_version",), f"{label} boots from saved version {saved_version}, which it does not have (versions: {known})", "remove saved_version to boot the environment itself, or name one of its versions")
    export = validator.get(table, where, "export", bool, label=label)
    return saved_version, versions, export


def _read_version(validator: Validator, where: tuple, raw: Any, label: str) -> SavedVersion:
    if not isinstance(raw, dict):
        raise validator.fail(where, f"a saved version of {label} must be a table", "njtui writes these as [[runtimes.ID.versions]] when it saves; restore that block from version control")
    what = f"a saved version of {label}"
    version = validator.get(raw, where, "version", int, required=True, label=what)
    if version < 1:
        raise validator.fail(where + ("version",), f"{what} has version {version}; versions count from 1", "versions count from 1")
    image = validator.get(raw, where, "image", str, required=True, label=what)
    if not IMAGE_ID.fullmatch(image):
        raise validator.fail(where + ("image",), f"{what} has image {image[:60]!r}, which is not an image id", "njtui writes sha256:… here; restore it from version control")
    tag = validator.get(raw, where, "tag", str, label=what) or ""
    if tag and not is_image_reference(tag):
        raise validator.fail(where + ("tag",), f"{what} has tag {tag[:60]!r}, which is not an image reference", "restore it from version control, or remove it")
    digest = validator.get(raw, where, "digest", str, label=what)
    if digest is not None and not (DIGEST_REFERENCE.fullmatch(digest) and is_image_reference(digest)):
        raise validator.fail(where + ("digest",), f"{what} has digest {digest[:60]!r}, which is not REGISTRY/REPO@sha256:…", "remove it and export the version again")
    texts = {}
    for key in ("base", "base_image", "saved_at", "message", "host"):
        texts[key] = validator.get(raw, where, key, str, label=what) or ""
        if key != "message":
            validator.one_line(where + (key,), texts[key], f"the {key} of {what}")
    size = validator.get(raw, where, "size", int, label=what) or 0
    flattened = bool(validator.get(raw, where, "flattened", bool, label=what))
    return SavedVersion(
        version=version,
        image=image,
        tag=tag,
        digest=digest,
        size=max(size, 0),
        flattened=flattened,
        extra={key: value for key, value in raw.items() if key not in _VERSION_KEYS},
        **texts,
    )


def environment_value(spec_environment: str | EnvironmentImport) -> str | dict[str, Any]:
    if isinstance(spec_environment, str):
        return spec_environment
    table: dict[str, Any] = {}
    if spec_environment.notebook is not None:
        table["notebook"] = spec_environment.notebook
    table["runtime"] = spec_environment.runtime
    table["version"] = spec_environment.version
    if spec_environment.image:
        table["image"] = spec_environment.image
    if spec_environment.digest:
        table["digest"] = spec_environment.digest
    return table


def version_document(saved: SavedVersion) -> dict[str, Any]:
    table: dict[str, Any] = {"version": saved.version, "image": saved.image}
    if saved.tag:
        table["tag"] = saved.tag
    table.update(base=saved.base, base_image=saved.base_image, saved_at=saved.saved_at, message=saved.message, host=saved.host, size=saved.size)
    if saved.digest:
        table["digest"] = saved.digest
    if saved.flattened:
        table["flattened"] = True
    table.update(saved.extra)
    return table
