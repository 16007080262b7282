"""Mounts of Docker runtimes that are not host directories: a git repository at a ref, an S3
bucket or prefix. Both are fetched on this machine at boot and copied into the container with
`put_archive` (so they work with a remote engine too); a read-write S3 mount's changed files are
written back to the bucket when a cell finishes."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlsplit, urlunsplit

from njtui.model.settings import Mount
from njtui.runner.backend import BackendError


def tar_tree(root: Path, at: str, read_only: bool) -> bytes:
    """A tar placing `root`'s contents at `at` in the container (read-only: files 0444)."""
    buffer = io.BytesIO()
    prefix = at.strip("/")
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = tarfile.TarInfo(prefix)
        top.type = tarfile.DIRTYPE
        top.mode = 0o555 if read_only else 0o777
        tar.addfile(top)
        for directory, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != ".git"]
            relative = Path(directory).relative_to(root)
            for name in sorted(dirs):
                entry = tarfile.TarInfo(str(Path(prefix) / relative / name))
                entry.type = tarfile.DIRTYPE
                entry.mode = 0o555 if read_only else 0o777
                tar.addfile(entry)
            for name in sorted(files):
                path = Path(directory) / name
                if path.is_symlink() or not path.is_file():
                    continue
                entry = tar.gettarinfo(str(path), arcname=str(Path(prefix) / relative / name))
                entry.mode = 0o444 if read_only else 0o666
                entry.uid = entry.gid = 0
                with open(path, "rb") as handle:
                    tar.addfile(entry, handle)
    return buffer.getvalue()


def _git(*args: str, cwd: Path) -> None:
    # Always in a directory of ours: git reads the configuration of a repository around its
    # working directory, and one planted there (core.fsmonitor, hooks) runs commands.
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if result.returncode != 0:
        raise BackendError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"git {args[0]} failed")


def git_checkout(mount: Mount, credentials: dict[str, str], into: Path) -> Path:
    """Clones the repository at `mount.ref` (a branch, tag or commit) into `into`."""
    url = mount.source
    token_name = mount.extra.get("token")
    if token_name:
        parts = urlsplit(url)
        # The token goes into the URL git uses here only; errors below never echo it.
        url = urlunsplit(parts._replace(netloc=f"x-access-token:{quote(credentials[token_name], safe='')}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")))
    target = into / "checkout"
    try:
        if mount.ref and not _looks_like_commit(mount.ref):
            _git("clone", "--quiet", "--depth", "1", "--branch", mount.ref, url, str(target), cwd=into)
        else:
            _git("clone", "--quiet", url, str(target), cwd=into)
            if mount.ref:
                _git("checkout", "--quiet", "--detach", mount.ref, cwd=target)
    except BackendError as exc:
        message = str(exc)
        if token_name:
            message = message.replace(credentials[token_name], "***")
        raise BackendError(f"git mount {mount.source} at {mount.ref or 'its default branch'}: {message}") from None
    return target


def _looks_like_commit(ref: str) -> bool:
    return 7 <= len(ref) <= 40 and all(c in "0123456789abcdef" for c in ref.lower())


def _s3_target(mount: Mount) -> tuple[str, str]:
    parts = urlsplit(mount.source)
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parts.netloc, prefix


def s3_client(mount: Mount, credentials: dict[str, str]):
    import boto3

    keys = {}
    if mount.extra.get("access_key_id"):
        keys["aws_access_key_id"] = credentials[mount.extra["access_key_id"]]
    if mount.extra.get("secret_access_key"):
        keys["aws_secret_access_key"] = credentials[mount.extra["secret_access_key"]]
    return boto3.client("s3", endpoint_url=mount.extra.get("endpoint"), region_name=mount.extra.get("region") or "us-east-1", **keys)


def s3_download(mount: Mount, credentials: dict[str, str], into: Path) -> Path:
    bucket, prefix = _s3_target(mount)
    client = s3_client(mount, credentials)
    target = into / "s3"
    target.mkdir()
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                if not relative or relative.endswith("/") or ".." in relative.split("/"):
                    continue
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, item["Key"], str(destination))
    except Exception as exc:  # noqa: BLE001 - botocore's errors, in words
        raise BackendError(f"s3 mount {mount.source}: {exc}") from None
    return target


def s3_write_back(mount: Mount, credentials: dict[str, str], files: Iterator[tuple[str, IO[bytes]]]) -> list[str]:
    """Uploads files whose content differs from the bucket's (by MD5/ETag); returns their keys."""
    bucket, prefix = _s3_target(mount)
    client = s3_client(mount, credentials)
    etags = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            etags[item["Key"]] = item["ETag"].strip('"')
    uploaded = []
    for name, handle in files:
        data = handle.read()
        key = prefix + name
        if etags.get(key) == hashlib.md5(data).hexdigest():
            continue
        client.put_object(Bucket=bucket, Key=key, Body=data)
        uploaded.append(key)
    return uploaded


def fetch(mount: Mount, credentials: dict[str, str]) -> bytes:
    """The tar to put into the container for a git or s3 mount."""
    with tempfile.TemporaryDirectory(prefix="njtui-mount-") as scratch:
        if mount.kind == "git":
            root = git_checkout(mount, credentials, Path(scratch))
        else:
            root = s3_download(mount, credentials, Path(scratch))
        return tar_tree(root, mount.at, mount.read_only)
