"""The full-output pager, driven with Pilot over a real results store: reading in batches, live
tail, search, wrap, sideways scrolling, and output played as a terminal shows it."""

from __future__ import annotations

import time

from textual.app import App

from njtui.store.results import ResultsStore
from njtui.ui.pager import PAGER_BATCH, PagerScreen, PagerView
from tests.helpers import screen_settled, wait_for

SIZE = (80, 24)


class PagerApp(App[None]):
    def __init__(self, screen: PagerScreen) -> None:
        super().__init__()
        self.pager = screen

    def on_mount(self) -> None:
        self.push_screen(self.pager)


def stored(tmp_path, texts: list[str], *, finished: bool = True, name: str = "stdout"):
    """A store holding one execution whose stream events are `texts`, in order."""
    store = ResultsStore(tmp_path / "nb.toml")
    writer = store.begin("c", "e1", "py", count=3, status="running", started_at=time.time())
    for seq, text in enumerate(texts, start=1):
        writer.add({"seq": seq, "exec": "e1", "type": "stream", "name": name, "text": text})
    if finished:
        writer.finish(status="ok", ended_at=time.time(), duration=1.0)
    else:
        writer.flush()
    return store, writer


def pager_for(store, *, live: bool = False, seen_seq: int = 0) -> PagerScreen:
    return PagerScreen(store, store.latest("c"), "Output of cell c · [3]", live=live, seen_seq=seen_seq)


async def loaded(pilot) -> PagerView:
    screen = pilot.app.screen
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PagerScreen) and not pilot.app.screen.reading and screen.view.size.height > 0, what="the pager to read the store")
    await pilot.pause()  # and to draw what it read
    return screen.view


def shown(view: PagerView) -> list[str]:
    return [line.plain for line in view.lines]


def screen_text(pilot) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())  # type: ignore[attr-defined]


def row(view: PagerView, y: int) -> str:
    return view.render_line(y).text


async def test_the_output_is_played_as_a_terminal_shows_it(tmp_path):
    store, _ = stored(
        tmp_path,
        [
            "before\x1b[8A\x1b[41mINJECTED\x1b[0m\n",
            "\x1b]0;owned title\x07title gone\n",
            "\x1b]52;c;ZGF0YQ==\x1b\\clipboard gone\x07\x08\n",
            "\r  0%",
            "\r 50%|#####     |",
            "\r100%|##########|\n",
            "tab\there\n",
            "\x1b[3",  # a colour cut in two by the chunk boundary
            "2mgreen\x1b[0m\n",
        ],
    )
    async with PagerApp(pager_for(store)).run_test(size=SIZE) as pilot:
        view = await loaded(pilot)
        assert shown(view) == ["beforeINJECTED", "title gone", "clipboard gone", "100%|##########|", "tab     here", "green"]
        assert view.lines[0].line == "before\x1b[41mINJECTED\x1b[0m"
        assert view.lines[5].line == "\x1b[32mgreen\x1b[0m"
        # The colour is a style on the screen, not characters.
        segments = list(view.render_line(0))
        assert "".join(segment.text for segment in segments).rstrip() == "beforeINJECTED"
        injected = next(segment for segment in segments if segment.text == "INJECTED")
        assert injected.style is not None and injected.style.bgcolor is not None and injected.style.bgcolor.number == 1
        assert pilot.app.screen.lines_read == 6
        assert "\x1b" not in screen_text(pilot)


async def test_200k_lines_open_without_freezing(tmp_path):
    lines_per_event = 100
    store, _ = stored(tmp_path, ["".join(f"line {i * lines_per_event + j}\n" for j in range(lines_per_event)) for i in range(2000)])
    app = PagerApp(pager_for(store))
    async with app.run_test(size=SIZE) as pilot:
        # Read in batches by a worker: lines show before the whole output is read.
        await wait_for(pilot, lambda: isinstance(app.screen, PagerScreen) and app.screen.lines_read >= PAGER_BATCH, what="the first batch")
        view = await loaded(pilot)
        assert len(view.lines) == 200_000 and view.lines[-1].plain == "line 199999"
        assert row(view, 0).startswith("line 0")
        # Drawing is per row on screen: going to the end of 200,000 lines is one screenful of work.
        started = time.monotonic()
        await pilot.press("G")
        await pilot.pause()
        assert time.monotonic() - started < 2.0
        assert row(view, view.scrollable_content_region.height - 1).startswith("line 199999")
        assert "200,000 lines" in str(app.screen.query_one("#pager-title").render())
        # A search starts from the top of the view.
        await pilot.press("/", *"line 1999", "enter")
        assert view.search_text == "line 1999" and len(view.matches) == 111
        assert view.matches[view.current_match][0] >= 200_000 - view.scrollable_content_region.height
        assert f"{view.current_match + 1}/111 matches" in str(app.screen.query_one("#pager-title").render())


