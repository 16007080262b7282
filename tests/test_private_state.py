"""Runtime state that no other local user can read, plant or redirect, and secret files that do
not outlive their runtime (docs/security.md).

The squat tests run as two real users made for the test: an attacker who takes the names njtui
uses in the shared /tmp before the victim runs, and the victim, who runs the real `njtui`
command with no XDG_RUNTIME_DIR, so its runtimes live under /tmp/njtui-runtime-<uid>.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.runner.paths import runtime_key
from njtui.store import save_notebook
from njtui.store.results import ResultsStore
from njtui.store.secrets import SecretStore
from tests.conftest import PYTHON_IMAGE, REPO, njtui
from tests.helpers import make_notebook, own_runtimes

SECRET = "sq-" + hashlib.sha256(f"private-state-{os.getpid()}".encode()).hexdigest()[:24]
TARGET_TEXT = b"the victim's own file, which no runtime may write\n"
RUNTIME_IDS = {"python": "py", "bash": "sh"}
# Each cell proves the runtime has the secret as a file, and prints that file's path.
SECRET_FILE_CELLS = {
    "python": "import os\npath = os.path.join(os.environ['NJTUI_SECRETS_DIR'], 'TOKEN')\nprint(path if open(path).read() == os.environ['TOKEN'] else 'wrong secret file')\n",
    "bash": 'path=$NJTUI_SECRETS_DIR/TOKEN\nif [[ $(<"$path") == "$TOKEN" ]]; then echo "$path"; else echo "wrong secret file"; fi\n',
}


def secret_notebook(directory: Path, languages: tuple[str, ...] = ("python",), **settings) -> Path:
    """A notebook whose runtimes get the secret `token` as $TOKEN; one cell per runtime."""
    notebook = Notebook(title="private state")
    for language in languages:
        runtime_id = RUNTIME_IDS[language]
        notebook.runtimes[runtime_id] = RuntimeSpec(runtime_id, language, default=True, secrets={"TOKEN": "token"}, **settings)
        notebook.cells.append(Cell(id=f"{runtime_id}1", kind="code", language=language, source=SECRET_FILE_CELLS[language], runtime=runtime_id))
    path = directory / "nb.toml"
    save_notebook(notebook, path)
    return path


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def wait_for_relay_exit(runtime_dir: Path, timeout: float = 60) -> None:
    """Until the runtime's relay has exited: its lock on alive.lock goes only with its process."""
    fd = os.open(runtime_dir / "alive.lock", os.O_RDONLY)
    taken = threading.Event()

    def take() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        taken.set()

    threading.Thread(target=take, daemon=True).start()
    assert taken.wait(timeout), f"the relay of {runtime_dir} did not end within {timeout}s"
    os.close(fd)


def leftover_secrets(runtime_dir: Path) -> list[str]:
    secrets = runtime_dir / "secrets"
    return sorted(p.name for p in secrets.iterdir()) if secrets.exists() else []


# -- one user: directories and files that fail the check


@pytest.mark.parametrize("how", ["open to all", "another user's"])
def test_a_runtime_root_others_can_use_is_refused_and_left_as_it_is(tmp_path, monkeypatch, how):
    root = tmp_path / "rt"
    root.mkdir()
    if how == "open to all":
        root.chmod(0o777)
    else:
        root.chmod(0o700)
        os.chown(root, 65534, 65534)  # nobody: we run as root, so only the owner check can refuse it
    before = root.stat()
    monkeypatch.setenv("NJTUI_RUNTIME_DIR", str(root))
    path = make_notebook(tmp_path, [("c", "python", "print('ran')\n")])

    result = njtui("run", str(path))
    assert result.returncode == 1 and "ran" not in result.stdout
    assert "Traceback" not in result.stderr
    assert f"{root} is not private" in result.stderr, result.stderr
    assert ("mode is 0777" if how == "open to all" else "belongs to nobody (uid 65534)") in result.stderr
    assert "NJTUI_RUNTIME_DIR" in result.stderr  # what to do instead
    after = root.stat()
    assert (stat.S_IMODE(after.st_mode), after.st_uid) == (stat.S_IMODE(before.st_mode), before.st_uid), "never chmod-ed or chown-ed"
    assert list(root.iterdir()) == [], "nothing was put in it"

    listed = njtui("runtimes")
    assert "Traceback" not in listed.stderr and f"host runtimes not listed: {root} is not private" in listed.stderr


