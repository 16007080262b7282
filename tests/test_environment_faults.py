"""Environments' faults and bad input (issue 13, point 8), for real: each is a clear error that
says what to do, exit status 1 (failed) or 2 (bad input), the notebook file byte for byte as it
was, and no half-written image left tagged. Also the save that flattens an image near the
engine's layer limit, and a diff of 10,000 changed files listed whole (its speed is measured by
bench/env_diff.py: tests assert no wall-clock limits).

The full disk and the engine that goes away mid-save use engines of their own (a private dockerd
whose data root is a small tmpfs), so the machine's engine serves the rest of the suite meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from njtui.model import environment_repository
from njtui.runner.docker_environments import FLATTEN_AT
from tests.conftest import BASH_IMAGE, PYTHON_IMAGE, njtui
from tests.helpers import PrivateDockerd, free_loopback_port, listed_images, load_images, session_image_label, stop_own_runtimes, stop_private_dockerd, wait_until

pytestmark = pytest.mark.docker

# A bcrypt htpasswd line (the only format docker-registry reads) for user njtui, password
# njtui-secret: made once with crypt(3), as neither htpasswd nor a bcrypt module is installed.
HTPASSWD = "njtui:$2b$04$ul3WdEUwM3vv012RVW3IVOI1yMK3FfDu.9le0CppwJgZNeI29mJMi\n"
NO_SUCH_IMAGE = "sha256:" + "1" * 64
NO_SUCH_DIGEST = "sha256:" + "3" * 64


def write_notebook(directory: Path, body: str, prefix: str = "faults") -> Path:
    """A notebook written by hand, named uniquely: its saved versions' repository
    (njtui-env/<stem>-<runtime>) is this test's alone on the shared engine."""
    path = directory / f"{prefix}-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(f'njtui = 1\ntitle = "faults"\n\n{body.strip()}\n')
    return path


def cell(cell_id: str, source: str, runtime: str | None = None) -> str:
    target = f'runtime = "{runtime}"\n' if runtime else ""
    return f'\n[[cells]]\nid = "{cell_id}"\nkind = "code"\nlanguage = "bash"\n{target}source = {json.dumps(source)}\n'


def env_tags(client, path: Path) -> list[str]:
    """Every tag on the engine naming one of the notebook's saved versions, local or for a registry."""
    marker = environment_repository(path.stem, "x").rsplit("/", 1)[1][: -len("-x")]
    return sorted(tag for image in listed_images(client) for tag in image["RepoTags"] or [] if f"/{marker}-" in tag)


def assert_fault(result: subprocess.CompletedProcess, status: int, *phrases: str, path: Path, before: bytes) -> str:
    """The command failed with `status`, saying each phrase on stderr, and left the notebook as it was."""
    said = result.stdout + result.stderr
    assert result.returncode == status, said
    assert "Traceback" not in said, said
    for phrase in phrases:
        assert phrase in result.stderr, f"{phrase!r} not in:\n{said}"
    assert path.read_bytes() == before, "the notebook file changed"
    return result.stderr


@pytest.fixture
def cleanup_saved(docker_engine, tmp_path):
    """Stops the test's runtimes, then removes the images its notebooks saved (registered with
    the returned function)."""
    paths: list[Path] = []
    yield paths.append
    stop_own_runtimes(tmp_path)
    for path in paths:
        for tag in env_tags(docker_engine, path):
            docker_engine.images.remove(tag, force=True)


# -- saving a runtime that is not running


