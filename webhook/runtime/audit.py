"""Continuous audit: `serve` re-judges what already runs in the cluster, on an interval.

Admission sees objects as they are created or changed; a kube-apiserver that was running before the guard, or a
policy turned from warn to enforce, needs another look: "which running apiservers would enforce mode deny?".
Every `--audit-interval` seconds the same code as `scan` lists Pods and workloads (pages of 250), the counts go to
`apiserver_tls_guard_audit_violations{control,namespace}`, and with `--policy-reports` one Policy Report per
namespace is written (and reports of ours in namespaces that no longer run kube-apiserver are deleted).

A list on an interval, not a watch: kube-apiserver pods change on upgrades and certificate rotations, a few times
a year, and a verdict may also change without any object changing (a policy reload), so a periodic full pass is
both sufficient and the simplest thing that is always right. At 300 s (the manifests' choice) a 10,000-pod cluster
costs 40 paged list calls of pods per 5 minutes. The blocking Kubernetes client runs in a thread: reviews are
never held up by an audit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from webhook.core.policy import PolicyInForce
from webhook.offline.cluster import scan
from webhook.offline.policyreport import MANAGED_BY, REPORT_APIS, REPORT_NAME, reports
from webhook.offline.report import Judged
from webhook.runtime import logs, metrics

log = logging.getLogger("apiserver_tls_guard")
MAX_NAMESPACES = 100  # label values of audit_violations: namespaces past these are counted as "(other)"
OTHER = "(other)"


def violation_counts(judged: list[Judged]) -> Counter[tuple[str, str]]:
    """(control, namespace) -> failing (object, control) pairs, namespaces bounded to MAX_NAMESPACES."""
    counts: Counter[tuple[str, str]] = Counter()
    for j in judged:
        for key in {f.key for f in j.verdict.findings}:
            counts[(key, j.verdict.subject.namespace)] += 1
    namespaces = sorted({ns for _, ns in counts})
    kept = set(namespaces[:MAX_NAMESPACES])
    bounded: Counter[tuple[str, str]] = Counter()
    for (key, ns), count in counts.items():
        bounded[(key, ns if ns in kept else OTHER)] += count
    return bounded


class ReportWriter:
    """Writes our Policy Reports and deletes the ones no longer backed by a namespace that runs kube-apiserver."""

    def __init__(self, api: client.ApiClient, api_version: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.group, _, self.version = api_version.partition("/")
        self.plural = REPORT_APIS[api_version][1]

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.objects, method)(self.group, self.version, *args, **kwargs, _request_timeout=30)

    def write(self, made: list[dict[str, Any]]) -> None:
        wanted = {report["metadata"]["namespace"] for report in made}
        for report in made:
            namespace = report["metadata"]["namespace"]
            try:
                current = self._call("get_namespaced_custom_object", namespace, self.plural, REPORT_NAME)
            except ApiException as err:
                if err.status != 404:
                    raise
                self._call("create_namespaced_custom_object", namespace, self.plural, report)
                continue
            report["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self._call("replace_namespaced_custom_object", namespace, self.plural, REPORT_NAME, report)
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        listed: dict[str, Any] = self.objects.list_cluster_custom_object(  # type: ignore[assignment]
            self.group, self.version, self.plural, label_selector=selector, _request_timeout=30
        )
        for item in listed.get("items") or []:
            meta = item.get("metadata") or {}
            if meta.get("name") == REPORT_NAME and meta.get("namespace") not in wanted:
                self._call("delete_namespaced_custom_object", meta["namespace"], self.plural, REPORT_NAME)


class ClusterAuditor:
    """Every `interval` seconds: scan the cluster under the policy in force, export the counts, write reports."""

    def __init__(
        self,
        in_force: PolicyInForce,
        interval: float,
        report_api: str | None,
        connect: Callable[[], client.ApiClient],
    ) -> None:
        self.in_force, self.interval, self.report_api, self.connect = in_force, interval, report_api, connect

    def once(self) -> bool:
        """One audit; True when the whole cluster was read (and the reports written)."""
        policy = self.in_force.policy
        started = time.monotonic()
        with self.connect() as api:
            judged, errors = scan(api, policy, None, lambda _: None)
            counts = violation_counts(judged)
            metrics.AUDIT_VIOLATIONS.clear()
            for (key, namespace), count in counts.items():
                metrics.AUDIT_VIOLATIONS.labels(key, namespace).set(count)
            if self.report_api:
                try:
                    ReportWriter(api, self.report_api).write(reports(judged, policy, self.report_api, time.time()))
                except (ApiException, HTTPError, OSError) as err:
                    status = getattr(err, "status", None)
                    errors.append(f"cannot write Policy Reports: {f'HTTP {status}' if status else err}")
        ok = not errors
        metrics.AUDIT_RUNS.labels("ok" if ok else "error").inc()
        if ok:
            metrics.AUDIT_LAST_SUCCESS.set(time.time())
        log.log(
            logging.INFO if ok else logging.ERROR,
            "audit",
            extra=logs.fields(
                apiservers=sum(1 for j in judged if j.verdict.runs_apiserver),
                violations=sum(counts.values()),
                errors=errors,
                durationMs=round((time.monotonic() - started) * 1000, 1),
            ),
        )
        return ok

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.once)
            except Exception as err:  # the audit must never take the webhook down with it
                metrics.AUDIT_RUNS.labels("error").inc()
                log.error("audit failed", extra=logs.fields(error=f"{type(err).__name__}: {err}"))
            await asyncio.sleep(self.interval)
