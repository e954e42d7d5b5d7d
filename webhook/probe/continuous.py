"""Continuous probe: `serve --probe-interval N` probes every API server endpoint from inside the cluster and
exports what it found as metrics on the project's registry (webhook/runtime/metrics.py serves them on /metrics).

Every round reads the `default/kubernetes` EndpointSlices (a Service rotates between backends, so each is probed
on its own), probes each address as `probe` does, and sets, per endpoint: the served certificate's expiry, one
0/1 series per judged control (1: failing), and the time of the last successful probe. The Service IP the
certificate must name is $KUBERNETES_SERVICE_HOST inside a pod, so the only read the loop needs is that
EndpointSlice list (RBAC: `list` on endpointslices in `default`, the chart's and manifests/components/probe's
Role). Rounds are spaced by the interval and each endpoint's handshakes are bounded
(webhook/probe/handshake.py PARALLEL_HANDSHAKES); every refused suite still shows in kube-apiserver's
`apiserver_tls_handshake_errors_total`, about 60 per endpoint per round.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from webhook.core.policy import PolicyInForce
from webhook.probe import judge as judging
from webhook.probe import targets
from webhook.probe.handshake import ProbeError
from webhook.probe.judge import FAIL, PASS, Known, Trust
from webhook.probe.observe import Endpoint, observe
from webhook.probe.policyreport import CLUSTER_REPORT_APIS, REPORT_NAME, cluster_report
from webhook.probe.report import Probed
from webhook.runtime import logs
from webhook.runtime.metrics import PROBE_CERT_EXPIRY, PROBE_FINDINGS, PROBE_LAST_SUCCESS, PROBE_RUNS

log = logging.getLogger("apiserver_tls_guard")


@dataclass(frozen=True)
class Targets:
    """One round's endpoints, the CAs their chain must reach, and what is known of the cluster."""

    endpoints: list[Endpoint]
    trust: Trust
    known: Known


def in_cluster_targets(kubeconfig: str | None) -> Targets:
    """Every ready address of the default/kubernetes EndpointSlices (the kubeconfig's server when they cannot be
    read), the cluster CA, and the Service IP from $KUBERNETES_SERVICE_HOST."""
    config = targets.load(kubeconfig, None)
    # In a pod the Service IP is in the environment; reading the Service too would need a second RBAC rule.
    in_pod = _service_host() if config.kubeconfig is None else None
    view = targets.cluster_view(config, None, want_endpoints=True, service_ip=in_pod)
    fallback = Endpoint.parse(config.server, config.server_name)
    if view.endpoints is None:
        log.warning("probe: probing the Service only", extra=logs.fields(reason=view.endpoints_unknown))
        endpoints = [fallback]
    else:
        endpoints = [Endpoint(host, port, fallback.server_name) for host, port in view.endpoints]
    cas = targets.read_cas(config.ca_pem, config.ca_source) if config.ca_pem else targets.system_cas()
    service_ip = view.service_ip or _service_host()
    why = view.service_ip_unknown or "no $KUBERNETES_SERVICE_HOST"
    return Targets(endpoints, Trust(cas, config.ca_source or "the system's trusted CAs"), Known(None, service_ip, why))


