"""Environments against the real engine, through the `njtui env` command line: save a runtime's
file system as a version, see what changed (packages too), restart from it, reset to it,
export and import by digest, chains of imports, versions listed and removed, and nothing that
is not the runtime's own file system in a saved image.

The runtimes install a Debian package from a local .deb (dpkg) and a wheel with pip (the host
Python's bundled pip, run from its zip): both through a read-only `dir` mount at /pkgs, so
nothing comes from the network (tests.env_fixtures makes them)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tomllib
import uuid
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.model.settings import Mount
from njtui.runner.docker_environments import image_exists
from njtui.runner.paths import notebook_identity
from njtui.store import save_notebook
from njtui.store.secrets import SecretStore
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE, njtui
from tests.env_fixtures import DEB_NAME, DEB_VERSION, WHEEL_NAME, packages_directory, pip_install, saved_contents, wheel_file
from tests.helpers import listed_images, own_runtimes, stop_own_runtimes

pytestmark = pytest.mark.docker

DPKG_INSTALL = f"dpkg -i /pkgs/{DEB_NAME}.deb >/dev/null && {DEB_NAME}"
SHOW_DEMO = f"python3 -c 'import {WHEEL_NAME}; print(\"{WHEEL_NAME}\", {WHEEL_NAME}.VERSION)'"


# -- set-up


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> Path:
    """/pkgs: the .deb, demo 1.0 and 2.0 wheels, pip."""
    return packages_directory(tmp_path_factory.mktemp("pkgs"))


@pytest.fixture
def environments(docker_engine, tmp_path):
    """Afterwards: this test's runtimes stopped, then every image saved from (or pulled for) a
    notebook under tmp_path removed, whatever the test left: saved versions, registry tags,
    images pulled by digest. Only the test's own: the engine is shared."""
    yield docker_engine
    stop_own_runtimes(tmp_path)
    remove_saved_images(docker_engine, tmp_path)


def remove_saved_images(client, under: Path) -> None:
    prefix = str(under.resolve()) + os.sep

    def ours() -> list:
        images = listed_images(client, all=True, filters={"label": "org.njtui.env.notebook"})
        return [image for image in images if ((image["Labels"] or {}).get("org.njtui.env.notebook") or "").startswith(prefix)]

    for _ in range(5):  # a version saved from another is its child: newest first, then again
        left = sorted(ours(), key=lambda image: image["Created"], reverse=True)
        if not left:
            return
        for image in left:
            for tag in image["RepoTags"] or []:
                subprocess.run(["docker", "rmi", "--force", tag], capture_output=True)
            subprocess.run(["docker", "rmi", "--force", image["Id"]], capture_output=True)
    assert not ours(), f"saved images left behind: {[image['RepoTags'] or image['Id'] for image in ours()]}"


