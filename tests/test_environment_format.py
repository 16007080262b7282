"""The notebook keys of environments (issue 13): saved versions, imports and the registry read
and written back unchanged, comments kept when an import is pinned, and every malformed value
refused at its line with what to write instead."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from njtui.model import EnvironmentImport, environment_repository
from njtui.store import NotebookError, NotebookFile, dumps_notebook, load_notebook, parse_notebook

IMAGE_1 = "sha256:" + "1" * 64
IMAGE_2 = "sha256:" + "2" * 64
DIGEST = "127.0.0.1:5000/team/nb-tools@sha256:" + "3" * 64

NOTEBOOK = f"""njtui = 1
registry = "127.0.0.1:5000/team"
# the tools everyone builds on
[runtimes.tools]
language = "bash"
environment = "njtui/python:3.11"  # the base
saved_version = 2
export = true

[[runtimes.tools.versions]]
version = 1
image = "{IMAGE_1}"
tag = "njtui-env/nb-tools:1"
base = "njtui/python:3.11"
base_image = "sha256:{"0" * 64}"
saved_at = "2026-11-29T10:00:00Z"
message = "jq"
host = "vm"
size = 1000

[[runtimes.tools.versions]]
version = 2
image = "{IMAGE_2}"
base = "v1"
saved_at = "2026-11-29T11:00:00Z"
message = "more"
digest = "{DIGEST}"

[runtimes.py]
language = "python"
environment = {{ runtime = "tools", version = 1 }}  # pinned on first boot

[runtimes.far]
language = "python"
environment = {{ notebook = "../base/base.toml", runtime = "tools", version = 3, image = "{IMAGE_1}", digest = "{DIGEST}" }}

[runtimes.pulled]
language = "bash"
environment = "{DIGEST}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nb.toml"
    path.write_text(text)
    return path


def test_environment_keys_are_read(tmp_path):
    notebook = load_notebook(write(tmp_path, NOTEBOOK))
    assert notebook.registry == "127.0.0.1:5000/team"
    tools = notebook.runtimes["tools"]
    assert tools.saved_version == 2 and tools.export is True
    assert [saved.version for saved in tools.versions] == [1, 2]
    assert tools.boot_version is not None and tools.boot_version.image == IMAGE_2 and tools.boot_version.digest == DIGEST
    assert tools.environment_label == "tools v2"
    assert notebook.runtimes["py"].environment == EnvironmentImport(runtime="tools", version=1)
    assert notebook.runtimes["py"].environment_label == "tools v1"
    far = notebook.runtimes["far"].imported
    assert far is not None and far.notebook == "../base/base.toml" and far.pinned and far.label() == "base:tools v3"
    assert notebook.runtimes["pulled"].environment == DIGEST


def test_a_round_trip_keeps_every_key(tmp_path):
    notebook = load_notebook(write(tmp_path, NOTEBOOK))
    again = parse_notebook(dumps_notebook(notebook).encode(), tmp_path / "again.toml")
    assert again == notebook


def test_pinning_an_import_edits_the_file_in_place(tmp_path):
    path = write(tmp_path, NOTEBOOK)
    notebook_file = NotebookFile.load(path)
    spec = notebook_file.notebook.runtimes["py"]
    assert isinstance(spec.environment, EnvironmentImport)
    spec.environment = dataclasses.replace(spec.environment, image=IMAGE_1)
    assert notebook_file.save(notebook_file.notebook).status == "saved"
    text = path.read_text()
    assert "# the tools everyone builds on" in text and "# pinned on first boot" in text and "# the base" in text
    assert load_notebook(path).runtimes["py"].environment == EnvironmentImport(runtime="tools", version=1, image=IMAGE_1)


def test_saved_versions_are_tagged_by_notebook_and_runtime():
    assert environment_repository("My Notebook", "py_2") == "njtui-env/my-notebook-py-2"
    assert environment_repository("---", "x") == "njtui-env/notebook-x"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('environment = { runtime = "tools", version = 1 }', 'environment = { runtime = "tools", version = 0 }', "versions count from 1"),
        ('environment = { runtime = "tools", version = 1 }', 'environment = { runtime = "tools" }', "missing the key `version`"),
        ('environment = { runtime = "tools", version = 1 }', 'environment = { runtime = "tools", version = 1, tag = "x" }', "unknown key `tag`"),
        ('environment = { runtime = "tools", version = 1 }', 'environment = { runtime = "../etc", version = 1 }', "not a runtime id"),
        ('environment = { runtime = "tools", version = 1 }', 'environment = { runtime = "tools", version = 1, image = "latest" }', "not an image id"),
        ('environment = { runtime = "tools", version = 1 }', 'environment = { runtime = "tools", version = 1, digest = "x:1" }', "not REGISTRY/REPO@sha256"),
        ('environment = { runtime = "tools", version = 1 }', 'environment = { notebook = "/etc/passwd", runtime = "tools", version = 1 }', "not a notebook file"),
        ("saved_version = 2", "saved_version = 7", "saved version 7, which it does not have (versions: 1, 2)"),
        ("saved_version = 2", 'saved_version = "2"', "must be an integer"),
        ("export = true", 'export = "yes"', "must be true or false"),
        ('registry = "127.0.0.1:5000/team"', 'registry = "https://x/Team"', "not HOST[:PORT]/PATH"),
        (f'image = "{IMAGE_1}"', 'image = "sha256:zz"', "not an image id"),
        ("[[runtimes.tools.versions]]\nversion = 2\n", "[[runtimes.tools.versions]]\nversion = 1\n", "version 1 twice"),
        ('environment = "njtui/python:3.11"', 'environment = "Not An Image"', "not an image reference"),
    ],
)
def test_bad_environment_values_are_refused_at_their_line(tmp_path, old, new, message):
    assert old in NOTEBOOK
    text = NOTEBOOK.replace(old, new, 1)
    # The error names the line where the bad value ends (the value itself, not its table's header).
    line = text[: text.rindex(new.strip("\n")) + len(new.strip("\n"))].count("\n") + 1
    path = write(tmp_path, text)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(NotebookError) as caught:
        load_notebook(path)
    assert message in caught.value.message and caught.value.hint
    assert caught.value.line == line
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
