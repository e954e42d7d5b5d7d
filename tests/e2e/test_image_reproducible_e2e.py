"""Two builds of the image from one tree install the same thing: every file under /opt/venv (the locked
dependencies, the project, their bytecode) has the same bytes, mode and path, read from the OCI archives' own
layers, and the installed distributions are exactly the runtime lock's plus the project. `make image` made one
archive (make e2e builds it before the suite); the test builds a second, and a first too when that one is older
than what goes into the image. A build takes 88-103 s here (buildah, the cached test base), 256-324 s with the two
cores shared by other builds; the test took 107 s with a current archive.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from tests.commands.test_locks import PYPROJECT, lock
from tests.conftest import ROOT
from tests.e2e.node.image import ARCHIVE, TAG, build

VENV = "opt/venv/"
SITE = f"{VENV}lib/python3.11/site-packages/"
# What goes into the image: the Makefile's $(IMAGE_ARCHIVE) prerequisites.
INPUTS = ["Dockerfile", "requirements/build.txt", "requirements/runtime.txt", "pyproject.toml", "README.md"]


def _blob(archive: tarfile.TarFile, digest: str) -> Any:
    member = archive.extractfile(f"blobs/{digest.replace(':', '/')}")
    assert member is not None
    return member


@functools.cache
def layers(path: Path) -> tuple[list[str], dict[str, str]]:
    """The archive's layer digests, and each path under /opt/venv with its type, mode and content digest."""
    files: dict[str, str] = {}
    with tarfile.open(path) as archive:
        index = archive.extractfile("index.json")
        assert index is not None
        [entry] = json.load(index)["manifests"]
        manifest = json.load(_blob(archive, entry["digest"]))
        digests = [layer["digest"] for layer in manifest["layers"]]
        for digest in digests:
            with tarfile.open(fileobj=_blob(archive, digest), mode="r:*") as layer:
                for member in layer:
                    name = member.name.removeprefix("./")
                    if not name.startswith(VENV):
                        continue
                    if member.isfile():
                        content = layer.extractfile(member)
                        assert content is not None
                        files[name] = f"file {member.mode:o} sha256:{hashlib.sha256(content.read()).hexdigest()}"
                    elif member.issym():
                        files[name] = f"link {member.linkname}"
                    else:
                        files[name] = f"dir {member.mode:o}"
    return digests, files


def distributions(files: dict[str, str]) -> dict[str, str]:
    """name -> version of every *.dist-info in site-packages (the directory name is pip's record of both)."""
    found: dict[str, str] = {}
    for name in files:
        match = re.fullmatch(re.escape(SITE) + r"([^/]+)-([^/-]+)\.dist-info/METADATA", name)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def _current(archive: Path) -> bool:
    if not archive.is_file():
        return False
    inputs = [ROOT / name for name in INPUTS] + [
        p for p in (ROOT / "webhook").rglob("*") if p.suffix in {".py", ".yaml", ".json"}
    ]
    return archive.stat().st_mtime >= max(p.stat().st_mtime for p in inputs)


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not shutil.which("buildah") or os.geteuid() != 0:
        message = "building the image needs root and buildah (`make image`, tests/e2e/node/image.py)"
        if os.environ.get("REQUIRE_E2E"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("reproducible")
    first = ARCHIVE if _current(ARCHIVE) else build(TAG, out / "first.oci.tar")
    return first, build(TAG, out / "second.oci.tar")


def test_two_builds_install_the_same_files(two_builds: tuple[Path, Path]) -> None:
    (first_layers, first), (second_layers, second) = (layers(path) for path in two_builds)
    assert len(first) > 1000 and any(name.endswith(".pyc") for name in first)
    differing = sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))
    assert differing == [], differing[:20]
    print(
        f"{len(first)} paths under /{VENV} identical in both builds; "
        f"layer digests {'identical' if first_layers == second_layers else 'differ (file times)'}"
    )


def test_the_image_installs_exactly_the_runtime_lock(two_builds: tuple[Path, Path]) -> None:
    _, files = layers(two_builds[1])
    locked = {name: entry.version for name, entry in lock("runtime.txt").items()}
    # pip and setuptools are uninstalled in the build stage: the final image cannot install anything.
    assert distributions(files) == {**locked, "apiserver-tls-guard": PYPROJECT["project"]["version"]}
