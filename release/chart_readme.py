"""The chart's README, its values table made from the `# --` comments of values.yaml (helm-docs' convention):
`python -m release.chart_readme` writes it, `--check` says whether it is current (the test suite runs it)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "apiserver-tls-guard"
BEGIN, END = "<!-- values: begin (python -m release.chart_readme) -->", "<!-- values: end -->"
_KEY = re.compile(r"^( *)([A-Za-z][\w.-]*):")


def documented(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key with a `# --` comment above it, in file order."""
    found: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        path = [(i, k) for i, k in path if i < indent] + [(indent, key)]
        if pending is not None:
            found.append((".".join(k for _, k in path), " ".join(pending)))
            pending = None
    return found


def _default(values: dict[str, Any], dotted: str) -> str:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return f"`{json.dumps(node)}`"


def table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    rows = ["| value | default | what it does |", "|---|---|---|"]
    for key, description in documented(values_text):
        cell = description.replace("|", "\\|")
        rows.append(f"| `{key}` | {_default(values, key)} | {cell} |")
    return "\n".join(rows)


def rendered(readme: str, values_text: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table(values_text)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the README is current")
    args = parser.parse_args(argv)
    readme = (CHART / "README.md").read_text()
    wanted = rendered(readme, (CHART / "values.yaml").read_text())
    if args.check:
        if wanted != readme:
            print("release.chart_readme: charts/apiserver-tls-guard/README.md is not current", file=sys.stderr)
            return 1
        return 0
    (CHART / "README.md").write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
