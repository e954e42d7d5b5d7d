"""`apiserver-tls-guard scan` through the official kubernetes client, against tests/fake_kube_api.py.

No kube-apiserver can run on these machines; the stand-in answers the list calls with the real API's JSON shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.admission.test_http import COMPLIANT, NO_TLS, apiserver_pod, hosted_apiserver
from tests.conftest import cli
from tests.fake_kube_api import FakeKubeApi, serve_fake_api


def _owned(obj: dict[str, Any], kind: str, owner: str = "x") -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [
        {"kind": kind, "name": owner, "apiVersion": "apps/v1", "uid": "1", "controller": True}
    ]
    return obj


def _replica_set(name: str, *flags: str) -> dict[str, Any]:
    rs = hosted_apiserver("ReplicaSet", *flags, namespace="kube-system")
    rs["metadata"]["name"] = name
    return rs


def test_scan_reports_apiservers_across_pages_and_kinds(tmp_path: Path) -> None:
    pods = [apiserver_pod(*COMPLIANT, name=f"kube-apiserver-cp-{i}") for i in range(600)]
    pods.append(apiserver_pod(*NO_TLS, name="kube-apiserver-bad"))
    pods.append(_owned(apiserver_pod(*NO_TLS, name="kas-from-rs"), "ReplicaSet"))  # fails as its owner: once
    pods.append(_owned(apiserver_pod(*NO_TLS, name="kas-old"), "ReplicaSet", "fixed"))  # owner fixed since: drift
    pods.append(_owned(apiserver_pod(*NO_TLS, name="kas-forged"), "ReplicaSet", "nobody"))  # owner unknown
    api = FakeKubeApi(
        lists={
            "/api/v1/pods": pods,
            "/apis/apps/v1/deployments": [hosted_apiserver("Deployment", *NO_TLS)],
            "/apis/apps/v1/statefulsets": [],
            "/apis/apps/v1/daemonsets": [],
            "/apis/apps/v1/replicasets": [_replica_set("x", *NO_TLS), _replica_set("fixed", *COMPLIANT)],
            "/apis/batch/v1/jobs": [],
            "/apis/batch/v1/cronjobs": [],
            "/api/v1/replicationcontrollers": [],
            "/api/v1/podtemplates": [],
        }
    )
    with serve_fake_api(api, tmp_path) as kubeconfig:
        result = cli("scan", "--kubeconfig", str(kubeconfig), "--format", "json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert {(f["kind"], f["name"]) for f in report["findings"]} == {
        ("Pod", "kube-apiserver-bad"),
        ("Deployment", "kas"),
        ("ReplicaSet", "x"),
        ("Pod", "kas-old"),
        ("Pod", "kas-forged"),
    }
    sources = {f["name"]: f["source"] for f in report["findings"]}
    assert sources["kas-old"].endswith("(drift: differs from its owner replicaset/kube-system/fixed)")
    assert "drift" not in sources["kas-forged"]
    pod_calls = [path for method, path, _ in api.requests if path.startswith("/api/v1/pods")]
    assert len(pod_calls) == 3  # 604 pods in pages of 250
    assert "continue=500" in pod_calls[-1]
    assert "scanning Pods: 604" in result.stderr


def test_forbidden_kind_is_reported_and_the_rest_still_scanned(tmp_path: Path) -> None:
    api = FakeKubeApi(lists={"/api/v1/pods": [apiserver_pod(*NO_TLS)]}, forbidden={"/apis/batch/v1/cronjobs"})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        result = cli("scan", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 2
    assert "cannot list CronJobs: HTTP 403" in result.stderr
    assert "cannot list Deployments: HTTP 404" in result.stderr
    assert "ENFORCE tls-cert-and-key" in result.stdout


def test_namespace_scope_uses_namespaced_paths(tmp_path: Path) -> None:
    api = FakeKubeApi(lists={"/api/v1/namespaces/kube-system/pods": [apiserver_pod(*COMPLIANT)]})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        result = cli("scan", "--kubeconfig", str(kubeconfig), "-n", "kube-system", "--format", "json")
    assert json.loads(result.stdout)["apiservers"] == 1
    assert all("/namespaces/kube-system/" in path for _, path, _ in api.requests)


def test_no_cluster_configuration_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("scan", "--kubeconfig", str(tmp_path / "missing"))
    assert result.returncode == 2 and "no usable cluster configuration" in result.stderr
    assert "Traceback" not in result.stderr


def test_warn_exit_code_applies_to_scan(tmp_path: Path) -> None:
    lists: dict[str, list[dict[str, Any]]] = {"/api/v1/pods": [apiserver_pod(*NO_TLS)]}
    lists.update({path: [] for path in ("/apis/apps/v1/deployments", "/apis/apps/v1/statefulsets")})
    lists.update({path: [] for path in ("/apis/apps/v1/daemonsets", "/apis/apps/v1/replicasets")})
    lists.update({path: [] for path in ("/apis/batch/v1/jobs", "/apis/batch/v1/cronjobs")})
    lists.update({path: [] for path in ("/api/v1/replicationcontrollers", "/api/v1/podtemplates")})
    with serve_fake_api(FakeKubeApi(lists=lists), tmp_path) as kubeconfig:
        warned = cli("scan", "--kubeconfig", str(kubeconfig), "--mode", "warn", "--warn-exit-code", "0")
        enforced = cli("scan", "--kubeconfig", str(kubeconfig), "--mode", "enforce", "--warn-exit-code", "0")
    assert warned.returncode == 0, warned.stderr
    assert "WARN    tls-cert-and-key" in warned.stdout
    assert enforced.returncode == 1, enforced.stderr
