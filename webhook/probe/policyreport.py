"""The probe's results as one cluster-scoped Policy Report (webhook/offline/policyreport.py has the namespaced
ones of `scan` and the audit, in the same two APIs and with the same result fields).

An API server endpoint belongs to no namespace, so its report is cluster-scoped: `ClusterPolicyReport`
(wgpolicyk8s.io/v1alpha2) or `ClusterReport` (openreports.io/v1alpha1), named `apiserver-tls-guard-probe`, with
one result per (endpoint, control): `fail` for a failing scored control, `warn` for a failing manual one, `pass`,
`skip` for what the network cannot show, and one `error` per endpoint that could not be probed. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook.core.catalog import Catalog
from webhook.core.policy import Mode, Policy
from webhook.offline.policyreport import MANAGED_BY, RESULTS, SOURCE, result_entry
from webhook.probe.judge import FAIL, PASS
from webhook.probe.report import Probed

REPORT_NAME = "apiserver-tls-guard-probe"
CLUSTER_REPORT_APIS: Mapping[str, tuple[str, str]] = {
    # apiVersion -> (kind, plural)
    "wgpolicyk8s.io/v1alpha2": ("ClusterPolicyReport", "clusterpolicyreports"),
    "openreports.io/v1alpha1": ("ClusterReport", "clusterreports"),
}
# What every endpoint stands for: the API server behind the kubernetes Service.
SERVICE = {"apiVersion": "v1", "kind": "Service", "namespace": "default", "name": "kubernetes"}


def _result(
    policy: Policy, catalog: Catalog, benchmark: str, key: str, state: str, message: str, url: str, seconds: int
) -> dict[str, Any]:
    control = catalog.control(key)
    cis = control.cis_id(benchmark)
    mode = policy.mode_for(control)
    if state == FAIL and mode is not Mode.OFF:
        result = "fail" if control.scored else "warn"
    elif state == PASS:
        result = "pass"
    else:
        result, message = "skip", (message if state == FAIL else f"not observable: {message}")
    properties = {"benchmark": benchmark, "mode": mode.value, "endpoint": url}
    if cis:
        properties["cisId"] = cis
    return result_entry(key, control, cis, benchmark, result, message, SERVICE, seconds, properties)


def cluster_report(
    results: Sequence[Probed],
    errors: Sequence[str],
    policy: Policy,
    catalog: Catalog,
    benchmark: str,
    api_version: str,
    now: float,
) -> dict[str, Any]:
    """The one cluster-scoped report of a probe round."""
    kind, _ = CLUSTER_REPORT_APIS[api_version]
    seconds = int(now)
    entries = [
        _result(policy, catalog, benchmark, o.key, o.state, o.detail, p.observation.endpoint.url, seconds)
        for p in results
        for o in p.outcomes
    ]
    for error in errors:
        entries.append(
            {
                "source": SOURCE,
                "policy": REPORT_NAME,
                "rule": "probe",
                "category": f"CIS Kubernetes Benchmark v{benchmark}",
                "severity": "high",
                "result": "error",
                "message": f"could not probe {error}",
                "resources": [dict(SERVICE)],
                "timestamp": {"seconds": seconds, "nanos": 0},
            }
        )
    summary = dict.fromkeys(RESULTS, 0)
    for entry in entries:
        summary[entry["result"]] += 1
    report: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": REPORT_NAME, "labels": dict(MANAGED_BY)},
        "summary": summary,
        "results": entries,
    }
    if kind == "ClusterReport":
        report["source"] = SOURCE
    return report
