"""Hostile notebooks: every bad file is refused with a NotebookError naming file:line:column and
what to do, never a traceback, a hang or a crash later; and the file is never modified.

Each test reproduces one way a bad notebook used to get through (issue 10, finding 8).
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec, is_cell_id, is_runtime_id, new_cell_id
from njtui.model.duration import DurationError, parse_duration
from njtui.model.size import SizeError, parse_size
from njtui.store import NotebookError, dumps_notebook, load_notebook, locate, notebook_file, parse_notebook, save_notebook
from njtui.store.errors import toml_error_position
from njtui.store.locate import MAX_DEPTH, Locator
from tests.conftest import njtui


def notebook_text(setting: str = "", cell_id: str = "a1", extra: str = "") -> str:
    """A small valid notebook; `setting` is line 5, inside [runtimes.py]."""
    return f'njtui = 1\ntitle = "hardening"\n\n[runtimes.py]\nlanguage = "python"\n{setting}\n\n[[cells]]\nid = "{cell_id}"\nkind = "code"\nlanguage = "python"\nsource = "print(1)"\n{extra}'


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(tmp_path: Path, content: str | bytes, expected: str, line: int | None = None, column: int | None = None) -> NotebookError:
    """Loads `content` from a file and checks the refusal: the message, a position, a hint, and
    the file left exactly as it was."""
    path = tmp_path / "bad.toml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    before = digest(path)
    with pytest.raises(NotebookError) as caught:
        load_notebook(path)
    error = caught.value
    assert expected in error.message, str(error)
    assert error.line is not None and error.column is not None, str(error)
    assert str(error).startswith(f"{path}:{error.line}:{error.column}: error: "), str(error)
    assert error.hint, "every error says what to do"
    if line is not None:
        assert error.line == line, str(error)
    if column is not None:
        assert error.column == column, str(error)
    assert digest(path) == before
    return error


def cli_refuses(path: Path, expected: str) -> None:
    result = njtui("show", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and expected in result.stderr, result.stderr


# -- pathological nesting: was a RecursionError traceback


@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("[" * 5000 + "]" * 5000, 5 + MAX_DEPTH),  # the 33rd "[" is one level too deep
        ("{a = " * 5000 + "1" + "}" * 5000, 6 + 5 * (MAX_DEPTH - 1)),  # the key `a` of the 32nd "{"
        ("[{a = [{a = " * 2000 + "1" + "}]}]" * 2000, None),
    ],
    ids=["arrays", "inline-tables", "mixed"],
)
def test_deep_nesting_is_refused_where_it_gets_too_deep(tmp_path, value, column):
    error = refused(tmp_path, f"njtui = 1\nx = {value}\n", f"nested more than {MAX_DEPTH} levels deep", line=2, column=column)
    assert "flatten" in error.hint
    cli_refuses(tmp_path / "bad.toml", "nested more than")


@pytest.mark.parametrize(
    "text",
    ["njtui = 1\n" + ".".join(["a"] * 3000) + " = 1\n", "njtui = 1\n[" + ".".join(["a"] * 3000) + "]\n", "njtui = 1\nx = {" + ".".join(["a"] * 3000) + " = 1}\n"],
    ids=["dotted-key", "table-header", "inline-dotted-key"],
)
def test_long_dotted_keys_are_refused_before_tomllib(tmp_path, text):
    """tomllib takes quadratic time and memory on a long dotted key, and the data it builds is as
    deep as the key is long."""
    refused(tmp_path, text, "nested more than", line=2)


def test_nesting_up_to_the_limit_loads_and_saves(tmp_path):
    deepest = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)  # the 1 is MAX_DEPTH levels down
    path = tmp_path / "nb.toml"
    path.write_text(notebook_text(extra=f"\n[deep]\nx = {deepest[1:-1]}\n"))
    notebook = load_notebook(path)
    assert parse_notebook(dumps_notebook(notebook).encode(), path).extra == notebook.extra
    refused(tmp_path, notebook_text(extra=f"\n[deep]\nx = [{deepest[1:-1]}]\n"), "nested more than")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("njtui = 1\nx = " + "[" * 5000 + "]" * 5000 + "\n", "RecursionError"),
        ("njtui = 1\nx = " + "9" * 5000 + "\n", "ValueError"),
        ("njtui = 1\n" + ".".join(["a"] * (MAX_DEPTH + 1)) + " = 1\n", "nested more than"),
    ],
    ids=["recursion", "huge-integer", "deep-data"],
)
def test_what_the_scan_misses_is_still_a_notebook_error(tmp_path, monkeypatch, text, expected):
    """Behind the scan, tomllib's own failures and the data's depth are caught too."""

    class BlindLocator(Locator):
        def __init__(self, text: str) -> None:
            super().__init__(text)
            self.refusal = None

    monkeypatch.setattr(notebook_file, "Locator", BlindLocator)
    refused(tmp_path, text, expected)


def test_an_integer_of_thousands_of_digits_is_refused(tmp_path):
    """tomllib raised ValueError (Python's int limit) through the loader for this."""
    refused(tmp_path, 'njtui = 1\ntitle = "t"\nx = ' + "9" * 5000 + "\n", "bare value 5,000 characters long", line=3, column=5)
    refused(tmp_path, "njtui = " + "9" * 5000 + "\n", "bare value", line=1, column=9)
    refused(tmp_path, "njtui = 1\nx = 0x" + "f" * 40 + "\n", "does not fit in 64 bits", line=2)
    refused(tmp_path, notebook_text("cpus = 100000000000000000000"), "does not fit in 64 bits", line=6)


# -- the error-line finder: was cubic in a line's length

_SINGLE_CLASS = re.compile(r"\[(?:[^\]\\]|\\.)+\][*+]")


def test_the_locator_uses_only_patterns_that_cannot_backtrack():
    """A single character class, matched from a fixed position, takes time linear in what it
    matches; the old locator's header pattern (nested optional parts around `.+?`) took cubic time
    on a line of spaces."""
    patterns = {name: value.pattern for name, value in vars(locate).items() if isinstance(value, re.Pattern)}
    assert patterns
    for name, pattern in patterns.items():
        assert _SINGLE_CLASS.fullmatch(pattern), f"{name} = {pattern!r} could backtrack"


def _traced_lines(text: str) -> int:
    """Lines of locate.py run while scanning `text`: its work, counted instead of timed."""
    count = 0
    filename = locate.__file__

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def global_trace(frame, event, arg):
        return local if frame.f_code.co_filename == filename else None

    sys.settrace(global_trace)
    try:
        Locator(text)
    finally:
        sys.settrace(None)
    return count


_PATHOLOGICAL = {
    "header-of-spaces": lambda n: "[" + " " * n,
    "header-of-spaces-then-junk": lambda n: "[" + " " * n + "]x",
    "array-line-of-spaces": lambda n: "x = [\n[" + " " * n + "1],\n]\n",
    "many-short-lines": lambda n: "x = 1\n" * (n // 6),
    "many-headers": lambda n: "[[t]]\n" * (n // 6),
    "long-array": lambda n: "a = [" + "1, " * (n // 3) + "]",
    "wide-inline-table": lambda n: "a = {" + ", ".join(f"k{i} = 1" for i in range(n // 10)) + "}",
    "escapes": lambda n: 'k = "' + '\\"' * (n // 2) + '"',
    "multiline-escapes": lambda n: 'k = """' + '\\"' * (n // 2) + '"""',
    "quotes": lambda n: '"' * n,
    "triple-quotes": lambda n: '"""' * (n // 3),
    "literal-quotes": lambda n: "'" * n,
    "equals": lambda n: "=" * n,
    "closers": lambda n: "]" * n,
    "dots": lambda n: "a" + " ." * (n // 2),
    "quoted-dotted-keys": lambda n: ('"k\\u0041".' * 20 + "x = 1\n") * (n // 220 + 1),
    "commas-in-array": lambda n: "a = [" + "," * n + "]",
}


@pytest.mark.parametrize("family", sorted(_PATHOLOGICAL))
def test_the_locator_does_linear_work(family):
    build = _PATHOLOGICAL[family]
    small, large = _traced_lines(build(2_000)), _traced_lines(build(16_000))
    # Eight times the text, at most about eight times the work (quadratic would be 64 times).
    assert large <= 10 * small + 200, (small, large)
    assert large <= 20 * len(build(16_000)) + 200, large


def test_a_long_line_in_a_bad_notebook_gets_its_position(tmp_path):
    """The old locator spent minutes on a line like this one (a "[" and thousands of spaces
    inside an array) before it could say where the error was."""
    text = "njtui = 1\nx = [\n[" + " " * 5000 + '1],\n]\n\n[runtimes.py]\nlanguage = "ruby"\n'
    refused(tmp_path, text, "unknown language 'ruby'", line=7, column=1)
    cli_refuses(tmp_path / "bad.toml", "bad.toml:7:1:")


# -- an error at the very end of the file: had no line or column


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("njtui = 1\ntitle = ", 2, 9),
        ("njtui = 1\ncells = [", 2, 10),
        ('njtui = 1\ntitle = "abc', 2, 13),
        ("njtui = 1\n[runtimes", 2, 10),
        ('njtui = 1\nx = """abc\n', 3, 1),
    ],
)
def test_an_error_at_the_end_of_the_file_has_line_and_column(tmp_path, text, line, column):
    refused(tmp_path, text, "not valid TOML", line=line, column=column)


def test_toml_error_position_without_the_text_is_unchanged():
    import tomllib

    with pytest.raises(tomllib.TOMLDecodeError) as caught:
        tomllib.loads("x = ")
    assert toml_error_position(caught.value) == ("Invalid value (at end of document)", None, None)
    assert toml_error_position(caught.value, "x = ") == ("Invalid value", 1, 5)


def test_errors_without_a_key_still_have_a_position(tmp_path):
    refused(tmp_path, 'title = "no version"\n', "missing the key `njtui`", line=1, column=1)


# -- NUL and control characters: loaded, then crashed when used


@pytest.mark.parametrize(
    ("text", "expected", "line"),
    [
        ('njtui = 1\n[runtimes."p\\u0000y"]\nlanguage = "python"\n', "control character", 2),
        (notebook_text(cell_id="a\\u0000"), "NUL character", 9),
        (notebook_text('env = { X = "a\\u0000b" }'), "NUL character", 6),
        (notebook_text().replace('source = "print(1)"', 'source = "print(1)\\u0000"'), "NUL character", 12),
        (notebook_text(extra='note = "\\u0000"\n'), "NUL character", 13),
        (notebook_text().replace('title = "hardening"', 'title = "\\u001b[2Jgotcha"'), "title", 2),
        (notebook_text('name = "Py\\nthon"'), "control character", 6),
        (notebook_text('name = "\\u009b31m"'), "control character", 6),
        (notebook_text(extra='"two\\nlines" = 1\n'), "control character", 13),
        (notebook_text('mounts = [{ kind = "dir", source = "/tmp\\n/x", at = "/d" }]'), "control character", 6),
        (notebook_text('mounts = [{ kind = "dir", source = "/tmp", at = "/d\\u0007" }]'), "control character", 6),
        (notebook_text('mounts = [{ kind = "git", source = "https://example.org/r.git", ref = "--upload-pack=x", at = "/r" }]'), "not a git branch", 6),
        (notebook_text('environment = "njtui/python:3.11\\n"'), "not an image reference", 6),
        (notebook_text('secrets = { TOKEN = "name\\n" }'), "must name a secret", 6),
    ],
    ids=[
        "runtime-id",
        "cell-id",
        "env-value",
        "source",
        "unknown-key",
        "title",
        "runtime-name",
        "c1-control",
        "key-with-newline",
        "mount-source",
        "mount-at",
        "git-ref-option",
        "image-with-newline",
        "secret-with-newline",
    ],
)
def test_nul_and_control_characters_are_refused(tmp_path, text, expected, line):
    refused(tmp_path, text, expected, line=line)


def test_tabs_and_control_characters_in_sources_and_env_values_are_kept(tmp_path):
    """A source is code and may hold any character but NUL; an env value may span lines."""
    path = tmp_path / "nb.toml"
    path.write_text(notebook_text('env = { PEM = "line 1\\nline 2" }').replace('title = "hardening"', 'title = "tab\\there"').replace('source = "print(1)"', 'source = "print(1)\\t# \\u0001 \\u001b"'))
    notebook = load_notebook(path)
    assert notebook.title == "tab\there"
    assert notebook.runtimes["py"].env == {"PEM": "line 1\nline 2"}
    assert notebook.cells[0].source == "print(1)\t# \x01 \x1b"


# -- numbers and durations: were accepted unbounded and failed at boot


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("cpus = inf", "outside 0.01 to 1024"),
        ("cpus = -inf", "outside 0.01 to 1024"),
        ("cpus = nan", "outside 0.01 to 1024"),
        ("cpus = 1e999", "outside 0.01 to 1024"),
        ("cpus = 1025", "outside 0.01 to 1024"),
        ("cpus = 0.001", "outside 0.01 to 1024"),
        ('idle_timeout = "200000d"', "at most 365 days"),
        ('idle_timeout = "366d"', "at most 365 days"),
        ('idle_timeout = "0s"', "more than 0"),
        ('idle_timeout = "nan"', "not a duration"),
        ('idle_timeout = "inf"', "not a duration"),
        ('idle_timeout = "1e999"', "not a duration"),
        ('idle_timeout = "-5"', "not a duration"),
        (f'idle_timeout = "{"9" * 400}s"', "too long to be a duration"),
        ('memory = "65TiB"', "at most 64TiB"),
        ('memory = "99999999999999999999T"', "at most 64TiB"),
        (f'memory = "{"9" * 400}"', "not a size"),
        ('memory = "5MB"', "at least 6MiB"),
        ("gpus = 65", "must be a count or a list of device ids"),
        ("gpus = 1000000000000", "must be a count or a list of device ids"),
        ('gpus = ["0,1"]', "must be a count or a list of device ids"),
        ('gpus = ["-0"]', "must be a count or a list of device ids"),
    ],
)
def test_numbers_and_durations_are_finite_and_bounded(tmp_path, setting, expected):
    error = refused(tmp_path, notebook_text(setting), expected, line=6)
    key = setting.split(" ")[0]
    assert key in error.message or key in error.hint


@pytest.mark.parametrize(
    "setting",
    ["cpus = 1024", "cpus = 0.01", 'idle_timeout = "365d"', 'idle_timeout = "1ms"', 'memory = "64TiB"', 'memory = "6MiB"', "gpus = 64", 'gpus = ["GPU-3f2a", "MIG-GPU-3f2a/1/0"]'],
)
def test_the_bounds_themselves_are_accepted(tmp_path, setting):
    path = tmp_path / "nb.toml"
    path.write_text(notebook_text(setting))
    load_notebook(path)


def test_parse_size_and_parse_duration_never_overflow():
    with pytest.raises(SizeError):
        parse_size("9" * 400 + "T")  # float() of it is inf; int(inf) raised OverflowError
    with pytest.raises(SizeError):
        parse_size("1" * 5000)
    assert parse_size("9" * 50 + "T") > 0  # long but finite: the caller's bound refuses it
    for text in ("nan", "inf", "-inf", "1e999", "1e3", "-5", "9" * 5000 + "s"):
        with pytest.raises(DurationError):
            parse_duration(text)
    assert parse_duration("1h30m") == 5400 and parse_duration("90") == 90 and parse_duration("1.5h") == 5400


# -- what the path names: a FIFO blocked forever, /dev/zero was read until MemoryError


def _show_limited(path: Path) -> subprocess.CompletedProcess:
    """`njtui show` with its address space capped, so a loader that reads without end fails
    fast with MemoryError instead of taking the machine's memory."""

    def cap_memory() -> None:
        limit = 2 * 1024**3
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "njtui", "show", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        preexec_fn=cap_memory,
    )


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, monkeypatch):
    fifo = tmp_path / "nb.toml"
    os.mkfifo(fifo)
    result = _show_limited(fifo)  # a hang here is the old behaviour: open() waited for a writer
    assert result.returncode == 2 and "named pipe (FIFO)" in result.stderr and "Traceback" not in result.stderr, result.stderr
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *args, **options: opened.append(path) or real_open(path, *args, **options))
    with pytest.raises(NotebookError, match="not a regular file"):
        load_notebook(fifo)
    assert opened == [], "refused before it is opened"


def test_a_symlink_to_dev_zero_is_refused_before_reading(tmp_path):
    link = tmp_path / "nb.toml"
    link.symlink_to("/dev/zero")
    result = _show_limited(link)
    assert result.returncode == 2 and "character device" in result.stderr and "Traceback" not in result.stderr, result.stderr
    with pytest.raises(NotebookError, match="character device"):
        load_notebook(link)


def test_other_files_that_are_not_regular_are_refused(tmp_path):
    with pytest.raises(NotebookError, match="character device"):
        load_notebook("/dev/null")
    with pytest.raises(NotebookError, match="is a directory"):
        load_notebook(tmp_path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.toml"))
        with pytest.raises(NotebookError, match="a socket"):
            load_notebook(tmp_path / "sock.toml")
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    with pytest.raises(NotebookError, match="cannot read the file") as caught:
        load_notebook(loop)
    assert "permissions" not in caught.value.hint


def test_a_symlink_to_a_notebook_is_read(tmp_path):
    target = tmp_path / "real.toml"
    target.write_text(notebook_text())
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    assert load_notebook(link).cells[0].id == "a1"


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.toml"
    with open(path, "wb") as handle:  # sparse: no 64 MiB written to the test machine's disk
        handle.truncate(notebook_file.MAX_NOTEBOOK_BYTES + 1)
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, size: reads.append(size) or real_read(fd, size))
    with pytest.raises(NotebookError, match="larger than the 64 MiB a notebook may be") as caught:
        load_notebook(path)
    assert reads == [] and caught.value.hint
    with pytest.raises(NotebookError, match="larger than the 64 MiB"):
        parse_notebook(b"#" * (notebook_file.MAX_NOTEBOOK_BYTES + 1), path)


# -- identifiers: any text was an id, and ids become path components


@pytest.mark.parametrize("cell_id", ["", "a b", "../x", "a/b", "x" * 65, "caf\u00e9", "a.b", "a:b", "~", "tab\\tid"])
def test_cell_ids_follow_the_nbformat_rule(tmp_path, cell_id):
    error = refused(tmp_path, notebook_text(cell_id=cell_id), "id", line=9)
    assert "1 to 64 letters, digits, - or _" in error.hint


@pytest.mark.parametrize("runtime_id", ["a b", "../x", "a/b", "x" * 65, "p\u00fd", "py.3", ""])
def test_runtime_ids_follow_the_id_rule(tmp_path, runtime_id):
    quoted = runtime_id.replace('"', '\\"')
    text = f'njtui = 1\n\n[runtimes."{quoted}"]\nlanguage = "python"\n'
    error = refused(tmp_path, text, "is not a valid id", line=3, column=1)
    assert "1 to 64 letters, digits, - or _" in error.hint


def test_the_longest_and_odd_but_valid_ids_load(tmp_path):
    path = tmp_path / "nb.toml"
    path.write_text(notebook_text(cell_id="A-z_09" + "x" * 58).replace("runtimes.py]", "runtimes.Py-3_x]"))
    notebook = load_notebook(path)
    assert notebook.cells[0].id == "A-z_09" + "x" * 58 and list(notebook.runtimes) == ["Py-3_x"]


def test_ids_njtui_makes_are_valid(tmp_path):
    assert all(is_cell_id(new_cell_id()) for _ in range(2000))
    taken = ["py"] + [f"py{number}" for number in range(2, 101)]
    notebook = Notebook(title="ids", runtimes={runtime_id: RuntimeSpec(runtime_id, "bash") for runtime_id in taken})
    spec = notebook.add_default_runtime("python")  # appending "_" made "py_", then "py__"…
    assert spec.id == "py101" and is_runtime_id(spec.id)
    for _ in range(100):
        notebook.cells.append(notebook.new_cell(language="python"))
    assert all(is_cell_id(cell.id) for cell in notebook.cells)
    notebook.runtimes["py"].default = True
    save_notebook(notebook, tmp_path / "ids.toml")
    assert len(load_notebook(tmp_path / "ids.toml").cells) == 100


def test_saving_a_bad_id_is_refused_and_keeps_the_file(tmp_path):
    path = tmp_path / "nb.toml"
    path.write_text(notebook_text())
    before = digest(path)
    notebook = load_notebook(path)
    notebook.cells.append(Cell(id="../../etc", kind="markdown", source="x"))
    with pytest.raises(NotebookError, match="not a valid cell id"):
        save_notebook(notebook, path)
    assert digest(path) == before
