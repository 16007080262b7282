"""The Jupyter bridge speaking the protocol on its stdio, with real kernels (python3, bash), as
the relay and Docker drive it. One bridge per kernel serves the tests that leave it as they
found it; the ones that end it (or need its environment) start their own."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from njtui.runner import protocol
from njtui.runner.agents import AGENTS_DIR, JUPYTER_BRIDGE
from tests.helpers import AgentProcess, wait_until

KERNELS = ("python3", "bash")
# Starting a kernel takes seconds on a busy machine: the first message of a cell waits for it.
KERNEL_START = 90.0
# A 1×1 PNG.
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


class Bridge(AgentProcess):
    def __init__(self, workdir: Path, kernel: str, idle_timeout: float = 600, await_secrets: bool = False, python_flags: tuple[str, ...] = (), **env: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.journal = workdir / "journal.jsonl"
        self.results = workdir / "results"
        self.results.mkdir(exist_ok=True)
        argv = [sys.executable, *python_flags, str(AGENTS_DIR / JUPYTER_BRIDGE), "--journal", str(self.journal), "--kernel", kernel, "--idle-timeout", str(idle_timeout)]
        if await_secrets:
            argv.append("--await-secrets")
        # IPython's history and profile stay in the test's directory.
        environment = {**os.environ, "NJTUI_RESULTS": str(self.results), "IPYTHONDIR": str(workdir / "ipython"), **env}
        self.log = workdir / "bridge.log"  # the bridge's stderr: its kernel's log
        with open(self.log, "wb") as log:
            super().__init__(argv, start_new_session=True, cwd=str(workdir), env=environment, stderr=log)
        self.kernel = kernel
        self.hello = self.next()

    def send(self, **request) -> None:  # type: ignore[override]
        super().send(request)

    def next(self, timeout: float = KERNEL_START) -> dict:
        return super().next(timeout)

    def run(self, code: str, exec_id: str = "x", cell: str = "c1") -> list[dict]:
        self.send(op="execute", exec=exec_id, code=code, meta={"cell": cell})
        return self.until_done(exec_id)

    def until(self, predicate) -> list[dict]:
        """Every message up to and including the first that `predicate` holds for."""
        messages = []
        while True:
            message = self.next()
            messages.append(message)
            if predicate(message):
                return messages

    def until_done(self, exec_id: str) -> list[dict]:
        return self.until(lambda message: message["type"] == "done" and message["exec"] == exec_id)

    def until_exit(self) -> list[dict]:
        return self.until(lambda message: message["type"] == "exit")

    def complete(self, code: str, request_id: str = "q") -> dict:
        self.send(**protocol.complete_request(request_id, code, len(code)))
        return self.until(lambda message: "seq" not in message and message.get("id") == request_id)[-1]

    def numbered(self) -> bytes:
        """What it wrote that is the runtime's record (answers to one client are not)."""
        return b"".join(line + b"\n" for line in self.raw.splitlines() if line.startswith(b'{"seq":'))


CODE = {
    "python3": {
        "set": "x = 40",
        "get": "x + 2",
        "order": "import sys\nprint('one', flush=True)\nprint('two', file=sys.stderr, flush=True)\nprint('three', flush=True)",
        "many": "for i in range(300):\n    print(i)",
        "fail": "def boom():\n    raise ValueError('bad value')\n\nboom()",
        "sleep": "import time\nprint('go', flush=True)\ntime.sleep(30)\nprint('after')",
        "quick_sleep": "import time\ntime.sleep(30)\nprint('after')",
        "never": "print('never')",
        "write_result": "import os\nos.makedirs(os.environ['NJTUI_RESULTS'] + '/plots', exist_ok=True)\nopen(os.environ['NJTUI_RESULTS'] + '/plots/a.png', 'wb').write(b'png bytes')",
        "result_name": "plots/a.png",
        "pid": "import os\nprint(os.getpid())",
        "secret": "import os\nprint(len(os.environ['NJT_TOKEN']), os.environ['NJT_TOKEN'] == 's3cr3t-' + 'value')",
        "defined": "njtui_value = 1",
        "complete": ("njtui_va", "njtui_value"),
        "stubborn": "import time\nprint('go', flush=True)\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass",
    },
    "bash": {
        "set": "X=40",
        "get": "echo $((X + 2))",
        "order": "echo one\necho two >&2\necho three",
        "many": "for i in $(seq 0 299); do echo $i; done",
        "fail": "ls /no/such/place",
        "sleep": "echo go\nsleep 30\necho after",
        "quick_sleep": "sleep 30\necho after",
        "never": "echo never",
        "write_result": 'echo hi > "$NJTUI_RESULTS/b.txt"',
        "result_name": "b.txt",
        # The kernel is bash's parent (bash_kernel drives it through a terminal).
        "pid": "echo $PPID",
        "secret": "echo ${#NJT_TOKEN} $([[ $NJT_TOKEN == s3cr3t-value ]] && echo True)",
        "defined": "njtui_value=1",
        "complete": ("ech", "echo"),
        "stubborn": "trap '' INT\necho go\nsleep 30",
    },
}


