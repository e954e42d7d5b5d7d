"""One version everywhere a user pins one (release/pin.py); tests/e2e/test_release_e2e.py lints the workflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

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


def copy_image_places(target: Path) -> Path:
    from release.pin import CHART_VALUES, IMAGE_PLACES

    for path in {CHART_VALUES, *(p.path for p in IMAGE_PLACES)}:
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, target / path)
    return target


def test_the_image_is_one_fully_qualified_reference_everywhere() -> None:
    """The chart, the kustomize base and `static` name the published image, with its registry (issue 24 point 1)."""
    from release.pin import chart_image, image_disagreements
    from webhook.commands.static import DEFAULT_IMAGE

    assert image_disagreements() == []
    assert chart_image().startswith("ghcr.io/") and f"{chart_image()}:0.1.0" == DEFAULT_IMAGE


@pytest.mark.parametrize(
    ("image", "registry", "repository"),
    [
        ("registry.example.com/acme/apiserver-tls-guard", "registry.example.com", "acme/apiserver-tls-guard"),
        ("localhost:5000/guard", "localhost:5000", "guard"),
        ("acme/apiserver-tls-guard", "", "acme/apiserver-tls-guard"),  # Docker Hub: no registry part
    ],
)
def test_pin_image_rewrites_the_registry_path_everywhere(
    tmp_path: Path, image: str, registry: str, repository: str
) -> None:
    from release.pin import CHART_VALUES, chart_image, image_disagreements, pin_image

    root = copy_image_places(tmp_path)
    pin_image(root, image)
    assert image_disagreements(root) == [] and chart_image(root) == image
    values = yaml.safe_load((root / CHART_VALUES).read_text())["image"]
    assert (values["registry"], values["repository"]) == (registry, repository)


def test_an_image_place_left_behind_is_named(tmp_path: Path) -> None:
    from release.pin import IMAGE_PLACES, image_disagreements

    root = copy_image_places(tmp_path)
    IMAGE_PLACES[0].pin(root, "quay.io/other/guard")
    assert [p.split(" ")[0] for p in image_disagreements(root)] == [IMAGE_PLACES[0].path]


def test_pin_refuses_an_image_with_a_tag(capsys: pytest.CaptureFixture[str]) -> None:
    from release.pin import main

    with pytest.raises(SystemExit) as exited:
        main(["0.1.0", "--image", "ghcr.io/acme/guard:1.0"])
    assert exited.value.code == 2 and "without tag" in capsys.readouterr().err


def test_the_chart_readme_documents_every_value_and_is_current() -> None:
    """helm-docs' convention: a `# --` comment above each value; the README's table is made from them."""
    from release.chart_readme import CHART, documented, main

    text = (CHART / "values.yaml").read_text()
    described = {key for key, _ in documented(text)}

    def leaves(node: dict[str, object], prefix: str = "") -> list[str]:
        out = []
        for key, value in node.items():
            path = f"{prefix}{key}"
            out += leaves(value, path + ".") if isinstance(value, dict) and value else [path]
        return out

    undocumented = [
        k for k in leaves(yaml.safe_load(text)) if not any(k == d or k.startswith(d + ".") for d in described)
    ]
    assert undocumented == []
    assert main(["--check"]) == 0
