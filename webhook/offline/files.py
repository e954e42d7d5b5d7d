"""The bootstrap guardrail: the webhook's checks on manifest files and on running processes, before admission."""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from webhook.core.engine import evaluate
from webhook.core.policy import Policy
from webhook.offline.documents import DocumentError, load_documents
from webhook.offline.report import Judged

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Inputs:
    """Manifest texts to judge, and the inputs that could not be used (with the reason)."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # notes: inputs left out on purpose, and why


_TEMPLATE_ACTION = re.compile(r"\{\{-?\s.*?\}\}|\{\{[^}]*\}\}", re.S)


def _in_chart_templates(path: Path) -> bool:
    """A file under a Helm chart's templates/: Go templates, YAML only once `helm template` renders them."""
    return any(p.name == "templates" and (p.parent / "Chart.yaml").is_file() for p in path.resolve().parents)


def _excluded(path: Path, root: Path, patterns: Sequence[str]) -> bool:
    names = {path.as_posix()}
    if root.is_dir():
        names.add(path.relative_to(root).as_posix())
    return any(fnmatch.fnmatch(name, pattern) for name in names for pattern in patterns)


def _files_below(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if (
            path.is_file()
            and path.suffix.lower() in MANIFEST_SUFFIXES
            and not any(part.startswith(".") for part in path.relative_to(directory).parts)
        ):
            yield path


def read_inputs(paths: Sequence[str], exclude: Sequence[str] = ()) -> Inputs:
    """The texts of the files named (directories searched), minus those matching an `exclude` glob (on the path
    as given or relative to the directory searched) and Helm chart templates, which are noted as skipped."""
    inputs = Inputs()
    for name in paths:
        if name == "-":
            inputs.texts.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(name)
        files = list(_files_below(path)) if path.is_dir() else [path]
        if path.is_dir() and not files:
            inputs.errors.append(f"{name}: no .yaml, .yml or .json files in this directory")
        for file in files:
            if exclude and _excluded(file, path, exclude):
                continue
            if _in_chart_templates(file):
                inputs.skipped.append(f"{file}: skipped, a Helm chart template (check `helm template` output)")
                continue
            try:
                inputs.texts.append((str(file), file.read_text(encoding="utf-8")))
            except FileNotFoundError:
                inputs.errors.append(f"{file}: no such file or directory")
            except UnicodeDecodeError:
                inputs.errors.append(f"{file}: not UTF-8 text")
            except OSError as err:
                inputs.errors.append(f"{file}: cannot read: {err.strerror}")
    return inputs


def _line_of(lines: list[str], first: int, last: int, pattern: re.Pattern[str]) -> int | None:
    for number in range(first, min(last, len(lines)) + 1):
        if pattern.search(lines[number - 1]):
            return number
    return None


_APISERVER = re.compile("apiserver")  # kube-apiserver, hyperkube apiserver
# A flag that is missing is added to the command line: point at it, not at the object's name.
_COMMAND = re.compile(r"^\s*-?\s*(command|args)\s*:.*apiserver|^\s*-?\s*(command|args)\s*:\s*$")


def finding_line(lines: list[str], first: int, last: int, flags: Sequence[str]) -> int:
    """The line to point a code-scanning annotation at: the flag if written, else the apiserver's command.

    A flag is matched as a whole word: `--requestheader-client-ca-file` is not `--client-ca-file`.
    """
    flag = re.compile(r"(?<![\w-])--?(?:" + "|".join(re.escape(f) for f in flags) + r")(?![\w-])")
    return (
        _line_of(lines, first, last, flag)
        or _line_of(lines, first, last, _COMMAND)
        or _line_of(lines, first, last, _APISERVER)
        or first
    )


def judge_text(text: str, source: str, policy: Policy) -> list[Judged]:
    """Raises DocumentError when the text is not manifests."""
    lines = text.splitlines()
    judged = []
    for doc in load_documents(text, source):
        if not doc.obj.get("kind"):
            continue  # not a Kubernetes object (a values file, a JSON report, ...)
        verdict = evaluate(doc.obj, policy)
        last = doc.end_line or len(lines)
        located = {
            (f.container, f.key): finding_line(lines, doc.line, last, policy.catalog.control(f.key).flags)
            for f in verdict.findings
        }
        if not verdict.subject.mirror:
            # The file in the repository is what must change, not the node path the object would end up at.
            verdict = replace(
                verdict,
                findings=tuple(
                    f._replace(where=f"edit {source} at line {located[(f.container, f.key)]}") for f in verdict.findings
                ),
            )
        judged.append(Judged(source, doc.index, verdict, doc.line, located))
    return judged


def judge_inputs(inputs: Inputs, policy: Policy) -> list[Judged]:
    """The verdicts of every input; unusable ones are added to `inputs.errors`, templates to `inputs.skipped`."""
    judged: list[Judged] = []
    for source, text in inputs.texts:
        try:
            judged.extend(judge_text(text, source, policy))
        except DocumentError as err:
            if _TEMPLATE_ACTION.search(text):
                # `{{ .Values.x }}` outside a chart folder: a template, not broken YAML.
                inputs.skipped.append(f"{source}: skipped, a template ({{{{ ... }}}}), not YAML")
            else:
                inputs.errors.append(str(err))
    return judged


__all__ = ["DocumentError", "Inputs", "judge_inputs", "judge_text", "read_inputs"]