def _shared_bridge(tmp_path_factory, kernel: str):
    running = Bridge(tmp_path_factory.mktemp(f"bridge-{kernel}"), kernel)
    yield running
    running.close()


@pytest.fixture(scope="module")
def python_bridge(tmp_path_factory):
    yield from _shared_bridge(tmp_path_factory, "python3")


@pytest.fixture(scope="module")
def bash_bridge(tmp_path_factory):
    yield from _shared_bridge(tmp_path_factory, "bash")


@pytest.fixture(params=KERNELS)
def bridge(request) -> Bridge:
    """One bridge per kernel, shared: each test leaves it idle, with the state it needs."""
    return request.getfixturevalue("python_bridge" if request.param == "python3" else "bash_bridge")


@pytest.fixture(params=KERNELS)
def kernel(request) -> str:
    return request.param


def streams(messages: list[dict]) -> list[tuple[str, str]]:
    return [(message["name"], message["text"]) for message in messages if message["type"] == "stream"]


def text_of(messages: list[dict], name: str | None = None) -> str:
    return "".join(text for stream, text in streams(messages) if name is None or stream == name)


def of_type(messages: list[dict], type_: str) -> list[dict]:
    return [message for message in messages if message["type"] == type_]


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie has ended too: only its parent has not collected it yet.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def kernel_pid(bridge: Bridge) -> int:
    return int(text_of(bridge.run(CODE[bridge.kernel]["pid"], "pid")).split()[-1])


# -- the shared bridges


def test_hello(bridge):
    hello = bridge.hello
    assert (hello["seq"], hello["exec"], hello["type"]) == (1, None, "hello")
    assert hello["agent"] == "jupyter" and hello["protocol"] == 1 and hello["kernel"] == bridge.kernel
    assert hello["language"] == {"python3": "python", "bash": "bash"}[bridge.kernel]
    assert hello["pid"] == bridge.proc.pid and hello["idle_timeout"] == 600
    assert isinstance(hello["instance"], str) and hello["instance"]


def test_state_persists_and_counts_are_the_kernels(bridge):
    first = bridge.run(CODE[bridge.kernel]["set"], "set")
    assert [message["type"] for message in first] == ["queued", "start", "done"]
    assert first[-1]["status"] == "ok" and first[-1]["files"] == [] and first[-1]["duration"] >= 0
    messages = bridge.run(CODE[bridge.kernel]["get"], "get")
    start, done = of_type(messages, "start")[0], messages[-1]
    assert done["status"] == "ok" and done["count"] == start["count"] == first[-1]["count"] + 1
    assert start["meta"] == {"cell": "c1"}
    if bridge.kernel == "python3":
        (result,) = of_type(messages, "result")
        assert result["data"] == {"text/plain": "42"} and result["count"] == done["count"] and result["metadata"] == {}
    else:
        assert text_of(messages) == "42\n"


def test_streams_keep_their_order_and_come_before_done(bridge):
    messages = bridge.run(CODE[bridge.kernel]["order"], "order")
    lines = [(name, line) for name, text in streams(messages) for line in text.splitlines()]
    if bridge.kernel == "python3":
        assert lines == [("stdout", "one"), ("stderr", "two"), ("stdout", "three")]
    else:  # bash_kernel runs bash on a terminal: both streams arrive as one
        assert [line for _, line in lines] == ["one", "two", "three"]
    # Everything a cell printed is the cell's, before its done.
    messages = bridge.run(CODE[bridge.kernel]["many"], "many")
    assert text_of(messages).split() == [str(number) for number in range(300)]
    assert messages[-1]["type"] == "done" and all(message["exec"] == "many" for message in messages)


