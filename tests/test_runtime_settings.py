"""Runtime settings: what each does to a real container, and what bad settings say."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from njtui.model import Cell, Notebook, RuntimeSpec
from njtui.model.settings import Mount
from njtui.runner.docker_backend import DockerBackend
from njtui.runner.launch import resolve
from njtui.store import load_notebook, save_notebook
from njtui.store.secrets import SecretStore
from tests.conftest import PYTHON_IMAGE, njtui
from tests.helpers import git_repository, stop_own_runtimes

SECRET_VALUE = "s3cr3t-" + hashlib.sha256(str(os.getpid()).encode()).hexdigest()[:20]


def write_notebook(tmp_path: Path, spec: RuntimeSpec, cells: list[tuple[str, str]], env: dict | None = None) -> Path:
    notebook = Notebook(title="settings", runtimes={spec.id: spec}, env=env or {})
    notebook.cells = [Cell(cell_id, "code", source, spec.language, runtime=spec.id) for cell_id, source in cells]
    path = tmp_path / "nb.toml"
    save_notebook(notebook, path)
    return path


def events(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def result_of(result, cell: str):
    return next(e for e in events(result) if e["event"] == "result" and e["cell"] == cell)["data"]["text/plain"]


# -- malformed settings: each a clear error with file and line, exit 2, the file untouched

MALFORMED = [
    ('machine = "huge box"', "machine type 'huge box'", 5),
    ('memory = "-256MB"', "bad memory limit '-256MB'", 5),
    ('environment = "Not An Image!"', "not an image reference", 5),
    ("gpus = -1", "must be a count or a list of device ids", 5),
    ("secrets = { TOKEN = 3 }", "must name a secret in your secret store", 5),
    ('\n[[runtimes.py.mounts]]\nkind = "nfs"\nsource = "/x"\nat = "/x"', "unknown kind 'nfs'", 7),
    ('\n[[runtimes.py.mounts]]\nkind = "dir"\nsource = "/tmp"\nat = "data"', "not an absolute path", 9),
    ('\n[[runtimes.py.mounts]]\nkind = "dir"\nsource = "/tmp"\nat = "/d"\n[[runtimes.py.mounts]]\nkind = "dir"\nsource = "/var"\nat = "/d"', "two mounts at /d", 13),
]


@pytest.mark.parametrize(("setting", "message", "line"), MALFORMED, ids=[m[1][:24] for m in MALFORMED])
def test_malformed_settings_are_refused_with_file_and_line(tmp_path, setting, message, line):
    path = tmp_path / "bad.toml"
    path.write_text(f'njtui = 1\n\n[runtimes.py]\nlanguage = "python"\n{setting}\n\n[[cells]]\nid = "a"\nkind = "code"\nlanguage = "python"\nsource = "1"\n'.replace("\n\n[[cells]]", "\n\n[[cells]]"))
    before = path.read_bytes()
    result = njtui("run", str(path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and f"{path}:{line}" in result.stderr, result.stderr
    assert "hint:" in result.stderr
    assert path.read_bytes() == before
    shown = njtui("runtime", "show", str(path), "py")
    assert shown.returncode == 2 and path.read_bytes() == before


def test_runtime_set_refuses_a_bad_value_and_keeps_the_file(tmp_path):
    path = write_notebook(tmp_path, RuntimeSpec("py", "python"), [("a", "1\n")])
    before = path.read_bytes()
    for assignment in ("machine=huge box", "memory=lots", "environment=Bad Image", "cpus=-2"):
        result = njtui("runtime", "set", str(path), "py", assignment)
        assert result.returncode == 2 and "not changed" in result.stderr, (assignment, result.stderr)
        assert path.read_bytes() == before


def test_runtime_set_and_show_write_exactly_the_format(tmp_path):
    path = write_notebook(tmp_path, RuntimeSpec("py", "python", environment=PYTHON_IMAGE), [("a", "1\n")])
    result = njtui("runtime", "set", str(path), "py", "machine=small", "cpus=1", "memory=256MB", "gpus=0", "mount_cuda=false", "idle_timeout=20m", "env.MPLBACKEND=Agg", "secrets.AWS_SECRET_ACCESS_KEY=aws-prod")
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert 'machine = "small"\ncpus = 1.0\nmemory = "256MB"\ngpus = 0\nmount_cuda = false\nidle_timeout = "20m"\n' in text
    assert '[runtimes.py.env]\nMPLBACKEND = "Agg"\n' in text and '[runtimes.py.secrets]\nAWS_SECRET_ACCESS_KEY = "aws-prod"\n' in text
    shown = njtui("runtime", "show", str(path), "py", "--json")
    assert json.loads(shown.stdout)["memory"] == "256MB"


# -- secrets


def test_secret_store_is_refused_when_others_can_read_it():
    store = SecretStore()
    store.set("one", "value")
    assert store.path.stat().st_mode & 0o777 == 0o600
    store.path.chmod(0o644)
    result = njtui("secrets", "ls")
    assert result.returncode == 2 and "chmod 600" in result.stderr


def test_secrets_cli_reads_the_value_from_stdin_never_argv():
    assert njtui("secrets", "set", "token", input="abc\n").returncode == 0
    assert njtui("secrets", "ls").stdout.split() == ["token"]
    assert SecretStore().get("token") == "abc"
    assert njtui("secrets", "rm", "token").returncode == 0
    assert njtui("secrets", "ls").stdout.split() == []


def test_a_missing_secret_is_a_clear_error_at_boot(tmp_path):
    path = write_notebook(tmp_path, RuntimeSpec("py", "python", secrets={"API_KEY": "not-stored"}), [("a", "1\n")])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 1
    assert "not-stored" in events(result)[-1]["reason"] and "njtui secrets set not-stored" in events(result)[-1]["reason"]


@pytest.mark.docker
def test_a_secret_is_an_env_var_and_a_file_and_nowhere_else(docker_engine, tmp_path):
    SecretStore().set("api-token", SECRET_VALUE)
    expected = hashlib.sha256(SECRET_VALUE.encode()).hexdigest()
    path = write_notebook(
        tmp_path,
        RuntimeSpec("py", "python", environment=PYTHON_IMAGE, secrets={"API_TOKEN": "api-token"}),
        [("use", "import os, hashlib\nfrom_env = os.environ['API_TOKEN']\nfrom_file = open('/run/secrets/API_TOKEN').read()\n[hashlib.sha256(v.encode()).hexdigest() for v in (from_env, from_file)]\n")],
    )
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert result_of(result, "use") == repr([expected, expected])
    (container,) = [c for c in docker_engine.containers.list(filters={"label": "org.njtui.runtime=py"}, ignore_removed=True) if c.labels["org.njtui.notebook"] == str(path.resolve())]
    secret = SECRET_VALUE.encode()
    assert secret not in json.dumps(container.attrs).encode(), "not in docker inspect"
    assert secret not in path.read_bytes(), "not in the notebook file"
    log = Path(os.environ["XDG_STATE_HOME"]) / "njtui" / "runner.log"
    assert log.exists() and secret not in log.read_bytes(), "not in the runner log"
    for stored in (tmp_path / "nb.results").rglob("*"):
        if stored.is_file():
            assert secret not in stored.read_bytes(), f"not in the results store ({stored})"
    image = container.commit(repository="njtui-test/secret-check", tag=str(os.getpid()))
    try:
        assert secret not in b"".join(image.save()), "not in an image saved from the container"
    finally:
        docker_engine.images.remove(image.id, force=True)
    stop_own_runtimes(path)


@pytest.mark.docker
def test_env_layers_image_notebook_runtime(docker_engine, tmp_path):
    path = write_notebook(
        tmp_path,
        RuntimeSpec("py", "python", environment=PYTHON_IMAGE, env={"LAYER": "runtime"}),
        [("env", "import os\n(os.environ['LANG'], os.environ['SHARED'], os.environ['LAYER'])\n")],
        env={"SHARED": "notebook", "LAYER": "notebook"},
    )
    result = njtui("run", str(path), "--json")
    assert result_of(result, "env") == "('C.UTF-8', 'notebook', 'runtime')"
    assert DockerBackend().image_env(PYTHON_IMAGE)["LANG"] == "C.UTF-8"
    stop_own_runtimes(path)


# -- limits, GPUs, CUDA


@pytest.mark.docker
def test_cpu_and_memory_limits_and_out_of_memory(docker_engine, tmp_path):
    path = write_notebook(
        tmp_path,
        RuntimeSpec("py", "python", environment=PYTHON_IMAGE, cpus=1.0, memory="256MB"),
        [("small", "1\n"), ("hog", "print('allocating', flush=True)\nblocks = [bytearray(64 << 20) for _ in range(16)]\n")],
    )
    assert njtui("run", str(path), "--cell", "small").returncode == 0
    (container,) = [c for c in docker_engine.containers.list(filters={"label": "org.njtui.runtime=py"}, ignore_removed=True) if c.labels["org.njtui.notebook"] == str(path.resolve())]
    assert container.attrs["HostConfig"]["NanoCpus"] == 1_000_000_000 and container.attrs["HostConfig"]["Memory"] == 256_000_000
    result = njtui("run", str(path), "--cell", "hog", "--json")
    done = events(result)[-1]
    assert done["status"] == "lost" and "killed: out of memory" in done["reason"]


@pytest.mark.docker
def test_machine_preset_gives_the_limits(docker_engine, tmp_path):
    spec = RuntimeSpec("py", "python", environment=PYTHON_IMAGE, machine="medium")
    notebook = Notebook(runtimes={"py": spec})
    container = DockerBackend().create(str(tmp_path / "nb.toml"), spec, resolve(notebook, spec))
    try:
        assert container.attrs["HostConfig"]["NanoCpus"] == 2_000_000_000 and container.attrs["HostConfig"]["Memory"] == 4_000_000_000
    finally:
        container.remove(force=True, v=True)


@pytest.mark.docker
@pytest.mark.parametrize(("gpus", "expected"), [(2, {"Count": 2, "DeviceIDs": []}), (["0", "3"], {"Count": 0, "DeviceIDs": ["0", "3"]})])
def test_gpus_become_device_requests(docker_engine, tmp_path, gpus, expected):
    spec = RuntimeSpec("py", "python", environment=PYTHON_IMAGE, gpus=gpus)
    notebook = Notebook(runtimes={"py": spec})
    container = DockerBackend().create(str(tmp_path / "nb.toml"), spec, resolve(notebook, spec))
    try:
        (request,) = container.attrs["HostConfig"]["DeviceRequests"]
        assert request["Capabilities"] == [["gpu"]]
        assert request["Count"] == expected["Count"] and (request["DeviceIDs"] or []) == expected["DeviceIDs"]
    finally:
        container.remove(force=True, v=True)


@pytest.mark.docker
def test_mount_cuda_mounts_the_toolkit_and_sets_the_paths(docker_engine, tmp_path, monkeypatch):
    # This machine's CUDA toolkit if it has one, else a toolkit-shaped directory: what is
    # tested is that the directory is mounted read-only and found through PATH.
    toolkit = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    if not (toolkit / "bin" / "nvcc").exists():
        toolkit = tmp_path / "cuda"
        (toolkit / "bin").mkdir(parents=True)
        (toolkit / "lib64").mkdir()
        (toolkit / "bin" / "nvcc").write_text("#!/bin/sh\necho 'nvcc: stand-in toolkit'\n")
        (toolkit / "bin" / "nvcc").chmod(0o755)
    monkeypatch.setenv("NJTUI_CUDA_HOME", str(toolkit))
    path = write_notebook(tmp_path, RuntimeSpec("sh", "bash", environment=PYTHON_IMAGE, mount_cuda=True), [("nvcc", "command -v nvcc\necho $LD_LIBRARY_PATH\nnvcc --version | head -n 1\n")])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    out = "".join(e["text"] for e in events(result) if e["event"] == "stream" and e["name"] == "stdout").splitlines()
    assert out[0] == "/usr/local/cuda/bin/nvcc" and out[1].startswith("/usr/local/cuda/lib64") and "nvcc" in out[2].lower()
    (container,) = [c for c in docker_engine.containers.list(filters={"label": "org.njtui.runtime=sh"}, ignore_removed=True) if c.labels["org.njtui.notebook"] == str(path.resolve())]
    assert f"{toolkit.resolve()}:/usr/local/cuda:ro" in container.attrs["HostConfig"]["Binds"]
    stop_own_runtimes(path)


def test_njtui_mount_cuda_variable_turns_it_on(monkeypatch):
    spec = RuntimeSpec("py", "python", environment=PYTHON_IMAGE)
    assert not resolve(Notebook(runtimes={"py": spec}), spec).mount_cuda
    monkeypatch.setenv("NJTUI_MOUNT_CUDA", "1")
    assert resolve(Notebook(runtimes={"py": spec}), spec).mount_cuda


@pytest.mark.gpu
@pytest.mark.docker
def test_nvidia_smi_in_a_gpu_runtime(docker_engine, tmp_path):
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        pytest.skip("no NVIDIA GPU on this machine")
    path = write_notebook(tmp_path, RuntimeSpec("sh", "bash", environment=PYTHON_IMAGE, gpus=1, mount_cuda=True), [("smi", "nvidia-smi -L\n")])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0 and "GPU 0" in "".join(e.get("text", "") for e in events(result))


# -- mounts


@pytest.mark.docker
def test_dir_and_git_mounts(docker_engine, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.csv").write_text("a,b\n1,2\n")
    repo = tmp_path / "repo"
    git = git_repository(repo, "v1\n")
    subprocess.run([*git, "tag", "v1"], check=True)
    (repo / "VERSION").write_text("v2\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    bare = tmp_path / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    spec = RuntimeSpec(
        "py",
        "python",
        environment=PYTHON_IMAGE,
        mounts=[Mount("dir", str(data), "/data", read_only=True), Mount("git", f"file://{bare}", "/src/repo", ref="v1")],
    )
    path = write_notebook(tmp_path, spec, [("read", "import os\n(open('/data/input.csv').read(), open('/src/repo/VERSION').read(), os.access('/data/input.csv', os.W_OK))\n")])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert result_of(result, "read") == repr(("a,b\n1,2\n", "v1\n", False))
    stop_own_runtimes(path)


@pytest.mark.docker
def test_s3_mount_reads_the_bucket_and_writes_changes_back(docker_engine, moto_server, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing-key", aws_secret_access_key="testing-secret")
    s3.create_bucket(Bucket="lab")
    s3.put_object(Bucket="lab", Key="runs/input.txt", Body=b"from the bucket\n")
    s3.put_object(Bucket="lab", Key="elsewhere.txt", Body=b"not under the prefix\n")
    store = SecretStore()
    store.set("s3-key", "testing-key")
    store.set("s3-secret", "testing-secret")
    mount = Mount("s3", "s3://lab/runs", "/data", read_only=False, extra={"endpoint": moto_server, "access_key_id": "s3-key", "secret_access_key": "s3-secret"})
    spec = RuntimeSpec("py", "python", environment=PYTHON_IMAGE, mounts=[mount])
    path = write_notebook(tmp_path, spec, [("rw", "import os\nseen = sorted(os.listdir('/data'))\nopen('/data/output.txt', 'w').write('written by a cell\\n')\n(seen, open('/data/input.txt').read())\n")])
    result = njtui("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert result_of(result, "rw") == repr((["input.txt"], "from the bucket\n"))
    body = s3.get_object(Bucket="lab", Key="runs/output.txt")["Body"].read()
    assert body == b"written by a cell\n"
    assert "testing-secret" not in path.read_text()
    stop_own_runtimes(path)


# -- changes apply on restart


@pytest.mark.docker
def test_editing_a_running_runtime_applies_on_restart(docker_engine, tmp_path):
    from njtui.runner.runner import Runner

    path = write_notebook(tmp_path, RuntimeSpec("py", "python", environment=PYTHON_IMAGE, env={"MODE": "old"}), [("mode", "import os\nos.environ['MODE']\n")])
    notebook = load_notebook(path)
    runner = Runner(path, notebook)
    try:
        runner.ensure("py")
        assert runner.pending_changes("py") == []
        notebook.runtimes["py"].env["MODE"] = "new"
        notebook.runtimes["py"].memory = "512MB"
        assert runner.pending_changes("py") == ["memory", "env"]
        runner.restart("py")
        assert runner.pending_changes("py") == []
        container = docker_engine.containers.get(runner.sessions["py"].info.details["container"])
        assert container.attrs["HostConfig"]["Memory"] == 512_000_000
        # The agent's environment (the container's own config keeps to the image's: see docker_container).
        agent_env = container.exec_run(["sh", "-c", "for p in /proc/[0-9]*; do grep -q agent.py $p/cmdline 2>/dev/null && tr '\\0' '\\n' < $p/environ; done"]).output.decode()
        assert "MODE=new" in agent_env.splitlines()
        assert not any(line.startswith("MODE=") for line in container.attrs["Config"]["Env"])
    finally:
        runner.stop_all()
        runner.detach()


@pytest.mark.docker
def test_a_machine_type_unknown_here_fails_only_its_runtime_at_boot(docker_engine, tmp_path):
    """A notebook from a machine with other presets: it shows and runs its other runtimes; the
    runtime naming the unknown type turns red when it boots, with the types there are here."""
    notebook = Notebook(title="shared")
    notebook.runtimes["sh"] = RuntimeSpec("sh", "bash", default=True)
    notebook.runtimes["big"] = RuntimeSpec("big", "python", environment=PYTHON_IMAGE, machine="gpu-large", default=True)
    notebook.cells = [Cell("a", "code", "echo here\n", "bash"), Cell("b", "code", "print('there')\n", "python")]
    path = tmp_path / "shared.toml"
    save_notebook(notebook, path)
    assert njtui("show", str(path)).returncode == 0
    result = njtui("run", str(path), "--keep-going", "--json")
    assert result.returncode == 1, result.stderr
    done = {e["cell"]: e for e in events(result) if e["event"] == "done"}
    assert done["a"]["status"] == "ok"
    assert done["b"]["status"] == "error" and "machine type 'gpu-large' is not defined on this machine" in done["b"]["reason"] and "small" in done["b"]["reason"]
