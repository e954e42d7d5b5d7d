"""Reports of the offline checks (`check`, `check --node`, `scan`): text for people, JSON, and SARIF 2.1.0."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook import __version__
from webhook.core.catalog import Catalog
from webhook.core.engine import Finding, Verdict
from webhook.core.policy import Mode

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/apiserver-tls-guard/apiserver-tls-guard"
# The JSON report's shape: raised when a field changes meaning or goes away, not when one is added.
JSON_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Judged:
    """One object's verdict and where it came from (a file and document, a process, a cluster object)."""

    source: str
    document: int
    verdict: Verdict
    line: int = 1
    finding_lines: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (container, key) -> line
    # apiVersion, kind, namespace, name, uid of a cluster object (scan): what a Policy Report result points at
    resource: Mapping[str, str] | None = None

    def line_of(self, finding: Finding) -> int:
        return self.finding_lines.get((finding.container, finding.key), self.line)

    def file_line_of(self, finding: Finding) -> int | None:
        """The line in the file to fix, or None where there is no file line (a process, a cluster object)."""
        return self.finding_lines.get((finding.container, finding.key))


def failing(judged: Sequence[Judged]) -> list[tuple[Judged, Finding]]:
    """Every (object, finding) pair."""
    return [(j, f) for j in judged for f in j.verdict.findings]


def exit_code(judged: Sequence[Judged], warn_exit_code: int = 1) -> int:
    """1 when a finding is in enforce mode; `warn_exit_code` when the worst is in warn mode (Kyverno's
    `--warn-exit-code`; 1 unless told); 0 when there are none, or only audit-mode ones."""
    modes = {f.mode for _, f in failing(judged)}
    if Mode.ENFORCE in modes:
        return 1
    return warn_exit_code if Mode.WARN in modes else 0


def summary(judged: Sequence[Judged]) -> str:
    """One line: objects read, kube-apiservers among them, findings."""
    apiservers = sum(1 for j in judged if j.verdict.runs_apiserver)
    findings = len(failing(judged))
    return (
        f"{len(judged)} object{'s' if len(judged) != 1 else ''} read, {apiservers} run kube-apiserver, "
        f"{findings} finding{'s' if findings != 1 else ''}"
    )


def text(judged: Sequence[Judged]) -> str:
    """The report for people: one line per finding with the place to fix, then each control's consequence and
    fix, once."""
    lines: list[str] = []
    fixes: dict[str, Finding] = {}
    for j in judged:
        verdict = j.verdict
        if not verdict.runs_apiserver:
            continue
        head = f"{j.source}"
        if j.document > 1:
            head += f" (document {j.document})"
        head += f": {verdict.subject.describe()}"
        if verdict.exempt:
            lines.append(f"{head}: exempt ({verdict.exempt})")
            continue
        if not verdict.findings:
            lines.append(f"{head}: ok")
            continue
        lines.append(f"{head}:")
        for finding in verdict.findings:
            fixes.setdefault(finding.key, finding)
            lines.append(
                f"  {finding.mode.value.upper():7} {finding.key}: {finding.label}, container {finding.container!r}:"
                f" {finding.detail}. Fix: {finding.where}."
            )
    if fixes:
        # Each control's consequence and remedy once, not once per file.
        lines.append("What each failing control means, and its fix:")
        for key, finding in fixes.items():
            lines.append(f"  {key}: {finding.consequence}. Fix: {finding.fix}.")
    lines.append(summary(judged))
    return "\n".join(lines)


def _finding_json(j: Judged, f: Finding) -> dict[str, Any]:
    subject = j.verdict.subject
    return {
        "source": j.source,
        "document": j.document,
        "line": j.file_line_of(f),
        "kind": subject.kind,
        "namespace": subject.namespace,
        "name": subject.name,
        "container": f.container,
        "control": f.key,
        "cisId": f.cis_id,
        "benchmark": f.benchmark,
        "mode": f.mode.value,
        "detail": f.detail,
        "hiddenBy": f.hidden_by,
        "message": f.message(),
    }


def as_json(judged: Sequence[Judged]) -> str:
    """The report as JSON: its schema version, counts, exemptions, and every finding with its message and the
    line to fix (null for a process or a cluster object)."""
    return json.dumps(
        {
            "schemaVersion": JSON_SCHEMA_VERSION,
            "objects": len(judged),
            "apiservers": sum(1 for j in judged if j.verdict.runs_apiserver),
            "exempt": [
                {"source": j.source, "document": j.document, "reason": j.verdict.exempt}
                for j in judged
                if j.verdict.exempt
            ],
            "findings": [_finding_json(j, f) for j, f in failing(judged)],
        },
        indent=2,
    )


_LEVEL = {Mode.ENFORCE: "error", Mode.WARN: "warning", Mode.AUDIT: "note", Mode.OFF: "none"}


def as_sarif(judged: Sequence[Judged], catalog: Catalog, benchmark: str) -> str:
    """The report as SARIF 2.1.0 for code scanning, one rule per control."""
    keys = list(catalog.keys)
    rules = []
    for control in catalog.controls:
        ids = {b: i for b, i in control.ids.items() if i}
        shown = ids.get(benchmark)
        rules.append(
            {
                "id": control.key,
                "name": "".join(part.capitalize() for part in control.key.split("-")),
                "shortDescription": {"text": control.title},
                "fullDescription": {"text": f"{control.title}. {control.consequence}."},
                "help": {"text": f"Fix: {control.fix}"},
                "defaultConfiguration": {"level": "error" if control.scored else "warning"},
                "properties": {
                    "tags": ["security", "kubernetes", "cis"] + ([f"CIS {shown}"] if shown else []),
                    "cisIds": ids,
                    "scored": control.scored,
                },
            }
        )
    results = []
    for j, f in failing(judged):
        results.append(
            {
                "ruleId": f.key,
                "ruleIndex": keys.index(f.key),
                "level": _LEVEL[f.mode],
                "message": {"text": f.message()},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": j.source},
                            "region": {"startLine": max(1, j.line_of(f))},
                        },
                        "logicalLocations": [
                            {
                                "name": f.container,
                                "fullyQualifiedName": f"{j.verdict.subject.describe()}/{f.container}",
                                "kind": "object",
                            }
                        ],
                    }
                ],
                "properties": {"cisId": f.cis_id, "benchmark": f.benchmark, "mode": f.mode.value},
            }
        )
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "apiserver-tls-guard",
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2)
