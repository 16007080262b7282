"""Output played as a terminal shows it, and made safe to draw (njtui.model.terminal_text): the
line model, the escape grammar (also across chunk boundaries), the cell's tail built on it, the
Rich text drawn from it, and `njtui show` on a terminal and into a pipe."""

from __future__ import annotations

import io
import re
import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from njtui.commands.output import TextPrinter
from njtui.model.output import terminal_safe
from njtui.model.terminal_text import MAX_COLUMNS, OutputLines, TerminalText, expand_tabs, sanitize, strip_sgr, terminal_lines, truncate
from njtui.store.results import ResultsStore
from njtui.ui.cell_output import MAX_LINE_CHARS, TAIL_LINES, CellOutput
from njtui.ui.terminal_text import styled_line
from tests.conftest import njtui
from tests.helpers import make_notebook, output_on_a_terminal

SGR = re.compile(r"\x1b\[[0-9;]*m")
# Anything that could drive a terminal: C0 but tab, DEL, C1.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def played(*chunks: str) -> list[str]:
    """The lines a terminal shows for output written in these chunks (the last one too)."""
    terminal = TerminalText()
    lines = [line for chunk in chunks for line in terminal.feed(chunk)]
    last = terminal.end()
    return lines + ([last] if last is not None else [])


def assert_inert(line: str) -> None:
    """Only printable characters, tabs and complete colour sequences."""
    assert CONTROL.search(SGR.sub("", line)) is None, repr(line)


# -- carriage return, erasing, backspace


def test_tqdm_redraws_one_line():
    chunks = [f"\r{percent:3d}%|{'█' * (percent // 10):<10}| {percent}/100 [00:0{percent // 50}<00:01]" for percent in range(0, 101, 5)]
    assert played(*chunks, "\n", "done\n") == ["100%|██████████| 100/100 [00:02<00:01]", "done"]
    # All in one chunk, as a file read back gives it.
    assert played("".join(chunks) + "\n") == ["100%|██████████| 100/100 [00:02<00:01]"]


def test_a_shorter_redraw_leaves_the_old_tail_unless_it_erases():
    assert played("downloading 100%\rdone") == ["doneloading 100%"]
    assert played("downloading 100%\rdone\x1b[K") == ["done"]
    assert played("downloading 100%\rdone\x1b[0K\n") == ["done"]
    assert played("downloading 100%\x1b[2K\rdone\n") == ["done"]
    assert played("downloading 100%\r\x1b[2Kdone\n") == ["done"]
    # Erasing up to the cursor blanks what was before it.
    assert played("abcdef\x1b[3D\x1b[1Kx\n") == ["   xef"]


def test_pip_and_docker_style_progress():
    pip = "".join(f"\r   {'━' * n}{' ' * (40 - n)} {n / 4:.1f}/10.0 MB" for n in range(0, 41, 8))
    assert played(pip + "\n") == [f"   {'━' * 40} 10.0/10.0 MB"]
    # Docker redraws each layer's line by going up; going up is dropped, the erased lines stay one each.
    docker = "a1b2: Downloading 10%\n\x1b[1A\x1b[2K\ra1b2: Downloading 55%\n\x1b[1A\x1b[2K\ra1b2: Pull complete\n"
    assert played(docker) == ["a1b2: Downloading 10%", "a1b2: Downloading 55%", "a1b2: Pull complete"]
    # Column moves along the line are played (\x1b[1G is another carriage return).
    assert played("50%\x1b[1G75%\x1b[G100%\n") == ["100%"]
    assert played("ab\x1b[5Cc\n") == ["ab     c"]


def test_backspace_moves_back_and_tabs_stay():
    assert played("spinner -\b\\\b|\b/\n") == ["spinner /"]
    assert played("abc\b\b\n") == ["abc"]
    assert played("a\tb\n") == ["a\tb"]
    assert expand_tabs("a\tb\x1b[31m\tc\x1b[0m") == "a       b\x1b[31m       c\x1b[0m"


def test_newlines_across_chunks_and_the_open_line():
    terminal = TerminalText()
    assert terminal.feed("par") == [] and terminal.current() == "par" and terminal.has_open
    assert terminal.feed("tial\nnext") == ["partial"] and terminal.current() == "next"
    assert terminal.feed("\r") == [] and terminal.current() == "next", "the cursor moved; the text is still there"
    assert terminal.feed("\x1b[2K") == [] and terminal.current() == "" and not terminal.has_open
    assert terminal.close() is None, "a line that erased itself is no line"
    assert terminal.feed("   \r") == [] and terminal.close() is None, "nor is one of blanks"


