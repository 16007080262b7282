"""Saving a notebook that was read from its file: the file's comments and layout stay, and what
changed in the file meanwhile is merged three ways (base: what was read, theirs: the file now,
ours: what is saved). Real files, the real `njtui` command line."""

from __future__ import annotations

import copy
import os
import random
import subprocess
from pathlib import Path

import pytest

from njtui import cli
from njtui.model import Cell, RuntimeSpec
from njtui.store import NotebookError, NotebookFile, dumps_notebook, edit_notebook, load_notebook
from njtui.store.merge import MISSING, merge_documents
from njtui.store.notebook_file import notebook_document, parse_notebook, runtime_document
from njtui.store.toml_writer import update_text
from tests.conftest import njtui

COMMENTED = '''\
njtui = 1                       # format version
title = "Merging"

# Runtimes first.
[runtimes.py]                   # the default one
language = 'python'             # my key order, my quotes
name = "Python"
default = true
idle_timeout = "20m"

[runtimes.py.env]
MODE = "slow"


# loads the data
[[cells]]
id = "load"
kind = "code"
language = "python"
source = """
rows = [1, 2, 3]
"""

# sums it
[[cells]]
id = "total"
kind = "code"
language = "python"
source = """
sum(rows)
"""
# the end
'''


@pytest.fixture
def notebook_path(tmp_path) -> Path:
    path = tmp_path / "nb.toml"
    path.write_text(COMMENTED)
    return path