def plant_link(tmp_path, runtime_root, name, **settings) -> tuple:
    """A notebook whose runtime directory already holds a symlink named `name` to a file of the
    victim's: (notebook, runtime dir, the link's target, the target's snapshot)."""
    path = make_notebook(tmp_path, [("c", "python", "print('ran')\n")], **settings)
    runtime_dir = runtime_root / runtime_key(path, "py")
    runtime_dir.mkdir(mode=0o700)
    target = tmp_path / "target"
    target.write_bytes(TARGET_TEXT)
    (runtime_dir / name).symlink_to(target)
    return path, runtime_dir, target, snapshot(target)


PLANTED_NAMES = ["alive.lock", "relay.log", "agent.log", "info.json", "relay.json", "exit.json"]


@pytest.mark.parametrize("name", PLANTED_NAMES)
def test_a_runtime_dir_njtui_did_not_make_is_never_used_nor_its_links_followed(tmp_path, isolated_env, name):
    path, runtime_dir, target, before = plant_link(tmp_path, isolated_env, name)
    result = njtui("run", str(path))
    assert result.returncode == 0 and result.stdout == "ran\n", result.stderr
    assert snapshot(target) == before, "nothing was written through the link"
    made = runtime_dir.lstat()
    assert stat.S_ISDIR(made.st_mode) and stat.S_IMODE(made.st_mode) == 0o700
    assert not (runtime_dir / name).is_symlink(), "made afresh: what was planted is gone"


def relay_dir(tmp_path: Path, made_here: bool = True) -> Path:
    """A runtime directory as njtui makes one (0700, its info.json naming it), for the relay."""
    directory = tmp_path / "rt"
    directory.mkdir(mode=0o700)
    info = directory.stat()
    dir_id = f"{info.st_dev}:{info.st_ino}" if made_here else f"{info.st_dev}:{info.st_ino + 1}"
    (directory / "info.json").write_text(json.dumps({"dir_id": dir_id}))
    return directory


