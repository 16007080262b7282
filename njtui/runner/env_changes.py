"""What changed in a runtime's file system, in a person's terms: paths added, changed or
deleted (grouped by top directory), and above them the packages that came, went or moved
version, from dpkg's status file and Python's installed distributions."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

ADDED, CHANGED, DELETED = "A", "C", "D"
CHANGE_WORDS = {ADDED: "added", CHANGED: "changed", DELETED: "deleted"}
DOCKER_KINDS = {0: CHANGED, 1: ADDED, 2: DELETED}  # the engine's /changes kinds
DPKG_STATUS = "/var/lib/dpkg/status"
# A distribution's metadata directory: <name>-<version>.dist-info (the wheel spec escapes "-"
# in both to "_"), or the older <name>-<version>[-pyX.Y].egg-info.
_DIST_INFO = re.compile(r"/(?:site|dist)-packages/([^/]+?)-([^/-]+?)(?:-py\d+(?:\.\d+)*)?\.(?:dist|egg)-info$")
# Files the engine manages in every container: never part of a runtime's own changes.
ENGINE_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv")
# What the engine mounts into a container started with an init (docker-init as PID 1).
ENGINE_MOUNTS = ("/usr/sbin/docker-init",)


@dataclass(frozen=True)
class PathChange:
    path: str
    change: str  # A | C | D


@dataclass(frozen=True)
class PackageChange:
    manager: str  # dpkg | python
    name: str
    before: str | None  # None: added
    after: str | None  # None: removed


@dataclass
class EnvironmentChanges:
    """A runtime's file system against what it booted from (its saved version, or its environment)."""

    runtime: str
    since: str  # what the changes are counted from, in words ("tools v2", "njtui/bash:5")
    paths: list[PathChange] = field(default_factory=list)
    packages: list[PackageChange] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def counts(self) -> Counter[str]:
        return Counter(change.change for change in self.paths)

    def groups(self) -> list[tuple[str, Counter[str]]]:
        """(top directory, counts of A/C/D under it), in path order."""
        groups: dict[str, Counter[str]] = {}
        for change in self.paths:
            top = "/" + change.path.strip("/").split("/", 1)[0]
            groups.setdefault(top, Counter())[change.change] += 1
        return sorted(groups.items())

    def lost_words(self) -> str:
        """What a reset of the runtime throws away, for its confirmation."""
        paths, packages = len(self.paths), len(self.packages)
        return f"{paths} changed path{'s' if paths != 1 else ''} ({counts_words(self.counts())}), {packages} package change{'s' if packages != 1 else ''}, and everything it holds in memory"

    def to_json(self) -> dict[str, Any]:
        # Not asdict for the paths: it deep-copies each one, a tenth of a second for 10,000.
        paths = [{"path": change.path, "change": change.change} for change in self.paths]
        return {"runtime": self.runtime, "since": self.since, "paths": paths, "packages": [asdict(change) for change in self.packages]}


def counts_words(counts: Counter[str]) -> str:
    """ "2 added, 1 deleted": the kinds of change there are, counted."""
    return ", ".join(f"{counts[kind]} {word}" for kind, word in CHANGE_WORDS.items() if counts[kind]) or "none"


def without_mounts(changes: dict[str, str], mountpoints: list[str]) -> dict[str, str]:
    """Leaves out the mount points njtui made (and the directories above them, which only
    changed by holding them) and the files the engine manages."""
    above: set[str] = set()
    for mountpoint in [*mountpoints, *ENGINE_MOUNTS]:
        parts = mountpoint.rstrip("/").split("/")
        above.update("/".join(parts[:index]) or "/" for index in range(1, len(parts)))
    mountpoints = [*mountpoints, *ENGINE_MOUNTS]
    skipped = set(mountpoints) | set(ENGINE_FILES)
    below = tuple(m.rstrip("/") + "/" for m in mountpoints)  # one startswith per path, for big diffs
    return {path: kind for path, kind in changes.items() if path not in skipped and not (path in above and kind != DELETED) and not path.startswith(below)}


def since_save(now: dict[str, str], at_save: dict[str, str], touched_since: set[str]) -> dict[str, str]:
    """The changes since a save, from two diffs against the image the container booted from:
    `at_save` (taken as it was saved) and `now`, with `touched_since` the paths whose inode
    changed after the save (a path changed again shows the same kind in both diffs)."""
    result: dict[str, str] = {}
    for path in now.keys() | at_save.keys():
        before, after = at_save.get(path), now.get(path)
        if before is None:
            change = after
        elif after is None:
            # Back to what the booted-from image has, which differs from what was saved.
            change = {ADDED: DELETED, CHANGED: CHANGED, DELETED: ADDED}[before]
        elif before == after:
            change = CHANGED if after != DELETED and path in touched_since else None
        elif after == DELETED:
            change = DELETED
        else:
            change = ADDED if before == DELETED else CHANGED
        if change is not None:
            result[path] = change
    return result


def dpkg_packages(status: str) -> dict[str, str]:
    """Installed packages → versions, from the text of dpkg's status file."""
    packages: dict[str, str] = {}
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") and fields.get("Status", "").endswith(" installed") and "Version" in fields:
            name = fields["Package"]
            architecture = fields.get("Architecture")
            if architecture and architecture not in ("all", "amd64", "arm64") and name in packages:
                name = f"{name}:{architecture}"
            packages[name] = fields["Version"]
    return packages


def package_changes(manager: str, before: dict[str, str], after: dict[str, str]) -> list[PackageChange]:
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old != new:
            changes.append(PackageChange(manager, name, old, new))
    return changes


def python_changes(paths: dict[str, str]) -> list[PackageChange]:
    """Distributions installed, removed or upgraded, from their metadata directories coming and
    going (an upgrade replaces name-1.0.dist-info with name-2.0.dist-info)."""
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for path, kind in paths.items():
        match = _DIST_INFO.search(path)
        if match is None or kind == CHANGED:
            continue
        name, version = _normalise(match.group(1)), match.group(2).replace("_", "-")
        (after if kind == ADDED else before)[name] = version
    return package_changes("python", before, after)


def _normalise(name: str) -> str:
    """PEP 503's normal form: what pip shows and compares names by."""
    return re.sub(r"[-_.]+", "-", name).lower()