async def test_live_tail_follows_at_the_bottom_and_ends_with_done(tmp_path):
    store, writer = stored(tmp_path, [f"stored {i}\n" for i in range(50)], finished=False)
    screen = pager_for(store, live=True)
    async with PagerApp(screen).run_test(size=SIZE) as pilot:
        view = await loaded(pilot)
        assert len(view.lines) == 50
        height = view.scrollable_content_region.height
        assert row(view, height - 1).startswith("stored 49"), "a live pager starts at the end"
        # Already stored (seq <= 50) is skipped; the rest follows.
        screen.feed({"seq": 50, "exec": "e1", "type": "stream", "name": "stdout", "text": "stored 49\n"})
        screen.feed({"seq": 51, "exec": "e1", "type": "stream", "name": "stdout", "text": "live 0\n"})
        await pilot.pause()
        assert shown(view)[-2:] == ["stored 49", "live 0"]
        assert row(view, height - 1).startswith("live 0")
        # A progress bar redrawn over several messages is one line showing its last state.
        for seq, percent in enumerate((10, 60, 100), start=52):
            screen.feed({"seq": seq, "exec": "e1", "type": "stream", "name": "stderr", "text": f"\r{percent:3d}%"})
            await pilot.pause()
            assert shown(view)[-1] == f"{percent:3d}%" and len(view.lines) == 52
        # Scrolled up, the view stays where the reader is.
        await pilot.press("g")
        screen.feed({"seq": 60, "exec": "e1", "type": "stream", "name": "stdout", "text": "live 1\n"})
        await pilot.pause()
        assert round(view.scroll_y) == 0 and shown(view)[-2:] == ["100%", "live 1"]
        title = pilot.app.screen.query_one("#pager-title")
        assert "running · live" in str(title.render())
        screen.feed({"seq": 61, "exec": "e1", "type": "done", "status": "error"})
        await pilot.pause()
        assert not screen.live and "error" in str(title.render()) and "live" not in str(title.render())
        screen.feed({"seq": 62, "exec": "e1", "type": "stream", "name": "stdout", "text": "after the end\n"})
        assert shown(view)[-1] == "live 1"


async def test_live_messages_fed_while_loading_wait_for_the_store(tmp_path):
    """The notebook showed seq 1-3 before the pager opened, but the recorder has written only
    seq 1: the pager reads the store again until it has them, then shows what was fed after."""
    store, writer = stored(tmp_path, ["one\n"], finished=False)
    screen = pager_for(store, live=True, seen_seq=3)
    async with PagerApp(screen).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: screen.is_mounted and screen.lines_read == 1, what="the first read")
        screen.feed({"seq": 4, "exec": "e1", "type": "stream", "name": "stdout", "text": "four\n"})
        assert screen.reading and shown(screen.view) == ["one"]
        writer.add({"seq": 2, "exec": "e1", "type": "stream", "name": "stdout", "text": "two\n"})
        writer.add({"seq": 3, "exec": "e1", "type": "stream", "name": "stdout", "text": "three\n"})
        writer.flush()
        view = await loaded(pilot)
        assert shown(view) == ["one", "two", "three", "four"]


async def test_a_live_pager_opened_after_the_end_says_so(tmp_path):
    store, writer = stored(tmp_path, ["done already\n"], finished=False)
    screen = PagerScreen(store, store.latest("c"), "Output of cell c · [3] running", live=True)
    writer.finish(status="ok", ended_at=time.time(), duration=1.0)  # and its `done` went by before the pager opened
    async with PagerApp(screen).run_test(size=SIZE) as pilot:
        await loaded(pilot)
        title = str(screen.query_one("#pager-title").render())
        assert not screen.live and "[3] · ok" in title and "running" not in title


async def test_search_next_previous_and_cancel(tmp_path):
    store, _ = stored(tmp_path, [f"row {i}{' needle' if i % 10 == 3 else ''}\n" for i in range(100)])
    async with PagerApp(pager_for(store)).run_test(size=SIZE) as pilot:
        view = await loaded(pilot)
        title = pilot.app.screen.query_one("#pager-title")
        await pilot.press("/", *"NEEDLE")
        assert view.search_text == "", "nothing is searched before Enter"
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, PagerScreen) and pilot.app.focused is view, "Esc cancels the search, not the pager"
        # n and N typed in the prompt are text, not keys.
        await pilot.press("/", *"needle", "enter")
        assert len(view.matches) == 10 and view.current_match == 0
        assert "/needle 1/10 matches" in str(title.render())
        await pilot.press("n", "n")
        assert view.current_match == 2 and view.matches[2][0] == 23
        await pilot.press("N")
        assert view.current_match == 1
        await pilot.press("N", "N")
        assert view.current_match == 9, "searching wraps around"
        assert "10/10" in str(title.render())
        # The current match is in view and drawn highlighted.
        line = view.matches[9][0]
        assert view.scroll_y <= line < view.scroll_y + view.scrollable_content_region.height
        strip = view.render_line(line - round(view.scroll_y))
        highlighted = [segment for segment in strip if segment.text == "needle"]
        assert highlighted and highlighted[0].style.bgcolor is not None
        # Smart case: a capital makes it exact.
        await pilot.press("/", *"Needle", "enter")
        assert view.matches == [] and "no match" in str(title.render())
        await pilot.press("q")
        assert not isinstance(pilot.app.screen, PagerScreen)