def test_very_long_lines_wrap_instead_of_growing():
    terminal = TerminalText(max_columns=10)
    assert terminal.feed("x" * 25) == ["x" * 10, "x" * 10] and terminal.current() == "x" * 5
    assert TerminalText().feed("y" * (MAX_COLUMNS + 1) + "\n") == ["y" * MAX_COLUMNS, "y"]


# -- colours


def test_colours_are_kept_in_one_form():
    assert played("\x1b[31mred\x1b[0m plain\n") == ["\x1b[31mred\x1b[0m plain"]
    assert played("\x1b[1;38;5;196mbold\x1b[22mnot\x1b[m\n") == ["\x1b[1;38;5;196mbold\x1b[0;38;5;196mnot\x1b[0m"]
    assert played("\x1b[38:2::10:20:300mrgb\x1b[39m!\n") == ["\x1b[38;2;10;20;255mrgb\x1b[0m!"]
    assert played("\x1b[4:3mcurly\x1b[4:0m\n") == ["\x1b[4mcurly\x1b[0m"]
    # Sequences that change nothing vanish; a private one is not SGR at all.
    assert played("\x1b[0m\x1b[mplain\x1b[>4;2m\n") == ["plain"]


def test_a_colour_carries_over_lines_and_each_line_stands_alone():
    assert played("\x1b[32mgreen\nstill green\x1b[0m\nplain\n") == ["\x1b[32mgreen\x1b[0m", "\x1b[32mstill green\x1b[0m", "plain"]


def test_overwriting_keeps_the_colour_of_what_is_left():
    assert played("\x1b[31mREDRED\x1b[0m\rab\n") == ["ab\x1b[31mDRED\x1b[0m"]
    # tqdm in colour: the last redraw's colours.
    assert played("\r\x1b[33m 50%\x1b[0m", "\r\x1b[32m100%\x1b[0m\n") == ["\x1b[32m100%\x1b[0m"]


# -- what is dropped


def test_cursor_moves_titles_clipboard_and_bells_are_dropped():
    assert played("before\x1b[8A\x1b[41mINJECTED\x1b[0m\n") == ["before\x1b[41mINJECTED\x1b[0m"]
    assert played("\x1b]0;owned title\x07title gone\n") == ["title gone"]
    assert played("\x1b]52;c;ZGF0YQ==\x1b\\clipboard gone\x07\x08\n") == ["clipboard gone"]
    assert played("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\\n") == ["link"]
    assert played("\x1bPq#0;2;0;0;0#0!10~\x1b\\sixel gone\n") == ["sixel gone"]
    assert played("\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\strings gone\n") == ["strings gone"]
    assert played("\x1b[2J\x1b[H\x1b[?1049h\x1b[?25l\x1b[5;10r\x1b7\x1b8\x1bc\x1b(Bscreen kept\n") == ["screen kept"]
    assert played("bell\x07\x0e\x0f\x7f\x00end\n") == ["bellend"]


def test_c1_controls_are_dropped_with_their_sequences():
    assert played("a\x9b2Jb\x9d0;title\x07c\x90dcs\x9cd\x85e\n") == ["abcde"]


def test_an_unterminated_string_ends_at_the_newline():
    assert played("\x1b]0;never ends\nnext line\n") == ["", "next line"]


def test_sequences_cut_by_chunk_boundaries_do_not_leak():
    whole = "a\x1b[31mred\x1b[0m\x1b]0;title\x07\x1b[8Ab\x1b]52;c;eA==\x1b\\c\x1b(Bd\n"
    expected = ["a\x1b[31mred\x1b[0mbcd"]
    for cut in range(1, len(whole)):
        assert played(whole[:cut], whole[cut:]) == expected, cut
    assert played(*whole) == expected, "one character per chunk"


def test_a_sequence_left_unfinished_at_the_end_is_dropped():
    assert played("text\x1b[3") == ["text"]
    assert played("text\x1b") == ["text"]
    assert played("text\x1b]0;tit") == ["text"]


def test_absurdly_long_sequences_are_skipped_without_being_kept():
    terminal = TerminalText()
    assert terminal.feed("a\x1b[" + "1;" * 10_000) == []
    assert terminal.feed("1;" * 10_000 + "mb\n") == ["ab"]
    assert terminal.feed("\x1b]0;" + "t" * 100_000) == []
    assert terminal.feed("t" * 100_000 + "\x07c\n") == ["c"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("ab \t\n\r\b\x07\x1b[];:?0123456789mKGCDAHJP\\_^X\x9b\x9c\x9d\x90\x85\x18\x1a\x00\x7fé")), max_size=40), max_size=6))
