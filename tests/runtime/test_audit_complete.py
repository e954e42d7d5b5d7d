"""The continuous audit acts only on complete data (issue 21): one 429 on the pods list used to delete
kube-system's Policy Report and set its violations to 0, and one 409 aborted the whole report write.

Why a fake API here: the real kube-apiserver (tests/e2e) cannot be made to answer a 429 storm with Retry-After,
an expired continue token in the middle of one list, or a 409 on one exact write, on cue; tests/fake_kube_api.py
injects exactly those answers (`Fault`) and serves everything else with the real JSON shapes. The audit's RBAC,
its reports against the real CRDs and the Lease between replicas are tested on the real control plane in
tests/e2e/test_audit_e2e.py.
"""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.admission.test_http import COMPLIANT, NO_TLS, apiserver_pod
from tests.fake_kube_api import FakeKubeApi, Fault, serve_fake_api
from webhook.core.policy import PolicyInForce, load_policy
from webhook.kube import api_client
from webhook.offline.cluster import scan
from webhook.runtime import metrics
from webhook.runtime.audit import ClusterAuditor

PODS = "/api/v1/pods"
REPORTS = "/apis/wgpolicyk8s.io/v1alpha2/policyreports"
REPORT = "/apis/wgpolicyk8s.io/v1alpha2/namespaces/kube-system/policyreports/apiserver-tls-guard"
OTHER_KINDS = (
    "/apis/apps/v1/deployments",
    "/apis/apps/v1/statefulsets",
    "/apis/apps/v1/daemonsets",
    "/apis/apps/v1/replicasets",
    "/apis/batch/v1/jobs",
    "/apis/batch/v1/cronjobs",
    "/api/v1/replicationcontrollers",
    "/api/v1/podtemplates",
)


def _pod(name: str, flags: tuple[str, ...], apiserver: bool = True) -> dict[str, Any]:
    pod = apiserver_pod(*flags, name=name)
    if not apiserver:
        pod["metadata"]["labels"] = {"app": "web"}
        pod["spec"]["containers"][0].update(name="web", image="nginx:1.27", command=["nginx"])
    return pod


def _cluster(pods: list[dict[str, Any]]) -> FakeKubeApi:
    return FakeKubeApi(lists={PODS: pods, **{k: [] for k in OTHER_KINDS}}, collections={REPORTS})


@contextlib.contextmanager
def auditing(api: FakeKubeApi, tmp_path: Path) -> Iterator[ClusterAuditor]:
    with serve_fake_api(api, tmp_path) as kubeconfig:
        in_force = PolicyInForce(load_policy(None, mode="enforce"), "test")
        yield ClusterAuditor(in_force, 300, "wgpolicyk8s.io/v1alpha2", lambda: api_client(str(kubeconfig), None))


def _violations(namespace: str = "kube-system") -> float | None:
    return REGISTRY.get_sample_value(
        "tlsguard_audit_violations", {"control": "tls-cert-and-key", "target_namespace": namespace}
    )


def _calls(api: FakeKubeApi, method: str, prefix: str) -> list[str]:
    return [path for m, path, _ in api.requests if m == method and path.startswith(prefix)]


@pytest.fixture(autouse=True)
def _no_leftover_counts() -> Iterator[None]:
    metrics.AUDIT_VIOLATIONS.replace({})
    yield
    metrics.AUDIT_VIOLATIONS.replace({})


def test_a_429_storm_after_a_complete_audit_keeps_its_counts_and_reports(tmp_path: Path) -> None:
    api = _cluster([_pod("kube-apiserver-bad", NO_TLS)])
    with auditing(api, tmp_path) as auditor:
        assert auditor.once() is True
        assert REPORT in api.objects and _violations() == 1.0
        # More 429s than the client retries: this audit cannot read the pods.
        api.faults.append(Fault("GET", PODS, 429, times=50, headers={"Retry-After": "0"}))
        assert auditor.once() is False
    assert REPORT in api.objects, "the report was deleted on a partial scan"
    assert _calls(api, "DELETE", "/apis") == []
    assert _violations() == 1.0, "the violations were reset on a partial scan"


def test_429_with_retry_after_is_retried_after_the_servers_delay(tmp_path: Path) -> None:
    api = _cluster([_pod("kube-apiserver-bad", NO_TLS)])
    api.faults.append(Fault("GET", PODS, 429, times=2, headers={"Retry-After": "1"}))
    with auditing(api, tmp_path) as auditor:
        started = time.monotonic()
        assert auditor.once() is True
        elapsed = time.monotonic() - started
    assert len(_calls(api, "GET", PODS)) == 3  # two 429s, then the list
    assert elapsed >= 2.0, "Retry-After: 1 was not waited for, twice"
    assert _violations() == 1.0


def test_5xx_is_retried_with_backoff(tmp_path: Path) -> None:
    api = _cluster([_pod("kube-apiserver-bad", NO_TLS)])
    api.faults.append(Fault("GET", PODS, 503, times=1))
    api.faults.append(Fault("GET", "/apis/apps/v1/deployments", 500, times=2))
    with auditing(api, tmp_path) as auditor:
        assert auditor.once() is True
    assert len(_calls(api, "GET", PODS)) == 2
    assert len(_calls(api, "GET", "/apis/apps/v1/deployments")) == 3


