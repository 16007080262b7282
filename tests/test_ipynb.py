"""`njtui import X.ipynb` and `njtui export X.toml`, and the mapping of execution events to
nbformat outputs they share (njtui.model.jupyter_outputs): through the CLI, every export
checked with nbformat.validate, and the mapping held against nbclient running a real kernel."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from njtui import cli
from njtui.model import is_cell_id
from njtui.model.jupyter_outputs import events_from_outputs, outputs_from_events
from njtui.store import load_notebook
from njtui.store.notebook_layout import JUPYTER_METADATA
from njtui.store.results import ResultsStore

DATA = Path(__file__).parent / "data" / "ipynb"
VALID = ("v3.ipynb", "v4_0.ipynb", "v4_4_bash.ipynb", "rich_v4_5.ipynb", "bad_ids.ipynb")


def fixture(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copyfile(DATA / name, path)
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def exported(path: Path) -> Any:
    """An exported .ipynb, read as it is on disk and checked against nbformat 4.5's schema."""
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert (notebook.nbformat, notebook.nbformat_minor) == (4, 5)
    nbformat.validate(notebook)
    return notebook


def import_and_export(capsys, source: Path) -> tuple[Path, Any]:
    status, out, err = run(capsys, "import", str(source))
    assert status == 0, err
    toml = source.with_suffix(".toml")
    assert f"wrote {toml}" in out
    target = source.with_name(source.stem + ".out.ipynb")
    status, out, err = run(capsys, "export", str(toml), "-o", str(target))
    assert status == 0, err
    assert f"wrote {target}" in out
    return toml, exported(target)


def latest_events(toml: Path, cell_id: str) -> tuple[Any, list[dict[str, Any]]]:
    store = ResultsStore(toml)
    record = store.latest(cell_id)
    assert record is not None
    return record, [{k: v for k, v in event.items() if k not in ("seq", "exec", "t")} for event in store.events(record)]


# -- import


@pytest.mark.filterwarnings("ignore:Non-unique cell id")  # nbformat's, reading bad_ids.ipynb for the comparison
@pytest.mark.parametrize("name", VALID)
def test_import_writes_a_notebook_with_one_jupyter_runtime_and_every_cell(capsys, tmp_path, name):
    source = fixture(tmp_path, name)
    original = nbformat.read(source, as_version=4)
    status, out, err = run(capsys, "import", str(source))
    assert status == 0, err
    assert err == ""
    notebook = load_notebook(source.with_suffix(".toml"))
    assert len(notebook.runtimes) == 1
    spec = next(iter(notebook.runtimes.values()))
    assert spec.is_jupyter and spec.default and spec.is_host
    assert [cell.kind for cell in notebook.cells] == [cell.cell_type for cell in original.cells]
    assert [cell.source for cell in notebook.cells] == [cell.source for cell in original.cells]
    ids = [cell.id for cell in notebook.cells]
    assert all(is_cell_id(cell_id) for cell_id in ids) and len(set(ids)) == len(ids)
    assert all(cell.language == spec.language for cell in notebook.code_cells())


def test_a_python_notebook_gets_a_runtime_named_after_its_kernelspec(capsys, tmp_path):
    source = fixture(tmp_path, "rich_v4_5.ipynb")
    assert run(capsys, "import", str(source))[0] == 0
    text = source.with_suffix(".toml").read_text()
    assert '[runtimes.python3]\nname = "Python 3 (ipykernel)"\ntype = "jupyter"\nkernel = "python3"\nlanguage = "python"\nenvironment = "host"\ndefault = true\n' in text
    notebook = load_notebook(source.with_suffix(".toml"))
    assert notebook.title == "Rich outputs ✓"
    assert [cell.id for cell in notebook.cells] == ["intro", "plot-cell", "fails", "never-run", "raw-1"]
    assert notebook.cell("plot-cell").metadata == {"tags": ["parameters"], "scrolled": "auto", "jupyter": {"source_hidden": False}, "nothing": None, "mixed": [1, "two", None, {"x": None}]}
    assert notebook.cell("intro").source.startswith("# Ünïcödé ✓ 日本語")
    assert notebook.cell("raw-1").kind == "raw" and notebook.cell("raw-1").metadata == {"raw_mimetype": "text/html"}
    assert notebook.extra[JUPYTER_METADATA]["toc"]["title_cell"] is None


