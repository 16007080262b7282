"""The files a cell wrote to /results (or $NJTUI_RESULTS): each content stored once, under
blobs/ by its sha256, and listed per version in a manifest. A manifest may have been written by
anyone, so its entries are checked before use, and extracting never writes outside its target."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from njtui.dirs import make_dirs
from njtui.model import ExecutionRecord
from njtui.store.results_io import LINK_ERRNOS, READ_FLAGS, Refused, directory_beneath, new_file_at, open_directory, open_regular, replace_beneath, write_all
from njtui.store.results_paths import InvalidCellId, ResultsDirectory, valid_cell_id

MANIFEST_LIMIT = 16 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_VERSION_DIR = re.compile(r"v[0-9]{1,12}")


def entry_problem(entry: object) -> str | None:
    """Why an entry of a files manifest cannot be used, or None."""
    if not isinstance(entry, dict):
        return "not a file entry"
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        return "it has no name"
    if "\0" in name:
        return "its name holds a NUL byte"
    if name.startswith("/"):
        return "its name is absolute"
    parts = name.split("/")
    if ".." in parts:
        return "its name climbs out of the directory ('..')"
    if any(part in ("", ".") for part in parts):
        return "its name has empty or '.' parts"
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
        return "its sha256 is not 64 lowercase hex digits"
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return "its size is not a number of bytes"
    if not isinstance(entry.get("type", ""), str):
        return "its type is not a string"
    return None


class ResultFiles(ResultsDirectory):
    """The files part of a results store: blobs, and the manifests that list them per version."""

    # -- files a cell wrote to /results (or $NJTUI_RESULTS), content-addressed
    def _manifest(self, cell_id: str, version: int) -> Path:
        return self.cell_dir(cell_id) / f"{version:06d}.files.json"

    def blob_path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 (64 lowercase hex digits)")
        return self.root / "blobs" / digest[:2] / digest

    def save_files(self, record: ExecutionRecord, files: Iterable[tuple[str, IO[bytes]]]) -> list[dict[str, Any]]:
        """Stores the files of one execution; identical contents are stored once. Each is
        written to a new name in blobs/incoming and renamed to blobs/<ab>/<sha256>, both at the
        descriptors of those directories (results_io): none is written through a link."""
        entries: list[dict[str, Any]] = []
        self._real_dir("blobs", "incoming")
        for name, handle in files:
            with directory_beneath(self.root, ("blobs", "incoming")) as staging:
                digest, size, temporary = _stage(staging, handle)
                try:
                    with directory_beneath(self.root, ("blobs", digest[:2]), create=True) as target:
                        try:
                            os.stat(digest, dir_fd=target, follow_symlinks=False)
                        except FileNotFoundError:
                            os.replace(temporary, digest, src_dir_fd=staging, dst_dir_fd=target)
                finally:
                    try:
                        os.unlink(temporary, dir_fd=staging)  # still there: the content was stored already
                    except FileNotFoundError:
                        pass
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            entries.append({"name": name, "size": size, "type": kind, "sha256": digest})
        entries.sort(key=lambda entry: entry["name"])
        self._real_dir("cells", self.cell_dir(record.cell).name)
        replace_beneath(self.root, self._manifest(record.cell, record.version), json.dumps({"exec": record.exec_id, "files": entries}, indent=1).encode())
        return entries

    def manifest(self, record: ExecutionRecord) -> tuple[list[dict[str, Any]], list[str]]:
        """The files of one version that are fit to use, and why each other entry is not."""
        try:
            path = self._manifest(record.cell, record.version)
        except InvalidCellId as exc:
            return [], [str(exc)]
        if not self._is_real_dir("cells", record.cell):
            return [], []
        try:
            fd = open_regular(path, beneath=self.root)
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            return [], [f"{path}: not read: {exc.strerror or exc}"]
        with os.fdopen(fd, "rb") as handle:
            text = handle.read(MANIFEST_LIMIT + 1)
        try:
            data = json.loads(text) if len(text) <= MANIFEST_LIMIT else None
        except ValueError:
            data = None
        listed = data.get("files") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            return [], [f"{path}: not read: not a files manifest"]
        usable, refused = [], []
        for index, entry in enumerate(listed):
            problem = entry_problem(entry)
            if problem is None:
                usable.append({"type": "application/octet-stream", **entry})
            else:
                name = entry.get("name") if isinstance(entry, dict) else None
                refused.append(f"cell {record.cell} version {record.version}: {name if isinstance(name, str) else f'entry {index}'!r}: {problem}")
        return usable, refused

    def files(self, record: ExecutionRecord) -> list[dict[str, Any]]:
        return self.manifest(record)[0]

    def _open_blob(self, digest: str) -> int:
        """A read descriptor of the blob itself: a regular file under blobs/, no link on the way."""
        if not SHA256_HEX.fullmatch(digest):
            raise Refused("its sha256 is not 64 lowercase hex digits")
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise Refused(f"the results directory cannot be opened: {exc.strerror or exc}") from None
        try:
            directory = open_directory(root, ("blobs", digest[:2]), create=False)
        except FileNotFoundError:
            raise Refused("its blob is not in the store") from None
        finally:
            os.close(root)
        try:
            fd = os.open(digest, READ_FLAGS, dir_fd=directory)
        except FileNotFoundError:
            raise Refused("its blob is not in the store") from None
        except OSError as exc:
            if exc.errno in LINK_ERRNOS:
                raise Refused("its blob is a symbolic link") from None
            raise
        finally:
            os.close(directory)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Refused("its blob is not a regular file")
        os.set_blocking(fd, True)
        return fd

    def extract(self, record: ExecutionRecord, into: Path | str, under: Iterable[str] = ()) -> tuple[list[Path], list[str]]:
        """Copies the files of one version to into/under…/NAME: the paths written, and a warning
        naming each entry that was not (refused, or failed), the others extracted regardless.

        Nothing lands outside `into`: names and hashes come from a manifest anyone may have
        written, so a name that climbs out, an absolute one, a link on the way (in the store or
        in `into`) is refused. Each file is written to a new temporary name and renamed into
        place, so a link already at the destination is replaced, never followed; its mode is
        the blob's at most."""
        entries, warnings = self.manifest(record)
        under = tuple(under)
        for part in under:
            if not (valid_cell_id(part) or _VERSION_DIR.fullmatch(part)):
                raise ValueError(f"{part!r} is not a cell id or version directory")
        into = Path(into)
        make_dirs(into, 0o777)  # the umask's mode; directories made above it 0700
        top = into.resolve()
        base = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        written = []
        try:
            for entry in entries:
                name = entry["name"]
                parts = (*under, *name.split("/"))
                destination = top.joinpath(*parts)
                try:
                    if not destination.resolve().is_relative_to(top):
                        raise Refused(f"it would land outside {top}")
                    self._extract_one(entry["sha256"], base, parts)
                except Refused as exc:
                    warnings.append(f"cell {record.cell} version {record.version}: {name!r}: {exc}")
                    continue
                except OSError as exc:
                    warnings.append(f"cell {record.cell} version {record.version}: {name!r}: not written: {exc.strerror or exc}")
                    continue
                written.append(destination)
        finally:
            os.close(base)
        return written, warnings

    def _extract_one(self, digest: str, base: int, parts: tuple[str, ...]) -> None:
        blob = self._open_blob(digest)
        try:
            mode = stat.S_IMODE(os.fstat(blob).st_mode) & 0o777
            directory = open_directory(base, parts[:-1], create=True)
            try:
                with new_file_at(directory, parts[-1], mode) as out:
                    digest_of_copy = hashlib.sha256()
                    while chunk := os.read(blob, 1 << 20):
                        digest_of_copy.update(chunk)
                        write_all(out, chunk)
                    if digest_of_copy.hexdigest() != digest:
                        raise Refused("its blob's content does not match its sha256")
            finally:
                os.close(directory)
        finally:
            os.close(blob)


def _stage(staging: int, handle: IO[bytes]) -> tuple[str, int, str]:
    """Copies `handle` to a new file in the directory `staging`: (its sha256, its size, its name)."""
    temporary = f"tmp-{secrets.token_hex(8)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=staging)
    digest = hashlib.sha256()
    size = 0
    try:
        try:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                write_all(fd, chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(temporary, dir_fd=staging)
        raise
    return digest.hexdigest(), size, temporary
