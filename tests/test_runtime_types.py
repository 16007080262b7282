"""The notebook file's Jupyter keys: runtimes of type jupyter (kernel, any language), raw cells,
and Jupyter metadata and attachments kept losslessly, with errors at file:line."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import NotebookError, NotebookFile, dumps_notebook, load_notebook, parse_notebook
from njtui.store.notebook_layout import JUPYTER_METADATA, jupyter_value

JUPYTER_NOTEBOOK = """\
njtui = 1
title = "Kernels"

# the R kernel, for the statistics
[runtimes.ir]
name = "R"
type = "jupyter"
kernel = "ir"
language = "r"
environment = "host"

[runtimes.python3]
type = "jupyter"
kernel = "python3"
language = "python"
default = true

[runtimes.sh]
language = "bash"

[[cells]]
id = "r1"
kind = "code"
language = "r"
source = "summary(cars)"

[[cells]]
id = "p1"
kind = "code"
language = "python"
source = "1 + 1"

[[cells]]
id = "raw1"
kind = "raw"
source = ".. raw:: rst"

[cells.metadata]
raw_mimetype = "text/restructuredtext"
tags = ["keep"]
"""


def write(tmp_path: Path, text: str, name: str = "nb.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def parsed(text: str) -> Notebook:
    return parse_notebook(text.encode("utf-8"), Path("nb.toml"))


def round_trip(notebook: Notebook) -> Notebook:
    return parsed(dumps_notebook(notebook))


def test_jupyter_runtimes_are_read_with_their_kernel_and_language(tmp_path):
    notebook = load_notebook(write(tmp_path, JUPYTER_NOTEBOOK))
    ir, python3, sh = notebook.runtimes["ir"], notebook.runtimes["python3"], notebook.runtimes["sh"]
    assert (ir.type, ir.kernel, ir.language, ir.is_jupyter) == ("jupyter", "ir", "r", True)
    assert (python3.type, python3.kernel, python3.language, python3.default) == ("jupyter", "python3", "python", True)
    assert (sh.type, sh.kernel, sh.is_jupyter) == ("native", None, False)
    assert notebook.runtime_for(notebook.cell("r1")).id == "ir"
    assert notebook.runtime_for(notebook.cell("p1")).id == "python3"
    raw = notebook.cell("raw1")
    assert (raw.kind, raw.source, raw.is_code) == ("raw", ".. raw:: rst", False)
    assert raw.metadata == {"raw_mimetype": "text/restructuredtext", "tags": ["keep"]}
    assert "metadata" not in raw.extra


def test_type_is_written_for_jupyter_runtimes_only_and_reads_back_the_same(tmp_path):
    notebook = load_notebook(write(tmp_path, JUPYTER_NOTEBOOK))
    text = dumps_notebook(notebook)
    data = tomllib.loads(text)
    assert data["runtimes"]["ir"]["type"] == "jupyter" and data["runtimes"]["ir"]["kernel"] == "ir"
    assert "type" not in data["runtimes"]["sh"] and "kernel" not in data["runtimes"]["sh"]
    assert list(data["runtimes"]["python3"])[:4] == ["name", "type", "kernel", "language"]
    assert round_trip(notebook) == notebook
    assert dumps_notebook(parsed(text)) == text


def test_an_explicit_native_type_is_accepted_and_not_written_back():
    notebook = parsed('njtui = 1\n[runtimes.py]\ntype = "native"\nlanguage = "python"\n')
    assert notebook.runtimes["py"].type == "native"
    assert "type" not in tomllib.loads(dumps_notebook(notebook))["runtimes"]["py"]


def test_a_native_notebook_is_written_as_before():
    text = 'njtui = 1\n\n[runtimes.py]\nname = "Python"\nlanguage = "python"\nenvironment = "host"\n\n[[cells]]\nid = "a1"\nkind = "code"\nlanguage = "python"\nsource = "x"\n'
    assert dumps_notebook(parsed(text)) == text


def test_saving_in_place_keeps_comments_and_edits_the_jupyter_keys(tmp_path):
    path = write(tmp_path, JUPYTER_NOTEBOOK)
    opened = NotebookFile.load(path)
    notebook = copy.deepcopy(opened.notebook)
    notebook.runtimes["ir"].kernel = "ir43"
    notebook.cell("raw1").metadata["tags"].append("new")
    notebook.cell("p1").metadata = {"collapsed": True}
    assert opened.save(notebook).status == "saved"
    text = path.read_text()
    assert "# the R kernel, for the statistics" in text
    assert load_notebook(path) == notebook


ERRORS = {
    "unknown-type": (JUPYTER_NOTEBOOK.replace('type = "jupyter"\nkernel = "ir"', 'type = "conda"\nkernel = "ir"'), "unknown type 'conda'", 7, 'type = "jupyter"'),
    "type-not-a-string": (JUPYTER_NOTEBOOK.replace('type = "jupyter"\nkernel = "ir"', 'type = 1\nkernel = "ir"'), "`type`", 7, "string"),
    "no-kernel": (JUPYTER_NOTEBOOK.replace('kernel = "ir"\n', ""), "names no kernel", 5, 'kernel = "python3"'),
    "bad-kernel": (JUPYTER_NOTEBOOK.replace('kernel = "ir"', 'kernel = "i r/../x"'), "not a kernelspec name", 8, "jupyter kernelspec list"),
    "kernel-on-native": (JUPYTER_NOTEBOOK.replace('[runtimes.sh]\nlanguage = "bash"', '[runtimes.sh]\nlanguage = "bash"\nkernel = "bash"'), "not of type jupyter", 20, 'type = "jupyter"'),
    "upper-case-language": (JUPYTER_NOTEBOOK.replace('language = "r"\nenvironment', 'language = "R"\nenvironment'), "not a language name", 9, "lower case"),
    "native-other-language": (JUPYTER_NOTEBOOK.replace('[runtimes.sh]\nlanguage = "bash"', '[runtimes.sh]\nlanguage = "ruby"'), "unknown language 'ruby'", 19, 'type = "jupyter"'),
    "cell-language-without-runtime": (JUPYTER_NOTEBOOK.replace('language = "r"\nsource', 'language = "julia"\nsource'), "unknown language 'julia'", 24, 'language = "julia"'),
    "metadata-not-json": (JUPYTER_NOTEBOOK.replace('source = "1 + 1"', 'metadata = \'{"a": nul}\'\nsource = "1 + 1"'), "not JSON", 31, "JSON object in a string"),
    "metadata-json-not-object": (JUPYTER_NOTEBOOK.replace('source = "1 + 1"', "metadata = '[1, 2]'\nsource = \"1 + 1\""), "must be a JSON object", 31, "table"),
    "metadata-wrong-type": (JUPYTER_NOTEBOOK.replace('source = "1 + 1"', 'metadata = 3\nsource = "1 + 1"'), "must be a table", 31, "JSON"),
    "metadata-date": (JUPYTER_NOTEBOOK.replace('tags = ["keep"]', 'tags = ["keep"]\nwhen = 2024-01-02T03:04:05Z'), "date or time", 41, "quote it"),
    "attachment-not-a-bundle": (JUPYTER_NOTEBOOK.replace('source = ".. raw:: rst"', 'source = ".. raw:: rst"\nattachments = { "a.png" = 3 }'), "attachment 'a.png'", 37, "image/png"),
    "notebook-metadata-not-json": (JUPYTER_NOTEBOOK.replace('title = "Kernels"', 'title = "Kernels"\nmetadata = "{"'), "the notebook's Jupyter metadata is a string but not JSON", 3, "JSON"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_mistakes_in_the_jupyter_keys_are_errors_at_their_line_saying_what_to_write(tmp_path, case):
    text, expected, line, advice = ERRORS[case]
    path = write(tmp_path, text)
    with pytest.raises(NotebookError) as caught:
        load_notebook(path)
    error = caught.value
    assert expected in error.message, str(error)
    assert error.line == line, str(error)
    assert error.hint is not None and advice in error.hint, str(error)
    assert str(error).startswith(f"{path}:{line}:")


def test_a_cell_may_use_the_language_of_any_jupyter_runtime_and_only_then():
    text = 'njtui = 1\n[runtimes.jl]\ntype = "jupyter"\nkernel = "julia-1.10"\nlanguage = "julia"\n[[cells]]\nid = "c"\nkind = "code"\nlanguage = "julia"\nsource = "1"\n'
    notebook = parsed(text)
    assert notebook.runtime_for(notebook.cell("c")).kernel == "julia-1.10"
    with pytest.raises(NotebookError, match="unknown language 'julia'"):
        parsed(text.replace('type = "jupyter"\nkernel = "julia-1.10"\nlanguage = "julia"', 'language = "python"'))


def nested(levels: int) -> list:
    value: list = ["x"]
    for _ in range(levels):
        value = [value]
    return value


def nested_tables(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"k": value}
    return value


TRICKY_VALUES = {
    "plain": {"tags": ["a", "b"], "collapsed": False, "scrolled": "auto"},
    "nested": {"jupyter": {"source_hidden": True, "outputs_hidden": False}, "execution": {"iopub.status.busy": "2024-01-02T03:04:05.678Z"}},
    "null": {"a": None},
    "null-deep": {"a": [1, {"b": [None]}]},
    "mixed-array": {"m": [1, "two", 3.5, True, {"x": 1}, [2, [3]]]},
    "empty": {"e": {}, "l": [], "s": ""},
    "array-of-tables-with-only-tables": {"deep": [{"y": {"z": 1}}, {"y": {"z": 2}}]},
    "unicode": {"title": "Ünïcödé ✓ 日本語", "emoji": "🙂"},
    "multi-line": {"note": "line one\nline two\n", "crlf": "a\r\nb", "tab": "a\tb", "escape": "\x1b[31mred\x1b[0m"},
    "quotes": {"q": "it's \"quoted\" '''triple''' \"\"\"", "backslash": "C:\\path\\"},
    "odd-keys": {"": 1, "a.b": 2, "image/png": 3, "with space": 4, "'quote": 5},
    "control-in-key": {"a\nb": 1},
    "nul-in-value": {"a": "x\x00y"},
    "huge-int": {"n": 2**64},
    "big-ints": {"n": 2**63 - 1, "m": -(2**63), "f": 1e300, "g": -0.0},
    "very-deep": {"d": nested(40)},
    "deep-tables": {"d": nested_tables(40)},
    "apostrophe-and-null": {"a": "it's", "b": None},
    "c1-control-and-null": {"a": "\x85", "b": None},
}


@pytest.mark.parametrize("case", sorted(TRICKY_VALUES))
def test_jupyter_metadata_and_attachments_round_trip_exactly(tmp_path, case):
    value = TRICKY_VALUES[case]
    notebook = Notebook(title="t", runtimes={"py": RuntimeSpec(id="py", language="python")}, extra={JUPYTER_METADATA: copy.deepcopy(value)})
    notebook.cells.append(Cell(id="c1", kind="code", language="python", source="x", metadata=copy.deepcopy(value)))
    notebook.cells.append(Cell(id="m1", kind="markdown", source="![a](attachment:a.png)", metadata=copy.deepcopy(value), attachments={"a.png": {"image/png": "iVBORw0KGgo="}}))
    again = round_trip(notebook)
    assert again.extra[JUPYTER_METADATA] == value
    assert again.cell("c1").metadata == value
    assert again.cell("m1").metadata == value
    assert again.cell("m1").attachments == {"a.png": {"image/png": "iVBORw0KGgo="}}
    # Saved and loaded through a file, and saved again unchanged.
    path = tmp_path / "nb.toml"
    path.write_text(dumps_notebook(notebook), encoding="utf-8")
    assert load_notebook(path) == again
    assert dumps_notebook(load_notebook(path)) == path.read_text(encoding="utf-8")


def test_metadata_is_a_table_when_toml_can_hold_it_else_one_line_of_json():
    assert jupyter_value({"tags": ["x"]}) == {"tags": ["x"]}
    held = jupyter_value({"tags": ["x"], "n": None})
    assert held == '{"tags":["x"],"n":null}'
    notebook = Notebook(cells=[Cell(id="a", kind="markdown", metadata={"tags": ["x"], "n": None}), Cell(id="b", kind="markdown", metadata={"tags": ["x"]})])
    text = dumps_notebook(notebook)
    assert 'metadata = \'{"tags":["x"],"n":null}\'' in text
    assert '[cells.metadata]\ntags = [\n    "x",\n]' in text
    assert "attachments" not in text  # nothing written for what a cell does not have


def test_a_person_may_write_metadata_as_a_json_string_or_a_table():
    base = 'njtui = 1\n[[cells]]\nid = "a"\nkind = "markdown"\nsource = ""\n'
    as_json = parsed(base.replace('source = ""', 'metadata = """{"tags": ["x"], "n": null}"""\nsource = ""'))
    as_table = parsed(base + '[cells.metadata]\ntags = ["x"]\n')
    assert as_json.cell("a").metadata == {"tags": ["x"], "n": None}
    assert as_table.cell("a").metadata == {"tags": ["x"]}
