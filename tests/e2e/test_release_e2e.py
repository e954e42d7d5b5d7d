"""The release workflow, read by actionlint (built by `make kube` from github.com/rhysd/actionlint): it cannot run
here (no registry, no Docker engine), so it is linted, and the linter is shown able to refuse a broken copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tests.e2e.conftest import require_built
from tests.e2e.controlplane import KUBE_BIN

ACTIONLINT = KUBE_BIN / "actionlint"
WORKFLOW = ROOT / ".github/workflows/release.yaml"


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    require_built(ACTIONLINT)
    return subprocess.run([str(ACTIONLINT), str(path)], capture_output=True, text=True, timeout=60, check=False)


def test_release_workflow_lints_clean(tmp_path: Path) -> None:
    result = lint(WORKFLOW)
    assert result.returncode == 0, result.stdout
    broken = tmp_path / "release.yaml"
    broken.write_text(WORKFLOW.read_text().replace("${{ steps.build.outputs.digest }}", "${{ steps.nope.outputs.x }}"))
    result = lint(broken)
    assert result.returncode == 1 and "nope" in result.stdout


def test_release_workflow_checks_the_pinned_version_before_building() -> None:
    text = WORKFLOW.read_text()
    assert text.index("python -m release.pin --check") < text.index("docker/build-push-action")
    assert "platforms: linux/amd64,linux/arm64" in text and "sbom: true" in text and "cosign sign" in text
