"""One version everywhere a user pins one: `python -m release.pin 0.2.0` rewrites each place, `--check` says
whether they all agree (the test suite runs it). The release workflow (.github/workflows/release.yaml) refuses a
tag that differs from them.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


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
    Place("webhook/commands/static.py", r'"apiserver-tls-guard:([^"]+)"'),
    Place("Makefile", r"^IMAGE\s+\?= apiserver-tls-guard:(\S+)"),
    Place(".pre-commit-hooks.yaml", r"rev: v(\S+)"),
    Place("README.md", r"^\s+rev: v(\S+)"),
    Place("README.md", r"The image is `apiserver-tls-guard:([^`]+)`"),
)


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
    parser.add_argument("--check", action="store_true", help="only check that every place agrees")
    args = parser.parse_args(argv)
    if args.check:
        problems = disagreements()
        for problem in problems:
            print(f"release.pin: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if not args.version or not SEMVER.match(args.version):
        parser.error("give a version like 0.2.0")
    for place in PLACES:
        place.pin(ROOT, args.version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