def outside(path: Path, old: str, new: str) -> None:
    """Another program's edit of the file's text (an editor, a `git pull`)."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_comments_blank_lines_order_and_quoting_survive_load_edit_save(notebook_path):
    opened = NotebookFile.load(notebook_path)
    notebook = opened.notebook
    notebook.cell("total").source = "sum(rows) / len(rows)\n"
    notebook.runtimes["py"].idle_timeout = "5m"
    notebook.cells.insert(1, Cell("check", "code", "assert rows\n", "python"))
    result = opened.save(notebook)
    assert result.status == "saved" and result.layout_kept
    assert notebook_path.read_text() == COMMENTED.replace('idle_timeout = "20m"', 'idle_timeout = "5m"').replace("\n# sums it\n", '\n[[cells]]\nid = "check"\nkind = "code"\nlanguage = "python"\nsource = """\nassert rows\n"""\n\n# sums it\n').replace(
        'source = """\nsum(rows)\n"""', 'source = """\nsum(rows) / len(rows)\n"""'
    )
    # Removing a cell removes its lines, not the comment lines around it.
    notebook = result.notebook
    del notebook.cells[1:3]
    assert opened.save(notebook).status == "saved"
    text = notebook_path.read_text()
    assert "check" not in text and "sum(rows)" not in text
    for line in ("njtui = 1                       # format version", "# Runtimes first.", "language = 'python'             # my key order, my quotes", "# loads the data", "# sums it", "# the end", "\n\n\n# loads"):
        assert line in text


def test_a_cell_edit_changes_only_its_lines_in_git_diff(notebook_path):
    subprocess.run(["git", "init", "-q", str(notebook_path.parent)], check=True)
    subprocess.run(["git", "-C", str(notebook_path.parent), "add", "nb.toml"], check=True)
    subprocess.run(["git", "-C", str(notebook_path.parent), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True)
    opened = NotebookFile.load(notebook_path)
    opened.notebook.cell("load").source = "rows = [1, 2, 3, 4]\n"
    assert opened.save(opened.notebook).status == "saved"
    diff = subprocess.run(["git", "-C", str(notebook_path.parent), "diff", "-U0", "--no-color"], capture_output=True, text=True, check=True).stdout
    assert [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))] == ["-rows = [1, 2, 3]", "+rows = [1, 2, 3, 4]"]


def test_a_new_notebook_is_written_in_njtuis_own_layout(tmp_path):
    path = tmp_path / "new.toml"
    notebook = load_notebook_text(COMMENTED, tmp_path)
    result = NotebookFile(path, notebook).save(notebook)
    assert result.status == "saved" and path.read_text() == dumps_notebook(notebook)


def load_notebook_text(text: str, tmp_path: Path):
    return parse_notebook(text.encode(), tmp_path / "x.toml")


def test_disjoint_edits_merge_silently(notebook_path):
    opened = NotebookFile.load(notebook_path)
    notebook = opened.notebook
    notebook.cell("load").source = "rows = [4, 5]\n"
    notebook.cells.append(Cell("plot", "code", "print(rows)\n", "python"))
    outside(notebook_path, "sum(rows)", "max(rows)")
    outside(notebook_path, 'idle_timeout = "20m"', 'idle_timeout = "1h"  # long runs')
    outside(notebook_path, 'MODE = "slow"', 'MODE = "slow"\nSEED = "7"')
    result = opened.save(notebook)
    assert result.status == "saved" and result.conflicts == []
    assert result.taken_in == {"runtimes": ["py"], "cells": ["total"], "notebook": []}
    saved = load_notebook(notebook_path)
    assert [(cell.id, cell.source) for cell in saved.cells] == [("load", "rows = [4, 5]\n"), ("total", "max(rows)\n"), ("plot", "print(rows)\n")]
    assert saved.runtimes["py"].idle_timeout == "1h" and saved.runtimes["py"].env == {"MODE": "slow", "SEED": "7"}
    text = notebook_path.read_text()
    assert 'idle_timeout = "1h"  # long runs' in text and "# sums it" in text and "# the end" in text
    # The notebook saved continues as the merge: saving it again changes nothing.
    assert result.notebook.cell("total").source == "max(rows)\n"
    before = notebook_path.read_bytes()
    assert opened.save(result.notebook).status == "saved" and notebook_path.read_bytes() == before


def test_the_same_change_on_both_sides_is_no_conflict(notebook_path):
    opened = NotebookFile.load(notebook_path)
    opened.notebook.cell("total").source = "max(rows)\n"
    outside(notebook_path, "sum(rows)", "max(rows)")
    assert opened.save(opened.notebook).status == "saved"
    assert load_notebook(notebook_path).cell("total").source == "max(rows)\n"


def test_the_same_cell_changed_on_both_sides_is_a_conflict_and_the_file_waits(notebook_path):
    opened = NotebookFile.load(notebook_path)
    notebook = opened.notebook
    notebook.cell("total").source = "sum(rows) * 2\n"
    notebook.cell("load").source = "rows = [9]\n"
    outside(notebook_path, "sum(rows)", "sum(rows) * 10")
    on_disk, stat_before = notebook_path.read_bytes(), os.stat(notebook_path)
    result = opened.save(notebook)
    assert result.status == "conflict" and result.notebook is None
    assert [(c.path, c.base, c.ours, c.theirs) for c in result.conflicts] == [(("cells", "total", "source"), "sum(rows)\n", "sum(rows) * 2\n", "sum(rows) * 10\n")]
    assert [c.label for c in result.conflicts] == ["cell total: source"]
    after = os.stat(notebook_path)
    assert notebook_path.read_bytes() == on_disk and (after.st_ino, after.st_mtime_ns) == (stat_before.st_ino, stat_before.st_mtime_ns)
    # Asked again, it still waits; settled one way or the other, the rest merges either way.
    assert opened.save(notebook).status == "conflict" and notebook_path.read_bytes() == on_disk
    theirs = opened.save(notebook, prefer="theirs")
    assert theirs.status == "saved" and len(theirs.conflicts) == 1
    assert [cell.source for cell in load_notebook(notebook_path).cells] == ["rows = [9]\n", "sum(rows) * 10\n"]
    notebook = theirs.notebook
    notebook.cell("total").source = "sum(rows) * 3\n"
    outside(notebook_path, "sum(rows) * 10", "sum(rows) * 11")
    assert opened.save(notebook, prefer="ours").status == "saved"
    assert load_notebook(notebook_path).cell("total").source == "sum(rows) * 3\n"
    assert "# sums it" in notebook_path.read_text()


def test_a_cell_removed_on_one_side_and_changed_on_the_other_is_a_conflict(notebook_path):
    opened = NotebookFile.load(notebook_path)
    notebook = opened.notebook
    del notebook.cells[1]
    outside(notebook_path, "sum(rows)", "max(rows)")
    result = opened.save(notebook)
    assert result.status == "conflict"
    assert [c.label for c in result.conflicts] == ["cell total (removed here, changed in the file)"]
    assert result.conflicts[0].ours is MISSING and result.conflicts[0].theirs["source"] == "max(rows)\n"
    assert opened.save(notebook, prefer="theirs").status == "saved"
    assert load_notebook(notebook_path).cell("total").source == "max(rows)\n"


def test_a_merge_that_is_no_valid_notebook_is_refused_and_writes_nothing(notebook_path):
    opened = NotebookFile.load(notebook_path)
    notebook = opened.notebook
    notebook.runtimes["py2"] = RuntimeSpec("py2", "python")  # valid: py is the default
    outside(notebook_path, "default = true", "default = false")  # valid: py is the only one
    on_disk = notebook_path.read_bytes()
    with pytest.raises(NotebookError) as caught:
        opened.save(notebook)
    assert "do not make a valid notebook together" in caught.value.message
    assert "python has several (py, py2) with none the default" in caught.value.message
    assert notebook_path.read_bytes() == on_disk


def test_a_file_that_cannot_be_read_now_is_not_overwritten(notebook_path):
    opened = NotebookFile.load(notebook_path)
    opened.notebook.cell("load").source = "rows = []\n"
    notebook_path.write_text(COMMENTED + "[[cells]\n")  # someone's half-finished edit
    with pytest.raises(NotebookError) as caught:
        opened.save(opened.notebook)
    assert "changed on disk since njtui read it, and is not a notebook now" in caught.value.message
    assert caught.value.line == COMMENTED.count("\n") + 1
    assert notebook_path.read_text().endswith("[[cells]\n")


def test_a_removed_file_is_written_again_with_its_comments(notebook_path):
    opened = NotebookFile.load(notebook_path)
    opened.notebook.cell("load").source = "rows = []\n"
    notebook_path.unlink()
    assert opened.save(opened.notebook).status == "saved"
    assert "# sums it" in notebook_path.read_text() and load_notebook(notebook_path).cell("load").source == "rows = []\n"


def test_take_in_merges_outside_changes_and_holds_what_is_being_edited(notebook_path):
    opened = NotebookFile.load(notebook_path)
    notebook = opened.notebook
    assert opened.take_in(notebook) is None, "nothing changed"
    notebook.cell("load").source = "rows = [0]\n"  # an unsaved edit here
    outside(notebook_path, "sum(rows)", "max(rows)")
    outside(notebook_path, "rows = [1, 2, 3]", "rows = [1]")
    taken = opened.take_in(notebook, hold_cells={"total"})
    assert taken.changed == {"runtimes": [], "cells": [], "notebook": []}
    assert sorted(c.label for c in taken.waiting) == ["cell load: source", "cell total"]
    assert taken.notebook.cell("load").source == "rows = [0]\n" and taken.notebook.cell("total").source == "sum(rows)\n"
    assert opened.take_in(taken.notebook, hold_cells={"total"}) is None, "the file did not change since"
    # Let go (its editor closed unchanged), the held cell is taken in; the edited one still waits.
    taken = opened.take_in(taken.notebook)
    assert taken.changed == {"runtimes": [], "cells": ["total"], "notebook": []} and taken.notebook.cell("total").source == "max(rows)\n"
    assert [c.label for c in taken.waiting] == ["cell load: source"]
    assert opened.take_in(taken.notebook) is None
    outside(notebook_path, 'MODE = "slow"', 'MODE = "fast"')
    taken = opened.take_in(taken.notebook)
    assert taken.changed == {"runtimes": ["py"], "cells": [], "notebook": []} and taken.notebook.runtimes["py"].env == {"MODE": "fast"}
    result = opened.save(taken.notebook)
    assert result.status == "conflict" and [c.label for c in result.conflicts] == ["cell load: source"]
    result = opened.save(taken.notebook, prefer="ours")
    saved = load_notebook(notebook_path)
    assert [c.source for c in saved.cells] == ["rows = [0]\n", "max(rows)\n"] and saved.runtimes["py"].env == {"MODE": "fast"}


def test_edit_notebook_validates_the_edited_document(tmp_path):
    notebook = load_notebook_text(COMMENTED, tmp_path)

    def bad(document):
        document["runtimes"]["py"]["memory"] = "lots"

    with pytest.raises(NotebookError) as caught:
        edit_notebook(notebook, bad, tmp_path / "nb.toml")
    assert "bad memory limit 'lots'" in caught.value.message
    assert notebook.runtimes["py"].memory is None, "the notebook given is not changed"

    def good(document):
        document["runtimes"]["py"]["memory"] = "1GB"

    assert edit_notebook(notebook, good, tmp_path / "nb.toml").runtimes["py"].memory == "1GB"


# -- `njtui runtime set`, which saves the same way


def test_runtime_set_keeps_comments_and_changes_made_by_others(notebook_path):
    opened = NotebookFile.load(notebook_path)  # the TUI, say, with an unsaved cell edit
    opened.notebook.cell("load").source = "rows = [4]\n"
    result = njtui("runtime", "set", str(notebook_path), "py", "idle_timeout=5m", "env.SEED=7", "--unset", "env.MODE")
    assert result.returncode == 0, result.stderr
    text = notebook_path.read_text()
    assert 'idle_timeout = "5m"' in text and "# Runtimes first." in text and "language = 'python'             # my key order, my quotes" in text
    assert "MODE" not in text and 'SEED = "7"' in text and "# the end" in text
    # and the TUI's save then merges the command's change with its own edit.
    assert opened.save(opened.notebook).status == "saved"
    saved = load_notebook(notebook_path)
    assert saved.runtimes["py"].idle_timeout == "5m" and saved.runtimes["py"].env == {"SEED": "7"} and saved.cell("load").source == "rows = [4]\n"


def test_runtime_set_adds_a_runtime_in_njtuis_layout_among_the_comments(notebook_path):
    result = njtui("runtime", "set", str(notebook_path), "sh", "language=bash")
    assert result.returncode == 0, result.stderr
    text = notebook_path.read_text()
    assert '[runtimes.sh]\nname = "Bash"\nlanguage = "bash"\nenvironment = "host"\n\n\n# loads the data' in text


class _WrittenMeanwhile:
    """Another program writes the file just after `njtui runtime set` has read it: the race the
    merge exists for, placed at the one moment it matters."""

    def __init__(self, monkeypatch, path: Path, old: str, new: str) -> None:
        real_load = NotebookFile.load.__func__

        def load(cls, where):
            opened = real_load(cls, where)
            outside(path, old, new)
            return opened

        monkeypatch.setattr(NotebookFile, "load", classmethod(load))


def test_runtime_set_merges_a_change_made_while_it_ran(notebook_path, monkeypatch, capsys):
    _WrittenMeanwhile(monkeypatch, notebook_path, "sum(rows)", "max(rows)")
    assert cli.main(["runtime", "set", str(notebook_path), "py", "idle_timeout=5m"]) == 0
    saved = load_notebook(notebook_path)
    assert saved.runtimes["py"].idle_timeout == "5m" and saved.cell("total").source == "max(rows)\n"


def test_runtime_set_refuses_a_conflict_and_leaves_the_file(notebook_path, monkeypatch, capsys):
    _WrittenMeanwhile(monkeypatch, notebook_path, 'idle_timeout = "20m"', 'idle_timeout = "2h"')
    status = cli.main(["runtime", "set", str(notebook_path), "py", "idle_timeout=5m"])
    error = capsys.readouterr().err
    assert status == 2
    assert f"{notebook_path}: not changed: the file changed while this command ran, in the same settings (runtime py: idle_timeout)" in error
    assert "run the command again" in error
    assert notebook_path.read_text() == COMMENTED.replace('idle_timeout = "20m"', 'idle_timeout = "2h"')


# -- the in-place edit, over many layouts and edits


def _random_edit(rng: random.Random, document: dict) -> dict:
    new = copy.deepcopy(document)
    cells = new.setdefault("cells", [])
    for _ in range(rng.randint(1, 4)):
        action = rng.choice(["source", "insert", "delete", "move", "runtime", "env", "title"])
        if action == "source" and cells:
            rng.choice(cells)["source"] = f"x = {rng.randint(0, 999)}\nprint(x)\n"
        elif action == "insert":
            cells.insert(rng.randint(0, len(cells)), {"id": f"n{rng.randint(0, 10**6)}", "kind": "code", "language": "python", "source": "new()\n"})
        elif action == "delete" and cells:
            del cells[rng.randrange(len(cells))]
        elif action == "move" and len(cells) > 1:
            cells.insert(rng.randint(0, len(cells) - 1), cells.pop(rng.randrange(len(cells))))
        elif action == "runtime":
            new["runtimes"]["py"]["idle_timeout"] = rng.choice(["5m", "1h", "90s"])
        elif action == "env":
            env = new["runtimes"]["py"].setdefault("env", {})
            if env and rng.random() < 0.5:
                env.pop(rng.choice(list(env)))
            else:
                env[f"V{rng.randint(0, 9)}"] = "x"
        elif action == "title":
            new["title"] = f"title {rng.randint(0, 9)}"
    if not cells:
        del new["cells"]
    if not new["runtimes"]["py"].get("env", True):
        del new["runtimes"]["py"]["env"]
    return notebook_document(parse_notebook(_dumps(new), Path("x.toml")))


def _dumps(document: dict) -> bytes:
    from njtui.store import toml_writer

    return toml_writer.dumps(document).encode()


def _commented(rng: random.Random, cells: int) -> str:
    lines = ["njtui = 1", f'title = "t"  # {rng.randint(0, 9)}', "", "[runtimes.py]", 'language = "python"', "default = true", ""]
    for index in range(cells):
        lines += [f"# heading of c{index}", "[[cells]]", f'id = "c{index}"', 'kind = "code"', 'language = "python"', 'source = """', f"c = {index}", '"""', ""]
    lines.append("# the end")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(150))
def test_in_place_edits_read_as_intended_and_keep_every_comment_line(seed):
    rng = random.Random(seed)
    text = _commented(rng, rng.randint(0, 5))
    old = notebook_document(parse_notebook(text.encode(), Path("x.toml")))
    new = _random_edit(rng, old)
    edited = update_text(text, old, new)
    assert notebook_document(parse_notebook(edited.encode(), Path("x.toml"))) == new
    lines = edited.splitlines()
    # Every comment line stays (a removed cell's heading too: it may head more than that cell),
    assert sorted(line for line in lines if line.startswith("#")) == sorted(line for line in text.splitlines() if line.startswith("#"))
    # each cell that stays is still right under its heading, wherever it moved,
    for cell in new.get("cells", []):
        if cell["id"].startswith("c"):
            header = lines.index(f'id = "{cell["id"]}"') - 1
            assert lines[header] == "[[cells]]" and lines[header - 1] == f"# heading of {cell['id']}", edited
    # and tables stay apart: a header follows a blank or comment line, never two blank lines.
    headers = [index for index, line in enumerate(lines) if line.startswith("[")]
    assert all(lines[index - 1] == "" or lines[index - 1].startswith("#") for index in headers if index), edited
    assert "\n\n\n" not in edited, edited


def test_merge_documents_orders_cells_from_the_side_that_moved_them():
    def doc(*ids):
        return {"njtui": 1, "cells": [{"id": i, "kind": "markdown", "source": i} for i in ids]}

    base = doc("a", "b", "c")
    # theirs moved c first, ours added d after b: theirs' order, d after b.
    merged = merge_documents(base, doc("a", "b", "d", "c"), doc("c", "a", "b"))
    assert [cell["id"] for cell in merged.document["cells"]] == ["c", "a", "b", "d"] and not merged.conflicts
    # both removed different cells
    merged = merge_documents(base, doc("a", "c"), doc("a", "b"))
    assert [cell["id"] for cell in merged.document["cells"]] == ["a"]


def test_runtime_table_changes_merge_key_by_key(tmp_path):
    notebook = load_notebook_text(COMMENTED, tmp_path)
    base = notebook_document(notebook)
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    ours["runtimes"]["py"]["env"]["A"] = "1"
    theirs["runtimes"]["py"]["env"]["B"] = "2"
    theirs["runtimes"]["py"]["memory"] = "1GB"
    merged = merge_documents(base, ours, theirs)
    assert not merged.conflicts
    assert merged.document["runtimes"]["py"]["env"] == {"MODE": "slow", "A": "1", "B": "2"} and merged.document["runtimes"]["py"]["memory"] == "1GB"
    ours["runtimes"]["py"]["memory"] = "2GB"
    assert [c.label for c in merge_documents(base, ours, theirs).conflicts] == ["runtime py: memory"]
    assert runtime_document(notebook.runtimes["py"]) == base["runtimes"]["py"]


LAYOUTS = {
    "inline tables": 'njtui = 1\n[runtimes]\npy = { language = "python", default = true, env = { A = "1" } }  # inline\n\n[[cells]]  # the cell\nid = "a"\nkind = "code"\nlanguage = "python"\nsource = "x"\n',
    "windows line ends": 'njtui = 1\r\n# heading\r\n[runtimes.py]\r\nlanguage = "python"\r\n\r\n[runtimes.py.env]\r\nA = "1"\r\n\r\n[[cells]]\r\nid = "a"\r\nkind = "code"\r\nlanguage = "python"\r\nsource = "x"\r\n',
    # tomlkit cannot edit these in place reliably: the file is laid out anew, and the save says so.
    "a table split over the file": 'njtui = 1\n[runtimes.py]\nlanguage = "python"\n\n[[cells]]\nid = "a"\nkind = "code"\nlanguage = "python"\nsource = "x"\n\n[runtimes.py.env]  # out of order\nA = "1"\n',
    "dotted keys": 'njtui = 1  # dotted\nruntimes.py.language = "python"\nruntimes.py.env.A = "1"\ncells = [{ id = "a", kind = "code", language = "python", source = "x" }]\n',
}
KEPT = {"inline tables": b"# the cell", "windows line ends": b"# heading"}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_unusual_layouts_save_correctly_and_keep_what_they_can(tmp_path, layout):
    path = tmp_path / "nb.toml"
    path.write_bytes(LAYOUTS[layout].encode())
    opened = NotebookFile.load(path)
    notebook = opened.notebook
    notebook.cell("a").source = "y\nz\n"
    notebook.runtimes["py"].env["B"] = "2"
    notebook.runtimes["sh"] = RuntimeSpec("sh", "bash")
    notebook.cells.append(Cell("b", "markdown", "# more\n"))
    result = opened.save(notebook)
    saved = load_notebook(path)
    assert saved.cell("a").source == "y\nz\n" and saved.runtimes["py"].env == {"A": "1", "B": "2"}
    assert "sh" in saved.runtimes and saved.cell("b").source == "# more\n"
    raw = path.read_bytes()
    if layout not in KEPT:
        assert not result.layout_kept and raw.decode() == dumps_notebook(saved)
        return
    assert result.layout_kept and KEPT[layout] in raw
    if layout == "windows line ends":
        assert b"\n" not in raw.replace(b"\r\n", b"")


def test_a_held_cell_removed_in_the_file_stays_in_its_place():
    def doc(*ids):
        return {"njtui": 1, "cells": [{"id": i, "kind": "markdown", "source": i} for i in ids]}

    merged = merge_documents(doc("a", "b", "c"), doc("a", "b", "c"), doc("a", "c"), hold_cells={"b"})
    assert [cell["id"] for cell in merged.document["cells"]] == ["a", "b", "c"]
    assert [c.label for c in merged.conflicts] == ["cell b (removed in the file, kept here)"]
