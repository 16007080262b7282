"""Fuzzing the notebook loader: mutated sample notebooks, and text Hypothesis makes up.

Whatever the bytes, loading either gives a notebook (which saves and loads back the same) or a
NotebookError naming file:line:column with a hint; never another exception, and the file is
never modified. A sample of the mutants goes through the real `njtui show`. Deterministic: a
seeded generator, and Hypothesis derandomized with a fixed number of examples.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from njtui.store import NotebookError, dumps_notebook, load_notebook, parse_notebook
from tests.conftest import SAMPLES

SEED = 20_240_611
MUTANTS_PER_KIND = 30  # 15 kinds: 450 mutants
CLI_SAMPLE = 30

_SAMPLE_BYTES = [path.read_bytes() for path in sorted(SAMPLES.glob("*.toml"))]
_STRING_START = re.compile(rb'= "')
_ID_VALUE = re.compile(rb'^id = "[^"\n]*"', re.MULTILINE)
_RUNTIME_HEADER = re.compile(rb"^\[runtimes\.[A-Za-z0-9_-]+\]", re.MULTILINE)
_SETTING = re.compile(rb"^(cpus|memory|idle_timeout|gpus|njtui|default) = [^\n]*", re.MULTILINE)


def _at_line_start(rng: random.Random, data: bytes) -> int:
    starts = [0] + [match.end() for match in re.finditer(rb"\n", data)]
    return rng.choice(starts)


def _insert(data: bytes, position: int, piece: bytes) -> bytes:
    return data[:position] + piece + data[position:]


def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    flipped = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _duplicate_line(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    index = rng.randrange(len(lines))
    lines.insert(index, lines[index])
    return b"\n".join(lines)


def _delete_line(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _insert_nul(rng: random.Random, data: bytes) -> bytes:
    return _insert(data, rng.randrange(len(data) + 1), b"\x00" * rng.randint(1, 3))


def _insert_control(rng: random.Random, data: bytes) -> bytes:
    controls = [bytes([code]) for code in [*range(1, 9), 11, 12, *range(14, 32), 127]] + [b"\r", b"\xc2\x85", b"\xc2\x9b"]
    return _insert(data, rng.randrange(len(data) + 1), rng.choice(controls))


def _escaped_control(rng: random.Random, data: bytes) -> bytes:
    """A \\u escape (NUL, ESC, newline, C1) inside a string value, id or key: valid TOML."""
    escape = rng.choice([rb"\u0000", rb"\u001b[2J", rb"\n", rb"\u009b", rb"\u0007", rb"\t"])
    starts = [match.end() for match in _STRING_START.finditer(data)]
    if rng.random() < 0.3:
        return _RUNTIME_HEADER.sub(lambda match: match.group()[:-1].replace(b"runtimes.", b'runtimes."') + escape + b'"]', data, count=1)
    return _insert(data, rng.choice(starts), escape)


_HUGE = [
    b"9" * 5000,
    b"-" + b"9" * 30,
    b"0x" + b"f" * 40,
    b"1e999",
    b"-1e999",
    b"inf",
    b"-inf",
    b"nan",
    b"1" + b"0" * 400 + b".5",
    b'"200000d"',
    b'"nan"',
    b'"inf"',
    b'"1e999s"',
    b'"' + b"9" * 400 + b's"',
    b'"99999999999999999999TiB"',
    b'"65TiB"',
    b'"' + b"9" * 5000 + b'"',
    b"18446744073709551616",
    b"[" + b"1, " * 2000 + b"]",
]


def _huge_number(rng: random.Random, data: bytes) -> bytes:
    value = rng.choice(_HUGE)
    if _SETTING.search(data) and rng.random() < 0.7:
        matches = list(_SETTING.finditer(data))
        match = rng.choice(matches)
        return data[: match.start()] + match.group(1) + b" = " + value + data[match.end() :]
    key = rng.choice([b"cpus", b"memory", b"idle_timeout", b"gpus", b"x"])
    header = _RUNTIME_HEADER.search(data)
    position = header.end() + 1 if header else 0
    return _insert(data, position, key + b" = " + value + b"\n")


def _deep_nesting(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([31, 33, 40, 500, 5000])
    opener = rng.choice([b"[", b"{a = ", b"[{b = ", b"a."])
    if opener == b"a.":
        line = b"a." * depth + b"z = 1\n" if rng.random() < 0.5 else b"[" + b"a." * depth + b"z]\n"
    else:
        closer = {b"[": b"]", b"{a = ": b"}", b"[{b = ": b"}]"}[opener]
        line = b"deep = " + opener * depth + b"1" + closer * depth + b"\n"
    return _insert(data, _at_line_start(rng, data), line)


def _long_line(rng: random.Random, data: bytes) -> bytes:
    char = rng.choice([b" ", b"x", b"[", b"]", b"{", b'"', b"'", b".", b"=", b"#", b"\\", b",", b"9"])
    length = rng.choice([2_000, 5_000, 20_000])
    prefix = rng.choice([b"", b"[", b"x = ", b'x = "', b"x = [\n[", b"# "])
    return _insert(data, _at_line_start(rng, data), prefix + char * length + b"\n")


_BAD_IDS = [b"", b"a b", b"../x", b"a/b", b"x" * 65, b"caf\xc3\xa9", b"a.b", b"~", b"-", b"A" * 64, rb"\u0000", rb"x\ny"]


def _bad_id(rng: random.Random, data: bytes) -> bytes:
    bad = rng.choice(_BAD_IDS)
    if rng.random() < 0.5 or not _RUNTIME_HEADER.search(data):
        matches = list(_ID_VALUE.finditer(data))
        match = rng.choice(matches)
        return data[: match.start()] + b'id = "' + bad + b'"' + data[match.end() :]
    return _RUNTIME_HEADER.sub(lambda match: b'[runtimes."' + bad + b'"]', data, count=1)


def _random_bytes(rng: random.Random, data: bytes) -> bytes:
    piece = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return _insert(data, rng.randrange(len(data) + 1), piece)


def _several(rng: random.Random, data: bytes) -> bytes:
    for mutate in rng.sample(_SIMPLE, rng.randint(2, 4)):
        data = mutate(rng, data) or b"#"
    return data


_SIMPLE: list[Callable[[random.Random, bytes], bytes]] = [
    _flip_bits,
    _truncate,
    _duplicate_line,
    _delete_line,
    _insert_nul,
    _insert_control,
    _escaped_control,
    _huge_number,
    _deep_nesting,
    _long_line,
    _bad_id,
    _random_bytes,
]
KINDS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    **{mutate.__name__.strip("_").replace("_", "-"): mutate for mutate in _SIMPLE},
    "several": _several,
    "several-more": _several,
    "bom-and-crlf": lambda rng, data: _several(rng, b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")),
}


def mutants() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    corpus = []
    for round_ in range(MUTANTS_PER_KIND):
        for kind, mutate in KINDS.items():
            corpus.append((kind, mutate(rng, _SAMPLE_BYTES[round_ % len(_SAMPLE_BYTES)])))
    return corpus


def _check_one(path: Path, raw: bytes) -> tuple[str, NotebookError | None, float]:
    """Loads one mutant; returns the outcome, the error if refused, and the seconds it took."""
    path.write_bytes(raw)
    before = hashlib.sha256(raw).hexdigest()
    started = time.perf_counter()
    try:
        notebook = load_notebook(path)
    except NotebookError as refusal:
        seconds = time.perf_counter() - started
        error = refusal  # the `as` name is gone after the except block
        assert error.line is not None and error.column is not None, f"no position: {error}"
        assert str(error).startswith(f"{path}:{error.line}:{error.column}: error: "), str(error)
        assert error.hint, str(error)
        outcome = "refused"
    else:
        seconds = time.perf_counter() - started
        error = None
        # What loads must save: the canonical text loads back to the same text.
        text = dumps_notebook(notebook)
        assert dumps_notebook(parse_notebook(text.encode(), path)) == text
        outcome = "loaded"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "the file was modified"
    return outcome, error, seconds


def _njtui_command() -> list[str]:
    script = Path(sys.executable).with_name("njtui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "njtui"]


def test_mutated_samples_load_or_are_refused_cleanly(tmp_path, record_property):
    corpus = mutants()
    assert len(corpus) >= 300
    outcomes: Counter[tuple[str, str]] = Counter()
    slowest = (0.0, "")
    results = []
    for index, (kind, raw) in enumerate(corpus):
        path = tmp_path / f"m{index:03d}-{kind}.toml"
        try:
            outcome, error, seconds = _check_one(path, raw)
        except AssertionError:
            raise
        except Exception as exc:  # anything but NotebookError is the bug this test is for
            raise AssertionError(f"mutant {index} ({kind}) raised {type(exc).__name__}: {exc!s:.300}; input starts {raw[:200]!r}") from exc
        outcomes[kind, outcome] += 1
        slowest = max(slowest, (seconds, f"{kind} #{index} ({len(raw):,} bytes)"))
        results.append((path, outcome, error))
    record_property("slowest_load_seconds", round(slowest[0], 4))
    print(f"\n{len(corpus)} mutants; slowest load {slowest[0] * 1000:.1f} ms: {slowest[1]}; outcomes {dict(outcomes)}")
    for kind in KINDS:
        assert outcomes[kind, "refused"] > 0, f"no {kind} mutant was refused: the mutation does not bite"
    assert sum(count for (_, outcome), count in outcomes.items() if outcome == "loaded") > 0

    # The same files through the real command line, a sample spread over every kind.
    sample = results[:: max(1, len(results) // CLI_SAMPLE)][:CLI_SAMPLE]
    command = _njtui_command()

    def show(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([*command, "show", str(path)], capture_output=True, text=True, timeout=120, env=os.environ.copy())

    with ThreadPoolExecutor(max_workers=4) as pool:
        shown = list(pool.map(show, [path for path, _, _ in sample]))
    for (path, outcome, error), result in zip(sample, shown, strict=True):
        assert "Traceback" not in result.stderr, result.stderr
        if outcome == "loaded":
            assert result.returncode == 0, result.stderr
        else:
            assert result.returncode == 2, result.stderr
            assert f"{path}:{error.line}:{error.column}: error: " in result.stderr, result.stderr


_TOKENS = [
    "njtui = 1\n",
    "title = ",
    '"t"',
    "\n",
    "[runtimes.py]\n",
    "[runtimes.",
    '"p\\u0000y"',
    "]\n",
    'language = "python"\n',
    'language = "bash"\n',
    "default = true\n",
    "cpus = ",
    "inf",
    "nan",
    "1e999",
    "2",
    "-1",
    'memory = "',
    "9" * 30,
    'TiB"',
    'idle_timeout = "',
    '200000d"',
    '20m"',
    "gpus = ",
    '["0"]',
    "[[cells]]\n",
    'id = "',
    "a1",
    "../x",
    '"\n',
    'kind = "code"\n',
    'kind = "markdown"\n',
    'source = """\n',
    'print(1)\n"""\n',
    'runtime = "py"\n',
    "[",
    "]",
    "{",
    "}",
    "=",
    ".",
    ",",
    '"',
    "'",
    "'''",
    '"""',
    "#",
    "\\",
    "\\u001b",
    "\r\n",
    "\t",
    " ",
    "x",
    "[[",
    "]]",
    "a.b.c",
    "{a = ",
    "1979-05-27 07:32:00",
    "env = { X = ",
    'mounts = [{ kind = "dir", source = "/tmp", at = "/d" }]\n',
    "\x00",
    "\ufeff",
    "\x1b",
    "\u0085",
]


@settings(max_examples=300, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.lists(st.sampled_from(_TOKENS), max_size=80).map("".join),
        st.text(max_size=200),
        st.binary(max_size=200),
    )
)
def test_any_text_loads_or_is_refused_cleanly(content):
    raw = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
    path = Path("made-up.toml")
    try:
        notebook = parse_notebook(raw, path)
    except NotebookError as error:
        assert error.line is not None and error.column is not None, str(error)
        assert error.hint
    else:
        text = dumps_notebook(notebook)
        assert dumps_notebook(parse_notebook(text.encode(), path)) == text
