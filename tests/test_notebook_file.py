"""The notebook file: canonical TOML, clean diffs, unknown keys kept, atomic saves, clear errors."""

from __future__ import annotations

import os
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import NotebookError, dumps_notebook, load_notebook, save_notebook
from njtui.store.notebook_file import parse_notebook
from tests.conftest import SAMPLES, njtui

SPEC_EXAMPLE = '''\
njtui = 1                       # format version
title = "Runtimes tour"

[runtimes.py]                   # runtime id, referenced by cells
name = "Python"
language = "python"
environment = "host"
default = true
idle_timeout = "20m"

[runtimes.py.env]
MPLBACKEND = "Agg"

[[cells]]
id = "a3f9c2"
kind = "markdown"
source = """
# Tour
"""

[[cells]]
id = "b71e04"
kind = "code"
language = "python"
runtime = "py"
source = """
import os
print(os.getpid())
"""
'''


def write(tmp_path: Path, text: str | bytes, name: str = "nb.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_loads_the_documented_shape(tmp_path):
    notebook = load_notebook(write(tmp_path, SPEC_EXAMPLE))
    assert notebook.title == "Runtimes tour"
    spec = notebook.runtimes["py"]
    assert (spec.name, spec.language, spec.environment, spec.default) == ("Python", "python", "host", True)
    assert spec.idle_timeout_seconds == 1200
    assert spec.env == {"MPLBACKEND": "Agg"}
    assert [c.kind for c in notebook.cells] == ["markdown", "code"]
    assert notebook.cells[1].source == "import os\nprint(os.getpid())\n"
    assert notebook.runtime_for(notebook.cells[1]) is spec


def test_save_is_deterministic_and_round_trips(tmp_path):
    notebook = load_notebook(write(tmp_path, SPEC_EXAMPLE))
    first = dumps_notebook(notebook)
    assert dumps_notebook(parse_notebook(first.encode(), tmp_path / "x.toml")) == first
    assert dumps_notebook(load_notebook(write(tmp_path, first, "again.toml"))) == first


def test_multiline_sources_stay_multiline_and_readable(tmp_path):
    notebook = Notebook(title="t", runtimes={"py": RuntimeSpec("py", "python", default=True)})
    sources = [
        'print("quotes")\nx = 1\n',
        'pattern = r"\\d+\\n"\nprint(pattern)\n',
        "s = '''tricky'''\nt = \"\"\"also\"\"\"\n\\\n",
        "tab\there\n\x01control\n",
        "no trailing newline\nend",
    ]
    for source in sources:
        notebook.cells.append(notebook.new_cell(source=source))
    text = dumps_notebook(notebook)
    loaded = parse_notebook(text.encode(), tmp_path / "nb.toml")
    assert [c.source for c in loaded.cells] == sources
    assert "\\n" not in text.split('print("quotes")')[0][-50:]
    # Every multi-line source is written over several lines, not as one escaped line.
    for cell in loaded.cells:
        assert f'source = "{cell.source[:5]}' not in text
    assert 'print("quotes")\nx = 1\n' in text


def test_editing_one_cell_changes_only_its_lines_in_git_diff(tmp_path):
    path = tmp_path / "nb.toml"
    notebook = Notebook(title="diff", runtimes={"py": RuntimeSpec("py", "python", default=True)})
    for index in range(5):
        notebook.cells.append(Cell(id=f"c{index}", kind="code", language="python", source=f"a = {index}\nb = a + 1\nprint(b)\n"))
    save_notebook(notebook, path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "nb.toml"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True)
    notebook.cells[2].source = "a = 2\nb = a * 100\nprint(b)\n"
    save_notebook(notebook, path)
    diff = subprocess.run(["git", "-C", str(tmp_path), "diff", "-U0", "--no-color"], capture_output=True, text=True, check=True).stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-b = a + 1", "+b = a * 100"]


def test_unknown_keys_survive_a_round_trip(tmp_path):
    text = SPEC_EXAMPLE.replace('title = "Runtimes tour"', 'title = "Runtimes tour"\nauthor = "ada"\ntags = ["a", "b"]\n\n[meta]\nreviewed = true')
    text = text.replace('runtime = "py"', 'runtime = "py"\ncollapsed = true')
    text = text.replace('idle_timeout = "20m"', 'idle_timeout = "20m"\nfuture_setting = 3')
    text += '\n[cells.extra]\nnote = "kept"\n'
    notebook = load_notebook(write(tmp_path, text))
    saved = tomllib.loads(dumps_notebook(notebook))
    assert saved["author"] == "ada" and saved["tags"] == ["a", "b"] and saved["meta"] == {"reviewed": True}
    assert saved["runtimes"]["py"]["future_setting"] == 3
    assert saved["cells"][1]["collapsed"] is True
    assert saved["cells"][1]["extra"] == {"note": "kept"}


def test_save_is_atomic_and_keeps_permissions(tmp_path):
    path = write(tmp_path, SPEC_EXAMPLE)
    os.chmod(path, 0o640)
    notebook = load_notebook(path)
    notebook.cells[1].source = "print(1)\n"
    save_notebook(notebook, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["nb.toml"]  # no temp file left behind
    assert load_notebook(path).cells[1].source == "print(1)\n"


def test_a_failing_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = write(tmp_path, SPEC_EXAMPLE)
    before = path.read_bytes()
    notebook = load_notebook(path)
    notebook.cells[1].source = "changed\n"

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)  # a full disk cannot be made on demand here
    with pytest.raises(OSError):
        save_notebook(notebook, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["nb.toml"]


BAD_CASES = {
    "not-utf8": (SPEC_EXAMPLE.encode().replace(b"# Tour", b"# Tour \xe9t\xe9"), "not UTF-8", 18),
    "not-toml": ("njtui = 1\ntitle = \n", "not valid TOML", 2),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text file", 3),
    "json": ('{"cells": [], "nbformat": 4}', "not valid TOML", 1),
    "future-version": (SPEC_EXAMPLE.replace("njtui = 1", "njtui = 7"), "newer njtui", 1),
    "missing-version": (SPEC_EXAMPLE.replace("njtui = 1                       # format version\n", ""), "missing the key `njtui`", None),
    "version-wrong-type": (SPEC_EXAMPLE.replace("njtui = 1", 'njtui = "1"'), "`njtui`", 1),
    "duplicate-id": (SPEC_EXAMPLE.replace('id = "b71e04"', 'id = "a3f9c2"'), "used twice", 22),
    "unknown-runtime": (SPEC_EXAMPLE.replace('runtime = "py"', 'runtime = "pyy"'), "runtime 'pyy'", 25),
    "two-defaults": (SPEC_EXAMPLE.replace("[[cells]]", '[runtimes.other]\nlanguage = "python"\ndefault = true\n\n[[cells]]', 1), "both the default", 16),
    "missing-kind": (SPEC_EXAMPLE.replace('kind = "code"\n', ""), "missing the key `kind`", 21),
    "missing-id": (SPEC_EXAMPLE.replace('id = "b71e04"\n', ""), "missing the key `id`", 21),
    "source-wrong-type": (SPEC_EXAMPLE.replace('source = """\n# Tour\n"""', "source = 42"), "`source`", 17),
    "default-wrong-type": (SPEC_EXAMPLE.replace("default = true", 'default = "yes"'), "`default`", 8),
    "env-wrong-type": (SPEC_EXAMPLE.replace('MPLBACKEND = "Agg"', "PORT = 8080"), "must be a string", 12),
    "unknown-kind": (SPEC_EXAMPLE.replace('kind = "markdown"', 'kind = "slides"'), "unknown kind 'slides'", 16),
    "unknown-cell-language": (SPEC_EXAMPLE.replace('language = "python"\nruntime', 'language = "cobol"\nruntime'), "unknown language 'cobol'", 24),
    "unknown-runtime-language": (SPEC_EXAMPLE.replace('language = "python"', 'language = "ruby"', 1), "unknown language 'ruby'", 6),
    "bad-idle-timeout": (SPEC_EXAMPLE.replace('"20m"', '"soon"'), "idle_timeout", 9),
    "cells-not-tables": ("njtui = 1\ncells = [1, 2]\n", "must be a table", 2),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_every_malformed_notebook_gets_its_error_exit_2_and_stays_untouched(tmp_path, case):
    content, expected, line = BAD_CASES[case]
    path = write(tmp_path, content)
    before = path.read_bytes()
    with pytest.raises(NotebookError) as caught:
        load_notebook(path)
    error = caught.value
    assert expected in str(error)
    assert str(error).startswith(str(path))
    assert error.hint, "every error says what to do"
    if line is not None:
        assert error.line == line, str(error)
    for command in (("run",), ("show",)):
        result = njtui(*command, str(path))
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert f"{path}:" in result.stderr
    assert path.read_bytes() == before


def test_missing_file_is_a_clear_error(tmp_path):
    result = njtui("run", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "no such notebook" in result.stderr


def test_unknown_cell_on_the_command_line(tmp_path):
    path = write(tmp_path, SPEC_EXAMPLE)
    result = njtui("run", str(path), "--cell", "zzz")
    assert result.returncode == 2
    assert "no cell with id 'zzz'" in result.stderr and "b71e04" in result.stderr


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_samples_are_canonical(sample):
    """The samples are saved exactly as njtui writes them, so opening and saving changes nothing."""
    assert dumps_notebook(load_notebook(sample)) == sample.read_text()
