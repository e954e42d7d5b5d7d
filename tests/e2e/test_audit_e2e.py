"""Continuous audit and Policy Reports on the real apiserver.

The Policy Report CRDs are the real ones (wgpolicyk8s.io from Kyverno's Go module, openreports.io from its own:
`make kube` fetches them). The webhook's RBAC is the shipped overlay plus the audit component, rendered by real
kubectl kustomize; `serve` runs as that ServiceAccount (a token from `kubectl create token`), so a permission the
component lacks is a 403 in the log, and the real apiserver validates every report we write against the CRD's
schema.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, RunningServer, cli, start_server, stop_server
from tests.e2e.conftest import (
    BAD_FLAGS,
    GOOD_FLAGS,
    apiserver_pod,
    service_account_kubeconfig,
    unregister,
    wait_for,
)
from tests.e2e.controlplane import KUBE_BIN, ControlPlane

NAMESPACE = "apiserver-tls-guard"
ACCOUNT = f"system:serviceaccount:{NAMESPACE}:apiserver-tls-guard"
HOSTED = "clusters-audit"
CRDS = KUBE_BIN / "crds"


def render(overlay_dir: Path) -> str:
    """The warn overlay with the audit component, as kubectl kustomize renders it."""
    overlay_dir.mkdir()
    (overlay_dir / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "manifests/overlays/warn", overlay_dir)],
                "components": [os.path.relpath(ROOT / "manifests/components/audit", overlay_dir)],
            }
        )
    )
    return str(overlay_dir)


def can_i(control_plane: ControlPlane, *what: str) -> bool:
    result = control_plane.kubectl("auth", "can-i", *what, f"--as={ACCOUNT}")
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def audited_cluster(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CRDs, the shipped objects with the audit component, and a namespace running two kube-apiservers."""
    if not (CRDS / "wgpolicyk8s.io_policyreports.yaml").is_file():
        pytest.fail(f"the Policy Report CRDs are not in {CRDS}: `make kube` fetches them")
    work = tmp_path_factory.mktemp("audit")
    control_plane.kubectl("apply", "--server-side", "-f", str(CRDS), check=True)
    control_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True)
    control_plane.kubectl("apply", "-k", str(ROOT / "manifests/overlays/warn"), check=True)
    # RBAC is added only with the component: the webhook alone cannot list pods cluster-wide or write reports.
    assert not can_i(control_plane, "list", "pods", "--all-namespaces")
    assert not can_i(control_plane, "create", "policyreports.wgpolicyk8s.io", "-n", HOSTED)
    control_plane.kubectl("apply", "-k", render(work / "overlay"), check=True)
    unregister(control_plane)  # the shipped configuration points at a Service no kube-proxy routes to
    assert can_i(control_plane, "list", "pods", "--all-namespaces")
    control_plane.kubectl("create", "namespace", HOSTED)
    for name, flags in (("kube-apiserver-bad", BAD_FLAGS), ("kube-apiserver-good", GOOD_FLAGS)):
        control_plane.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(name, flags, HOSTED)), check=True)
    yield service_account_kubeconfig(control_plane, work / "sa.kubeconfig", "apiserver-tls-guard", NAMESPACE)
    control_plane.kubectl("delete", "namespace", HOSTED, "--wait=false")