def test_a_bash_notebook_gets_the_bash_kernel_and_keeps_its_attachments(capsys, tmp_path):
    source = fixture(tmp_path, "v4_4_bash.ipynb")
    assert run(capsys, "import", str(source))[0] == 0
    notebook = load_notebook(source.with_suffix(".toml"))
    spec = notebook.runtimes["bash"]
    assert (spec.kernel, spec.language, spec.name) == ("bash", "bash", "Bash")
    original = nbformat.read(source, as_version=4)
    assert notebook.cells[0].attachments == {"dot.png": {"image/png": original.cells[0].attachments["dot.png"]["image/png"]}}
    assert notebook.title == "v4_4_bash"  # no title in the metadata: the file's name


def test_stored_outputs_become_each_cells_first_version_marked_imported(capsys, tmp_path):
    source = fixture(tmp_path, "rich_v4_5.ipynb")
    assert run(capsys, "import", str(source))[0] == 0
    toml = source.with_suffix(".toml")
    notebook = load_notebook(toml)
    record, events = latest_events(toml, "plot-cell")
    assert (record.version, record.status, record.count, record.runtime) == (1, "ok", 2, "python3")
    assert record.extra == {"imported": True}
    assert record.source_hash == notebook.cell("plot-cell").source_hash
    assert [event["type"] for event in events] == ["stream", "display", "display", "result"]
    assert events[0] == {"type": "stream", "name": "stdout", "text": "héllo wörld\n"}
    assert events[1]["data"]["image/png"].startswith("iVBORw0KGgo") and events[1]["metadata"] == {"image/png": {"width": 200, "height": 100}}
    assert events[2]["data"]["image/svg+xml"].startswith("<svg") and events[2]["data"]["image/svg+xml"].endswith("</svg>\n")
    assert events[3] == {"type": "result", "count": 2, "data": {"text/plain": "{'a': 1}", "text/html": "<b>a</b>\n<i>1</i>", "application/json": {"a": 1, "b": [None, True]}}, "metadata": {}}
    record, events = latest_events(toml, "fails")
    assert (record.status, record.count) == ("error", 3)
    assert events[0]["ename"] == "ValueError" and "\x1b[0;31mValueError\x1b[0m: bad value" in events[0]["traceback"].split("\n")
    assert ResultsStore(toml).latest("never-run") is None  # never run: nothing to show


def test_a_v3_notebook_is_upgraded_with_its_outputs(capsys, tmp_path):
    source = fixture(tmp_path, "v3.ipynb")
    assert run(capsys, "import", str(source))[0] == 0
    toml = source.with_suffix(".toml")
    notebook = load_notebook(toml)
    assert [cell.kind for cell in notebook.cells] == ["markdown", "markdown", "code", "code", "code"]
    assert notebook.cells[0].source == "# An old notebook"
    first_code = notebook.cells[2]
    assert first_code.source == "x = 6 * 7\nprint('hi')\nx"
    record, events = latest_events(toml, first_code.id)
    assert record.count == 3
    assert [event["type"] for event in events] == ["stream", "result", "display"]
    assert events[1]["data"] == {"text/plain": "42"}
    assert events[2]["data"]["image/png"].startswith("iVBORw0KGgo")
    record, events = latest_events(toml, notebook.cells[3].id)
    assert record.status == "error" and events[0]["ename"] == "ZeroDivisionError"
    assert ResultsStore(toml).latest(notebook.cells[4].id) is None


