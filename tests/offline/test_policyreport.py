"""Verdicts as Policy Reports (pure): results per object and control, summary, the two APIs, bounded metrics."""

from __future__ import annotations

from typing import Any

from webhook.core.engine import evaluate
from webhook.core.policy import Exemptions, Mode, Policy
from webhook.offline.policyreport import reports
from webhook.offline.report import Judged
from webhook.runtime.audit import MAX_NAMESPACES, OTHER, violation_counts

FULL = [
    "--tls-cert-file=/pki/apiserver.crt", "--tls-private-key-file=/pki/apiserver.key", "--client-ca-file=/pki/ca.crt",
    "--etcd-cafile=/pki/etcd/ca.crt", "--etcd-certfile=/pki/etcd.crt", "--etcd-keyfile=/pki/etcd.key",
    "--kubelet-client-certificate=/pki/k.crt", "--kubelet-client-key=/pki/k.key",
    "--kubelet-certificate-authority=/pki/ca.crt", "--authorization-mode=Node,RBAC",
    "--service-account-key-file=/pki/sa.pub",
]  # fmt: skip


def pod(name: str, namespace: str, flags: list[str]) -> dict[str, Any]:
    container = {"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.30.2"}
    container["command"] = ["kube-apiserver", *flags]  # type: ignore[assignment]
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
            "spec": {"containers": [container]}}  # fmt: skip


def judged(obj: dict[str, Any], policy: Policy) -> Judged:
    meta = obj["metadata"]
    ref = {"apiVersion": "v1", "kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}
    return Judged(f"pod/{meta['namespace']}/{meta['name']}", 1, evaluate(obj, policy), resource=ref)


def by_control(report: dict[str, Any], name: str) -> dict[str, str]:
    return {r["policy"]: r["result"] for r in report["results"] if r["resources"][0]["name"] == name}


def test_results_per_control() -> None:
    policy = Policy()
    # without the serving pair; anonymous auth and cipher suites (manual controls) left at their defaults
    missing = [f for f in FULL if not f.startswith("--tls-")]
    [made] = reports([judged(pod("cp-1", "hosted", missing), policy)], policy, "wgpolicyk8s.io/v1alpha2", 1000.5)
    assert made["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and made["kind"] == "PolicyReport"
    assert made["metadata"] == {
        "name": "apiserver-tls-guard",
        "namespace": "hosted",
        "labels": {"app.kubernetes.io/managed-by": "apiserver-tls-guard"},
    }
    results = by_control(made, "cp-1")
    assert len(results) == len(policy.catalog.controls)
    assert results["tls-cert-and-key"] == "fail"
    assert results["client-ca-file"] == "pass"
    # manual (not scored) controls that fail are warnings in the report
    assert results["anonymous-auth-disabled"] == "warn" and results["tls-cipher-suites-strong"] == "warn"
    assert made["summary"] == {"pass": len(results) - 3, "fail": 1, "warn": 2, "error": 0, "skip": 0}
    [fail] = [r for r in made["results"] if r["result"] == "fail"]
    assert fail["rule"] == "CIS 1.2.30" and fail["severity"] == "high" and fail["scored"] is True
    assert fail["resources"] == [{"apiVersion": "v1", "kind": "Pod", "namespace": "hosted", "name": "cp-1",
                                  "uid": "uid-cp-1"}]  # fmt: skip
    assert fail["timestamp"] == {"seconds": 1000, "nanos": 0}
    assert fail["properties"]["cisId"] == "1.2.30" and fail["properties"]["mode"] == "enforce"
    assert all(isinstance(v, str) for r in made["results"] for v in r["properties"].values())  # the CRD's type


def test_one_report_per_namespace_objects_without_apiserver_or_reference_left_out() -> None:
    policy = Policy()
    items = [
        judged(pod("a", "ns-b", FULL), policy),
        judged(pod("b", "ns-a", FULL), policy),
        Judged("file.yaml", 1, evaluate(pod("c", "ns-c", FULL), policy)),  # a file: no resource to point at
        judged(
            {
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": "ns-d", "uid": "u"},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
            },
            policy,
        ),
    ]
    made = reports(items, policy, "wgpolicyk8s.io/v1alpha2", 0)
    assert [r["metadata"]["namespace"] for r in made] == ["ns-a", "ns-b"]


def test_exempt_objects_are_skipped_and_off_controls_absent() -> None:
    policy = Policy(exemptions=Exemptions(namespaces=frozenset({"lab"})), control_modes={"client-ca-file": Mode.OFF})
    [made] = reports([judged(pod("x", "lab", []), policy)], policy, "openreports.io/v1alpha1", 0)
    assert made["kind"] == "Report" and made["source"] == "apiserver-tls-guard"
    results = by_control(made, "x")
    assert "client-ca-file" not in results
    assert set(results.values()) == {"skip"}
    assert made["summary"]["skip"] == len(results)


def test_violation_counts_are_bounded() -> None:
    policy = Policy()
    bad = [f for f in FULL if not f.startswith("--client-ca-file")]
    items = [judged(pod(f"p{i}", f"ns-{i:03d}", bad), policy) for i in range(MAX_NAMESPACES + 20)]
    counts = violation_counts(items)
    namespaces = {ns for key, ns in counts if key == "client-ca-file"}
    assert len(namespaces) == MAX_NAMESPACES + 1 and OTHER in namespaces
    assert counts[("client-ca-file", OTHER)] == 20
    assert counts[("client-ca-file", "ns-000")] == 1
