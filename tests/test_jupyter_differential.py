"""njtui against nbclient, Jupyter's own executor: the same .ipynb, executed by each, gives the
same outputs. njtui's way is the user's: `njtui import`, `njtui run`, `njtui export`; nbclient's
is `NotebookClient(...).execute()`. Both use the kernels installed beside njtui (python3 from
ipykernel, bash from bash_kernel). Compared after the usual normalisation: execution counts,
memory addresses, the kernel's temporary cell file names, the order of a bundle's keys; and
streams of one name merged (nbclient's `coalesce_streams`), as Jupyter's frontends show and save
them: how a kernel's output is cut into messages depends on timing."""

from __future__ import annotations

import base64
import io
import json
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

from tests.conftest import njtui

PYTHON = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
BASH = {"name": "bash", "display_name": "Bash", "language": "bash"}


def png_bytes() -> bytes:
    from PIL import Image

    picture = io.BytesIO()
    Image.linear_gradient("L").resize((24, 16)).save(picture, format="PNG")
    return picture.getvalue()


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="teal"/></svg>'

NOTEBOOKS = {
    "text": (
        PYTHON,
        [
            new_markdown_cell("# Text\n\nPlain output, unicode, both streams."),
            new_code_cell("import sys\nprint('héllo ✓ 日本 🙂')\nprint('to stderr', file=sys.stderr)\nprint('back')"),
            new_code_cell("x = 6 * 7\nx"),
            new_code_cell("for i in range(3):\n    print(i, end=' ')\nprint()\n'multi\\nline'"),
            new_raw_cell("raw text, never run"),
            new_code_cell("class Thing:\n    pass\nThing()"),  # a memory address in its repr
        ],
    ),
    "rich": (
        PYTHON,
        [
            new_code_cell("from IPython.display import display, Markdown, HTML, JSON, Image, SVG, update_display, clear_output\ndisplay(Markdown('## A heading\\n\\n*emphasis*'))"),
            new_code_cell("display(HTML('<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>'))"),
            new_code_cell("JSON({'k': [1, 2, {'n': None}]})"),
            new_code_cell(f"import base64\nImage(data=base64.b64decode({base64.b64encode(png_bytes()).decode()!r}))"),
            new_code_cell(f"SVG({SVG!r})"),
            new_code_cell("handle = display(Markdown('before'), display_id='progress')\nprint('shown')"),
            new_code_cell("update_display(Markdown('after, from a later cell'), display_id='progress')"),
            new_code_cell("import time\nfor i in range(3):\n    clear_output(wait=True)\n    print('step', i)"),
            new_code_cell("print('gone')\nclear_output()\nprint('kept')"),
        ],
    ),
    "errors": (
        PYTHON,
        [
            new_code_cell("def inner():\n    return 1 / 0\n\ndef outer():\n    return inner()"),
            new_code_cell("outer()"),
            new_code_cell("print('after the error')"),
            new_code_cell("raise ValueError('bad value: ünïcode')"),
            new_code_cell("undefined_name + 1"),
        ],
    ),
    "bash": (
        BASH,
        [
            new_code_cell('V=kept\necho "value: $V"'),
            new_code_cell("for i in 1 2 3; do echo line $i; done"),
            new_code_cell("echo to-stderr >&2\necho out"),
            new_code_cell("printf 'ünï ✓\\n'"),
        ],
    ),
}

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
_CELL_FILE = re.compile(r"/tmp/ipykernel_\d+/\d+\.py|Cell In\[\d+\]|In\[\d+\]|<ipython-input-\d+-[0-9a-f]+>")


def normalised(text: str) -> str:
    return _CELL_FILE.sub("<cell>", _ADDRESS.sub("0xADDR", text))


def comparable(outputs: list[dict]) -> list[dict]:
    """An output list without what differs between any two runs of a kernel."""
    kept = []
    for output in outputs:
        entry: dict = {"output_type": output["output_type"]}
        if output["output_type"] == "stream":
            entry.update(name=output["name"], text=normalised(output["text"]))
        elif output["output_type"] in ("execute_result", "display_data"):
            entry["data"] = {mime: normalised(value) if isinstance(value, str) else value for mime, value in sorted(output["data"].items())}
        elif output["output_type"] == "error":
            entry.update(ename=output["ename"], evalue=normalised(output["evalue"]), traceback=normalised("\n".join(output["traceback"])))
        kept.append(entry)
    return kept


def executed_by_nbclient(path, kernel: str):
    notebook = nbformat.read(str(path), as_version=4)
    NotebookClient(notebook, kernel_name=kernel, allow_errors=True, timeout=120, coalesce_streams=True).execute()
    return notebook


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_njtui_gives_the_outputs_nbclient_gives(tmp_path, name):
    kernelspec, cells = NOTEBOOKS[name]
    notebook = new_notebook(cells=cells, metadata={"kernelspec": kernelspec, "language_info": {"name": kernelspec["language"]}})
    nbformat.validate(notebook)
    source = tmp_path / f"{name}.ipynb"
    # The file as people have it: with the outputs of an earlier run stored (nbclient's), which
    # njtui imports and then replaces with its own.
    reference = executed_by_nbclient(_written(notebook, source), kernelspec["name"])
    nbformat.write(reference, str(source))

    imported = njtui("import", str(source), "-o", str(tmp_path / f"{name}.toml"))
    assert imported.returncode == 0, imported.stderr
    ran = njtui("run", str(tmp_path / f"{name}.toml"), "--keep-going")
    assert ran.returncode in (0, 1), ran.stderr  # 1: a cell failed, as the errors notebook's do
    exported = njtui("export", str(tmp_path / f"{name}.toml"), "-o", str(tmp_path / f"{name}.out.ipynb"))
    assert exported.returncode == 0, exported.stderr

    ours = nbformat.read(str(tmp_path / f"{name}.out.ipynb"), as_version=4)
    nbformat.validate(ours)
    assert [cell.cell_type for cell in ours.cells] == [cell.cell_type for cell in reference.cells]
    assert [cell.source for cell in ours.cells] == [cell.source for cell in reference.cells]
    for mine, theirs in zip(ours.cells, reference.cells, strict=True):
        if theirs.cell_type == "code":
            assert comparable(mine.outputs) == comparable(theirs.outputs), f"cell {theirs.source!r}:\n{json.dumps(mine.outputs, indent=1)[:2000]}"
            assert mine.execution_count is not None


def _written(notebook, path):
    nbformat.write(notebook, str(path))
    return path