def test_invalid_and_duplicate_ids_are_made_valid_and_unique(capsys, tmp_path):
    source = fixture(tmp_path, "bad_ids.ipynb")
    assert run(capsys, "import", str(source))[0] == 0
    ids = [cell.id for cell in load_notebook(source.with_suffix(".toml")).cells]
    assert ids[0] == "same" and ids[1] != "same" and ids[2] != "has space"
    assert len(set(ids)) == 3 and all(is_cell_id(cell_id) for cell_id in ids)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("invalid.ipynb", "is not a valid Jupyter notebook: at cells[1].outputs[0] (cell 2): "),
        ("not_json.ipynb", "is not a Jupyter notebook nbformat can read: Notebook does not appear to be JSON"),
    ],
)
def test_a_notebook_that_is_not_valid_is_one_clear_error_and_nothing_is_written(capsys, tmp_path, name, expected):
    source = fixture(tmp_path, name)
    status, out, err = run(capsys, "import", str(source))
    assert status == 2
    assert out == ""
    assert err.startswith(f"njtui: {source}: error: {expected}")
    assert "Traceback" not in err and "hint: " in err
    assert len(err.splitlines()) == 2  # the error, the hint
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"\xff\xfe not utf-8", "is not UTF-8 text", id="not-utf8"),
        pytest.param(b"[1, 2]", "is not a Jupyter notebook nbformat can read", id="a-list"),
        pytest.param(b'{"nbformat": 9, "nbformat_minor": 0, "cells": [], "metadata": {}}', "Unsupported nbformat version 9", id="version-9"),
        pytest.param(b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": "x\\u0000y"}]}', "cannot be held in an njtui notebook", id="nul"),
        pytest.param(b"[" * 100000, "is nested too deeply to read", id="deep"),
    ],
)
def test_what_is_not_a_notebook_njtui_can_hold_is_refused_in_words(capsys, tmp_path, content, expected):
    source = tmp_path / "odd.ipynb"
    source.write_bytes(content)
    status, _, err = run(capsys, "import", str(source))
    assert status == 2
    assert expected in err and "Traceback" not in err
    assert [path.name for path in tmp_path.iterdir()] == ["odd.ipynb"]


def test_a_missing_file_is_an_error(capsys, tmp_path):
    status, _, err = run(capsys, "import", str(tmp_path / "nope.ipynb"))
    assert status == 2 and "no such file" in err


def test_import_does_not_replace_a_notebook_without_force(capsys, tmp_path):
    source = fixture(tmp_path, "v4_0.ipynb")
    target = tmp_path / "mine.toml"
    target.write_text("njtui = 1\n# mine\n")
    status, _, err = run(capsys, "import", str(source), "-o", str(target))
    assert status == 2 and "exists already" in err and "--force" in err
    assert target.read_text() == "njtui = 1\n# mine\n"
    assert not (tmp_path / "mine.results").exists()
    status, out, _ = run(capsys, "import", str(source), "-o", str(target), "--force")
    assert status == 0 and f"wrote {target}" in out and "mine.results" in out
    assert load_notebook(target).cells[0].source == "# Four point oh"


# -- export


def test_export_gives_back_what_was_imported(capsys, tmp_path):
    source = fixture(tmp_path, "rich_v4_5.ipynb")
    original = nbformat.read(source, as_version=4)
    _, notebook = import_and_export(capsys, source)
    assert notebook.metadata == original.metadata
    for before, after in zip(original.cells, notebook.cells, strict=True):
        assert (after.id, after.cell_type, after.source, after.metadata) == (before.id, before.cell_type, before.source, before.metadata)
        if before.cell_type == "code":
            assert after.execution_count == before.execution_count
            assert after.outputs == before.outputs


def test_export_of_imported_attachments_and_raw_cells(capsys, tmp_path):
    source = fixture(tmp_path, "v4_4_bash.ipynb")
    original = nbformat.read(source, as_version=4)
    _, notebook = import_and_export(capsys, source)
    assert notebook.cells[0].attachments == original.cells[0].attachments
    assert notebook.cells[2].cell_type == "raw" and "attachments" not in notebook.cells[2]
    assert notebook.metadata.kernelspec == {"name": "bash", "display_name": "Bash", "language": "bash"}
    assert notebook.metadata.language_info == original.metadata.language_info
    assert notebook.cells[1].outputs == [{"output_type": "stream", "name": "stdout", "text": "hello\n"}, {"output_type": "stream", "name": "stderr", "text": "warning\n"}]


@pytest.mark.parametrize("name", VALID)
def test_import_export_import_is_stable(capsys, tmp_path, name):
    toml, first = import_and_export(capsys, fixture(tmp_path, name))
    again = tmp_path / "again"
    again.mkdir()
    shutil.copyfile(tmp_path / (Path(name).stem + ".out.ipynb"), again / name)
    second_toml, second = import_and_export(capsys, again / name)
    assert second == first
    # The same notebook, but for the kernelspec the first export wrote into the metadata of a
    # notebook that had none.
    ours, theirs = load_notebook(toml), load_notebook(second_toml)
    ours.extra.pop(JUPYTER_METADATA, None)
    theirs.extra.pop(JUPYTER_METADATA, None)
    assert ours == theirs
    assert nbformat.read(toml.with_name(toml.stem + ".out.ipynb"), as_version=4).metadata == second.metadata
    for cell in load_notebook(toml).code_cells():
        a, b = ResultsStore(toml).latest(cell.id), ResultsStore(second_toml).latest(cell.id)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert latest_events(toml, cell.id)[1] == latest_events(second_toml, cell.id)[1]


