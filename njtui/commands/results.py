"""`njtui results`: lists or extracts the files cells wrote to /results."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from njtui.commands.common import EXIT_FAILED, EXIT_OK, UsageError, notebook_at, select_cells
from njtui.commands.output import printable


def cmd_results(args: argparse.Namespace) -> int:
    """Lists or extracts result files. A results directory is shared, untrusted input: an entry
    that cannot be extracted safely is named in a warning and skipped, the rest extracted, and
    the exit status is 1."""
    from njtui.store.results import ResultsStore, valid_cell_id

    notebook = notebook_at(args.notebook)
    store = ResultsStore(args.notebook)
    cells = select_cells(notebook, [args.cell] if args.cell else None, args.notebook)
    found = 0
    refused = 0

    def warn(text: str) -> None:
        nonlocal refused
        refused += 1
        print(f"njtui: warning: {'not extracted: ' if args.extract else 'skipped: '}{printable(text)}", file=sys.stderr)

    for cell in cells:
        if not valid_cell_id(cell.id):
            warn(f"cell {cell.id!r}: its id cannot name a directory (1 to 64 letters, digits, '-' or '_')")
            continue
        for version in _chosen_versions(store, cell, args):
            try:
                record = store.load(cell.id, version)
            except KeyError:
                continue  # pruned since it was listed
            if args.extract:
                found += _extract_files(store, record, cell, version, args, warn)
            else:
                found += _list_files(store, record, cell, version, args, warn)
    if not found and not refused and not args.json:
        print("no result files" + (f" for cell {args.cell}" if args.cell else ""), file=sys.stderr)
    return EXIT_FAILED if refused else EXIT_OK


def _chosen_versions(store, cell, args: argparse.Namespace) -> list[int]:
    versions = store.versions(cell.id)
    if args.version is None:
        return versions
    if args.version in versions:
        return [args.version]
    if args.cell:
        known = ", ".join(map(str, versions)) or "none"
        raise UsageError(f"cell {cell.id} has no version {args.version}; its versions: {known}")
    return []


def _extract_files(store, record, cell, version: int, args: argparse.Namespace, warn: Callable[[str], None]) -> int:
    under = ([cell.id] if not args.cell else []) + ([f"v{version}"] if args.version is None else [])
    written, warnings = store.extract(record, Path(args.extract), under)
    for path in written:
        print(printable(str(path)))
    for text in warnings:
        warn(text)
    return len(written)


def _list_files(store, record, cell, version: int, args: argparse.Namespace, warn: Callable[[str], None]) -> int:
    from njtui.model.size import format_size

    files, warnings = store.manifest(record)
    for text in warnings:
        warn(text)
    if not files:
        return 0
    if args.json:
        for entry in files:
            fields = {key: value for key, value in entry.items() if key not in ("cell", "version", "count", "path")}
            print(json.dumps({"cell": cell.id, "version": version, "count": record.count, **fields, "path": str(store.blob_path(entry["sha256"]))}))
    else:
        print(f"── {cell.id} · version {version} · [{record.count}] {record.status} ──")
        for entry in files:
            print(f"  {printable(entry['name']):<32} {format_size(entry['size']):>10}  {printable(entry['type'])}")
    return len(files)
