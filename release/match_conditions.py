"""The webhooks' matchConditions, written from their one source (webhook.commands.prefilter) into the kustomize base
and the chart: `python -m release.match_conditions` rewrites them, `--check` says whether they agree (the test
suite runs it). The chart's templates read its files; the kustomize base cannot include a file, so it holds a copy.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from webhook.commands import prefilter

ROOT = Path(__file__).resolve().parent.parent
BASE = Path("manifests/base/validatingwebhookconfiguration.yaml")
CHART_FILES = Path("charts/apiserver-tls-guard/files")

# webhook name -> its conditions, and the chart file of each condition's expression
CONDITIONS: dict[str, list[dict[str, Any]]] = {
    "pods.apiserver-tls-guard.io": prefilter.pod_conditions(),
    "workloads.apiserver-tls-guard.io": prefilter.workload_conditions(),
    "expansions.apiserver-tls-guard.io": prefilter.expansion_conditions(),
}
CHART = {
    "pods.apiserver-tls-guard.io": "names-kube-apiserver-pod.cel",
    "workloads.apiserver-tls-guard.io": "runs-kube-apiserver-workload.cel",
    "expansions.apiserver-tls-guard.io": "expands-variables-pod.cel",
}
WIDTH = 110


def fold(expression: str, indent: int) -> list[str]:
    """The expression as the lines of a YAML folded scalar (`>-`): broken at single spaces, which YAML folds back
    into one space each."""
    if "  " in expression or "\n" in expression or expression != expression.strip():
        raise ValueError("an expression to fold must have single spaces only and no newline")
    lines: list[str] = []
    line = ""
    for word in expression.split(" "):
        if line and len(line) + 1 + len(word) + indent > WIDTH:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return [" " * indent + text for text in lines]


_BLOCK = re.compile(r"^( *)- name: (\S+)\n\1  expression: >-\n((?:\1    .*\n)+)", re.M)


def rewrite_base(text: str) -> str:
    """The base file with each condition's folded expression replaced by the one generated."""
    wanted = {c["name"]: c["expression"] for conds in CONDITIONS.values() for c in conds}

    def swap(match: re.Match[str]) -> str:
        indent, name = match.group(1), match.group(2)
        if name not in wanted:
            return match.group(0)
        body = "\n".join(fold(wanted[name], len(indent) + 4))
        return f"{indent}- name: {name}\n{indent}  expression: >-\n{body}\n"

    return _BLOCK.sub(swap, text)


def write(root: Path = ROOT) -> None:
    base = root / BASE
    base.write_text(rewrite_base(base.read_text()))
    for hook, file in CHART.items():
        [condition] = CONDITIONS[hook]
        (root / CHART_FILES / file).write_text(condition["expression"] + "\n")


def disagreements(root: Path = ROOT) -> list[str]:
    """Where the base or the chart holds another expression than the generated one."""
    problems = []
    config = yaml.safe_load((root / BASE).read_text())
    found = {w["name"]: w.get("matchConditions") for w in config["webhooks"]}
    for hook, conditions in CONDITIONS.items():
        if found.get(hook) != conditions:
            problems.append(f"{BASE}: the matchConditions of {hook} are not the generated ones")
        file = root / CHART_FILES / CHART[hook]
        if not file.is_file() or file.read_text().strip() != conditions[0]["expression"]:
            problems.append(f"{CHART_FILES / CHART[hook]}: not the generated expression of {hook}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the base and the chart agree")
    args = parser.parse_args(argv)
    if not args.check:
        write()
    problems = disagreements()
    for problem in problems:
        print(f"release.match_conditions: {problem} (run python -m release.match_conditions)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
