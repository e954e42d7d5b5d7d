"""What the release trusts is pinned to something that cannot move: actions by commit, the base image by digest;
the image carries the full OCI labels; Renovate's patterns find every pin they are meant to move.

The workflow itself is linted by actionlint (tests/e2e/test_release_e2e.py); it cannot run here (no registry).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
DOCKERFILE = (ROOT / "Dockerfile").read_text()
RENOVATE: dict[str, Any] = json.loads((ROOT / "renovate.json").read_text())
# An action by its full commit, its release tag in the comment (what Renovate's github-actions manager writes).
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def steps(path: Path) -> list[dict[str, Any]]:
    workflow = yaml.safe_load(path.read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def uses_lines(path: Path) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*(?:- )?uses: (.+)$", path.read_text(), re.M)]


def test_the_pin_pattern_refuses_a_tag_a_branch_and_a_short_commit() -> None:
    assert PINNED.match("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1")
    for moving in (
        "actions/checkout@v4",
        "aquasecurity/trivy-action@0.33.1",
        "actions/checkout@main",
        "actions/checkout@3d3c42e # v7.0.1",
        "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1",
    ):
        assert not PINNED.match(moving), moving


def test_every_action_is_pinned_by_commit_with_its_tag() -> None:
    assert WORKFLOWS
    for path in WORKFLOWS:
        lines = uses_lines(path)
        assert lines and len(lines) == len([s for s in steps(path) if "uses" in s]), path
        assert [line for line in lines if not PINNED.match(line)] == [], path


def test_the_release_scans_the_image_before_anything_is_pushed() -> None:
    release = steps(ROOT / ".github/workflows/release.yaml")
    names = [step.get("uses", "").split("@")[0] for step in release]
    scan = names.index("aquasecurity/trivy-action")
    pushes = [i for i, step in enumerate(release) if step.get("with", {}).get("push")]
    assert pushes and scan < min(pushes)
    assert release[scan]["with"]["exit-code"] == "1" and "CRITICAL" in release[scan]["with"]["severity"]
    # What is scanned is what the first build step loaded.
    [loaded] = [step for step in release if step.get("with", {}).get("load")]
    assert release[scan]["with"]["image-ref"] == loaded["with"]["tags"]


def test_the_release_pushes_the_chart_with_the_helm_the_tests_ran() -> None:
    go_mod = (ROOT / "tests/e2e/kube/helm/go.mod").read_text()
    tested = re.search(r"^\s*helm\.sh/helm/v3 (v\S+)$", go_mod, re.M)
    assert tested is not None
    [setup] = [s for s in steps(ROOT / ".github/workflows/release.yaml") if "setup-helm" in s.get("uses", "")]
    assert setup["with"]["version"] == tested.group(1)


def test_the_base_image_is_pinned_by_digest_for_every_stage() -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert default is not None
    # Debian 12's Python 3.11: the version the locks are resolved for and the test base's (tests/e2e/node/image.py).
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", default.group(1)), default.group(1)
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


OCI_LABELS = {"title", "description", "licenses", "version", "revision", "created", "source", "url", "documentation"}


def test_the_image_carries_the_full_oci_labels_from_build_arguments() -> None:
    final = DOCKERFILE.split("\nFROM ${PYTHON_IMAGE}\n")[-1]
    labels = dict(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=\"([^\"]*)\"", final))
    assert set(labels) >= OCI_LABELS
    declared = set(re.findall(r"^ARG (\w+)", final, re.M))
    used = {arg for value in labels.values() for arg in re.findall(r"\$\{(\w+)\}", value)}
    assert used <= declared and {"VERSION", "REVISION", "CREATED", "SOURCE"} <= used
    # Every image the release builds gets them all.
    for step in steps(ROOT / ".github/workflows/release.yaml"):
        if "docker/build-push-action" in step.get("uses", ""):
            passed = {line.split("=", 1)[0] for line in step["with"]["build-args"].splitlines()}
            assert passed == {"VERSION", "REVISION", "CREATED", "SOURCE"}, step


def _js_regex(pattern: str) -> re.Pattern[str]:
    """Renovate's patterns are JavaScript regexes: the named groups are spelled (?<name>, Python's (?P<name>."""
    return re.compile(pattern.strip("/").replace("(?<", "(?P<"))


def test_renovate_finds_every_lock_and_the_base_image_digest() -> None:
    [lock_pattern] = RENOVATE["pip-compile"]["managerFilePatterns"]
    locks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "requirements").glob("*"))
    assert [p for p in locks if _js_regex(lock_pattern).search(p)] == [p for p in locks if p.endswith(".txt")]
    dockerfile_manager, helm_manager = RENOVATE["customManagers"]
    [image] = [m for s in dockerfile_manager["matchStrings"] for m in _js_regex(s).finditer(DOCKERFILE)]
    assert image.group("depName") == "python" and image.group("currentValue").endswith("-slim-bookworm")
    assert image.group("currentDigest") in DOCKERFILE
    workflow = (ROOT / ".github/workflows/release.yaml").read_text()
    [helm] = [m for s in helm_manager["matchStrings"] for m in _js_regex(s).finditer(workflow)]
    [setup] = [s for s in steps(ROOT / ".github/workflows/release.yaml") if "setup-helm" in s.get("uses", "")]
    assert helm.group("currentValue") == setup["with"]["version"]
    python_rule = next(r for r in RENOVATE["packageRules"] if r.get("matchPackageNames") == ["python"])
    allowed = _js_regex(python_rule["allowedVersions"])
    assert allowed.match(image.group("currentValue")) and not allowed.match("3.12.9-slim-bookworm")
