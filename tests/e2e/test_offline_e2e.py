"""The offline commands against real things: `check --node` reads the real kube-apiserver process the fixture
started (the CIS audit step, `ps -ef | grep kube-apiserver`, on a real process), and `scan` reads the real API.

Expected verdicts are derived by hand from the flags the fixture passes (controlplane.APIServer.flags) and from
the flags of the objects created here, never from the product's own output.
"""

from __future__ import annotations

import json

from tests.conftest import cli
from tests.e2e.conftest import BAD_FLAGS, GOOD_FLAGS, RegisterFactory, apiserver_deployment, apiserver_pod, unique
from tests.e2e.controlplane import ControlPlane

# The fixture passes --tls-cert-file/--tls-private-key-file, --client-ca-file, --authorization-mode=Node,RBAC and
# --service-account-key-file; etcd is plain http (no etcd certificates), and there is no kubelet client
# certificate, no --kubelet-certificate-authority, no --anonymous-auth=false and no --tls-cipher-suites.
NODE_FAILS = {
    "etcd-cert-and-key",
    "etcd-ca-file",
    "kubelet-client-cert-and-key",
    "kubelet-certificate-authority",
    "anonymous-auth-disabled",
    "tls-cipher-suites-strong",
}


def test_check_node_judges_the_real_kube_apiserver_process(control_plane: ControlPlane) -> None:
    assert control_plane.apiserver is not None and control_plane.apiserver.process is not None
    pid = control_plane.apiserver.process.pid
    result = cli("check", "--node", "--format", "json")
    assert result.returncode == 1, result.stderr  # findings
    report = json.loads(result.stdout)
    ours = [f for f in report["findings"] if f["source"] == f"/proc/{pid}/cmdline"]
    assert {f["control"] for f in ours} == NODE_FAILS
    tls = cli("check", "--node")
    assert f"pid {pid}" in tls.stdout


def test_scan_reads_pods_and_workloads_from_the_real_api(
    control_plane: ControlPlane, registered: RegisterFactory
) -> None:
    registered("enforce", "audit")  # everything is admitted and recorded
    control_plane.kubectl("create", "namespace", "scan-hosted")
    bad_pod, good_pod, bad_deploy = unique("scan-bad"), unique("scan-good"), unique("scan-deploy")
    for obj in (
        apiserver_pod(bad_pod, BAD_FLAGS),
        apiserver_pod(good_pod, GOOD_FLAGS),
        apiserver_deployment(bad_deploy, "scan-hosted", BAD_FLAGS),
    ):
        control_plane.kubectl("create", "-f", "-", stdin=json.dumps(obj), check=True)
    result = cli("scan", "--kubeconfig", str(control_plane.kubeconfig), "--format", "json", "--mode", "enforce")
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]

    def controls(name: str) -> set[str]:
        return {f["control"] for f in findings if f["name"] == name}

    # BAD_FLAGS is GOOD_FLAGS without --tls-cert-file and --tls-private-key-file.
    assert controls(bad_pod) == {"tls-cert-and-key"}
    assert controls(good_pod) == set()
    assert controls(bad_deploy) == {"tls-cert-and-key"}
    assert any(f["kind"] == "Deployment" and f["name"] == bad_deploy for f in findings)
