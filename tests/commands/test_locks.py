"""The hash-locked dependency files in requirements/ agree with pyproject.toml, with each other and with the
environment the tests run in, so that what the image installs (runtime.txt) is what `make install` tested.

`make lock` writes them with uv; pip installs them with --require-hashes --no-deps, which resolves nothing: a
dependency missing from a lock would not be installed at all, and the image would fail only when it imports it.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

LOCKS = ROOT / "requirements"
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())


@dataclass(frozen=True)
class Locked:
    version: str
    hashes: frozenset[str]


def parse_lock(text: str) -> dict[str, Locked]:
    """A requirements file as uv and pip-compile write it: `name==version [; marker] \\` then `--hash=` lines.
    Only the entries whose marker holds here, as pip installs them (a universal lock has e.g. colorama for Windows,
    and one numpy for Python 3.11, another for 3.12)."""
    entries: dict[str, Locked] = {}
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, rest = line.partition(" --hash=")
        requirement = Requirement(spec.strip())
        [pin] = list(requirement.specifier)
        assert pin.operator == "==", line
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        hashes = frozenset(re.findall(r"sha256:[0-9a-f]{64}", rest))
        entries[canonicalize_name(requirement.name)] = Locked(pin.version, hashes)
    return entries


def lock(name: str) -> dict[str, Locked]:
    return parse_lock((LOCKS / name).read_text())


def unlocked(requirements: list[str], locked: dict[str, Locked]) -> list[str]:
    """The requirements a lock leaves out or locks at a version they do not allow."""
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        entry = locked.get(canonicalize_name(requirement.name))
        if entry is None:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(entry.version, prereleases=True):
            problems.append(f"{requirement.name} is locked at {entry.version}, outside {requirement.specifier}")
    return problems


RUNTIME: list[str] = PYPROJECT["project"]["dependencies"]
DEV: list[str] = PYPROJECT["project"]["optional-dependencies"]["dev"]


def test_the_checker_finds_a_dependency_missing_from_the_lock_or_locked_outside_its_range() -> None:
    locked = {"fastapi": Locked("0.100.0", frozenset())}
    assert unlocked(["fastapi>=0.110", "uvicorn>=0.54"], locked) == [
        "fastapi is locked at 0.100.0, outside >=0.110",
        "uvicorn is not in the lock",
    ]


def test_every_runtime_dependency_is_in_the_runtime_lock() -> None:
    assert unlocked(RUNTIME, lock("runtime.txt")) == []


def test_every_dev_and_runtime_dependency_is_in_the_dev_lock() -> None:
    assert unlocked(RUNTIME + DEV, lock("dev.txt")) == []


def test_the_runtime_lock_is_the_dev_lock_less_the_dev_tools() -> None:
    """The image's versions and files are exactly the tested ones: runtime.txt is resolved within dev.txt."""
    runtime, dev = lock("runtime.txt"), lock("dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime


@pytest.mark.parametrize("name", ["runtime.txt", "dev.txt", "build.txt", "tools.txt"])
def test_every_locked_package_has_hashes_and_was_written_by_make_lock(name: str) -> None:
    text = (LOCKS / name).read_text()
    assert all(entry.hashes for entry in parse_lock(text).values())
    # The flags of `make lock` (UV_COMPILE): one target Python for the image and CI, markers for every platform.
    [command] = re.findall(r"^#\s+(uv pip compile .*)$", text, re.M)
    assert {"--generate-hashes", "--universal", "--python-version 3.11"} <= set(
        re.findall(r"--[a-z-]+(?: 3\.11)?", command)
    ), command
    assert command.endswith(f"-o requirements/{name}")


def test_the_build_lock_is_the_build_backend_pyproject_names() -> None:
    requires: list[str] = PYPROJECT["build-system"]["requires"]
    written = [line for line in (LOCKS / "build.in").read_text().splitlines() if line and not line.startswith("#")]
    assert written == requires
    assert unlocked(requires, lock("build.txt")) == []


def test_the_tools_lock_pins_what_tools_in_names() -> None:
    names = [line for line in (LOCKS / "tools.in").read_text().splitlines() if line and not line.startswith("#")]
    assert unlocked(names, lock("tools.txt")) == []


def closure(roots: list[str]) -> dict[str, str]:
    """Every distribution the roots need here (this platform, this Python), read from the installed metadata, with
    its installed version; extras are followed as pip follows them."""
    found: dict[str, str] = {}
    wanted = [Requirement(text) for text in roots]
    seen: set[tuple[str, str]] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        extras = {""} | set(requirement.extras)
        if all((name, extra) in seen for extra in extras):
            continue
        seen |= {(name, extra) for extra in extras}
        distribution = importlib.metadata.distribution(name)
        found[name] = distribution.version
        for text in distribution.requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                wanted.append(needed)
    return found


def not_as_installed(roots: list[str], locked: dict[str, Locked]) -> dict[str, tuple[str | None, str]]:
    """What the roots need here but the lock leaves out or locks at another version: (locked, installed)."""
    return {
        name: (locked[name].version if name in locked else None, version)
        for name, version in closure(roots).items()
        if name not in locked or locked[name].version != version
    }


def test_the_closure_check_finds_a_transitive_dependency_left_out() -> None:
    locked = lock("runtime.txt")
    h11 = locked.pop("h11")  # uvicorn's HTTP/1.1 parser: pyproject.toml never names it
    assert not_as_installed(RUNTIME, locked) == {"h11": (None, h11.version)}


def test_the_runtime_lock_is_closed_and_is_what_this_environment_runs() -> None:
    """Each package the runtime needs, followed through the installed metadata, is locked at the version installed
    here: nothing the image would miss under --no-deps, and the tests ran on the locked versions."""
    assert not_as_installed(RUNTIME, lock("runtime.txt")) == {}


def test_the_dev_environment_is_the_dev_lock() -> None:
    assert not_as_installed(RUNTIME + DEV, lock("dev.txt")) == {}


def test_make_install_and_the_image_install_only_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "PIP_LOCKED := -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps" in makefile
    assert "$(PIP_LOCKED) -r $(LOCK_DIR)/build.txt -r $(LOCK_DIR)/dev.txt" in makefile
    assert "$(PIP_LOCKED) -r $(LOCK_DIR)/tools.txt" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n]*)", dockerfile.replace("\\\n", " "))
    assert len(installs) == 2, installs
    locked, project = (" ".join(step.split()) for step in installs)
    assert "--require-hashes --no-deps -r requirements/build.txt -r requirements/runtime.txt" in locked
    assert "--no-deps --no-build-isolation ." in project