NATIVE = """\
njtui = 1
title = "Native"

[runtimes.{runtime}]
language = "{language}"

[[cells]]
id = "m1"
kind = "markdown"
source = "# Hi"

[[cells]]
id = "c1"
kind = "code"
language = "{language}"
source = "x"
"""


@pytest.mark.parametrize(
    ("language", "kernelspec"),
    [
        ("python", {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}),
        ("bash", {"name": "bash", "display_name": "Bash", "language": "bash"}),
    ],
)
def test_a_native_notebook_is_exported_for_the_kernel_of_its_language(capsys, tmp_path, language, kernelspec):
    toml = tmp_path / "native.toml"
    toml.write_text(NATIVE.format(runtime="rt", language=language))
    status, out, err = run(capsys, "export", str(toml))
    assert status == 0, err
    notebook = exported(tmp_path / "native.ipynb")
    assert notebook.metadata.kernelspec == kernelspec
    assert notebook.metadata.language_info == {"name": language}
    assert notebook.metadata.title == "Native"
    assert [cell.id for cell in notebook.cells] == ["m1", "c1"]
    assert notebook.cells[1].outputs == [] and notebook.cells[1].execution_count is None


def test_export_does_not_replace_a_file_without_force(capsys, tmp_path):
    toml = tmp_path / "native.toml"
    toml.write_text(NATIVE.format(runtime="py", language="python"))
    target = tmp_path / "native.ipynb"
    target.write_text("mine")
    status, _, err = run(capsys, "export", str(toml))
    assert status == 2 and "exists already" in err
    assert target.read_text() == "mine"
    assert run(capsys, "export", str(toml), "--force")[0] == 0
    exported(target)