def test_errors_keep_the_kernels_traceback(bridge):
    messages = bridge.run(CODE[bridge.kernel]["fail"], "fail")
    (error,) = of_type(messages, "error")
    assert messages[-1]["status"] == "error"
    if bridge.kernel == "python3":
        assert error["ename"] == "ValueError" and error["evalue"] == "bad value"
        # The kernel's lines joined, colours kept.
        assert "\x1b[" in error["traceback"] and "boom()" in error["traceback"] and "\n" in error["traceback"]
        assert "ValueError" in error["traceback"] and "bad value" in error["traceback"]
    else:  # bash_kernel reports a command's failure by its exit status
        assert error["evalue"] == "2" and "No such file or directory" in text_of(messages)


def test_interrupt_stops_the_cell_and_keeps_the_kernel(bridge):
    bridge.run(CODE[bridge.kernel]["set"], "keep")
    bridge.send(op="execute", exec="long", code=CODE[bridge.kernel]["sleep"], meta={})
    bridge.until(lambda message: message["type"] == "stream")  # it runs
    interrupted = time.monotonic()
    bridge.send(op="interrupt")
    messages = bridge.until_done("long")
    assert time.monotonic() - interrupted < 10
    assert messages[-1]["status"] == "interrupted" and "after" not in text_of(messages)
    if bridge.kernel == "python3":
        assert of_type(messages, "error")[0]["ename"] == "KeyboardInterrupt"
    # An interrupt sent as the cell starts, before the kernel has begun it, is not lost.
    bridge.send(op="execute", exec="early", code=CODE[bridge.kernel]["quick_sleep"], meta={})
    bridge.until(lambda message: message["type"] == "start")
    bridge.send(op="interrupt")
    messages = bridge.until_done("early")
    assert messages[-1]["status"] == "interrupted" and "after" not in text_of(messages)
    # The kernel and its state are still there.
    messages = bridge.run(CODE[bridge.kernel]["get"], "after")
    assert messages[-1]["status"] == "ok" and "42" in json.dumps(messages)


def test_a_second_interrupt_reaches_a_cell_that_caught_the_first(python_bridge):
    code = "import time\ntry:\n    print('go', flush=True)\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print('caught', flush=True)\ntime.sleep(30)\nprint('after')"
    python_bridge.send(op="execute", exec="twice", code=code, meta={})
    python_bridge.until(lambda message: message["type"] == "stream" and "go" in message["text"])
    python_bridge.send(op="interrupt")
    python_bridge.until(lambda message: message["type"] == "stream" and "caught" in message["text"])
    python_bridge.send(op="interrupt")
    messages = python_bridge.until_done("twice")
    assert messages[-1]["status"] == "interrupted" and "after" not in text_of(messages)


def test_interrupt_drops_queued_cells(bridge):
    bridge.send(op="execute", exec="a", code=CODE[bridge.kernel]["sleep"], meta={})
    bridge.until(lambda message: message["type"] == "stream" and message["exec"] == "a")
    bridge.send(op="execute", exec="b", code=CODE[bridge.kernel]["never"], meta={})
    queued = bridge.until(lambda message: message["type"] == "queued" and message["exec"] == "b")
    assert queued[-1]["position"] == 1
    bridge.send(op="interrupt")
    messages = bridge.until_done("b")
    done = [(message["exec"], message["status"]) for message in of_type(messages, "done")]
    assert done == [("a", "interrupted"), ("b", "interrupted")], messages
    assert "never" not in text_of(messages)
    assert bridge.run(CODE[bridge.kernel]["never"], "c")[-1]["status"] == "ok"  # later cells run


def test_status(bridge):
    bridge.send(op="status")
    status = bridge.next()
    assert status["type"] == "status" and status["state"] == "idle" and status["running"] is None and status["queued"] == 0
    assert status["count"] >= 1 and status["idle_for"] >= 0
    bridge.send(op="execute", exec="busy", code=CODE[bridge.kernel]["sleep"], meta={})
    bridge.until(lambda message: message["type"] == "stream" and message["exec"] == "busy")
    bridge.send(op="status")
    status = bridge.until(lambda message: message["type"] == "status")[-1]
    assert status["state"] == "busy" and status["running"] == "busy" and status["exec"] == "busy"
    bridge.send(op="interrupt")
    bridge.until_done("busy")