def report_writer(kubeconfig: str | None, api_version: str) -> Callable[[dict[str, Any]], None]:
    """Creates or replaces the cluster-scoped report (RBAC: get, create, update on that one kind)."""

    def write(report: dict[str, Any]) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from webhook.kube import api_client

        group, _, version = api_version.partition("/")
        plural = CLUSTER_REPORT_APIS[api_version][1]
        with api_client(kubeconfig, None) as api:
            objects = client.CustomObjectsApi(api)
            try:
                current: dict[str, Any] = objects.get_cluster_custom_object(  # type: ignore[assignment]
                    group, version, plural, REPORT_NAME, _request_timeout=30
                )
            except ApiException as err:
                if err.status != 404:
                    raise
                objects.create_cluster_custom_object(group, version, plural, report, _request_timeout=30)
                return
            report["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            objects.replace_cluster_custom_object(group, version, plural, REPORT_NAME, report, _request_timeout=30)

    return write


def background(
    in_force: PolicyInForce, interval: float, kubeconfig: str | None, report_api: str | None = None
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The coroutine function `serve` runs beside the webhook (webhook/runtime/serving.py build_app)."""
    writer = report_writer(kubeconfig, report_api) if report_api else None
    loop = ProbeLoop(
        in_force, interval, lambda: in_cluster_targets(kubeconfig), write_report=writer, report_api=report_api or ""
    )
    return loop.run


def _service_host() -> str | None:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class ProbeLoop:
    """Probes on an interval in a thread, so admission reviews are never held up by a handshake."""

    def __init__(
        self,
        in_force: PolicyInForce,
        interval: float,
        resolve: Callable[[], Targets],
        timeout: float = 3.0,
        expiry_days: int = 30,
        write_report: Callable[[dict[str, Any]], None] | None = None,
        report_api: str = "wgpolicyk8s.io/v1alpha2",
    ) -> None:
        self.in_force = in_force
        self.write_report = write_report
        self.report_api = report_api
        self.expiry_days = expiry_days
        self.interval = interval
        self.resolve = resolve
        self.timeout = timeout
        self._seen: set[str] = set()

    def once(self) -> int:
        """One round over every endpoint; returns how many could not be probed."""
        round_ = self.resolve()
        policy = self.in_force.policy
        catalog = judging.probe_catalog()
        benchmark = policy.benchmark_for(None)
        failed = 0
        probed: list[Probed] = []
        errors: list[str] = []
        current = {e.url for e in round_.endpoints}
        for gone in self._seen - current:
            self._forget(gone)
        self._seen = current
        for endpoint in round_.endpoints:
            try:
                observation = observe(endpoint, self.timeout)
            except ProbeError as err:
                failed += 1
                errors.append(str(err))
                PROBE_RUNS.labels("error").inc()
                log.error("probe failed", extra=logs.fields(endpoint=endpoint.url, error=str(err)))
                continue
            now = dt.datetime.now(dt.UTC)
            outcomes = judging.judge(observation, round_.trust, round_.known, catalog, benchmark, now, self.expiry_days)
            probed.append(Probed(observation, tuple(outcomes)))
            PROBE_CERT_EXPIRY.labels(endpoint.url).set(observation.handshake.leaf.not_valid_after_utc.timestamp())
            for outcome in outcomes:
                if outcome.state in (PASS, FAIL):
                    PROBE_FINDINGS.labels(endpoint.url, outcome.key).set(1 if outcome.state == FAIL else 0)
            PROBE_LAST_SUCCESS.labels(endpoint.url).set(time.time())
            PROBE_RUNS.labels("ok").inc()
            log.info(
                "probe",
                extra=logs.fields(
                    endpoint=endpoint.url,
                    failing=[o.key for o in outcomes if o.state == FAIL],
                    durationMs=round(observation.seconds * 1000, 1),
                ),
            )
        if self.write_report is not None:
            made = cluster_report(probed, errors, policy, catalog, benchmark, self.report_api, time.time())
            self.write_report(made)
        return failed

    def _forget(self, url: str) -> None:
        """An endpoint that left the EndpointSlice: its series go, or alerts would fire on a removed server."""
        for gauge in (PROBE_CERT_EXPIRY, PROBE_LAST_SUCCESS):
            with contextlib.suppress(KeyError):
                gauge.remove(url)
        for control in judging.observed_keys():
            with contextlib.suppress(KeyError):
                PROBE_FINDINGS.remove(url, control)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.once)
            except Exception as err:  # the probe must never take the webhook down with it
                PROBE_RUNS.labels("error").inc()
                log.error("probe round failed", extra=logs.fields(error=f"{type(err).__name__}: {err}"))
            await asyncio.sleep(self.interval)