def notebook_file(path: Path, runtimes: list[RuntimeSpec], cells: list[tuple[str, str, str]], **settings) -> Path:
    """cells: (id, runtime id, source)."""
    by_id = {spec.id: spec for spec in runtimes}
    notebook = Notebook(title=path.stem, runtimes=by_id, **settings)
    notebook.cells = [Cell(cell_id, "code", source, by_id[runtime].language, runtime=runtime) for cell_id, runtime, source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_notebook(notebook, path)
    return path


def unique(name: str) -> str:
    """A notebook stem no other notebook on this engine has: saved versions are tagged
    njtui-env/<stem>-<runtime>:<n>, and n counts on from the tags already there (a notebook of
    the same name elsewhere, another test run), so a test that expects v1 needs a stem of its own."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def pkgs_mount(packages: Path) -> list[Mount]:
    return [Mount("dir", str(packages), "/pkgs", read_only=True)]


def run_cell(path: Path, cell: str) -> str:
    """Runs one cell; what it printed (stdout), or its result for a Python cell."""
    result = njtui("run", str(path), "--cell", cell, "--json")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0, f"cell {cell}: {result.stdout}{result.stderr}"
    printed = "".join(event["text"] for event in events if event["event"] == "stream" and event.get("name") == "stdout")
    results = [event["data"]["text/plain"] for event in events if event["event"] == "result"]
    return printed + "".join(results)


def env(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    result = njtui("env", *[str(arg) for arg in args])
    assert result.returncode == expect, f"njtui env {' '.join(map(str, args))}: exit {result.returncode}, expected {expect}\n{result.stdout}{result.stderr}"
    return result


def diff(path: Path, runtime: str) -> dict:
    return json.loads(env("diff", path, runtime, "--json").stdout)


def packages_of(changes: dict) -> set[tuple[str, str, str | None, str | None]]:
    return {(package["manager"], package["name"], package["before"], package["after"]) for package in changes["packages"]}


def paths_of(changes: dict) -> dict[str, str]:
    return {change["path"]: change["change"] for change in changes["paths"]}


def restart(path: Path, runtime: str) -> None:
    """`njtui runtimes stop ID` of this one runtime: its next cell boots it again."""
    rows = [row for row in own_runtimes(path) if row["runtime"] == runtime]
    assert len(rows) == 1, rows
    stopped = njtui("runtimes", "stop", rows[0]["id"])
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def runtime_table(path: Path, runtime: str) -> dict:
    return tomllib.loads(path.read_text())["runtimes"][runtime]


# -- 1. save → diff → restart → more changes → reset


def test_save_diff_restart_reset(environments, packages, tmp_path):
    stem = unique("work")
    path = notebook_file(
        tmp_path / f"{stem}.toml",
        [RuntimeSpec("sh", "bash", environment=PYTHON_IMAGE, mounts=pkgs_mount(packages))],
        [
            ("install", "sh", f"{DPKG_INSTALL}\n{pip_install(wheel_file('1.0'))}\n{SHOW_DEMO}\necho kept > /root/kept.txt\n"),
            ("check", "sh", f"{DEB_NAME}\n{SHOW_DEMO}\ncat /root/kept.txt\nls /root\n"),
            ("more", "sh", f"echo transient > /root/transient.txt\n{pip_install(wheel_file('2.0'))}\n{SHOW_DEMO}\n"),
        ],
    )
    assert run_cell(path, "install") == "demo tool 1.0\ndemo 1.0\n"

    changes = diff(path, "sh")
    assert set(changes) >= {"paths", "packages"}
    assert all(set(change) >= {"path", "change"} and change["change"] in ("A", "C", "D") for change in changes["paths"])
    assert all(set(package) >= {"manager", "name", "before", "after"} for package in changes["packages"])
    assert packages_of(changes) == {("dpkg", DEB_NAME, None, DEB_VERSION), ("python", WHEEL_NAME, None, "1.0")}
    assert paths_of(changes)["/root/kept.txt"] == "A" and paths_of(changes)[f"/usr/local/bin/{DEB_NAME}"] == "A"
    assert not any(p.startswith(("/opt/njtui", "/results", "/pkgs", "/run/secrets")) for p in paths_of(changes)), "njtui's own mounts are not changes"
    text = env("diff", path, "sh").stdout
    assert f"dpkg    {DEB_NAME}  (new) → {DEB_VERSION}" in text and "transient" in text

    saved = env("save", path, "sh", "-m", "tool and demo 1.0")
    assert f"saved sh v1 (njtui-env/{stem}-sh:1" in saved.stdout
    table = runtime_table(path, "sh")
    assert table["saved_version"] == 1 and table["environment"] == PYTHON_IMAGE
    (version,) = table["versions"]
    assert version["version"] == 1 and version["message"] == "tool and demo 1.0" and version["tag"] == f"njtui-env/{stem}-sh:1"
    assert version["image"] == environments.images.get(f"njtui-env/{stem}-sh:1").id
    assert version["base"] == PYTHON_IMAGE and version["base_image"] == environments.images.get(PYTHON_IMAGE).id
    after_save = diff(path, "sh")
    assert after_save["paths"] == [] and after_save["packages"] == [], "nothing changed since the save"

    restart(path, "sh")
    not_running = env("diff", path, "sh", "--json", expect=1)
    assert "not running" in not_running.stderr
    assert run_cell(path, "check") == "demo tool 1.0\ndemo 1.0\nkept\nkept.txt\n", "booted from the saved version"
    assert (own_runtimes(path)[0]["environment"]) == "sh v1"

    assert run_cell(path, "more") == "demo 2.0\n"
    changes = diff(path, "sh")
    assert changes["since"] == "sh v1"
    assert packages_of(changes) == {("python", WHEEL_NAME, "1.0", "2.0")}
    assert paths_of(changes)["/root/transient.txt"] == "A"
    assert f"/usr/local/lib/python3.11/dist-packages/{WHEEL_NAME}-1.0.dist-info" in paths_of(changes)

    before = path.read_bytes()
    reset = env("reset", path, "sh", "--yes")
    assert "reset sh: running fresh from sh v1" in reset.stdout
    assert path.read_bytes() == before, "a reset to the version it boots from changes nothing in the file"
    assert diff(path, "sh")["paths"] == []
    assert run_cell(path, "check") == "demo tool 1.0\ndemo 1.0\nkept\nkept.txt\n", "the new changes are gone, the saved ones there"


# -- 2. export, every local copy removed, import by digest elsewhere


def test_export_then_import_by_digest_in_another_directory(environments, loopback_registry, tmp_path):
    client = environments
    stem = unique("source")
    source = notebook_file(
        tmp_path / "lab" / f"{stem}.toml",
        [RuntimeSpec("sh", "bash", environment=BASH_IMAGE)],
        [("write", "sh", "head -c 100000 /dev/urandom > /root/blob.bin\nsha256sum /root/blob.bin | cut -d' ' -f1\n")],
        registry=f"{loopback_registry}/team",
    )
    written = run_cell(source, "write").strip()
    env("save", source, "sh", "-m", "a blob")
    exported = env("export", source, "sh")
    reference = exported.stdout.splitlines()[-1]
    repository = f"{loopback_registry}/team/{stem}-sh"
    assert reference.startswith(f"{repository}@sha256:") and len(reference.split("@sha256:")[1]) == 64, exported.stdout
    (version,) = runtime_table(source, "sh")["versions"]
    assert version["digest"] == reference
    listed = json.loads(env("ls", source, "--json").stdout)
    assert [(row["version"], row["digest"], row["where"]) for row in listed] == [(1, reference, "this engine")]

    stop_own_runtimes(source)
    image = client.images.get(version["image"])
    assert set(image.tags) == {f"njtui-env/{stem}-sh:1", f"{repository}:1"}
    for tag in image.tags:
        client.images.remove(tag, force=True)
    if image_exists(client, image.id):  # gone with its last tag, unless something held it
        client.images.remove(image.id, force=True)
    assert not image_exists(client, version["image"]) and not image_exists(client, reference)

    reader = notebook_file(tmp_path / "elsewhere" / "deep" / "reader.toml", [RuntimeSpec("sh", "bash", environment=reference)], [("read", "sh", "sha256sum /root/blob.bin | cut -d' ' -f1\n")])
    assert run_cell(reader, "read").strip() == written, "the file saved before the export, byte for byte"
    assert client.images.get(reference).id == version["image"], "the same image, by digest"


# -- 3. the reference's chain in one notebook


def test_three_level_chain_and_lineage(environments, packages, tmp_path):
    mounts = pkgs_mount(packages)
    name = f"{unique('chain')}.toml"
    path = notebook_file(
        tmp_path / name,
        [
            RuntimeSpec("tools", "bash", environment=PYTHON_IMAGE, mounts=mounts),
            RuntimeSpec("py", "python", environment=PYTHON_IMAGE, mounts=mounts),
            RuntimeSpec("third", "bash", environment=PYTHON_IMAGE),
        ],
        [
            ("tools", "tools", DPKG_INSTALL + "\n"),
            ("tools-more", "tools", "echo two > /root/tools-v2.txt\n"),
            ("py", "py", f"import subprocess\nsubprocess.run({pip_install(wheel_file('1.0')).split()!r}, check=True)\nsubprocess.run(['{DEB_NAME}'], capture_output=True, text=True).stdout\n"),
            ("third", "third", f"{DEB_NAME}\n{SHOW_DEMO}\n"),
        ],
    )
    assert run_cell(path, "tools") == "demo tool 1.0\n"
    env("save", path, "tools", "-m", "the tool")
    tools_v1 = runtime_table(path, "tools")["versions"][0]["image"]

    # A version that does not exist is bad input, and the file is left as it was.
    before = path.read_bytes()
    missing = env("import", path, "py", "tools", "9", expect=2)
    assert "no saved version 9" in missing.stderr and path.read_bytes() == before

    env("import", path, "py", "tools", "1")
    assert runtime_table(path, "py")["environment"] == {"runtime": "tools", "version": 1, "image": tools_v1}, "pinned to the image id"
    assert run_cell(path, "py") == repr("demo tool 1.0\n"), "py boots from tools v1"
    assert packages_of(diff(path, "py")) == {("python", WHEEL_NAME, None, "1.0")}
    env("save", path, "py", "-m", "demo 1.0")
    py_v1 = runtime_table(path, "py")["versions"][0]
    assert py_v1["base"] == "tools v1" and py_v1["base_image"] == tools_v1

    env("import", path, "third", "py", "1")
    assert runtime_table(path, "third")["environment"] == {"runtime": "py", "version": 1, "image": py_v1["image"]}
    assert run_cell(path, "third") == "demo tool 1.0\ndemo 1.0\n", "third boots from py v1, which has tools v1 below it"

    base_id = environments.images.get(PYTHON_IMAGE).id
    steps = json.loads(env("lineage", path, "third", "--json").stdout)
    assert [(step["label"], step["image"], step["how"]) for step in steps] == [
        (f"{name}: py v1", py_v1["image"], "saved"),
        (f"{name}: tools v1", tools_v1, "saved"),
        (PYTHON_IMAGE, base_id, "image"),
    ]
    assert [step["message"] for step in steps] == ["demo 1.0", "the tool", ""]
    lines = env("lineage", path, "third").stdout.splitlines()
    assert len(lines) == 3
    for line, (label, image) in zip(lines, [(f"{name}: py v1", py_v1["image"]), (f"{name}: tools v1", tools_v1), (PYTHON_IMAGE, base_id)], strict=True):
        assert label in line and image in line, lines

    # A later save of the source changes nothing for those that import it.
    py_before = runtime_table(path, "py")
    assert run_cell(path, "tools-more") == ""
    env("save", path, "tools", "-m", "v2")
    assert [saved["version"] for saved in runtime_table(path, "tools")["versions"]] == [1, 2]
    assert runtime_table(path, "py") == py_before
    assert json.loads(env("lineage", path, "py", "--json").stdout)[1]["image"] == tools_v1


# -- 4. a saved image holds the runtime's file system, nothing else


def test_saved_versions_hold_no_secret_agent_journal_or_results(environments, tmp_path):
    client = environments
    secret = "tok-" + hashlib.sha256(f"{os.getpid()}-{tmp_path}".encode()).hexdigest()[:24]
    SecretStore().set("env-test-token", secret)
    path = notebook_file(
        tmp_path / f"{unique('secret')}.toml",
        [RuntimeSpec("sh", "bash", environment=BASH_IMAGE, secrets={"API_TOKEN": "env-test-token"}, env={"RUNTIME_VAR": "from-the-runtime"})],
        [
            # The secret is used (printed: into the journal; a copy into /results; and the file
            # njtui gives it under /run/secrets), never written to the runtime's own file system.
            ("use", "sh", 'echo "length ${#API_TOKEN}"\necho "token $API_TOKEN"\necho "$API_TOKEN" > /results/token.txt\ntest -s /run/secrets/API_TOKEN && echo "as a file too"\necho one > /root/one.txt\n'),
            ("again", "sh", 'echo "token $API_TOKEN again"\necho two > /root/two.txt\n'),
        ],
        env={"NOTEBOOK_VAR": "from-the-notebook"},
    )
    assert run_cell(path, "use") == f"length {len(secret)}\ntoken {secret}\nas a file too\n"
    env("save", path, "sh", "-m", "one")
    restart(path, "sh")
    assert run_cell(path, "again") == f"token {secret} again\n"
    env("save", path, "sh", "-m", "two")
    images = [saved["image"] for saved in runtime_table(path, "sh")["versions"]]
    assert len(images) == 2

    contents = saved_contents(client, images, [secret.encode()])
    assert {"/root/one.txt", "/root/two.txt"} <= set(contents.names), "the runtime's own files are saved"
    assert contents.found[secret.encode()] == [], f"the secret's value is in a saved image: {contents.found[secret.encode()][:5]}"
    for name in contents.names:
        assert Path(name).name not in ("agent.py", "agent.sh", "journal.jsonl", "token.txt", "API_TOKEN"), f"{name} is in a saved image"
        assert not name.startswith(("/opt/njtui/", "/results/", "/run/secrets/")), f"{name} is in a saved image"
    base_env = client.images.get(BASH_IMAGE).attrs["Config"]["Env"]
    for config in contents.configs:
        assert config["config"]["Env"] == base_env, "the image's ENV is the base's: no secret, notebook or runtime variable"
        assert secret not in json.dumps(config)


# -- 5. versions: who uses each, rm and prune never remove one in use


def test_versions_ls_rm_prune(environments, tmp_path):
    client = environments
    stem = unique("keep")
    path = notebook_file(tmp_path / f"{stem}.toml", [RuntimeSpec("sh", "bash", environment=BASH_IMAGE)], [("touch", "sh", "date +%s%N >> /root/stamps\n")])
    # v1 and v2 saved from one container (siblings); v3 from a container booted from v2 (its
    # child), v4 from one booted from v3, which goes on running.
    run_cell(path, "touch")
    env("save", path, "sh", "-m", "one")
    run_cell(path, "touch")
    env("save", path, "sh", "-m", "two")
    restart(path, "sh")
    run_cell(path, "touch")
    env("save", path, "sh", "-m", "three")
    restart(path, "sh")
    run_cell(path, "touch")
    env("save", path, "sh", "-m", "four")
    tags = {number: f"njtui-env/{stem}-sh:{number}" for number in (1, 2, 3, 4)}

    # Another notebook, in another directory, imports v1.
    other = notebook_file(tmp_path / "other" / "user.toml", [RuntimeSpec("imp", "bash", environment=BASH_IMAGE)], [("x", "imp", "true\n")])
    env("import", other, "imp", "sh", "1", "--from", path)
    assert runtime_table(other, "imp")["environment"] == {"notebook": f"../{stem}.toml", "runtime": "sh", "version": 1, "image": client.images.get(tags[1]).id}

    rows = {row["version"]: row for row in json.loads(env("ls", path, "--json").stdout)}
    assert sorted(rows) == [1, 2, 3, 4]
    assert [rows[n]["message"] for n in (1, 2, 3, 4)] == ["one", "two", "three", "four"]
    assert rows[4]["boots"] and not any(rows[n]["boots"] for n in (1, 2, 3))
    assert rows[4]["used_by"] == ["sh (boots from it)"]
    assert rows[1]["used_by"] == [f"{notebook_identity(other)}: imp"]
    assert rows[2]["used_by"] == [] and rows[3]["used_by"] == []
    assert all(row["where"] == "this engine" and row["image"].startswith("sha256:") and row["size"] >= 0 and row["saved_at"] for row in rows.values())

    def refused(number: int, words: str) -> None:
        before = path.read_bytes()
        result = env("rm", path, "sh", number, expect=1)
        assert words in result.stderr, result.stderr
        assert path.read_bytes() == before and image_exists(client, tags[number])

    refused(4, "in use (sh (boots from it))")
    refused(1, f"{notebook_identity(other)}: imp")
    refused(3, "a container still runs from")  # the running runtime was booted from v3

    # v2 is below v3 and v4 (they are built on its image), but nothing uses it and no container
    # runs it: pruned while the runtime goes on running v3, which prune leaves alone.
    assert json.loads(env("prune", path, "--json").stdout) == ["sh v2"]
    assert not image_exists(client, tags[2]) and all(image_exists(client, tags[n]) for n in (1, 3, 4))
    assert [saved["version"] for saved in runtime_table(path, "sh")["versions"]] == [1, 3, 4]

    restart(path, "sh")  # stopped; its next cell boots v4
    assert env("rm", path, "sh", 3).stdout.strip() == "removed sh v3"
    assert not image_exists(client, tags[3]) and image_exists(client, tags[1]) and image_exists(client, tags[4])
    assert [saved["version"] for saved in runtime_table(path, "sh")["versions"]] == [1, 4]
    assert env("prune", path).stdout.strip() == "nothing to prune: every saved version is in use"
    assert {row["version"] for row in json.loads(env("ls", path, "--json").stdout)} == {1, 4}

    # What is left still boots: v4 here, v1 in the other notebook.
    assert run_cell(path, "touch") == ""
    assert run_cell(other, "x") == ""