def test_completion_is_the_kernels(bridge):
    bridge.run(CODE[bridge.kernel]["defined"], "defined")
    word, expected = CODE[bridge.kernel]["complete"]
    # A kernel's first completion can take longer than the bridge waits (IPython loads jedi):
    # that one answers with no matches, and the next ones with the kernel's.
    for attempt in range(10):
        answer = bridge.complete(word, f"q{attempt}")
        if answer["matches"]:
            break
    assert expected in answer["matches"] and (answer["start"], answer["end"]) == (0, len(word))
    assert answer["type"] == protocol.COMPLETION and "seq" not in answer and "exec" not in answer
    # A kernel busy with a cell does not answer: the bridge says "no matches" after a while.
    bridge.send(op="execute", exec="busy", code=CODE[bridge.kernel]["sleep"], meta={})
    bridge.until(lambda message: message["type"] == "stream" and message["exec"] == "busy")
    asked = time.monotonic()
    answer = bridge.complete(word, "busy")
    assert answer["matches"] == [] and answer["start"] == answer["end"] == len(word)
    assert time.monotonic() - asked < 10
    bridge.send(op="interrupt")
    bridge.until_done("busy")


def test_results_are_staged_before_done_and_released(bridge):
    bridge.run(CODE[bridge.kernel]["never"], "warm")  # the next cell's snapshot is taken with the kernel up
    done = bridge.run(CODE[bridge.kernel]["write_result"], "r1")[-1]
    assert done["files"] == [{"name": CODE[bridge.kernel]["result_name"], "staged": "r1.0"}]
    staged = bridge.journal.parent / "files" / "r1.0"
    assert staged.read_bytes() == (b"png bytes" if bridge.kernel == "python3" else b"hi\n")
    # An unchanged file is not staged again.
    assert bridge.run(CODE[bridge.kernel]["never"], "r2")[-1]["files"] == []
    bridge.send(op="release", exec="r1")
    wait_until(lambda: not staged.exists(), what="the released copy to go")


def test_output_after_its_cell_is_the_runtimes(python_bridge):
    code = "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.3), print('late', flush=True))).start()"
    assert python_bridge.run(code, "early")[-1]["status"] == "ok"
    late = python_bridge.until(lambda message: message["type"] == "stream")[-1]
    assert late["text"] == "late\n" and late["exec"] is None


def test_the_journal_holds_every_message(bridge):
    """A client attaching late is replayed the journal file: it holds everything, in order."""
    bridge.run(CODE[bridge.kernel]["get"], "j")
    bridge.send(op="status")
    bridge.until(lambda message: message["type"] == "status")
    numbered = bridge.numbered()
    journal = bridge.journal.read_bytes()
    assert journal.startswith(numbered)  # written to the journal before stdout
    seqs = [json.loads(line)["seq"] for line in journal.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))


# -- rich outputs


def test_rich_outputs_from_ipython(python_bridge):
    code = (
        "import base64\n"
        "from IPython.display import display, Markdown, Image, SVG, update_display, clear_output\n"
        f"png = base64.b64decode('{TINY_PNG}')\n"
        "display(Markdown('# Title'), display_id='md')\n"
        "display(Image(data=png, width=32))\n"
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>\'))\n'
        "update_display(Markdown('# Changed'), display_id='md')\n"
        "print('gone soon', flush=True)\n"
        "clear_output(wait=True)\n"
        "{'answer': 42}\n"
    )
    messages = python_bridge.run(code, "rich")
    outputs = [message for message in messages if message["type"] not in ("queued", "start", "done")]
    assert [message["type"] for message in outputs] == ["display", "display", "display", "update_display", "stream", "clear_output", "result"]
    markdown, image, svg, update, _, clear, result = outputs
    assert markdown["data"]["text/markdown"] == "# Title" and markdown["display_id"] == "md" and "text/plain" in markdown["data"]
    assert image["data"]["image/png"] == TINY_PNG and image["metadata"] == {"image/png": {"width": 32}} and image["display_id"] is None
    assert svg["data"]["image/svg+xml"].startswith("<svg")
    assert update["data"]["text/markdown"] == "# Changed" and update["display_id"] == "md"
    assert clear["wait"] is True
    assert result["data"]["text/plain"] == "{'answer': 42}" and result["count"] == messages[-1]["count"]
    assert all(message["exec"] == "rich" for message in messages)