async def test_search_while_lines_come_in(tmp_path):
    store, _ = stored(tmp_path, ["a match\n", "no\n"], finished=False)
    screen = pager_for(store, live=True)
    async with PagerApp(screen).run_test(size=SIZE) as pilot:
        view = await loaded(pilot)
        await pilot.press("/", *"match", "enter")
        assert len(view.matches) == 1
        screen.feed({"seq": 3, "exec": "e1", "type": "stream", "name": "stdout", "text": "another match, and a mat"})
        screen.feed({"seq": 4, "exec": "e1", "type": "stream", "name": "stdout", "text": "ch\n"})
        await pilot.pause()
        assert [(line, start) for line, start, _ in view.matches] == [(0, 2), (2, 8), (2, 21)]


async def test_wrap_toggle_and_horizontal_scrolling(tmp_path):
    long = "".join(f"{i:04d}|" for i in range(60))  # 300 columns
    store, _ = stored(tmp_path, ["short\n", long + "\n", "\tend\n"])
    async with PagerApp(pager_for(store)).run_test(size=SIZE) as pilot:
        view = await loaded(pilot)
        width = view.scrollable_content_region.width
        assert row(view, 1) == long[:width]
        await pilot.press("right")
        assert view.scroll_x == width // 2 and row(view, 1) == long[width // 2 : width // 2 + width]
        await pilot.press("left")
        assert view.scroll_x == 0
        await pilot.press("end")
        assert view.scroll_x == 300 - width and row(view, 1).endswith("0059|")
        await pilot.press("home")
        assert view.scroll_x == 0
        await pilot.press("w")
        assert view.wrap and view.virtual_size.height == 1 + -(-300 // width) + 1
        assert row(view, 1) == long[:width] and row(view, 2) == long[width : 2 * width]
        assert row(view, 1 + -(-300 // width)).rstrip() == "        end"
        await pilot.press("right")
        assert view.scroll_x == 0, "wrapped lines do not scroll sideways"
        assert "wrapped" in str(pilot.app.screen.query_one("#pager-title").render())
        await pilot.press("w")
        assert not view.wrap and row(view, 1) == long[:width]


async def test_top_bottom_and_wrapped_search(tmp_path):
    store, _ = stored(tmp_path, [f"{i:03d} " + "x" * 200 + (" target" if i == 150 else "") + "\n" for i in range(200)])
    async with PagerApp(pager_for(store)).run_test(size=SIZE) as pilot:
        view = await loaded(pilot)
        await pilot.press("G")
        assert view.scroll_y == view.max_scroll_y > 0
        await pilot.press("ctrl+home")
        assert view.scroll_y == 0
        await pilot.press("ctrl+end")
        assert view.scroll_y == view.max_scroll_y
        await pilot.press("g", "/", *"target", "enter")
        # Scrolled down to the line and across to the match.
        _, start, _ = view.matches[0]
        assert view.scroll_y <= 150 < view.scroll_y + view.scrollable_content_region.height
        assert view.scroll_x <= start < view.scroll_x + view.scrollable_content_region.width
        await pilot.press("w")
        assert view.top_line() <= 150 and view.scroll_x == 0
        await pilot.press("n")
        target_row = view.row_of(150, start)
        assert view.scroll_y <= target_row < view.scroll_y + view.scrollable_content_region.height


async def test_closing_stops_reading(tmp_path):
    store, _ = stored(tmp_path, ["".join(f"{j}\n" for j in range(1000)) for _ in range(300)])
    app = PagerApp(pager_for(store))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PagerScreen) and app.screen.lines_read > 0, what="the first batch")
        screen = app.screen
        await pilot.press("escape")
        await wait_for(pilot, lambda: not any(worker.node is screen and worker.is_running for worker in app.workers), what="the reader to stop")
        assert not isinstance(app.screen, PagerScreen)


async def test_footer_shows_the_keys(tmp_path):
    store, _ = stored(tmp_path, ["x\n"])
    async with PagerApp(pager_for(store)).run_test(size=(120, 24)) as pilot:
        await screen_settled(pilot, PagerScreen)
        footer = screen_text(pilot).splitlines()[-1]
        for label in ("close", "search", "n/N", "wrap", "g/G", "Home/End", "←/→"):
            assert label in footer, footer