def relay_answer(directory: Path) -> str:
    """What the relay (njtui.runner.hostd) answers on its ready pipe when started on `directory`."""
    read_fd, write_fd = os.pipe()
    agent = [sys.executable, "-c", 'import sys; print(\'{"seq":1,"type":"hello"}\', flush=True); sys.stdin.read()']
    relay = subprocess.Popen(
        [sys.executable, "-m", "njtui.runner.hostd", "--dir", str(directory), "--socket", str(directory / "sock"), "--ready-fd", str(write_fd), "--", *agent],
        pass_fds=(write_fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        answer = ready.readline().strip()
    if answer == "ok":
        os.killpg(relay.pid, signal.SIGKILL)  # its agent reads the end of its input, and ends
    relay.wait(timeout=60)
    return answer


@pytest.mark.parametrize("name", ["alive.lock", "agent.log"])
def test_the_relay_refuses_a_symlink_planted_as_a_file_it_opens(tmp_path, name):
    # The second line: a runtime directory njtui made holds only what njtui and its agents put
    # there, but the relay still opens its files without following links.
    directory = relay_dir(tmp_path)
    target = tmp_path / "target"
    target.write_bytes(TARGET_TEXT)
    (directory / name).symlink_to(target)
    answer = relay_answer(directory)
    assert answer == f"error {directory / name} is not private: it is a symbolic link; remove it (rm {directory / name})", answer
    assert target.read_bytes() == TARGET_TEXT


def test_the_relay_refuses_a_runtime_dir_that_is_not_the_one_njtui_made(tmp_path):
    directory = relay_dir(tmp_path, made_here=False)
    answer = relay_answer(directory)
    assert answer.startswith(f"error {directory} is not private: it is not the directory njtui made for this runtime"), answer
    assert sorted(p.name for p in directory.iterdir()) == ["info.json"], "nothing made in it"


def test_a_runtime_dir_re_created_by_something_else_is_never_taken_for_a_runtime(tmp_path, isolated_env):
    # What an agent's `mkdir -p` (or a cell) leaves when it re-creates a runtime directory that
    # njtui removed: private as njtui makes it, holding what looks like a runtime's files.
    path = make_notebook(tmp_path, [("c", "python", "print('first-output')\n")])
    key = runtime_key(path, "py")
    runtime_dir = isolated_env / key
    assert njtui("run", str(path)).stdout == "first-output\n"
    info, journal = (runtime_dir / "info.json").read_bytes(), (runtime_dir / "journal.jsonl").read_bytes()
    (row,) = own_runtimes(path)
    assert njtui("runtimes", "stop", row["id"]).returncode == 0
    wait_for_relay_exit(runtime_dir)
    exec_id = ResultsStore(path).latest("c").exec_id
    shutil.rmtree(runtime_dir)

    runtime_dir.mkdir(mode=0o700)
    # What an earlier njtui wrote there, less the name of the directory it was written in.
    (runtime_dir / "info.json").write_text(json.dumps({k: v for k, v in json.loads(info).items() if k != "dir_id"}))
    (runtime_dir / "journal.jsonl").write_bytes(journal.replace(exec_id.encode(), b"planted-exec").replace(b"first-output", b"planted-output"))
    lock = os.open(runtime_dir / "alive.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held, as a live relay holds it
    try:
        assert own_runtimes(path) == [], "not listed as a runtime"
    finally:
        os.close(lock)

    result = njtui("run", str(path))
    assert result.returncode == 0 and result.stdout == "first-output\n", result.stderr
    store = ResultsStore(path)
    assert [store.load("c", version).exec_id for version in store.versions("c")] == [exec_id, store.latest("c").exec_id]
    assert "planted-exec" not in {store.load("c", version).exec_id for version in store.versions("c")}, "its journal was not recorded"
    assert json.loads((runtime_dir / "info.json").read_text())["dir_id"] == f"{runtime_dir.stat().st_dev}:{runtime_dir.stat().st_ino}"


def test_a_runtime_dir_that_is_a_symlink_is_refused(tmp_path, isolated_env):
    path = make_notebook(tmp_path, [("c", "python", "print('ran')\n")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    runtime_dir = isolated_env / runtime_key(path, "py")
    runtime_dir.symlink_to(elsewhere)

    result = njtui("run", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{runtime_dir} is not private: it is a symbolic link to {elsewhere}" in result.stderr, result.stderr
    assert list(elsewhere.iterdir()) == []


def test_directories_made_on_the_way_to_another_are_private(tmp_path, monkeypatch, request):
    # mkdir -p (os.makedirs, Path.mkdir(parents=True)) would make these with the umask's mode.
    previous = os.umask(0o022)
    request.addfinalizer(lambda: os.umask(previous))
    root = tmp_path / "made" / "on-the-way" / "rt"
    monkeypatch.setenv("NJTUI_RUNTIME_DIR", str(root))
    config = tmp_path / "config-above" / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    path = make_notebook(tmp_path, [("c", "python", "print('ran')\n")])
    result = njtui("run", str(path))
    assert result.returncode == 0 and result.stdout == "ran\n", result.stderr
    SecretStore().set("token", SECRET)
    extracted = tmp_path / "out-above" / "out"
    assert njtui("results", str(path), "c", "--extract", str(extracted)).returncode == 0
    modes = {str(d.relative_to(tmp_path)): stat.S_IMODE(d.stat().st_mode) for d in (root.parent.parent, root.parent, root, config.parent, config, config / "njtui", extracted.parent)}
    assert modes == dict.fromkeys(modes, 0o700), modes
    assert stat.S_IMODE(extracted.stat().st_mode) == 0o755, "what was asked for gets the umask's mode: it is meant to be shared"


# -- the secret store


def test_the_secret_store_directory_is_made_private_and_refused_when_others_can_write_it():
    store = SecretStore()
    store.set("token", SECRET)
    directory = store.path.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and stat.S_IMODE(store.path.stat().st_mode) == 0o600

    directory.chmod(0o777)
    result = njtui("secrets", "ls")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "other users can write the secret store's directory (mode 0777)" in result.stderr and f"chmod 700 {directory}" in result.stderr
    assert njtui("secrets", "set", "other", input="x\n").returncode == 2 and store.path.read_text().count("=") == 1

    # Shared with config.toml and themes, which an older njtui made 0755: read, not write, is fine.
    directory.chmod(0o755)
    assert njtui("secrets", "ls").stdout.split() == ["token"]


def test_a_secret_store_of_another_user_is_refused():
    store = SecretStore()
    store.set("token", SECRET)
    os.chown(store.path, 65534, 65534)  # nobody's, 0600: as root we could read it, but must not use it
    result = njtui("secrets", "ls")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "your secret store belongs to uid 65534" in result.stderr


# -- secret files end with their runtime

ENDINGS = [("python", "stop"), ("python", "idle timeout"), ("python", "agent killed"), ("bash", "stop"), ("bash", "idle timeout")]


@pytest.mark.parametrize(("language", "ending"), ENDINGS, ids=[f"{language}-{ending}" for language, ending in ENDINGS])
def test_secret_files_are_removed_when_the_runtime_ends(tmp_path, isolated_env, language, ending):
    SecretStore().set("token", SECRET)
    settings = {"idle_timeout": "3s"} if ending == "idle timeout" else {}
    path = secret_notebook(tmp_path, (language,), **settings)
    runtime_dir = isolated_env / runtime_key(path, RUNTIME_IDS[language])

    result = njtui("run", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{runtime_dir / 'secrets' / 'TOKEN'}\n"  # the runtime had it as a file
    assert stat.S_IMODE((runtime_dir / "secrets").lstat().st_mode) == 0o700

    if ending == "stop":
        # This test's runtime only, by its ID: `stop --all` would stop every njtui runtime on
        # the machine, other programs' Docker ones included.
        (row,) = own_runtimes(path)
        assert row["id"] == runtime_dir.name
        stopped = njtui("runtimes", "stop", row["id"])
        assert stopped.returncode == 0, stopped.stderr
    elif ending == "agent killed":
        os.kill(json.loads((runtime_dir / "relay.json").read_text())["agent_pid"], signal.SIGKILL)
    wait_for_relay_exit(runtime_dir)
    assert leftover_secrets(runtime_dir) == [], "gone as the runtime ended, not at the next njtui command"


@pytest.mark.docker
def test_docker_secrets_are_on_a_tmpfs_that_ends_with_the_container(docker_engine, tmp_path):
    SecretStore().set("token", SECRET)
    notebook = Notebook(title="docker secrets")
    notebook.runtimes["py"] = RuntimeSpec("py", "python", environment=PYTHON_IMAGE, default=True, secrets={"TOKEN": "token"}, idle_timeout="2s")
    source = "import os\nassert open('/run/secrets/TOKEN').read() == os.environ['TOKEN']\nprint([line.split()[2] for line in open('/proc/mounts') if line.split()[1] == '/run/secrets'])\n"
    notebook.cells.append(Cell(id="use", kind="code", language="python", source=source, runtime="py"))
    path = tmp_path / "nb.toml"
    save_notebook(notebook, path)

    result = njtui("run", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['tmpfs']\n"  # memory only, never the container's writable layer
    (container,) = docker_engine.containers.list(all=True, filters={"label": f"org.njtui.key={runtime_key(path, 'py')}"})
    container.wait(timeout=120)  # the idle timeout stops it; it stays until its journal is recorded
    archive, _ = container.get_archive("/run/secrets")
    content = b"".join(archive)
    assert SECRET.encode() not in content and b"TOKEN" not in content, "the stopped container keeps no secret file"


# -- two real users: an attacker takes the victim's names in /tmp first


@dataclass
class User:
    name: str
    uid: int
    home: Path


def _as(user: User, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """`argv` as `user`, in a clean environment: no XDG_RUNTIME_DIR, nothing of ours."""
    variables = {"HOME": str(user.home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **(env or {})}
    return ["runuser", "-u", user.name, "--", "env", "-i", *(f"{k}={v}" for k, v in variables.items()), *argv]


def _run_as(user: User, argv: list[str], *, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(_as(user, argv, env), cwd=user.home, capture_output=True, text=True, input=input, timeout=timeout)


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                owner = entry.stat().st_uid
            except FileNotFoundError:
                continue
            if owner == uid:
                pids.append(int(entry.name))
    return pids


def _end_processes_of(uid: int) -> None:
    """Every process the test started as this (fresh) user, each by its pid, waited for."""
    for _ in range(5):  # a process may fork while we go
        pids = _processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                handle = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                select.select([handle], [], [], 10)
            except ProcessLookupError:
                pass
            finally:
                os.close(handle)


def _tmp_dirs_of(uid: int) -> list[Path]:
    return [Path(f"/tmp/njtui-runtime-{uid}"), Path(f"/tmp/njtui-{uid}")]


@pytest.fixture
def users():
    """make(role) creates a fresh user; all are removed (their processes, their /tmp names,
    their accounts) at the end, failed or not."""
    made: list[User] = []

    def remove(user: User) -> None:
        _end_processes_of(user.uid)
        for directory in _tmp_dirs_of(user.uid):
            if directory.is_symlink() or directory.is_file():
                directory.unlink()
            else:
                shutil.rmtree(directory, ignore_errors=True)
        subprocess.run(["userdel", "--remove", user.name], check=False, capture_output=True)

    def make(role: str) -> User:
        name = f"njtsquat{os.getpid()}{role[0]}"
        try:
            leftover = pwd.getpwnam(name)  # of a killed test session that had our pid
        except KeyError:
            pass
        else:
            remove(User(name, leftover.pw_uid, Path(leftover.pw_dir)))
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
        user = User(name, entry.pw_uid, Path(entry.pw_dir))
        made.append(user)
        user.home.chmod(0o700)
        for stale in _tmp_dirs_of(user.uid):
            # The uid is new, so these can only be left by a deleted account that had it.
            if stale.is_symlink() or stale.is_file():
                stale.unlink()
            elif stale.exists():
                shutil.rmtree(stale)
        return user

    yield make
    for user in made:
        remove(user)


def _victim_njtui(victim: User) -> tuple[list[str], dict[str, str]]:
    """How the victim runs this checkout's njtui: the venv's interpreter if the victim may run
    it, else the same Python version from PATH with this checkout and the venv's packages (a
    venv made from a Python under a private home, such as /root/.pyenv, is ours alone)."""
    if _run_as(victim, [sys.executable, "-c", "import njtui"]).returncode == 0:
        return [sys.executable, "-m", "njtui"], {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    interpreter = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    env = {"PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}"}
    probe = _run_as(victim, [interpreter or version, "-c", "import njtui.cli, njtui.runner.runner"], env=env)
    if interpreter is None or probe.returncode != 0:
        pytest.fail(f"user {victim.name} can run neither {sys.executable} nor a {version} on PATH with this checkout ({probe.stderr.strip()[-300:]}); the squat test needs this checkout readable by other users")
    return [interpreter, "-m", "njtui"], env


class Victim:
    def __init__(self, user: User) -> None:
        self.user = user
        self.command, self.env = _victim_njtui(user)
        self.work = user.home / "work"
        self.work.mkdir(mode=0o700)
        self.notebook = secret_notebook(self.work, ("python", "bash"))
        self.targets = {name: user.home / f"precious-{name}" for name in ("alive", "info", "relay-log", "agent-log", "cell")}
        for target in self.targets.values():
            target.write_bytes(TARGET_TEXT)
            target.chmod(0o600)
        subprocess.run(["chown", "-R", f"{user.name}:", str(user.home)], check=True)
        self.before = {name: snapshot(target) for name, target in self.targets.items()}
        stored = self.njtui("secrets", "set", "token", input=SECRET + "\n")
        assert stored.returncode == 0, stored.stderr

    def njtui(self, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        return _run_as(self.user, [*self.command, *args], env={**self.env, **(env or {})}, input=input)

    def keys(self) -> list[str]:
        return [runtime_key(self.notebook, runtime_id) for runtime_id in ("py", "sh")]

    def changed_targets(self) -> list[str]:
        return [name for name, target in self.targets.items() if snapshot(target) != self.before[name]]


# The attacker's side, run as the attacker: the directory the victim's njtui will want, open to
# all, holding runtime directories with links named like the runtime's files (to the victim's
# files) and a world-writable file where the agent will write the secret.
PLANT = r"""
import json, os, sys
plan = json.loads(sys.argv[1])
os.umask(0)
os.mkdir(plan["root"], 0o777)
for key in plan["keys"]:
    runtime = os.path.join(plan["root"], key)
    os.mkdir(runtime, 0o777)
    for name, target in plan["links"].items():
        os.symlink(target, os.path.join(runtime, name))
    # The Bash agent writes each cell to cell-<its pid>.sh beside its journal, then sources it.
    for pid in range(*plan["cell_pids"]):
        os.symlink(plan["cell_target"], os.path.join(runtime, f"cell-{pid}.sh"))
    if plan["loot"]:
        os.mkdir(os.path.join(runtime, "secrets"), 0o777)
        os.close(os.open(os.path.join(runtime, "secrets", "TOKEN"), os.O_CREAT | os.O_WRONLY, 0o666))
if plan["fifo"]:
    os.mkfifo(plan["fifo"], 0o666)
os.chmod(plan["root"], plan["mode"])
"""

# The attacker serving a cell file: it reads what the victim's agent writes there, and gives
# back its own script when the agent sources the file.
FEED = r"""
import sys
fifo, payload = sys.argv[1], sys.argv[2].encode()
while True:
    with open(fifo, "rb") as cell:
        cell.read()
    with open(fifo, "wb") as script:
        script.write(payload)
"""

# What the attacker can get at afterwards: every file under the given directories it can list
# and read, and whether it can connect to a socket there.
PROBE = r"""
import json, os, socket, stat, sys
found = {"listed": [], "read": {}, "connected": []}
for top in sys.argv[1:]:
    for directory, dirs, files in os.walk(top):
        found["listed"].append(directory)
        for name in files:
            path = os.path.join(directory, name)
            try:
                mode = os.stat(path).st_mode
                if stat.S_ISREG(mode):
                    with open(path, "rb") as handle:
                        found["read"][path] = handle.read(1 << 20).decode("utf-8", "replace")
                elif stat.S_ISSOCK(mode):
                    with socket.socket(socket.AF_UNIX) as sock:
                        sock.connect(path)
                    found["connected"].append(path)
            except OSError:
                pass
print(json.dumps(found))
"""


def _attacker_sees(attacker: User, interpreter: str, *tops: Path) -> dict:
    script = attacker.home / "probe.py"
    script.write_text(PROBE)
    seen = _run_as(attacker, [interpreter, str(script), *map(str, tops)])
    assert seen.returncode == 0, seen.stderr
    return json.loads(seen.stdout)


def _pid_range(count: int) -> tuple[int, int]:
    """The next `count` pids, where the victim's Bash agent will be (within a pid_max wrap)."""
    last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    return last + 1, min(last + 1 + count, pid_max)


# "closed": the attacker's root is 0700, so the victim may not even look inside it.
SQUATS = ["root open to all", "root of the attacker", "root of the attacker, closed", "cell file fed by the attacker", "socket dir open to all"]


@pytest.mark.parametrize("squat", SQUATS)
def test_a_victim_refuses_runtime_directories_an_attacker_made_first(users, squat):
    attacker, victim = users("attacker"), Victim(users("victim"))
    interpreter = victim.command[0]
    root = Path(f"/tmp/njtui-runtime-{victim.user.uid}")
    short = Path(f"/tmp/njtui-{victim.user.uid}")
    env = {}
    plan = {"root": str(root), "mode": 0o777, "keys": victim.keys(), "links": {}, "cell_pids": (0, 0), "cell_target": "", "loot": False, "fifo": None}
    attacked = root
    if squat.startswith("socket dir"):
        # Runtime dirs too deep for a socket path: the victim's sockets would go to /tmp/njtui-<uid>.
        env["NJTUI_RUNTIME_DIR"] = str(victim.user.home / ("d" * 100))
        attacked = short
        plan.update(root=str(short), keys=[])
    elif squat.startswith("cell file"):
        plan.update(cell_pids=_pid_range(3000), cell_target=str(root / "cell.fifo"), fifo=str(root / "cell.fifo"))
    else:
        links = {"alive.lock": victim.targets["alive"], "info.json": victim.targets["info"], "relay.log": victim.targets["relay-log"], "agent.log": victim.targets["agent-log"]}
        plan.update(
            mode={"root open to all": 0o777, "root of the attacker": 0o755}.get(squat, 0o700),
            links={name: str(target) for name, target in links.items()},
            cell_pids=_pid_range(3000),
            cell_target=str(victim.targets["cell"]),
            loot=True,
        )
    script = attacker.home / "plant.py"
    script.write_text(PLANT)
    planted = _run_as(attacker, [interpreter, str(script), json.dumps(plan)])
    assert planted.returncode == 0, planted.stderr
    feeder = None
    if plan["fifo"]:
        # The attacker's script, run by the victim's Bash runtime as a cell: it hands over the secret.
        payload = f"printf '%s' \"$TOKEN\" > {root}/stolen\n"
        (attacker.home / "feed.py").write_text(FEED)
        feeder = subprocess.Popen(_as(attacker, [interpreter, str(attacker.home / "feed.py"), plan["fifo"], payload]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        result = victim.njtui("run", str(victim.notebook), env=env)
    finally:
        if feeder is not None:
            _end_processes_of(attacker.uid)  # its feeder waits on the FIFO for a victim that never came
            feeder.wait(timeout=30)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert f"{attacked} is not private: it belongs to {attacker.name} (uid {attacker.uid})" in result.stderr, result.stderr
    assert "XDG_RUNTIME_DIR" in result.stderr, "says what to do"
    assert victim.changed_targets() == [], "nothing written through the attacker's links"
    # The victim made nothing in the attacker's directory: no file there is the victim's.
    for directory, dirs, files in os.walk(attacked):
        for name in [*dirs, *files]:
            assert os.lstat(os.path.join(directory, name)).st_uid == attacker.uid, f"{name} in {directory} was made by the victim"
    seen = _attacker_sees(attacker, interpreter, attacked, attacker.home)
    assert not [path for path, text in seen["read"].items() if SECRET in text], "the attacker read the secret"
    assert seen["connected"] == []
    if attacked == root:
        # Listing and stopping runtimes say the same, and fail, whatever the squat's mode.
        for command in (["runtimes"], ["runtimes", "--json"], ["runtimes", "stop", "--all"], ["runtimes", "stop", victim.keys()[0]]):
            answer = victim.njtui(*command)
            assert "Traceback" not in answer.stderr, (command, answer.stderr)
            assert f"host runtimes not listed: {root} is not private: it belongs to {attacker.name} (uid {attacker.uid})" in answer.stderr, (command, answer.stderr)
            assert answer.returncode == 1, (command, answer.returncode, answer.stderr)


def test_without_a_squat_the_victim_makes_private_directories_the_attacker_cannot_enter(users):
    attacker, victim = users("attacker"), Victim(users("victim"))
    root = Path(f"/tmp/njtui-runtime-{victim.user.uid}")

    result = victim.njtui("run", str(victim.notebook))
    assert result.returncode == 0, result.stderr
    runtime_dirs = [root / key for key in victim.keys()]
    assert result.stdout.splitlines() == [str(d / "secrets" / "TOKEN") for d in runtime_dirs]  # both runtimes have the secret file
    for directory in [root, *runtime_dirs, *(d / name for d in runtime_dirs for name in ("secrets", "results"))]:
        info = directory.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == victim.user.uid and stat.S_IMODE(info.st_mode) == 0o700, directory

    seen = _attacker_sees(attacker, victim.command[0], root)
    assert seen == {"listed": [], "read": {}, "connected": []}, "the attacker gets nothing below the root"
    for argv in (["ls", str(root)], ["cat", str(runtime_dirs[0] / "secrets" / "TOKEN")]):
        denied = _run_as(attacker, argv)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, argv

    # `stop --all` is allowed here: the victim stopping everything it runs is the behaviour
    # under test (its secret files go with its runtimes). It reaches no one else's runtimes:
    # the victim is a fresh user outside the docker group, so the machine's Docker engine is
    # closed to it, and its host runtimes are its own, under /tmp/njtui-runtime-<its uid>.
    stopped = victim.njtui("runtimes", "stop", "--all")
    assert stopped.returncode == 0, stopped.stderr
    assert [leftover_secrets(d) for d in runtime_dirs] == [[], []]
    assert victim.changed_targets() == []