def test_rich_outputs_from_bash(bash_bridge):
    code = f'echo "<b>x</b>" | displayHTML rich1\necho "<b>y</b>" | displayHTML rich1\nprintf %s {TINY_PNG} | base64 -d | display'
    messages = bash_bridge.run(code, "rich")
    display, update, image = (message for message in messages if message["type"] in ("display", "update_display"))
    assert (display["type"], display["data"], display["display_id"]) == ("display", {"text/html": "<b>x</b>\n"}, "rich1")
    assert (update["type"], update["data"], update["display_id"]) == ("update_display", {"text/html": "<b>y</b>\n"}, "rich1")
    assert image["data"] == {"image/png": TINY_PNG} and base64.b64decode(image["data"]["image/png"]).startswith(b"\x89PNG")


# -- endings


def test_idle_timeout_stops_the_kernel_and_takes_no_cpu(tmp_path, kernel):
    bridge = Bridge(tmp_path, kernel, idle_timeout=3)
    try:
        pid = kernel_pid(bridge)
        ended_at = time.monotonic()

        def cpu_seconds() -> float:
            fields = Path(f"/proc/{bridge.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu_seconds()
        time.sleep(1.0)  # the span measured, not a wait for something to happen (a zombie's times stay readable)
        assert cpu_seconds() - before < 0.05
        farewell = bridge.until_exit()[-1]
        assert farewell["reason"] == "idle" and "error" not in farewell
        assert time.monotonic() - ended_at >= 2.5
        assert bridge.proc.wait(timeout=10) == 0
        wait_until(lambda: process_gone(pid), timeout=10, what="the kernel to end")
    finally:
        bridge.close()


def test_shutdown_interrupts_the_cell_and_ends_fast(tmp_path, kernel):
    bridge = Bridge(tmp_path, kernel)
    try:
        pid = kernel_pid(bridge)
        bridge.send(op="execute", exec="long", code=CODE[kernel]["sleep"], meta={})
        bridge.until(lambda message: message["type"] == "stream" and message["exec"] == "long")
        asked = time.monotonic()
        bridge.send(op="shutdown")
        bridge.proc.stdin.close()  # a client that asks, then hangs up: the reason stays "shutdown"
        messages = bridge.until_exit()
        done = of_type(messages, "done")[0]
        assert done["status"] == "interrupted" and done["reason"] == protocol.STOPPED_MID_CELL
        assert messages[-1]["reason"] == "shutdown" and messages[-1]["type"] == "exit"
        assert bridge.proc.wait(timeout=10) == 0
        assert time.monotonic() - asked < 6
        wait_until(lambda: process_gone(pid), timeout=10, what="the kernel to end")
        assert bridge.journal.read_bytes() == bridge.numbered()
    finally:
        bridge.close()


def test_a_cell_that_ignores_the_interrupt_is_abandoned(tmp_path, kernel):
    bridge = Bridge(tmp_path, kernel)
    try:
        pid = kernel_pid(bridge)
        bridge.send(op="execute", exec="stubborn", code=CODE[kernel]["stubborn"], meta={})
        bridge.until(lambda message: message["type"] == "stream" and message["exec"] == "stubborn")
        asked = time.monotonic()
        bridge.send(op="shutdown")
        messages = bridge.until_exit()
        done = of_type(messages, "done")[0]
        assert (done["exec"], done["status"], done["reason"]) == ("stubborn", "interrupted", protocol.STOPPED_MID_CELL)
        assert bridge.proc.wait(timeout=10) == 0
        assert time.monotonic() - asked < 8
        wait_until(lambda: process_gone(pid), timeout=10, what="the kernel to be killed")
    finally:
        bridge.close()


def test_stdin_closed_ends_the_bridge(tmp_path):
    """The same ending as shutdown's (which runs for both kernels), for its own reason."""
    kernel = "python3"
    bridge = Bridge(tmp_path, kernel)
    try:
        bridge.send(op="execute", exec="long", code=CODE[kernel]["sleep"], meta={})
        bridge.until(lambda message: message["type"] == "stream" and message["exec"] == "long")
        bridge.proc.stdin.close()
        messages = bridge.until_exit()
        assert of_type(messages, "done")[0]["reason"] == "the runtime's connection closed"
        assert messages[-1]["reason"] == "stdin closed"
        assert bridge.proc.wait(timeout=10) == 0
    finally:
        bridge.close()


def test_kernel_death_ends_the_bridge_with_an_error(tmp_path, kernel):
    bridge = Bridge(tmp_path, kernel)
    try:
        if kernel == "python3":
            bridge.send(op="execute", exec="die", code="import os\nos._exit(1)", meta={})
            how = "exit code 1"
        else:
            pid = kernel_pid(bridge)
            bridge.send(op="execute", exec="die", code=CODE[kernel]["sleep"], meta={})
            bridge.until(lambda message: message["type"] == "stream" and message["exec"] == "die")
            os.kill(pid, signal.SIGKILL)
            how = "killed by SIGKILL"
        messages = bridge.until_exit()
        done = of_type(messages, "done")[-1]
        assert (done["exec"], done["status"], done["reason"]) == ("die", "error", f"the kernel died ({how})")
        farewell = messages[-1]
        assert farewell["error"] is True and farewell["reason"] == f"the Jupyter kernel {kernel} died ({how})"
        assert bridge.proc.wait(timeout=10) == 1
    finally:
        bridge.close()


def test_a_missing_kernelspec_says_how_to_get_it(tmp_path):
    bridge = Bridge(tmp_path, "no-such-kernel")
    try:
        assert bridge.hello["type"] == "hello" and bridge.hello["kernel"] == "no-such-kernel" and bridge.hello["language"] is None
        farewell = bridge.next()
        assert farewell["type"] == "exit" and farewell["error"] is True and farewell["seq"] == 2
        reason = farewell["reason"]
        assert reason.startswith("no Jupyter kernel 'no-such-kernel' here (installed: ") and "bash" in reason and "python3" in reason
        assert "install the kernel in this environment" in reason and "pip install ipykernel" in reason
        assert bridge.proc.wait(timeout=10) == 1
    finally:
        bridge.close()


def test_without_jupyter_client_the_bridge_says_so(tmp_path):
    # -S: without site-packages, as an image whose python3 has no jupyter_client.
    bridge = Bridge(tmp_path, "python3", python_flags=("-S",))
    try:
        assert bridge.hello["agent"] == "jupyter" and bridge.hello["language"] is None
        farewell = bridge.next()
        assert farewell == {**farewell, "type": "exit", "error": True, "reason": "jupyter_client is not installed in this environment (pip install jupyter_client)"}
        assert bridge.proc.wait(timeout=10) == 1
    finally:
        bridge.close()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["/no/such/kernel-program", "-f", "{connection_file}"], "No such file or directory"),
        ([sys.executable, "-c", "import sys; sys.exit(3)", "{connection_file}"], "(exit code 3)"),
    ],
    ids=["cannot-run", "exits-at-once"],
)
def test_a_kernel_that_does_not_start_ends_the_bridge(tmp_path, argv, said):
    spec = tmp_path / "jupyter" / "kernels" / "broken"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Broken", "language": "broken"}))
    bridge = Bridge(tmp_path / "bridge", "broken", JUPYTER_PATH=str(tmp_path / "jupyter"))
    try:
        # The bridge says hello once the kernel is ready, or once it failed to be: then at once
        # its exit, before any request could be queued.
        assert bridge.hello["language"] == "broken"
        messages = bridge.until_exit()
        assert not of_type(messages, "done")
        farewell = messages[-1]
        assert farewell["error"] is True and farewell["reason"].startswith("the Jupyter kernel broken could not start: ") and said in farewell["reason"]
        assert bridge.proc.wait(timeout=10) == 1
    finally:
        bridge.close()


