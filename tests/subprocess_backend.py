"""A backend in one module, as docs/backends.md describes: each runtime is an njtui agent run as
a child process of this one, spoken to over its pipes. It lives only as long as this process
and keeps no journal of its own beyond the agent's, which is all the contract asks of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from njtui.runner import protocol
from njtui.runner.agents import AGENTS_DIR
from njtui.runner.backend import Backend, RuntimeInfo, staged_files
from njtui.runner.paths import runtime_key


class PipeConnection:
    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def send(self, request):
        if request.get("op") != "attach":  # one connection, from the start: nothing to replay
            self.process.stdin.write(protocol.encode(request))
            self.process.stdin.flush()

    def __iter__(self):
        yield from (protocol.decode(line) for line in self.process.stdout)
        code = self.process.wait()
        yield {"type": protocol.RUNTIME_EXIT, "reason": "stopped" if code == 0 else f"the agent exited with status {code}"}

    def close(self):
        pass  # the pipes are the runtime's: closing them would end it


class SubprocessBackend(Backend):
    name = "subprocess"

    def __init__(self) -> None:
        self.runtimes: dict[str, tuple[RuntimeInfo, subprocess.Popen]] = {}  # by instance

    def start(self, notebook_path, spec, launch, progress=None):
        home = tempfile.mkdtemp(prefix="njtui-subprocess-")
        agent = [sys.executable, str(AGENTS_DIR / "agent.py")] if spec.language == "python" else ["bash", str(AGENTS_DIR / "agent.sh")]
        argv = [*agent, "--journal", f"{home}/journal.jsonl", "--idle-timeout", str(spec.idle_timeout_seconds)]
        env = {**os.environ, **launch.env, "NJTUI_RESULTS": home + "/results"}
        os.mkdir(home + "/results")
        process = subprocess.Popen(argv, cwd=home, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        key = runtime_key(notebook_path, spec.id)
        info = RuntimeInfo(key, notebook_path, spec.id, self.name, spec.language, spec.environment, spec.idle_timeout_seconds, time.time(), pid=process.pid, instance=uuid.uuid4().hex, details={"home": home})
        self.runtimes[info.instance] = (info, process)
        return info

    def list(self):
        return [info for info, process in self.runtimes.values() if process.poll() is None]

    def find(self, notebook_path, runtime_id):
        return next((info for info in self.list() if info.key == runtime_key(notebook_path, runtime_id)), None)

    def connect(self, info):
        return PipeConnection(self.runtimes[info.instance][1])

    def stop(self, info, timeout=5.0):
        info, process = self.runtimes.get(info.instance, (info, None))
        if process is None:
            return  # gone already
        try:
            PipeConnection(process).send({"op": "shutdown"})
            process.wait(timeout)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            process.kill()

    def ended(self, notebook_path):
        return []  # its runtimes end with this process, and their clients with them

    def journal(self, info):
        with open(info.details["home"] + "/journal.jsonl", "rb") as lines:
            yield from (protocol.decode(line) for line in lines)

    def discard(self, info):
        shutil.rmtree(self.runtimes.pop(info.instance)[0].details["home"], ignore_errors=True)

    def collect_files(self, info, staged):
        for name, staged_name in staged_files(staged):
            yield name, open(f"{info.details['home']}/files/{staged_name}", "rb")