def test_nothing_but_text_and_whole_colours_comes_out(chunks):
    terminal = TerminalText()
    lines = [line for chunk in chunks for line in terminal.feed(chunk)]
    lines.append(terminal.current())
    last = terminal.end()
    lines.append(last or "")
    for line in lines:
        assert_inert(line)
        assert "\n" not in line
        assert strip_sgr(line) == SGR.sub("", line)
        styled_line(line)  # Rich reads every line
    for keep, colours in (("\t", False), ("\t\n\r", True)):
        cleaned = sanitize("".join(chunks), keep=keep, colours=colours)
        assert CONTROL.search(SGR.sub("", cleaned).replace("\n", "").replace("\r", "")) is None, repr(cleaned)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \t\n\r\b\x07\x1b[];:?0123456789mKGCDAP\\_\x9b\x9c\x9d\x18é")), max_size=80), st.lists(st.integers(0, 80), max_size=5))
def test_where_chunks_are_cut_changes_nothing(text, cuts):
    points = sorted({0, len(text), *(cut for cut in cuts if cut <= len(text))})
    assert played(*(text[start:end] for start, end in zip(points, points[1:], strict=False))) == played(text)


def test_terminal_safe_is_built_on_the_same_grammar():
    assert terminal_safe("plain") == "plain"
    assert terminal_safe("a\x1b]0;x\x07b\tc\x9b2Jd", keep="") == "abcd"
    assert terminal_safe("\x1b[31mred\x1b[0m\x1b[8A\r\n", keep="\t\n\r", colours=True) == "\x1b[31mred\x1b[0m\r\n"
    assert terminal_safe("\x1b[31mred\x1b[0m") == "red"
    assert terminal_lines("one\ntwo\r2") == ["one", "2wo"]


# -- cutting lines, and Rich text


def test_truncate_never_cuts_a_colour_sequence():
    line = "ab\x1b[31mcdef\x1b[0mgh"
    for limit in range(0, 9):
        cut, more = truncate(line, limit)
        assert_inert(cut)
        assert strip_sgr(cut) == "abcdefgh"[:limit] and more == 8 - limit
        assert cut.count("\x1b[31m") == cut.count("\x1b[0m") or not cut.count("\x1b[31m")
    assert truncate("plain text", 5) == ("plain", 5)
    assert truncate("\x1b[31mshort\x1b[0m", 5) == ("\x1b[31mshort\x1b[0m", 0)


def test_styled_line_draws_colours_over_the_base_style():
    text = styled_line("a\x1b[31mred\x1b[0;1mbold\x1b[0m", "italic")
    assert text.plain == "aredbold" and str(text.style) == "italic"
    assert [(span.start, span.end, str(span.style)) for span in text.spans] == [(1, 4, "color(1)"), (4, 8, "bold")]
    plain = styled_line("no colours", "red")
    assert plain.plain == "no colours" and not plain.spans and str(plain.style) == "red"


# -- the cell's tail


def cell(*messages: dict) -> CellOutput:
    output = CellOutput()
    output.begin("e", None)
    for seq, message in enumerate(messages, start=1):
        output.apply({"seq": seq, **message})
    return output


def stream(text: str, name: str = "stdout") -> dict:
    return {"type": "stream", "name": name, "text": text}


def test_a_progress_bar_over_many_messages_is_one_line_in_the_cell():
    output = cell({"type": "start", "count": 1}, *(stream(f"\r{percent}%", "stderr") for percent in range(0, 101)))
    assert output.visible_lines() == [("stderr", "100%")] and output.open_line == ("stderr", "100%")
    assert output.total_lines == 0 and output.hidden == 0
    output.apply({"seq": 500, **stream("after\n")})
    assert output.visible_lines() == [("stderr", "100%"), ("stdout", "after")]
    output.apply({"seq": 501, "type": "done", "status": "ok"})
    assert output.visible_lines() == [("stderr", "100%"), ("stdout", "after")] and output.hidden == 0


def test_the_cell_keeps_sanitised_colour_lines():
    output = cell(stream("before\x1b[8A\x1b[41mINJECTED\x1b[0m\n\x1b]0;owned\x07title gone\n"), {"type": "result", "count": 1, "data": {"text/plain": "\x1b[32m6\x1b[0m"}})
    assert output.visible_lines() == [("stdout", "before\x1b[41mINJECTED\x1b[0m"), ("stdout", "title gone"), ("result", "Out[1]: \x1b[32m6\x1b[0m")]
    assert output.last_output_seq == 2