def test_sigterm_stops_the_bridge_as_shutdown_does(tmp_path):
    """What `docker stop` sends the container's main process."""
    bridge = Bridge(tmp_path, "python3")
    try:
        pid = kernel_pid(bridge)
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.until_exit()[-1]["reason"] == "shutdown"
        assert bridge.proc.wait(timeout=10) == 0
        wait_until(lambda: process_gone(pid), timeout=10, what="the kernel to end")
    finally:
        bridge.close()


def test_secrets_reach_the_kernel_and_nothing_else(tmp_path, kernel):
    bridge = Bridge(tmp_path, kernel, await_secrets=True)
    try:
        # Sent before the secrets: it waits for the kernel, which waits for them.
        bridge.send(op="execute", exec="s", code=CODE[kernel]["secret"], meta={})
        bridge.send(op="secrets", env={"NJT_TOKEN": "s3cr3t-value"})
        messages = bridge.until_done("s")
        assert text_of(messages).split() == ["12", "True"]
        bridge.send(op="shutdown")
        bridge.until_exit()
        assert bridge.proc.wait(timeout=10) == 0
        assert b"s3cr3t" not in bridge.journal.read_bytes() and b"s3cr3t" not in bridge.raw
        assert b"s3cr3t" not in (tmp_path / "bridge.log").read_bytes()
    finally:
        bridge.close()