def report(control_plane: ControlPlane, resource: str, namespace: str) -> dict[str, Any] | None:
    result = control_plane.kubectl("get", resource, "apiserver-tls-guard", "-n", namespace, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def results_by_pod(made: dict[str, Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for result in made["results"]:
        [resource] = result["resources"]
        out.setdefault(resource["name"], {})[result["policy"]] = result["result"]
    return out


def metrics_text(server: RunningServer) -> str:
    context = ssl.create_default_context(cafile=str(server.certs / "ca.crt"))
    context.check_hostname = False
    with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/metrics", context=context, timeout=5) as r:
        text: str = r.read().decode()
    return text


def audit_server(kubeconfig: Path, certs: Path, work: Path, api: str) -> RunningServer:
    return start_server(
        certs, work, "--mode", "enforce", "--kubeconfig", str(kubeconfig),
        "--audit-interval", "1", "--policy-reports", api,
    )  # fmt: skip


def test_audit_writes_policy_reports_and_follows_the_cluster(
    control_plane: ControlPlane, audited_cluster: Path, certs_dir: Path, tmp_path: Path
) -> None:
    server = audit_server(audited_cluster, certs_dir, tmp_path, "wgpolicyk8s.io/v1alpha2")
    try:
        made = wait_for(lambda: report(control_plane, "policyreports.wgpolicyk8s.io", HOSTED), what="a PolicyReport")
        pods = results_by_pod(made)
        # BAD_FLAGS lacks the serving pair (tests/e2e/conftest.py); GOOD_FLAGS passes every scored control
        assert pods["kube-apiserver-bad"]["tls-cert-and-key"] == "fail"
        assert pods["kube-apiserver-good"]["tls-cert-and-key"] == "pass"
        assert all(result != "fail" for result in pods["kube-apiserver-good"].values())
        assert made["summary"]["fail"] == sum(list(p.values()).count("fail") for p in pods.values()) > 0
        assert made["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "apiserver-tls-guard"
        print("\nPolicyReport written by the continuous audit:\n" + json.dumps(made["summary"]))
        print(json.dumps([r for r in made["results"] if r["result"] == "fail"][:1], indent=1))

        violations = wait_for(
            lambda: re.search(
                r'tlsguard_audit_violations\{control="tls-cert-and-key",target_namespace="' + HOSTED + r'"\} (\S+)',
                metrics_text(server),
            ),
            what="the violations metric",
        )
        assert float(violations.group(1)) == 1.0

        control_plane.kubectl("delete", "pod", "kube-apiserver-bad", "-n", HOSTED, "--grace-period=0", "--force")

        def pods_reported() -> dict[str, dict[str, str]]:
            return results_by_pod(report(control_plane, "policyreports.wgpolicyk8s.io", HOSTED) or {"results": []})

        wait_for(lambda: "kube-apiserver-bad" not in pods_reported(), what="the report to drop the deleted pod")
        control_plane.kubectl("delete", "pod", "kube-apiserver-good", "-n", HOSTED, "--grace-period=0", "--force")
        wait_for(
            lambda: report(control_plane, "policyreports.wgpolicyk8s.io", HOSTED) is None,
            what="the report of a namespace without kube-apiserver deleted",
        )
        records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        problems = [r for r in records if r["level"] in ("warning", "error")]
        assert problems == [], problems  # a permission the component lacks would show as HTTP 403 here
        assert any(r["msg"] == "audit" and r["apiservers"] >= 2 for r in records)
    finally:
        stop_server(server)
        for name, flags in (("kube-apiserver-bad", BAD_FLAGS), ("kube-apiserver-good", GOOD_FLAGS)):
            control_plane.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(name, flags, HOSTED)))


def test_openreports_api(control_plane: ControlPlane, audited_cluster: Path, certs_dir: Path, tmp_path: Path) -> None:
    server = audit_server(audited_cluster, certs_dir, tmp_path, "openreports.io/v1alpha1")
    try:
        made = wait_for(lambda: report(control_plane, "reports.openreports.io", HOSTED), what="an openreports Report")
        assert made["kind"] == "Report" and made["source"] == "apiserver-tls-guard"
        assert results_by_pod(made)["kube-apiserver-bad"]["tls-cert-and-key"] == "fail"
    finally:
        stop_server(server)
        control_plane.kubectl("delete", "reports.openreports.io", "apiserver-tls-guard", "-n", HOSTED)


def test_scan_writes_reports_the_apiserver_accepts(control_plane: ControlPlane, audited_cluster: Path) -> None:
    for api, resource in (
        ("wgpolicyk8s.io/v1alpha2", "policyreports.wgpolicyk8s.io"),
        ("openreports.io/v1alpha1", "reports.openreports.io"),
    ):
        result = cli("scan", "--kubeconfig", str(audited_cluster), "--format", "policyreport", "--report-api", api)
        assert result.returncode == 1, result.stderr  # findings
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        assert any(d["metadata"]["namespace"] == HOSTED for d in docs)
        applied = control_plane.kubectl("apply", "--validate=strict", "-f", "-", stdin=result.stdout)
        assert applied.returncode == 0, applied.stderr
        assert report(control_plane, resource, HOSTED) is not None
        control_plane.kubectl("delete", resource, "apiserver-tls-guard", "-n", HOSTED)


# --- issue 21: one auditor per cluster, reports of others untouched -------------------------------------------


def _records(server: RunningServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]


def _audits(server: RunningServer) -> list[dict[str, Any]]:
    return [r for r in _records(server) if r.get("msg") == "audit"]


def _violation_series(server: RunningServer) -> list[str]:
    return re.findall(r"^tlsguard_audit_violations\{.*$", metrics_text(server), re.MULTILINE)


def test_rbac_names_our_reports_and_leaves_everyone_elses(control_plane: ControlPlane, audited_cluster: Path) -> None:
    for verb in ("get", "update", "delete", "list"):
        assert can_i(control_plane, verb, "policyreports.wgpolicyk8s.io/apiserver-tls-guard", "-n", HOSTED), verb
        assert not can_i(control_plane, verb, "policyreports.wgpolicyk8s.io/kyverno-polr-1", "-n", HOSTED), verb
        assert not can_i(control_plane, verb, "reports.openreports.io/kyverno-polr-1", "-n", HOSTED), verb
    # RBAC cannot narrow create by name: the name is in the body, not in the URL the authorizer sees.
    assert can_i(control_plane, "create", "policyreports.wgpolicyk8s.io", "-n", HOSTED)
    assert not can_i(control_plane, "list", "policyreports.wgpolicyk8s.io", "--all-namespaces")  # only by name
    assert can_i(control_plane, "update", "leases.coordination.k8s.io/apiserver-tls-guard-audit", "-n", NAMESPACE)
    assert not can_i(control_plane, "update", "leases.coordination.k8s.io/kube-scheduler", "-n", "kube-system")


def test_one_auditor_among_replicas_and_workers_and_a_handover(
    control_plane: ControlPlane, audited_cluster: Path, certs_dir: Path, tmp_path: Path
) -> None:
    """Two replicas of two workers each: one worker audits (one writer of each report, one exporter of the
    counts); when its replica stops, another takes the Lease over and audits."""
    args = ["--mode", "enforce", "--kubeconfig", str(audited_cluster), "--audit-interval", "1"]
    args += ["--policy-reports", "wgpolicyk8s.io/v1alpha2", "--workers", "2"]
    first = start_server(certs_dir, tmp_path, *args)
    second = start_server(certs_dir, tmp_path, *args)
    try:
        wait_for(lambda: _audits(first) or _audits(second), timeout=60, what="an audit")
        time.sleep(5)
        auditing = [s for s in (first, second) if _audits(s)]
        assert len(auditing) == 1, "both replicas audited"
        leader, other = auditing[0], (second if auditing[0] is first else first)
        assert len({r["pid"] for r in _audits(leader)}) == 1, "two workers audited"
        assert all(r["errors"] == [] for r in _audits(leader))
        # Whichever worker answers /metrics (new connections are spread over both), the counts are there once.
        for _ in range(6):
            assert _violation_series(leader) == [
                f'tlsguard_audit_violations{{control="tls-cert-and-key",target_namespace="{HOSTED}"}} 1.0'
            ]
            assert _violation_series(other) == []  # a second exporter would double `sum by (control, target_namespace)`
        stop_server(leader)  # SIGTERM: the holder releases the Lease on its way out
        handed = time.monotonic()
        wait_for(lambda: _audits(other), timeout=60, what="the other replica taking the Lease over")
        handover = time.monotonic() - handed
        print(f"\naudit Lease handed over in {handover:.1f} s after its holder stopped")
        assert handover < 10, "the Lease was not released: the other replica waited for it to expire (15 s)"
        assert "audit Lease released" in leader.log_text()
        wait_for(lambda: _violation_series(other), what="the counts exported by the new holder")
    finally:
        stop_server(first)
        stop_server(second)