def test_export_of_what_is_not_a_notebook_is_an_error_at_its_line(capsys, tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text('njtui = 1\n[[cells]]\nid = "a"\nkind = "slides"\nsource = ""\n')
    status, _, err = run(capsys, "export", str(toml))
    assert status == 2 and f"{toml}:4:" in err
    assert not (tmp_path / "bad.ipynb").exists()


def test_export_refuses_metadata_jupyter_does_not_allow(capsys, tmp_path):
    toml = tmp_path / "nb.toml"
    toml.write_text('njtui = 1\n[[cells]]\nid = "a"\nkind = "markdown"\nsource = ""\n[cells.metadata]\ntags = "not a list"\n')
    status, _, err = run(capsys, "export", str(toml))
    assert status == 2
    assert "does not make a valid Jupyter notebook: at cells[0].metadata.tags (cell 1)" in err
    assert not (tmp_path / "nb.ipynb").exists()


def record(store: ResultsStore, cell_id: str, exec_id: str, count: int, events: list[dict[str, Any]]) -> None:
    writer = store.begin(cell_id, exec_id, "py", status="running", count=count)
    for seq, event in enumerate(events, start=1):
        writer.add({"seq": seq, "exec": exec_id, "t": 0.0, **event})
    writer.finish(status="ok", count=count)


def test_export_takes_each_cells_latest_execution_with_clears_and_display_updates_across_cells(capsys, tmp_path):
    toml = tmp_path / "nb.toml"
    toml.write_text(NATIVE.format(runtime="py", language="python").replace('id = "c1"', 'id = "c0"\nkind = "code"\nlanguage = "python"\nsource = "y"\n\n[[cells]]\nid = "c1"', 1))
    store = ResultsStore(toml)
    record(store, "c0", "e-old", 1, [{"type": "stream", "name": "stdout", "text": "old\n"}])
    record(store, "c0", "e0", 4, [
        {"type": "stream", "name": "stdout", "text": "a"},
        {"type": "stream", "name": "stdout", "text": "b\n"},
        {"type": "display", "data": {"text/plain": "progress 0%"}, "metadata": {}, "display_id": "bar"},
        {"type": "stream", "name": "stderr", "text": "e\n"},
        {"type": "stream", "name": "stdout", "text": "c\n"},
    ])  # fmt: skip
    record(store, "c1", "e1", 5, [
        {"type": "stream", "name": "stdout", "text": "gone\n"},
        {"type": "clear_output", "wait": True},
        {"type": "update_display", "data": {"text/plain": "progress 100%"}, "metadata": {"done": True}, "display_id": "bar"},
        {"type": "stream", "name": "stdout", "text": "kept\n"},
        {"type": "result", "count": 5, "data": {"text/plain": "42"}},
    ])  # fmt: skip
    status, _, err = run(capsys, "export", str(toml))
    assert status == 0, err
    notebook = exported(tmp_path / "nb.ipynb")
    c0, c1 = notebook.cells[1], notebook.cells[2]
    assert c0.execution_count == 4
    assert c0.outputs == [
        {"output_type": "stream", "name": "stdout", "text": "ab\n"},
        {"output_type": "display_data", "data": {"text/plain": "progress 100%"}, "metadata": {"done": True}},
        {"output_type": "stream", "name": "stderr", "text": "e\n"},
        {"output_type": "stream", "name": "stdout", "text": "c\n"},
    ]
    assert c1.execution_count == 5
    assert c1.outputs == [{"output_type": "stream", "name": "stdout", "text": "kept\n"}, {"output_type": "execute_result", "execution_count": 5, "data": {"text/plain": "42"}, "metadata": {}}]


# -- the mapping


def test_clear_output_without_wait_clears_at_once_and_forgets_the_cleared_displays():
    displays: dict = {}
    outputs = outputs_from_events(
        [
            {"type": "display", "data": {"text/plain": "x"}, "display_id": "d"},
            {"type": "clear_output", "wait": False},
            {"type": "stream", "name": "stdout", "text": "after\n"},
        ],
        displays,
    )
    assert outputs == [{"output_type": "stream", "name": "stdout", "text": "after\n"}]
    assert displays == {"d": []}
    # A wait that no output follows clears nothing, as in Jupyter.
    assert outputs_from_events([{"type": "stream", "name": "stdout", "text": "x"}, {"type": "clear_output", "wait": True}]) == [{"output_type": "stream", "name": "stdout", "text": "x"}]


def test_a_new_display_with_an_id_updates_the_earlier_ones_and_is_shown_too():
    outputs = outputs_from_events(
        [
            {"type": "display", "data": {"text/plain": "1"}, "display_id": "d"},
            {"type": "display", "data": {"text/plain": "2"}, "metadata": {"m": 1}, "display_id": "d"},
        ]
    )
    assert outputs == [{"output_type": "display_data", "data": {"text/plain": "2"}, "metadata": {"m": 1}}] * 2


def test_an_error_traceback_becomes_its_lines_and_back():
    event = {"type": "error", "ename": "E", "evalue": "v", "traceback": "\x1b[31mline 1\x1b[0m\nline 2"}
    outputs = outputs_from_events([event])
    assert outputs == [{"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["\x1b[31mline 1\x1b[0m", "line 2"]}]
    assert events_from_outputs(outputs, 1) == [event]


def test_events_from_a_results_directory_of_the_wrong_shape_are_passed_over():
    junk = [
        "not a dict",
        {"type": "stream", "name": "stdout", "text": 3},
        {"type": "display", "data": ["x"], "metadata": "m"},
        {"type": "result", "count": "one", "data": {"text/plain": ["a", "b"], "image/png": 5, 7: "x", "application/json": [1]}},
        {"type": "mystery"},
        {"type": "update_display", "display_id": 5},
    ]
    outputs = outputs_from_events(junk)
    assert outputs == [
        {"output_type": "display_data", "data": {}, "metadata": {}},
        {"output_type": "execute_result", "execution_count": None, "data": {"text/plain": "ab", "application/json": [1]}, "metadata": {}},
    ]
    nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[nbformat.from_dict(o) for o in outputs])]))


def test_a_result_without_its_own_count_takes_the_cells():
    assert events_from_outputs([{"output_type": "execute_result", "execution_count": None, "data": {"text/plain": "1"}, "metadata": {}}], 9)[0]["count"] == 9


# -- held against Jupyter itself: nbclient running ipykernel

PARITY_CELLS = [
    "print('one'); print('two')\nimport sys; print('err', file=sys.stderr)\n6 * 7",
    "from IPython.display import display, clear_output\nh = display({'text/plain': 'first'}, raw=True, display_id=True)\nprint('x')",
    "h.update({'text/plain': 'updated'}, raw=True)\nprint('gone'); clear_output(wait=True); print('kept')",
    "display({'text/plain': 'again', 'text/markdown': '**again**'}, raw=True, display_id=h.display_id)\nclear_output(); print('cleared')",
    "1/0",
]


def kernel_events(cells: list[str]) -> list[list[dict[str, Any]]]:
    """Each cell's IOPub messages run in a real kernel, as the protocol's events (the Jupyter
    bridge's mapping, docs/protocol.md)."""
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        all_events = []
        for code in cells:
            events: list[dict[str, Any]] = []

            def take(message: dict[str, Any], events: list[dict[str, Any]] = events) -> None:
                kind, content = message["msg_type"], message["content"]
                display_id = (content.get("transient") or {}).get("display_id")
                if kind == "stream":
                    events.append({"type": "stream", "name": content["name"], "text": content["text"]})
                elif kind == "execute_result":
                    events.append({"type": "result", "count": content["execution_count"], "data": content["data"], "metadata": content["metadata"], "display_id": display_id})
                elif kind in ("display_data", "update_display_data"):
                    events.append({"type": "display" if kind == "display_data" else "update_display", "data": content["data"], "metadata": content["metadata"], "display_id": display_id})
                elif kind == "clear_output":
                    events.append({"type": "clear_output", "wait": content["wait"]})
                elif kind == "error":
                    events.append({"type": "error", "ename": content["ename"], "evalue": content["evalue"], "traceback": "\n".join(content["traceback"])})

            client.execute_interactive(code, output_hook=take, timeout=120)
            all_events.append(events)
        return all_events
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def merged_streams(outputs: list[Any]) -> list[dict[str, Any]]:
    """Consecutive stream outputs of one name in one, as Jupyter's frontends show them."""
    merged: list[dict[str, Any]] = []
    for output in json.loads(json.dumps(outputs)):
        if merged and output["output_type"] == "stream" and merged[-1]["output_type"] == "stream" and merged[-1]["name"] == output["name"]:
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def test_outputs_from_events_are_nbclients_outputs_for_the_same_kernel_messages():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in PARITY_CELLS], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    NotebookClient(notebook, timeout=120, startup_timeout=120, allow_errors=True, kernel_name="python3").execute()
    expected = [merged_streams(cell.outputs) for cell in notebook.cells]
    displays: dict = {}
    ours = [outputs_from_events(events, displays) for events in kernel_events(PARITY_CELLS)]

    def without_volatile(cells: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        cells = copy.deepcopy(cells)
        for outputs in cells:
            for output in outputs:
                output.pop("execution_count", None)  # two kernels, each counting from 1 alike, but not asserted
                if output["output_type"] == "error":
                    # The protocol carries a traceback as text, its entries joined with \n; an
                    # entry of IPython's may hold several lines, which come back one entry each.
                    output["traceback"] = "\n".join(output["traceback"])
        return cells

    assert without_volatile(ours) == without_volatile(expected)
    # What the test is about: the update reached the first display of cell 2 from cell 3 and 4.
    assert ours[1][0]["data"] == {"text/plain": "again", "text/markdown": "**again**"}
    assert ours[2] == [{"output_type": "stream", "name": "stdout", "text": "kept\n"}]
    assert ours[3] == [{"output_type": "stream", "name": "stdout", "text": "cleared\n"}]


def test_the_sample_jupyter_notebook_imports_with_its_outputs_and_exports_back(capsys, tmp_path):
    sample = tmp_path / "jupyter-tour.ipynb"
    shutil.copyfile(Path(__file__).resolve().parent.parent / "sample_notebooks" / "jupyter-tour.ipynb", sample)
    toml, notebook = import_and_export(capsys, sample)
    original = nbformat.read(sample, as_version=4)
    assert [cell.source for cell in notebook.cells] == [cell.source for cell in original.cells]
    assert [cell.get("outputs") for cell in notebook.cells] == [cell.get("outputs") for cell in original.cells]
    assert load_notebook(toml).runtimes["python3"].is_jupyter
