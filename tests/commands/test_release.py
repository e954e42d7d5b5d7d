"""One version everywhere a user pins one (release/pin.py); tests/e2e/test_release_e2e.py lints the workflow."""

from __future__ import annotations

import shutil
from pathlib import Path

from release.pin import PLACES, current, disagreements
from tests.conftest import ROOT


def copy_places(target: Path) -> Path:
    for place in PLACES:
        (target / place.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / place.path, target / place.path)
    return target


def test_every_place_agrees_now() -> None:
    assert disagreements() == []
    assert all(versions for versions in current().values())  # each pattern still finds its version


def test_pin_rewrites_every_place_and_only_the_version(tmp_path: Path) -> None:
    root = copy_places(tmp_path)
    before = (root / "README.md").read_text()
    for place in PLACES:
        place.pin(root, "9.9.9")
    assert disagreements(root) == []
    assert set(v for versions in current(root).values() for v in versions) == {"9.9.9"}
    after = (root / "README.md").read_text()
    assert after.replace("9.9.9", "0.1.0") == before  # nothing else changed


def test_a_place_left_behind_is_named(tmp_path: Path) -> None:
    root = copy_places(tmp_path)
    PLACES[0].pin(root, "0.2.0")  # pyproject.toml moved on alone
    problems = disagreements(root)
    assert any(p.startswith("charts/apiserver-tls-guard/Chart.yaml") for p in problems)
    assert len(problems) == len(PLACES) - 1
