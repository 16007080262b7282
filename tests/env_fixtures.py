"""Things the environment tests install in a runtime and look for in a saved image, made on
the host without the network: a tiny Debian package (dpkg-deb), tiny Python wheels, pip
itself (the wheel bundled with the host's Python, run from its zip), and a scan of every
layer of `docker save`."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

DEB_NAME = "njtui-demo-tool"
DEB_VERSION = "1.0-1"
DEB_FILE = "njtui-demo-tool.deb"
WHEEL_NAME = "demo"
PIP_WHEEL = "pip.whl"  # the bundled pip wheel, copied under this name (python3 /pkgs/pip.whl/pip …)


def wheel_file(version: str) -> str:
    return f"{WHEEL_NAME}-{version}-py3-none-any.whl"


def build_deb(directory: Path) -> Path:
    """A Debian package that installs /usr/local/bin/njtui-demo-tool (no dependencies), built
    with dpkg-deb as a packager would; root-owned files, so dpkg installs it as built."""
    tree = directory / "deb-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(f"Package: {DEB_NAME}\nVersion: {DEB_VERSION}\nArchitecture: all\nMaintainer: njtui tests <tests@example.org>\nDescription: a tool the environment tests install\n")
    tool = tree / "usr" / "local" / "bin" / DEB_NAME
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho demo tool 1.0\n")
    tool.chmod(0o755)
    target = directory / DEB_FILE
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(target)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return target


def build_wheel(directory: Path, version: str) -> Path:
    """A pure-Python wheel of the distribution `demo` (module demo, VERSION = version).

    Written with zipfile because no wheel builder is installed here: setuptools 65 needs the
    `wheel` package for bdist_wheel, and neither it nor `build` is in the venv. The layout is
    the wheel spec's (PEP 427): the module, then the .dist-info with METADATA, WHEEL and a
    RECORD of sha256 hashes, which pip checks."""
    module = f'VERSION = "{version}"\n'.encode()
    dist_info = f"{WHEEL_NAME}-{version}.dist-info"
    files = {
        f"{WHEEL_NAME}.py": module,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {WHEEL_NAME}\nVersion: {version}\nSummary: a wheel the environment tests install\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: njtui-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    target = directory / wheel_file(version)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def copy_bundled_pip(directory: Path) -> Path:
    """The pip wheel bundled with the host's Python (ensurepip), which the runtime's image
    lacks: a zip Python runs pip from (python3 pip.whl/pip install …)."""
    import ensurepip

    package = ensurepip._get_packages()["pip"]  # type: ignore[attr-defined]
    source = Path(package.wheel_path) if package.wheel_path else Path(ensurepip.__file__).parent / "_bundled" / package.wheel_name
    target = directory / PIP_WHEEL
    shutil.copyfile(source, target)
    return target


def packages_directory(directory: Path) -> Path:
    """A directory with the .deb, demo 1.0 and 2.0 wheels and pip: mounted read-only at /pkgs."""
    directory.mkdir(parents=True, exist_ok=True)
    build_deb(directory)
    build_wheel(directory, "1.0")
    build_wheel(directory, "2.0")
    copy_bundled_pip(directory)
    return directory


def pip_install(wheel: str) -> str:
    """A bash line that installs a wheel from /pkgs with the mounted pip, offline."""
    return f"python3 /pkgs/{PIP_WHEEL}/pip install --quiet --no-index --no-cache-dir --disable-pip-version-check --break-system-packages /pkgs/{wheel}"


# -- what a saved image holds


@dataclass
class ImageContents:
    """What every layer of `docker save` of some images holds: each path (whiteouts too),
    where each needle was found, and each image's configuration."""

    names: list[str] = field(default_factory=list)
    found: dict[bytes, list[str]] = field(default_factory=dict)  # needle → "layer:path" that contain it
    configs: list[dict] = field(default_factory=list)


def saved_contents(client, references: list[str], needles: list[bytes]) -> ImageContents:
    """`docker save` of each image (streamed to a temporary tar), every layer tar scanned for
    the needles; a layer two images share is read once."""
    contents = ImageContents(found={needle: [] for needle in needles})
    seen: set[str] = set()
    for reference in references:
        with tempfile.TemporaryFile() as spool:
            for chunk in client.images.get(reference).save(chunk_size=1 << 20):
                spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool) as outer:
                members = {member.name: member for member in outer.getmembers()}
                manifest = json.load(_member(outer, members["manifest.json"]))
                for entry in manifest:
                    contents.configs.append(json.load(_member(outer, members[entry["Config"]])))
                    for layer in entry["Layers"]:
                        if layer not in seen:
                            seen.add(layer)
                            _scan_layer(_member(outer, members[layer]), layer, contents)
    return contents


def _member(outer: tarfile.TarFile, member: tarfile.TarInfo):
    handle = outer.extractfile(member)
    assert handle is not None, member.name
    return handle


def _scan_layer(handle, layer: str, contents: ImageContents) -> None:
    with tarfile.open(fileobj=handle, mode="r|*") as inner:
        for entry in inner:
            contents.names.append("/" + entry.name.removeprefix("./").lstrip("/"))
            if entry.isfile():
                data = inner.extractfile(entry)
                blob = data.read() if data is not None else b""
                for needle, where in contents.found.items():
                    if needle in blob or needle in entry.name.encode():
                        where.append(f"{layer}:{entry.name}")
