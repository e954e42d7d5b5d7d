"""`make mutation`: small, realistic bugs put into the core modules one at a time; the tests must catch each.

Our tests start the server as a separate process through the installed command, so a mutant must be in the
working tree itself: each mutant is written over its module, the module's tests run (stopping at the first
failure), and the original is put back, whatever happens. Mutations: a comparison turned around (== / !=, < / <=,
in / not in), `and` / `or` swapped, a `not` dropped, a boolean constant flipped, a small integer moved by one.
Mutants are spread evenly over each module (MUTANTS_PER_MODULE), the same ones on every run.

Prints killed / survived per module and in total; survivors listed in tests/mutation/survivors.md are accepted
(each with its argument) and counted apart. Exit 1 when the kill rate without them is under the target.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = 0.90
PER_MODULE = int(os.environ.get("MUTANTS_PER_MODULE", "6"))

# module -> the tests that cover it (fast ones: the whole unit suite takes a minute per mutant)
MODULES: dict[str, list[str]] = {
    "webhook/core/operators.py": [
        "tests/core",
        "tests/cmdline/test_false_pass.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/core/engine.py": [
        "tests/core",
        "tests/cmdline/test_false_pass.py",
        "tests/offline/test_gitops.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/core/policy.py": [
        "tests/core",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/core/catalog.py": [
        "tests/core",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/cmdline/flags.py": [
        "tests/cmdline",
        "tests/core/test_catalog.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/cmdline/expand.py": [
        "tests/cmdline",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/cmdline/locate.py": [
        "tests/cmdline",
        "tests/admission/test_corpus.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/cmdline/shell.py": [
        "tests/cmdline",
        "tests/admission/test_corpus.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/admission/decide.py": [
        "tests/admission/test_update.py",
        "tests/admission/test_http.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/admission/review.py": [
        "tests/admission/test_http.py",
        "tests/admission/test_update.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/admission/verdict_cache.py": [
        "tests/admission/test_verdict_cache.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/runtime/tls.py": [
        "tests/admission/test_http.py",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/pki/authority.py": [
        "tests/pki",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
    "webhook/pki/rotation.py": [
        "tests/pki",
        "tests/core/test_mutation_survivors.py",
        "tests/core/test_pinned_behaviour.py",
    ],
}

_SWAP_CMP = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # which candidate node, in ast.walk order
    line: int
    what: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.line}:{self.what}"


def _candidates(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAP_CMP:
            found.append((node, f"{type(node.ops[0]).__name__} -> {_SWAP_CMP[type(node.ops[0])].__name__}"))
        elif isinstance(node, ast.BoolOp):
            found.append((node, f"{type(node.op).__name__} -> {'Or' if isinstance(node.op, ast.And) else 'And'}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            found.append((node, "drop not"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            found.append((node, f"{node.value} -> {not node.value}"))
        elif isinstance(node, ast.Constant) and type(node.value) is int and 0 < node.value < 100_000:
            found.append((node, f"{node.value} -> {node.value + 1}"))
    return found


def mutants(module: str) -> list[Mutant]:
    tree = ast.parse((ROOT / module).read_text())
    nodes = _candidates(tree)
    if not nodes:
        return []
    step = max(1, len(nodes) // PER_MODULE)
    chosen = list(range(0, len(nodes), step))[:PER_MODULE]
    return [Mutant(module, i, getattr(nodes[i][0], "lineno", 0), nodes[i][1]) for i in chosen]


class _Apply(ast.NodeTransformer):
    def __init__(self, target: ast.AST) -> None:
        self.target = target

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            if isinstance(node, ast.Compare):
                node.ops[0] = _SWAP_CMP[type(node.ops[0])]()
            elif isinstance(node, ast.BoolOp):
                node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            elif isinstance(node, ast.UnaryOp):
                return node.operand
            elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
                node.value = not node.value
            elif isinstance(node, ast.Constant) and isinstance(node.value, int):
                node.value = node.value + 1
            return node
        return self.generic_visit(node)


def mutated_source(mutant: Mutant) -> str:
    tree = ast.parse((ROOT / mutant.module).read_text())
    target = _candidates(tree)[mutant.index][0]
    return ast.unparse(ast.fix_missing_locations(_Apply(target).visit(tree)))


def run(mutant: Mutant) -> bool:
    """True when the tests fail on the mutant (killed)."""
    path = ROOT / mutant.module
    original = path.read_bytes()
    try:
        path.write_text(mutated_source(mutant))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-n", "2", "-p", "no:cacheprovider", *MODULES[mutant.module]],
            cwd=ROOT,
            capture_output=True,
            timeout=600,
            check=False,
        )
        return result.returncode != 0
    except subprocess.TimeoutExpired:
        return True  # a mutant that hangs the suite is caught too
    finally:
        path.write_bytes(original)


def accepted() -> set[str]:
    notes = ROOT / "tests" / "mutation" / "survivors.md"
    if not notes.is_file():
        return set()
    return {line.split("`")[1] for line in notes.read_text().splitlines() if line.startswith("- `")}


def main() -> int:
    equivalent = accepted()
    totals = {"killed": 0, "survived": 0, "equivalent": 0}
    started = time.monotonic()
    print(f"{'module':40} killed survived equivalent")
    for module in MODULES:
        counts = {"killed": 0, "survived": 0, "equivalent": 0}
        for mutant in mutants(module):
            if run(mutant):
                counts["killed"] += 1
            elif mutant.key in equivalent:
                counts["equivalent"] += 1
            else:
                counts["survived"] += 1
                print(f"  SURVIVED {mutant.key}", flush=True)
        print(f"{module:40} {counts['killed']:6} {counts['survived']:8} {counts['equivalent']:10}", flush=True)
        for k in totals:
            totals[k] += counts[k]
    judged = totals["killed"] + totals["survived"]
    rate = totals["killed"] / judged if judged else 0.0
    print(
        f"\ntotal: {totals['killed']} killed, {totals['survived']} survived, {totals['equivalent']} equivalent "
        f"(argued in tests/mutation/survivors.md): {rate:.0%} killed (target {TARGET:.0%}), "
        f"{time.monotonic() - started:.0f} s"
    )
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