def test_long_lines_are_clipped_in_the_cell_outside_colour_sequences():
    long = "\x1b[31m" + "x" * (MAX_LINE_CHARS - 1) + "\x1b[32m" + "y" * 50 + "\x1b[0m"
    output = cell(stream(long + "\n"))
    ((kind, line),) = output.visible_lines()
    assert_inert(line.split("…")[0])
    assert strip_sgr(line) == "x" * (MAX_LINE_CHARS - 1) + "y… (49 more characters)"
    assert line.startswith("\x1b[31m") and "\x1b[0;32my\x1b[0m…" in line


def test_the_cell_keeps_only_its_tail():
    output = cell(stream("".join(f"line {i}\n" for i in range(1000))))
    assert len(output.visible_lines()) == TAIL_LINES and output.visible_lines()[-1] == ("stdout", "line 999")
    assert output.total_lines == 1000 and output.hidden == 1000 - TAIL_LINES


def test_file_names_are_one_inert_line():
    output = cell({"type": "files", "files": [{"name": "a\x1b]0;x\x07\nb.png", "size": 10, "type": "image/png"}]})
    assert output.visible_lines() == [("file", "ab.png  10 B  image/png")]


def test_output_lines_keep_kinds_apart():
    lines = OutputLines()
    assert lines.feed("stdout", "out, no newline") == []
    assert lines.feed("stderr", "err\n") == [("stdout", "out, no newline"), ("stderr", "err")]
    assert lines.feed_event({"type": "error", "ename": "ExitStatus", "evalue": "exit status 2"}) == [("error", "exit status 2")]


# -- `njtui show`


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def printed(out: io.StringIO, err: io.StringIO, *events: dict) -> tuple[str, str]:
    printer = TextPrinter(out, err, played=True)
    printer.start("c", "host · python", 1)
    for event in events:
        printer.event("c", event)
    printer.done("c", "ok", 1.0)
    return out.getvalue(), err.getvalue()


PROGRESS = [
    stream("\x1b[1mTraining\x1b[0m\x1b]0;owned\x07\x1b[8A\n"),
    *(stream(f"\r{percent}%", "stderr") for percent in (0, 50, 100)),
    stream("last line, no newline"),
]


def test_show_plays_stored_output_with_colours_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out, err = printed(Terminal(), Terminal(), *PROGRESS)
    assert out == "\x1b[1mTraining\x1b[0m\nlast line, no newline\n"
    assert "100%\n" in err and "50%" not in err
    monkeypatch.setenv("NO_COLOR", "1")
    out, _ = printed(Terminal(), Terminal(), *PROGRESS)
    assert out == "Training\nlast line, no newline\n"


def test_show_into_a_pipe_prints_plain_text():
    out, err = printed(io.StringIO(), io.StringIO(), *PROGRESS)
    assert out == "Training\nlast line, no newline\n" and "\x1b" not in out
    assert err.splitlines()[1] == "100%"


def stored_notebook(tmp_path):
    path = make_notebook(tmp_path, [("evil", "python", "print('x')\n")])
    store = ResultsStore(path)
    writer = store.begin("evil", "e1", "py", count=1, status="running", started_at=time.time())
    for seq, text in enumerate(["\x1b[31mred\x1b[0m\x1b[8A\x1b]0;owned\x07\x1b]52;c;eA==\x07done\n", "\r 10%", "\r 99%", "\r100%\n", "tab\there\n"], start=1):
        writer.add({"seq": seq, "exec": "e1", "type": "stream", "name": "stdout", "text": text})
    writer.finish(status="ok", ended_at=time.time(), duration=0.5)
    return path


def test_njtui_show_on_a_terminal_and_into_a_pipe(tmp_path):
    path = stored_notebook(tmp_path)
    piped = njtui("show", str(path))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "reddone\n100%\ntab\there\n"

    status, seen = output_on_a_terminal([sys.executable, "-m", "njtui", "show", str(path)])
    assert status == 0
    # The terminal's line discipline turns each \n into \r\n: those are the only \r left.
    assert b"\x1b[31mred\x1b[0mdone\r\n100%\r\ntab\there\r\n" in seen, seen
    assert b"\x1b[8A" not in seen and b"\x1b]" not in seen and b"owned" not in seen and b" 10%" not in seen, seen