def test_an_expired_continue_token_restarts_the_list_without_counting_twice(tmp_path: Path) -> None:
    pods = [_pod(f"kube-apiserver-ok-{i}", COMPLIANT) for i in range(300)]  # two pages of 250
    pods.append(_pod("kube-apiserver-bad", NO_TLS))
    api = _cluster(pods)
    api.faults.append(Fault("GET", PODS, 410, times=1, paging=True))  # the second page: token expired
    with auditing(api, tmp_path) as auditor:
        assert auditor.once() is True
    assert len(_calls(api, "GET", PODS)) == 4  # page 1, page 2 (410), then the whole list again: page 1, page 2
    assert _violations() == 1.0
    results = api.objects[REPORT]["results"]
    assert len({r["resources"][0]["name"] for r in results}) == 301  # each pod once


def test_a_list_that_keeps_expiring_is_an_incomplete_scan(tmp_path: Path) -> None:
    pods = [_pod(f"kube-apiserver-ok-{i}", COMPLIANT) for i in range(300)]
    api = _cluster(pods)
    api.faults.append(Fault("GET", PODS, 410, times=100, paging=True))
    with auditing(api, tmp_path) as auditor:
        assert auditor.once() is False
    assert REPORT not in api.objects


def test_409_on_a_report_write_is_retried_with_a_fresh_read(tmp_path: Path) -> None:
    api = _cluster([_pod("kube-apiserver-bad", NO_TLS)])
    with auditing(api, tmp_path) as auditor:
        assert auditor.once() is True
        first = api.objects[REPORT]["metadata"]["resourceVersion"]
        api.faults.append(Fault("PUT", REPORT, 409, times=2))  # another writer twice in a row
        assert auditor.once() is True
    assert api.objects[REPORT]["metadata"]["resourceVersion"] != first
    assert len(_calls(api, "GET", REPORT)) >= 4  # a fresh read before each of the three PUTs, plus the first audit


def test_reports_of_namespaces_without_apiservers_are_deleted_only_after_a_complete_scan(tmp_path: Path) -> None:
    api = _cluster([_pod("kube-apiserver-bad", NO_TLS)])
    with auditing(api, tmp_path) as auditor:
        assert auditor.once() is True
        api.lists[PODS] = []  # the apiserver is gone ...
        api.faults.append(Fault("GET", "/apis/batch/v1/jobs", 403, times=1))  # ... but one kind cannot be read
        assert auditor.once() is False
        assert REPORT in api.objects
        assert auditor.once() is True  # complete: now it goes
    assert REPORT not in api.objects
    assert _violations() is None
    listed = _calls(api, "GET", REPORTS)
    assert listed and all("fieldSelector=metadata.name%3Dapiserver-tls-guard" in path for path in listed)


def test_the_audit_keeps_only_what_runs_kube_apiserver(tmp_path: Path) -> None:
    """Memory follows the control planes, not the cluster: 5,000 other pods leave nothing behind."""
    pods = [_pod(f"web-{i}", (), apiserver=False) for i in range(5000)]
    pods.append(_pod("kube-apiserver-bad", NO_TLS))
    api = _cluster(pods)
    policy = load_policy(None, mode="enforce")
    with serve_fake_api(api, tmp_path) as kubeconfig, api_client(str(kubeconfig), None) as client:
        tracemalloc.start()
        kept, errors = scan(client, policy, None, lambda _: None, only_apiservers=True)
        _, peak_kept = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        tracemalloc.start()
        everything, _ = scan(client, policy, None, lambda _: None)
        _, peak_all = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert errors == []
    assert [j.resource["name"] for j in kept if j.resource] == ["kube-apiserver-bad"]
    assert len(everything) == 5001
    print(f"\nscan of 5,001 pods: peak {peak_kept / 1e6:.1f} MB keeping the apiservers, {peak_all / 1e6:.1f} MB all")
    assert peak_kept < peak_all


def test_audit_counts_are_replaced_whole_across_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers: the holder writes the counts, any worker answers /metrics; a fixed violation is gone at
    once (a Gauge's label stayed in its worker file for the life of the process)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics.AUDIT_VIOLATIONS.replace({("tls-cert-and-key", "kube-system"): 2.0, ("anonymous-auth", "a"): 1.0})
    text = metrics.exposition()[0].decode()
    assert 'tlsguard_audit_violations{control="tls-cert-and-key",target_namespace="kube-system"} 2.0' in text
    metrics.AUDIT_VIOLATIONS.replace({("anonymous-auth", "a"): 1.0})  # tls-cert-and-key fixed
    text = metrics.exposition()[0].decode()
    assert "tls-cert-and-key" not in text and 'control="anonymous-auth",target_namespace="a"} 1.0' in text
    metrics.AUDIT_VIOLATIONS._series = {}  # another worker's memory: it reads the shared file
    assert metrics.AUDIT_VIOLATIONS.current() == {("anonymous-auth", "a"): 1.0}
