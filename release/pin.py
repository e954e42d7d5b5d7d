"""One version and one image everywhere a user pins them: `python -m release.pin 0.2.0 [--image REGISTRY/REPO]`
rewrites each place, `--check` says whether they all agree (the test suite runs it), `--print-image` prints the
image's registry path (the release workflow pushes there). The workflow (.github/workflows/release.yaml) refuses
a tag that differs from them.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
# A repository reference without tag or digest (distribution/reference's grammar, lower case, an optional port).
IMAGE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$")


@dataclass(frozen=True)
class Place:
    """A file and a pattern whose one group is the version (every match is rewritten)."""

    path: str
    pattern: str

    def versions(self, root: Path) -> list[str]:
        return re.findall(self.pattern, (root / self.path).read_text(), flags=re.M)

    def pin(self, root: Path, version: str) -> None:
        file = root / self.path
        text = file.read_text()

        def swap(match: re.Match[str]) -> str:
            start, end = match.span(1)
            whole = match.group(0)
            offset = match.start(0)
            return whole[: start - offset] + version + whole[end - offset :]

        file.write_text(re.sub(self.pattern, swap, text, flags=re.M))


PLACES = (
    Place("pyproject.toml", r'^version = "([^"]+)"'),
    Place("webhook/__init__.py", r'^__version__ = "([^"]+)"'),
    Place("manifests/base/kustomization.yaml", r"^\s+newTag: (\S+)"),
    Place("charts/apiserver-tls-guard/Chart.yaml", r"^version: (\S+)"),
    Place("charts/apiserver-tls-guard/Chart.yaml", r'^appVersion: "([^"]+)"'),
    Place("webhook/commands/static.py", r'^DEFAULT_IMAGE = "[^"]+:([^"]+)"'),
    Place("Makefile", r"^IMAGE\s+\?= apiserver-tls-guard:(\S+)"),
    Place(".pre-commit-hooks.yaml", r"rev: v(\S+)"),
    Place("README.md", r"^\s+rev: v(\S+)"),
    Place("README.md", r"The image is `(?:[^`:]*/)?apiserver-tls-guard:([^`]+)`"),
)


# Where the image's registry path (registry/repository, no tag) is written. The chart's values give it in two
# parts, image.registry and image.repository.
IMAGE_PLACES = (
    Place("manifests/base/kustomization.yaml", r"^\s+newName: (\S+)"),
    Place("webhook/commands/static.py", r'^DEFAULT_IMAGE = "([^"]+):[^"]+"'),
)
CHART_VALUES = "charts/apiserver-tls-guard/values.yaml"
_REGISTRY = r"^  registry: (\S*)$"
_REPOSITORY = r"^  repository: (\S+)$"


def chart_image(root: Path = ROOT) -> str:
    """registry/repository from the chart's values."""
    text = (root / CHART_VALUES).read_text()
    [registry] = [r.strip("\"'") for r in re.findall(_REGISTRY, text, flags=re.M)]
    [repository] = re.findall(_REPOSITORY, text, flags=re.M)
    return f"{registry}/{repository}" if registry else repository


def pin_image(root: Path, image: str) -> None:
    """Write registry/repository into every place; the registry is what comes before the first `/` when it looks
    like a host (a dot, a colon or localhost), as a container runtime reads a reference."""
    first, _, rest = image.partition("/")
    registry, repository = (
        (first, rest) if rest and ("." in first or ":" in first or first == "localhost") else ("", image)
    )
    Place(CHART_VALUES, _REGISTRY).pin(root, registry or '""')
    Place(CHART_VALUES, _REPOSITORY).pin(root, repository)
    for place in IMAGE_PLACES:
        place.pin(root, image)


def image_disagreements(root: Path = ROOT) -> list[str]:
    expected = chart_image(root)
    return [
        f"{p.path} {p.pattern}: {p.versions(root) or 'no image'} (the chart says {expected})"
        for p in IMAGE_PLACES
        if set(p.versions(root)) != {expected}
    ]


def current(root: Path = ROOT) -> dict[str, list[str]]:
    """Every place and the versions found there."""
    return {f"{p.path} {p.pattern}": p.versions(root) for p in PLACES}


def disagreements(root: Path = ROOT) -> list[str]:
    """Places whose version differs from pyproject.toml's, or that hold none."""
    found = current(root)
    expected = PLACES[0].versions(root)[0]
    return [f"{place}: {versions or 'no version'}" for place, versions in found.items() if set(versions) != {expected}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("version", nargs="?", help="the version to pin, e.g. 0.2.0 (no leading v)")
    parser.add_argument("--image", help="also pin the image's registry path, e.g. ghcr.io/acme/apiserver-tls-guard")
    parser.add_argument("--check", action="store_true", help="only check that every place agrees")
    parser.add_argument("--print-image", action="store_true", help="print the image's registry path")
    args = parser.parse_args(argv)
    if args.print_image:
        print(chart_image())
        return 0
    if args.check:
        problems = disagreements() + image_disagreements()
        for problem in problems:
            print(f"release.pin: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if not args.version or not SEMVER.match(args.version):
        parser.error("give a version like 0.2.0")
    if args.image is not None and not IMAGE.match(args.image):
        parser.error("give an image without tag or digest, like ghcr.io/acme/apiserver-tls-guard")
    for place in PLACES:
        place.pin(ROOT, args.version)
    if args.image:
        pin_image(ROOT, args.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