def test_saving_a_runtime_that_is_not_running_says_to_start_it(docker_engine, tmp_path, cleanup_saved):
    path = write_notebook(tmp_path, '[runtimes.tools]\nlanguage = "bash"\nenvironment = "njtui/bash:5"\ndefault = true\n' + cell("c1", "echo hi > /opt/hi.txt"))
    cleanup_saved(path)
    before = path.read_bytes()
    message = assert_fault(njtui("env", "save", str(path), "tools", "-m", "never ran"), 1, "runtime tools is not running", path=path, before=before)
    assert "start it (run one of its cells)" in message
    assert_fault(njtui("env", "diff", str(path), "tools"), 1, "is not running", path=path, before=before)
    # Ran, then stopped: still nothing to save, and nothing tagged.
    assert njtui("run", str(path)).returncode == 0
    assert len(stop_own_runtimes(tmp_path)) == 1
    assert_fault(njtui("env", "save", str(path), "tools"), 1, "runtime tools is not running", path=path, before=before)
    assert env_tags(docker_engine, path) == []


# -- registries that refuse the push


@pytest.fixture
def registry_with(docker_engine, tmp_path_factory):
    """A loopback docker-registry with extra configuration (as conftest's loopback_registry)."""
    import shutil

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (scripts/provision installs it)")
    servers: list[subprocess.Popen] = []

    def start(storage_extra: str = "", extra: str = "") -> str:
        port = free_loopback_port()
        home = tmp_path_factory.mktemp("registry")
        (home / "htpasswd").write_text(HTPASSWD)
        config = f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {home / 'data'}\n{storage_extra}http:\n  addr: 127.0.0.1:{port}\n{extra.replace('HOME', str(home))}"
        (home / "config.yml").write_text(config)
        server = subprocess.Popen([binary, "serve", str(home / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(server)
        _wait_for_port(server, port)  # not for /v2/ to answer 200: with auth on it answers 401
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=10)


def _wait_for_port(server: subprocess.Popen, port: int) -> None:
    import socket

    def listening() -> bool:
        assert server.poll() is None, "the registry exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until(listening, timeout=15, what="the registry to listen")


@pytest.mark.parametrize(
    "kind, storage_extra, extra, advice",
    [
        ("needs credentials", "", "auth:\n  htpasswd:\n    realm: njtui-test\n    path: HOME/htpasswd\n", "docker login"),
        ("read-only", "  maintenance:\n    readonly:\n      enabled: true\n", "", "check that you may push to this repository"),
    ],
    ids=["credentials", "read-only"],
)
def test_export_to_a_registry_that_refuses_the_push(docker_engine, tmp_path, cleanup_saved, registry_with, kind, storage_extra, extra, advice):
    registry = registry_with(storage_extra, extra)
    path = write_notebook(tmp_path, f'registry = "{registry}/team"\n\n[runtimes.tools]\nlanguage = "bash"\nenvironment = "njtui/bash:5"\ndefault = true\n' + cell("c1", "echo made > /opt/made.txt"))
    cleanup_saved(path)
    assert njtui("run", str(path)).returncode == 0
    saved = njtui("env", "save", str(path), "tools", "-m", "to export")
    assert saved.returncode == 0, saved.stderr
    tags_after_save = env_tags(docker_engine, path)
    before = path.read_bytes()
    message = assert_fault(njtui("env", "export", str(path), "tools"), 1, f"push to {registry}/team/", advice, path=path, before=before)
    assert "Traceback" not in message
    # The saved version stays (the notebook names it); no tag for the registry is left behind.
    assert env_tags(docker_engine, path) == tags_after_save
    assert not any(tag.startswith(registry) for tag in tags_after_save)


# -- imports of what does not exist, and cycles


def test_an_import_of_a_version_that_does_not_exist_names_the_versions_there(docker_engine, tmp_path, cleanup_saved):
    versions = "".join(f'\n[[runtimes.tools.versions]]\nversion = {n}\nimage = "sha256:{str(n) * 64}"\nhost = "vm"\n' for n in (1, 2))
    body = f'[runtimes.tools]\nlanguage = "bash"\nenvironment = "njtui/bash:5"\n{versions}\n[runtimes.py]\nlanguage = "bash"\nenvironment = "njtui/bash:5"\ndefault = true\n' + cell("c1", "echo hi")
    path = write_notebook(tmp_path, body)
    cleanup_saved(path)
    before = path.read_bytes()
    assert_fault(njtui("env", "import", str(path), "py", "tools", "9"), 2, "has no saved version 9 (saved versions: 1, 2)", path=path, before=before)
    assert_fault(njtui("env", "import", str(path), "py", "nosuch", "1"), 2, "has no such runtime (runtimes: tools, py)", path=path, before=before)
    assert_fault(njtui("env", "import", str(path), "py", "tools", "1", "--from", str(tmp_path / "missing.toml")), 2, "which is not there", path=path, before=before)
    # Written by hand: the run fails and says which versions there are.
    path.write_text(before.decode().replace('[runtimes.py]\nlanguage = "bash"\nenvironment = "njtui/bash:5"', '[runtimes.py]\nlanguage = "bash"\nenvironment = { runtime = "tools", version = 9 }'))
    before = path.read_bytes()
    assert_fault(njtui("run", str(path)), 1, "runtime tools of", "has no saved version 9 (saved versions: 1, 2)", path=path, before=before)
    assert env_tags(docker_engine, path) == []


def test_a_cycle_of_imports_is_named(docker_engine, tmp_path, cleanup_saved):
    body = '[runtimes.a]\nlanguage = "bash"\nenvironment = { runtime = "b", version = 1 }\ndefault = true\n\n[runtimes.b]\nlanguage = "bash"\nenvironment = { runtime = "a", version = 1 }\n' + cell("c1", "echo hi")
    path = write_notebook(tmp_path, body)
    cleanup_saved(path)
    before = path.read_bytes()
    message = assert_fault(njtui("run", str(path)), 1, "import each other in a cycle: a imports b imports a", path=path, before=before)
    assert 'start from an image (environment = "IMAGE")' in message
    # Across notebooks: x.toml's a imports y.toml's b, which imports x.toml's a.
    other = tmp_path / "y.toml"
    path.write_text(before.decode().replace('environment = { runtime = "b", version = 1 }', 'environment = { notebook = "y.toml", runtime = "b", version = 1 }'))
    other.write_text(f'njtui = 1\ntitle = "y"\n\n[runtimes.b]\nlanguage = "bash"\nenvironment = {{ notebook = "{path.name}", runtime = "a", version = 1 }}\n')
    before, other_before = path.read_bytes(), other.read_bytes()
    assert_fault(njtui("run", str(path)), 1, "cycle: a imports y.toml:b imports a;", path=path, before=before)
    # Set by the command: the same refusal, as bad input.
    plain = write_notebook(tmp_path, '[runtimes.a]\nlanguage = "bash"\nenvironment = "njtui/bash:5"\n\n[runtimes.b]\nlanguage = "bash"\nenvironment = { runtime = "a", version = 1 }\ndefault = true\n')
    plain_before = plain.read_bytes()
    assert_fault(njtui("env", "import", str(plain), "a", "b", "1"), 2, "import each other in a cycle: a imports b imports a", path=plain, before=plain_before)
    assert other.read_bytes() == other_before


def test_a_digest_the_registry_does_not_have(docker_engine, tmp_path, cleanup_saved, loopback_registry):
    reference = f"{loopback_registry}/team/x@{NO_SUCH_DIGEST}"
    path = write_notebook(tmp_path, f'[runtimes.x]\nlanguage = "bash"\nenvironment = "{reference}"\ndefault = true\n' + cell("c1", "echo hi"))
    cleanup_saved(path)
    before = path.read_bytes()
    message = assert_fault(njtui("run", str(path)), 1, f"image not found: {reference}", "the registry does not have this exact image", path=path, before=before)
    assert "export it again, or choose another environment" in message
    assert not [tag for image in listed_images(docker_engine) for tag in image["RepoTags"] or [] if tag.startswith(loopback_registry)]


def test_a_version_saved_on_another_engine_and_not_exported(docker_engine, tmp_path, cleanup_saved):
    version = f'\n[[runtimes.tools.versions]]\nversion = 1\nimage = "{NO_SUCH_IMAGE}"\ntag = "njtui-env/elsewhere-tools:1"\nbase = "njtui/bash:5"\nhost = "other-host"\n'
    path = write_notebook(tmp_path, f'[runtimes.tools]\nlanguage = "bash"\nenvironment = "njtui/bash:5"\nsaved_version = 1\ndefault = true\n{version}' + cell("c1", "echo hi"))
    cleanup_saved(path)
    before = path.read_bytes()
    message = assert_fault(njtui("run", str(path)), 1, "saved on other-host", "not exported", path=path, before=before)
    assert "njtui env export" in message and "njtui env reset" in message
    assert_fault(njtui("env", "export", str(path), "tools", "--registry", "127.0.0.1:9/team"), 1, "not on this engine (saved on other-host)", path=path, before=before)
    # Imported from that notebook by another one: the same words, about the import.
    importer = write_notebook(tmp_path, f'[runtimes.py]\nlanguage = "bash"\nenvironment = {{ notebook = "{path.name}", runtime = "tools", version = 1 }}\ndefault = true\n' + cell("c2", "echo hi"))
    importer_before = importer.read_bytes()
    assert_fault(njtui("run", str(importer)), 1, "the environment it imports", "saved on other-host", "not exported", path=importer, before=importer_before)
    assert path.read_bytes() == before


# -- a full disk and an engine that goes away: engines of the test's own


@pytest.fixture
def small_engine(docker_engine):
    """Starts a private dockerd (tests.helpers.PrivateDockerd) whose data root is a tmpfs of
    `megabytes`, with njtui/python:3.11 loaded; stopped and removed (tmpfs included) afterwards."""
    engines: list[PrivateDockerd] = []

    def start(megabytes: int) -> PrivateDockerd:
        engine = PrivateDockerd(Path(tempfile.mkdtemp(prefix="njd-", dir="/tmp")))
        engines.append(engine)
        engine.data_root.mkdir(mode=0o710)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0710", "tmpfs", str(engine.data_root)], capture_output=True, text=True)
        assert mounted.returncode == 0, f"a tmpfs for the private engine's data root could not be mounted (needs root): {mounted.stderr}"
        engine.start()
        client = engine.client()
        load_images(docker_engine, client, [PYTHON_IMAGE])
        client.close()
        return engine

    yield start
    for engine in engines:
        stop_private_dockerd(engine)  # unmounts the tmpfs with the rest under its root


def test_a_full_disk_fails_the_save_clearly(small_engine, tmp_path, monkeypatch):
    engine = small_engine(400)
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    # Fills the engine's disk but for 30 MB: the cell ends fine, the commit's copy cannot fit.
    fill = "avail=$(df -B1 --output=avail / | tail -1); head -c $((avail - 30000000)) /dev/zero > /fill && echo filled"
    path = write_notebook(tmp_path, f'[runtimes.tools]\nlanguage = "bash"\nenvironment = "{PYTHON_IMAGE}"\ndefault = true\n' + cell("c1", fill))
    ran = njtui("run", str(path))
    assert ran.returncode == 0 and "filled" in ran.stdout, ran.stdout + ran.stderr
    before = path.read_bytes()
    message = assert_fault(njtui("env", "save", str(path), "tools", "-m", "too big"), 1, "saving runtime tools failed", "disk is full", "free space", path=path, before=before)
    assert "no space left on device" in message
    client = engine.client()
    assert env_tags(client, path) == []
    assert [image.tags for image in client.images.list(all=True)] == [[PYTHON_IMAGE]], "a half-written image is left"
    client.close()


def test_an_engine_that_goes_away_mid_save(small_engine, tmp_path, monkeypatch):
    engine = small_engine(1000)
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    # 300 MB of changes: the commit takes long enough (seconds) to be caught while it runs.
    path = write_notebook(tmp_path, f'[runtimes.tools]\nlanguage = "bash"\nenvironment = "{PYTHON_IMAGE}"\ndefault = true\n' + cell("c1", "head -c 300000000 /dev/zero > /big && echo written"))
    ran = njtui("run", str(path))
    assert ran.returncode == 0 and "written" in ran.stdout, ran.stdout + ran.stderr
    client = engine.client()
    (container,) = client.containers.list()
    before = path.read_bytes()
    save = subprocess.Popen([sys.executable, "-m", "njtui", "env", "save", str(path), "tools"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The save says it commits; the engine pauses the container for the commit's length.
        assert save.stderr is not None
        assert "committing the file system" in save.stderr.readline()

        def paused() -> bool:
            container.reload()
            return bool(container.attrs["State"]["Paused"])

        wait_until(paused, timeout=60, what="the commit to pause the container", every=0.005)
        engine.signal(signal.SIGKILL)
        out, err = save.communicate(timeout=120)
    finally:
        if save.poll() is None:
            save.kill()
            save.wait()
    client.close()
    result = subprocess.CompletedProcess(save.args, save.returncode, out, err)
    assert_fault(result, 1, "saving runtime tools failed", "the Docker engine stopped answering", "start the engine again", path=path, before=before)
    engine.wait_exited(timeout=60)
    # Back up: the commit never finished, so no image (tagged or not) came of it.
    engine.start()
    client = engine.client()
    assert env_tags(client, path) == []
    assert [image.tags for image in client.images.list(all=True)] == [[PYTHON_IMAGE]], "a half-written image is left"
    client.close()


# -- the layer limit


def layered_image(client, base: str, count: int, reference: str, workdir: Path):
    """`base` with `count` tiny layers on top, made as `docker save` writes an image and loaded
    in one go (committing 120 containers would take minutes)."""
    saved = workdir / "base.tar"
    with saved.open("wb") as out:
        for chunk in client.images.get(base).save(chunk_size=1 << 20):
            out.write(chunk)
    built = workdir / "layered.tar"
    with tarfile.open(saved) as source, tarfile.open(built, "w") as target:
        manifest = json.load(source.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(source.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        layers = list(manifest["Layers"])
        for name in layers:
            member = source.getmember(name)
            target.addfile(member, source.extractfile(member))
        for index in range(count):
            layer = io.BytesIO()
            with tarfile.open(fileobj=layer, mode="w") as tar:
                data = f"layer {index}\n".encode()
                entry = tarfile.TarInfo(f"opt/layers/{index}")
                entry.size = len(data)
                tar.addfile(entry, io.BytesIO(data))
            blob = layer.getvalue()
            digest = hashlib.sha256(blob).hexdigest()
            layers.append(f"{digest}/layer.tar")
            config["rootfs"]["diff_ids"].append(f"sha256:{digest}")
            config.setdefault("history", []).append({"created": config.get("created"), "created_by": f"njtui test: layer {index}"})
            _add(target, layers[-1], blob)
        name, value = session_image_label().split("=", 1)
        config.setdefault("config", {}).setdefault("Labels", {})[name] = value  # the session's clean-up finds it too
        data = json.dumps(config).encode()
        config_name = hashlib.sha256(data).hexdigest() + ".json"
        _add(target, config_name, data)
        _add(target, "manifest.json", json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": layers}]).encode())
    with built.open("rb") as stream:
        client.images.load(stream)
    return client.images.get(reference)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    entry = tarfile.TarInfo(name)
    entry.size = len(data)
    tar.addfile(entry, io.BytesIO(data))


def test_a_save_near_the_layer_limit_flattens_to_one_layer(docker_engine, tmp_path, cleanup_saved):
    reference = f"njtui-test/layered-{uuid.uuid4().hex[:8]}:1"
    image = layered_image(docker_engine, BASH_IMAGE, FLATTEN_AT + 1 - len(docker_engine.images.get(BASH_IMAGE).attrs["RootFS"]["Layers"]), reference, tmp_path)
    try:
        assert len(image.attrs["RootFS"]["Layers"]) >= FLATTEN_AT
        body = f'[runtimes.tools]\nlanguage = "bash"\nenvironment = "{reference}"\ndefault = true\n' + cell("write", "cat /opt/layers/0 && echo kept > /opt/kept.txt") + cell("read", "cat /opt/kept.txt /opt/layers/0")
        path = write_notebook(tmp_path, body)
        cleanup_saved(path)
        ran = njtui("run", str(path), "--cell", "write")
        assert ran.returncode == 0 and "layer 0" in ran.stdout, ran.stdout + ran.stderr
        saved = njtui("env", "save", str(path), "tools", "-m", "flat")
        assert saved.returncode == 0, saved.stderr
        assert "flattened to one layer" in saved.stdout and "layer limit" in saved.stdout
        assert "flattening" in saved.stderr  # its progress
        text = path.read_text()
        assert "flattened = true" in text and 'message = "flat"' in text
        (tag,) = env_tags(docker_engine, path)
        flat = docker_engine.images.get(tag)
        assert len(flat.attrs["RootFS"]["Layers"]) == 1
        assert flat.attrs["Config"]["Cmd"] == docker_engine.images.get(BASH_IMAGE).attrs["Config"]["Cmd"]
        # Only the runtime's own files: njtui's mount points are there, empty.
        listing = docker_engine.containers.run(flat.id, ["bash", "-c", "find /opt/njtui /results -mindepth 1 | wc -l; cat /opt/kept.txt"], remove=True, labels={})
        assert listing.decode().split() == ["0", "kept"]
        # A restart boots the flattened version, with the change and the base's files.
        assert len(stop_own_runtimes(tmp_path)) == 1
        again = njtui("run", str(path), "--cell", "read")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "kept" in again.stdout and "layer 0" in again.stdout
        assert "tools v1" in njtui("env", "lineage", str(path), "tools").stdout
    finally:
        stop_own_runtimes(tmp_path)
        docker_engine.images.remove(reference, force=True)


# -- big diffs


def test_ten_thousand_changed_files_are_all_listed(docker_engine, tmp_path, cleanup_saved):
    make = "for d in $(seq 0 99); do mkdir -p /many/$d && (cd /many/$d && touch $(seq 0 99)); done; echo made"
    # After a save: half the files rewritten, one directory emptied, one file new.
    change = "for d in $(seq 0 49); do for f in $(seq 0 99); do echo x >> /many/$d/$f; done; done; rm /many/99/*; touch /many/new; echo changed"
    path = write_notebook(tmp_path, f'[runtimes.tools]\nlanguage = "bash"\nenvironment = "{BASH_IMAGE}"\ndefault = true\n' + cell("make", make) + cell("change", change))
    cleanup_saved(path)
    assert "made" in njtui("run", str(path), "--cell", "make").stdout

    def listed() -> dict[str, str]:
        result = njtui("env", "diff", str(path), "tools", "--json")
        assert result.returncode == 0, result.stderr
        return {entry["path"]: entry["change"] for entry in json.loads(result.stdout)["paths"] if entry["path"] == "/many" or entry["path"].startswith("/many/")}

    files = {f"/many/{d}/{f}" for d in range(100) for f in range(100)}
    assert listed() == {"/many": "A", **{f"/many/{d}": "A" for d in range(100)}, **dict.fromkeys(files, "A")}
    text = njtui("env", "diff", str(path), "tools").stdout
    assert "  /many  10101 added" in text and sum(line.startswith("    A /many/") for line in text.splitlines()) == 10_100
    assert njtui("env", "save", str(path), "tools").returncode == 0
    assert listed() == {}
    assert "changed" in njtui("run", str(path), "--cell", "change").stdout
    expected = {f"/many/{d}/{f}": "C" for d in range(50) for f in range(100)}
    expected.update({f"/many/99/{f}": "D" for f in range(100)}, **{"/many/99": "C", "/many/new": "A", "/many": "C"})
    assert listed() == expected
