"""`njtui import NOTEBOOK.ipynb` and `njtui export NOTEBOOK.toml`: Jupyter notebooks in and out.

Exit status: 0 written, 1 the disk refused the write, 2 bad input (a notebook that cannot be
read, or an output file that exists without --force); nothing is written unless all is well."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from njtui.commands.common import EXIT_FAILED, EXIT_OK
from njtui.commands.output import printable


def add_parsers(sub: Any) -> None:
    importer = sub.add_parser("import", help="make an njtui notebook of a Jupyter notebook (.ipynb), its outputs kept as the cells' results")
    importer.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    importer.add_argument("-o", "--output", metavar="OUT.toml", help="the notebook to write (default: NOTEBOOK.toml beside it)")
    importer.add_argument("--force", action="store_true", help="replace OUT.toml if it exists")
    importer.set_defaults(handler=cmd_import)
    exporter = sub.add_parser("export", help="write a notebook and its cells' latest outputs as a Jupyter notebook (.ipynb)")
    exporter.add_argument("notebook", metavar="NOTEBOOK.toml")
    exporter.add_argument("-o", "--output", metavar="OUT.ipynb", help="the .ipynb to write (default: NOTEBOOK.ipynb beside it)")
    exporter.add_argument("--force", action="store_true", help="replace OUT.ipynb if it exists")
    exporter.set_defaults(handler=cmd_export)


def _failed(path: Path, exc: OSError) -> int:
    print(f"njtui: {printable(str(path))}: error: cannot write: {exc.strerror or exc}", file=sys.stderr)
    return EXIT_FAILED


def cmd_import(args: argparse.Namespace) -> int:
    from njtui.store.ipynb import import_ipynb

    source = Path(args.notebook)
    target = Path(args.output) if args.output else source.with_suffix(".toml")
    try:
        imported = import_ipynb(source, target, force=args.force)
    except OSError as exc:
        return _failed(target, exc)
    notebook = imported.notebook
    spec = next(iter(notebook.runtimes.values()))
    print(f"wrote {printable(str(imported.path))}: {len(notebook.cells)} cell{'s' if len(notebook.cells) != 1 else ''}, runtime {spec.id} (Jupyter kernel {spec.kernel}, {spec.language})")
    if imported.outputs:
        print(f"wrote {printable(str(imported.results))}: the stored outputs of {imported.outputs} cell{'s' if imported.outputs != 1 else ''}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from njtui.store.ipynb import export_notebook

    source = Path(args.notebook)
    target = Path(args.output) if args.output else source.with_suffix(".ipynb")
    try:
        exported = export_notebook(source, target, force=args.force)
    except OSError as exc:
        return _failed(target, exc)
    print(f"wrote {printable(str(exported.path))}: {exported.cells} cells, the outputs of {exported.outputs}")
    return EXIT_OK
