"""Verdicts as Policy Reports: the API Policy Reporter and Kyverno read, for violations of what already runs.

Two APIs with one schema (results of `policy`, `rule`, `result`, `severity`, `resources`, ...; a `summary`):
`wgpolicyk8s.io/v1alpha2` PolicyReport, which Kyverno writes by default and Policy Reporter reads, and its
successor `openreports.io/v1alpha1` Report, which Kyverno 1.15+ writes when asked (`--openreportsEnabled`) and
Policy Reporter 3 reads. One report per namespace that runs kube-apiserver, named `apiserver-tls-guard`, with a
result per (object, control): `fail` for a failing scored control, `warn` for a failing manual one, `pass`, or
`skip` for an exempt object. Pure: objects in, report objects out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook.core.catalog import Control
from webhook.core.engine import Finding
from webhook.core.operators import passes_when
from webhook.core.policy import Policy
from webhook.offline.report import Judged

REPORT_APIS: Mapping[str, tuple[str, str]] = {
    # apiVersion -> (kind, plural)
    "wgpolicyk8s.io/v1alpha2": ("PolicyReport", "policyreports"),
    "openreports.io/v1alpha1": ("Report", "reports"),
}
REPORT_NAME = "apiserver-tls-guard"
SOURCE = "apiserver-tls-guard"
MANAGED_BY = {"app.kubernetes.io/managed-by": "apiserver-tls-guard"}
RESULTS = ("pass", "fail", "warn", "error", "skip")


def _result(
    resource: Mapping[str, str], policy: Policy, key: str, findings: Sequence[Finding], seconds: int, reason: str
) -> dict[str, Any]:
    control = policy.catalog.control(key)
    benchmark = findings[0].benchmark if findings else policy.benchmark_for(None)
    cis = control.cis_id(benchmark)
    if reason:
        result, message = "skip", f"exempt: {reason}"
    elif findings:
        result = "fail" if control.scored else "warn"
        message = "\n".join(f.message() for f in findings)
    else:
        result, message = "pass", f"passes: {passes_when(control.check)}"
    properties = {"benchmark": benchmark, "mode": policy.mode_for(control).value}
    if cis:
        properties["cisId"] = cis
    if findings:
        properties["containers"] = ",".join(sorted({f.container for f in findings}))
    return result_entry(key, control, cis, benchmark, result, message, resource, seconds, properties)


def result_entry(
    key: str,
    control: Control,
    cis: str | None,
    benchmark: str,
    result: str,
    message: str,
    resource: Mapping[str, str],
    seconds: int,
    properties: dict[str, str],
) -> dict[str, Any]:
    """One result of either API, the fields Policy Reporter reads (shared with the probe's cluster report)."""
    return {
        "source": SOURCE,
        "policy": key,
        "rule": f"CIS {cis}" if cis else key,
        "category": f"CIS Kubernetes Benchmark v{benchmark}",
        "severity": "high" if control.scored else "medium",
        "scored": control.scored,
        "result": result,
        "message": message,
        "resources": [dict(resource)],
        "timestamp": {"seconds": seconds, "nanos": 0},
        "properties": properties,
    }


def reports(judged: Sequence[Judged], policy: Policy, api_version: str, now: float) -> list[dict[str, Any]]:
    """One report per namespace whose objects run kube-apiserver; objects without a resource reference (files)
    are left out."""
    kind, _ = REPORT_APIS[api_version]
    seconds = int(now)
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for j in judged:
        verdict, resource = j.verdict, j.resource
        if not verdict.runs_apiserver or resource is None:
            continue
        results = by_namespace.setdefault(verdict.subject.namespace, [])
        for control, _ in policy.active_controls:  # controls set to off are not there
            mine = [f for f in verdict.findings if f.key == control.key]
            results.append(_result(resource, policy, control.key, mine, seconds, verdict.exempt or ""))
    out = []
    for namespace, results in sorted(by_namespace.items()):
        summary = dict.fromkeys(RESULTS, 0)
        for result in results:
            summary[result["result"]] += 1
        report: dict[str, Any] = {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": REPORT_NAME, "namespace": namespace, "labels": dict(MANAGED_BY)},
            "summary": summary,
            "results": results,
        }
        if kind == "Report":
            report["source"] = SOURCE
        out.append(report)
    return out
