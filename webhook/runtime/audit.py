"""Continuous audit: `serve` re-judges what already runs in the cluster, on an interval.

Admission sees objects as they are created or changed; a kube-apiserver that was running before the guard, or a
policy turned from warn to enforce, needs another look: "which running apiservers would enforce mode deny?".
Every `--audit-interval` seconds the same code as `scan` lists Pods and workloads (pages of 250), the counts go to
`tlsguard_audit_violations{control,target_namespace}`, and with `--policy-reports` one Policy Report per
namespace is written (and reports of ours in namespaces that no longer run kube-apiserver are deleted).

A list on an interval, not a watch: kube-apiserver pods change on upgrades and certificate rotations, a few times
a year, and a verdict may also change without any object changing (a policy reload), so a periodic full pass is
both sufficient and the simplest thing that is always right. At 300 s (the manifests' choice) a 10,000-pod cluster
costs 40 paged list calls of pods per 5 minutes. The blocking Kubernetes client runs in a thread: reviews are
never held up by an audit.

Only complete data is acted on. A scan with any list error (after the client's retries of 429/5xx, webhook/
kube.py, and restarts of expired lists, offline/cluster.py) leaves the exported counts and the reports of the last
complete audit as they were: what could not be read is unknown, not clean, and must not delete a report. Only what
runs kube-apiserver is kept in memory. One auditor per cluster: every worker of every replica is a candidate for
a coordination.k8s.io Lease (kubernetes.leaderelection, as client-go's leaderelection), and only the holder
lists, exports the counts and writes reports; a replica that loses the Lease stops exporting them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
from urllib3.exceptions import HTTPError

from webhook.core.policy import PolicyInForce
from webhook.offline.cluster import scan
from webhook.offline.policyreport import MANAGED_BY, REPORT_APIS, REPORT_NAME, reports
from webhook.offline.report import Judged
from webhook.runtime import logs, metrics

log = logging.getLogger("apiserver_tls_guard")
# The library logs every look at the Lease at INFO (every retry period, on every candidate); ours say what matters.
logging.getLogger("leaderelection").setLevel(logging.WARNING)
MAX_NAMESPACES = 100  # label values of audit_violations: namespaces past these are counted as "(other)"
OTHER = "(other)"
CONFLICT_RETRIES = 5  # 409 on a report write: read again and retry, this many times
LEASE_NAME = "apiserver-tls-guard-audit"
# client-go's defaults for controllers are 15 s / 10 s / 2 s (leaderelection.LeaderElectionConfig).
LEASE_SECONDS, RENEW_SECONDS, RETRY_SECONDS = 15, 10, 2


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


def _reason(err: Exception) -> str:
    status = getattr(err, "status", None)
    return f"HTTP {status} {getattr(err, 'reason', '')}".strip() if status else f"{type(err).__name__}: {err}"


class ReportWriter:
    """Writes our Policy Reports and deletes the ones no longer backed by a namespace that runs kube-apiserver."""

    def __init__(self, api: client.ApiClient, api_version: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.group, _, self.version = api_version.partition("/")
        self.plural = REPORT_APIS[api_version][1]

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.objects, method)(self.group, self.version, *args, **kwargs, _request_timeout=30)

    def _write_one(self, report: dict[str, Any]) -> None:
        """Create or replace one report; a 409 (changed or created meanwhile) is answered by reading it again."""
        namespace = report["metadata"]["namespace"]
        for _ in range(CONFLICT_RETRIES):
            try:
                current = self._call("get_namespaced_custom_object", namespace, self.plural, REPORT_NAME)
            except ApiException as err:
                if err.status != 404:
                    raise
                current = None
            try:
                if current is None:
                    report["metadata"].pop("resourceVersion", None)
                    self._call("create_namespaced_custom_object", namespace, self.plural, report)
                else:
                    report["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    self._call("replace_namespaced_custom_object", namespace, self.plural, REPORT_NAME, report)
                return
            except ApiException as err:
                if err.status != 409:
                    raise
        raise RuntimeError(f"still conflicting after {CONFLICT_RETRIES} fresh reads")

    def write(self, made: list[dict[str, Any]]) -> list[str]:
        """Write every report, then delete ours where no kube-apiserver runs any more; returns what failed."""
        errors: list[str] = []
        wanted = {report["metadata"]["namespace"] for report in made}
        for report in made:
            try:
                self._write_one(report)
            except (ApiException, HTTPError, OSError, RuntimeError) as err:
                errors.append(f"cannot write the Policy Report in {report['metadata']['namespace']}: {_reason(err)}")
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        try:
            # By name as well as label: RBAC can then limit `list` (and get, update, delete) to our reports by
            # resourceNames (the apiserver takes the name from a metadata.name field selector, requestinfo.go).
            listed: dict[str, Any] = self.objects.list_cluster_custom_object(  # type: ignore[assignment]
                self.group,
                self.version,
                self.plural,
                label_selector=selector,
                field_selector=f"metadata.name={REPORT_NAME}",
                _request_timeout=30,
            )
            for item in listed.get("items") or []:
                meta = item.get("metadata") or {}
                if meta.get("name") == REPORT_NAME and meta.get("namespace") not in wanted:
                    try:
                        self._call("delete_namespaced_custom_object", meta["namespace"], self.plural, REPORT_NAME)
                    except ApiException as err:
                        if err.status != 404:  # gone already: what we wanted
                            raise
        except (ApiException, HTTPError, OSError) as err:
            errors.append(f"cannot delete stale Policy Reports: {_reason(err)}")
        return errors


class _Lock(LeaseLock):
    """The library's Lease lock on our API client (it would make a default one), saying once why it cannot read
    the Lease when that is not a plain 404 (a 403: the RBAC lacks the Lease)."""

    def __init__(self, api: client.ApiClient, namespace: str, identity: str, closed: threading.Event) -> None:
        super().__init__(LEASE_NAME, namespace, identity)  # type: ignore[no-untyped-call]
        self.api_instance = client.CoordinationV1Api(api)
        self.problem = ""
        self.closed = closed

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        if self.closed.is_set():  # released: the election must neither renew nor take the Lease again
            return False, None
        found, record = super().get(name, namespace)  # type: ignore[no-untyped-call]
        status = getattr(record, "status", None)
        problem = "" if found or status == 404 else f"cannot read the audit Lease {namespace}/{name}: {_reason(record)}"
        if problem and problem != self.problem:
            log.warning(problem)
        self.problem = problem
        return found, record


class AuditLease:
    """Candidate for the audit Lease, in a daemon thread; `leading` is set while this process holds it."""

    def __init__(self, api: client.ApiClient, namespace: str, identity: str | None = None) -> None:
        self.api, self.namespace = api, namespace
        self.identity = identity or f"{socket.gethostname()}_{os.getpid()}"
        self.leading = threading.Event()
        self.closed = threading.Event()

    def _started(self) -> None:
        self.leading.set()
        log.info("audit Lease acquired: this worker audits", extra=logs.fields(identity=self.identity))

    def _stopped(self) -> None:
        self.leading.clear()
        metrics.AUDIT_VIOLATIONS.replace({})  # the new holder exports them; two exporters would double a sum
        log.info("audit Lease lost: another worker audits", extra=logs.fields(identity=self.identity))

    def release(self) -> None:
        """On shutdown: give the Lease up (no holder, as client-go's ReleaseOnCancel), so another candidate takes
        it at its next look (2 s) instead of after the lease duration (15 s)."""
        self.closed.set()
        if not self.leading.is_set():
            return
        self.leading.clear()
        leases = client.CoordinationV1Api(self.api)
        try:
            lease: Any = leases.read_namespaced_lease(LEASE_NAME, self.namespace, _request_timeout=5)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                leases.replace_namespaced_lease(LEASE_NAME, self.namespace, lease, _request_timeout=5)
                log.info("audit Lease released", extra=logs.fields(identity=self.identity))
        except (ApiException, HTTPError, OSError) as err:  # it expires on its own
            log.warning("audit Lease not released", extra=logs.fields(error=_reason(err)))

    def run_forever(self) -> None:
        while not self.closed.is_set():
            lock = _Lock(self.api, self.namespace, self.identity, self.closed)
            config = electionconfig.Config(  # type: ignore[no-untyped-call]
                lock, LEASE_SECONDS, RENEW_SECONDS, RETRY_SECONDS, self._started, self._stopped
            )
            try:
                election = leaderelection.LeaderElection(config)  # type: ignore[no-untyped-call]
                election.run()  # type: ignore[no-untyped-call]  # returns when the Lease is lost
            except Exception as err:  # the candidate must outlive any error; it tries again
                self.leading.clear()
                log.error("audit Lease election failed", extra=logs.fields(error=f"{type(err).__name__}: {err}"))
            time.sleep(RETRY_SECONDS)

    def start(self) -> AuditLease:
        threading.Thread(target=self.run_forever, name="audit-lease", daemon=True).start()
        return self


class ClusterAuditor:
    """Every `interval` seconds, while holding the audit Lease: scan the cluster under the policy in force, export
    the counts, write reports."""

    def __init__(
        self,
        in_force: PolicyInForce,
        interval: float,
        report_api: str | None,
        connect: Callable[[], client.ApiClient],
        lease: Callable[[], AuditLease] | None = None,
    ) -> None:
        self.in_force, self.interval, self.report_api, self.connect = in_force, interval, report_api, connect
        self.lease = lease or (lambda: AuditLease(connect(), os.environ.get("POD_NAMESPACE") or "apiserver-tls-guard"))

    def once(self) -> bool:
        """One audit; True when the whole cluster was read and the reports written. A scan with any list error
        changes nothing: the counts and reports of the last complete audit stay."""
        policy = self.in_force.policy
        started = time.monotonic()
        apiservers = violations = 0
        with self.connect() as api:
            judged, errors = scan(api, policy, None, lambda _: None, only_apiservers=True)
            if not errors:
                counts = violation_counts(judged)
                apiservers, violations = len(judged), sum(counts.values())
                metrics.AUDIT_VIOLATIONS.replace({k: float(v) for k, v in counts.items()})
                if self.report_api:
                    made = reports(judged, policy, self.report_api, time.time())
                    errors += ReportWriter(api, self.report_api).write(made)
            else:
                errors.append("incomplete scan: the last complete audit's counts and reports are kept")
        ok = not errors
        metrics.AUDIT_RUNS.labels("ok" if ok else "error").inc()
        if ok:
            metrics.AUDIT_LAST_SUCCESS.set(time.time())
        log.log(
            logging.INFO if ok else logging.ERROR,
            "audit",
            extra=logs.fields(
                apiservers=apiservers,
                violations=violations,
                errors=errors,
                durationMs=round((time.monotonic() - started) * 1000, 1),
            ),
        )
        return ok

    async def run(self) -> None:
        while True:
            try:
                lease = (await asyncio.to_thread(self.lease)).start()
                break
            except Exception as err:  # no usable configuration yet: say so, and try again
                log.error("audit cannot start", extra=logs.fields(error=f"{type(err).__name__}: {err}"))
                await asyncio.sleep(self.interval)
        next_run = 0.0
        try:
            while True:
                if lease.leading.is_set() and time.monotonic() >= next_run:
                    next_run = time.monotonic() + self.interval
                    try:
                        await asyncio.to_thread(self.once)
                    except Exception as err:  # the audit must never take the webhook down with it
                        metrics.AUDIT_RUNS.labels("error").inc()
                        log.error("audit failed", extra=logs.fields(error=f"{type(err).__name__}: {err}"))
                await asyncio.sleep(min(1.0, self.interval))
        finally:  # cancelled at shutdown: hand the Lease over now (blocking on purpose: the loop is ending)
            lease.release()
