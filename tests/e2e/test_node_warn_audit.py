"""The guard arriving on a node that already runs kube-apiserver static pods, as the README's first step installs
it: `helm install` in warn mode, with the continuous audit on.

- Mirror pods the kubelet created before the webhook existed were never reviewed (admission sees creates and
  updates, never what already exists) and stay; the continuous audit re-judges them: its Policy Report names the
  non-compliant one and its failing CIS control, and the violations metric counts it.
- kubectl prints the webhook's warnings for a bad pod, through the Service, and the pod is created.
- `check --node`, the CIS audit step (`ps -ef | grep kube-apiserver`), judges the kube-apiserver processes the
  kubelet runs for those static pods, read from /proc in the node's PID namespace.

Both static pods really run (tests/e2e/node/apiservers.py): the compliant one on the certificates its flags name,
the non-compliant one without --tls-cert-file/--tls-private-key-file, serving a self-signed certificate.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BAD_FLAGS, apiserver_pod, unique, wait_for
from tests.e2e.controlplane import KUBE_BIN
from tests.e2e.node.apiservers import cmdline, container_pid, flags, readyz, serving, static_pod, write_pki
from tests.e2e.node.chart import WEBHOOK_CONFIG, Release
from tests.e2e.node.node import NODE_IP, NODE_NAME, Node

NAMESPACE = "guard-warn"
CRDS = KUBE_BIN / "crds"
REPORT_CRDS = ("wgpolicyk8s.io_policyreports.yaml", "wgpolicyk8s.io_clusterpolicyreports.yaml")
LEGACY_PORT, GOOD_PORT = 16453, 16454  # the static pods' kube-apiservers, on the node's network
AUDIT_INTERVAL = 5
VIOLATIONS = "tlsguard_audit_violations"


@dataclass
class Before:
    """What ran before the guard: two static kube-apiservers (mirror pod names), and the release installed after."""

    release: Release
    legacy: str
    good: str
    mirrors_made: float  # time.time() when both mirror pods existed
    installed: float  # time.time() when helm install returned


def mirror(node: Node, name: str) -> dict[str, Any] | None:
    result = node.kubectl("get", "pod", name, "-n", "kube-system", "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


@pytest.fixture(scope="module")
def before(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Before]:
    assert node.kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIG).returncode != 0, "a guard is here"
    pki_dir = tmp_path_factory.mktemp("pki")
    write_pki(node, pki_dir)
    legacy, good = unique("kube-apiserver-legacy"), unique("kube-apiserver-good")
    node.write_static_pod(legacy, static_pod(legacy, flags(legacy, compliant=False, port=LEGACY_PORT), pki_dir))
    node.write_static_pod(good, static_pod(good, flags(good, compliant=True, port=GOOD_PORT), pki_dir))
    release = Release(node, NAMESPACE)
    try:
        for name in (legacy, good):
            wait_for(partial(mirror, node, f"{name}-{NODE_NAME}"), 60, f"the mirror pod of {name}")
        made = time.time()
        node.kubectl("apply", "--server-side", *(f"--filename={CRDS / crd}" for crd in REPORT_CRDS), check=True)
        release.install("mode=warn", "audit.enabled=true", f"audit.interval={AUDIT_INTERVAL}")
        print(
            f"helm install --wait (warn, audit on) to Ready: {release.ready_seconds:.1f} s, then "
            f"{release.reachable_seconds:.1f} s until a review came through the Service"
        )
        yield Before(release, f"{legacy}-{NODE_NAME}", f"{good}-{NODE_NAME}", made, time.time())
    finally:
        if node.kubectl("get", "namespace", NAMESPACE).returncode == 0:
            release.uninstall()
        for name in (legacy, good):
            (node.static_pods / f"{name}.json").unlink(missing_ok=True)


def test_kubectl_prints_the_warnings_of_a_review_through_the_service(before: Before, node: Node) -> None:
    config = json.loads(node.kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "-o", "json").stdout)
    for webhook in config["webhooks"]:
        assert webhook["clientConfig"]["service"]["namespace"] == NAMESPACE
        assert webhook["failurePolicy"] == "Ignore"  # the chart's choice in warn mode
    name = unique("bad")
    result = node.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(name, BAD_FLAGS, "default")))
    try:
        print(f"$ kubectl create -f {name}.json\n{result.stderr.strip()}\n{result.stdout.strip()}")
        assert result.returncode == 0, result.stderr
        assert f"pod/{name} created" in result.stdout
        warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
        assert warnings == [
            "Warning: CIS 1.2.30 v1.5.1 kube-apiserver: --tls-cert-file and --tls-private-key-file are not set"
        ]
        [decision] = wait_for(lambda: before.release.decisions(name), 10, "the webhook pod's decision")
        assert decision["verdict"] == "warned"
    finally:
        node.kubectl("delete", "pod", name, "-n", "default", "--grace-period=0", "--force", "--wait=false")


def report_results(node: Node) -> dict[str, dict[str, dict[str, Any]]]:
    """The kube-system Policy Report's results: pod name -> control key -> result."""
    result = node.kubectl("get", "policyreports.wgpolicyk8s.io", "apiserver-tls-guard", "-n", "kube-system",
                          "-o", "json")  # fmt: skip
    if result.returncode != 0:
        return {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in json.loads(result.stdout)["results"]:
        [resource] = entry["resources"]
        out.setdefault(resource["name"], {})[entry["policy"]] = entry
    return out


def test_a_mirror_pod_from_before_the_webhook_was_never_reviewed_and_the_audit_reports_it(
    before: Before, node: Node
) -> None:
    # Never reviewed: its create (by the kubelet, 201) carries no annotation of ours, and no webhook pod judged it.
    events = [json.loads(line) for line in node.audit_log.read_text().splitlines()]
    [create] = [
        e for e in events
        if (e.get("objectRef") or {}).get("name") == before.legacy and e["verb"] == "create"
        and e["stage"] == "ResponseComplete"
    ]  # fmt: skip
    assert create["user"]["username"] == f"system:node:{NODE_NAME}"
    assert create["responseStatus"]["code"] == 201
    assert not any(key.startswith("pods.apiserver-tls-guard.io/") for key in create.get("annotations", {}))
    assert before.release.decisions(before.legacy) == []

    results = wait_for(
        lambda: (r := report_results(node)) and before.legacy in r and before.good in r and r,
        60,
        "the audit's Policy Report of kube-system naming both mirror pods",
    )
    seconds = time.time() - before.installed
    failing = {key: entry for key, entry in results[before.legacy].items() if entry["result"] == "fail"}
    assert set(failing) == {"tls-cert-and-key"}
    entry = failing["tls-cert-and-key"]
    assert entry["rule"] == "CIS 1.2.30" and entry["properties"]["cisId"] == "1.2.30"
    assert entry["properties"]["mode"] == "warn"
    assert all(entry["result"] == "pass" for entry in results[before.good].values())
    print(
        f"mirror pods made {before.installed - before.mirrors_made:.1f} s before helm install returned; "
        f"Policy Report kube-system/apiserver-tls-guard {seconds:.1f} s after it "
        f"(audit every {AUDIT_INTERVAL} s), for the mirror pod made before the webhook:\n{json.dumps(entry)}"
    )
    series = f'{VIOLATIONS}{{control="tls-cert-and-key",target_namespace="kube-system"}}'
    counted = wait_for(lambda: before.release.metric(series).get(series), 30, "the audit's violations metric")
    assert counted >= 1


def test_check_node_judges_the_kube_apiserver_processes_the_kubelet_runs(before: Before, node: Node) -> None:
    assert node.namespaces is not None
    pids = {}
    for name in (before.legacy, before.good):
        pids[name] = wait_for(partial(container_pid, node, name), 60, f"the process of {name}")
        static = json.loads((node.static_pods / f"{name.removesuffix(f'-{NODE_NAME}')}.json").read_text())
        assert cmdline(node, pids[name]) == static["spec"]["containers"][0]["command"]
    # Both really serve: the compliant one on the certificate its flags name, the other on a self-signed one.
    assert serving(node, NODE_IP, GOOD_PORT) == "ok"
    assert "self-signed certificate" in readyz(node, NODE_IP, LEGACY_PORT)[1]

    exe = str(Path(sys.executable).with_name("apiserver-tls-guard"))  # as tests/conftest.py's cli()
    text = node.namespaces.run([exe, "check", "--node"], check=False)
    report = json.loads(node.namespaces.run([exe, "check", "--node", "--format", "json"], check=False).stdout)
    legacy, good = pids[before.legacy], pids[before.good]
    shown = [line for line in text.stdout.splitlines() if f"pid {legacy}" in line or f"pid {good}:" in line]
    print("$ apiserver-tls-guard check --node   (in the node's PID namespace)\n" + "\n".join(shown))
    assert text.returncode == 1  # findings in enforce mode (check's default), the legacy static pod's
    assert f"/proc/{good}/cmdline: Process pid {good}: ok" in text.stdout.splitlines()
    by_pid: dict[str, set[tuple[str, str]]] = {}
    for finding in report["findings"]:
        by_pid.setdefault(finding["name"], set()).add((finding["control"], finding["cisId"]))
    assert by_pid[f"pid {legacy}"] == {("tls-cert-and-key", "1.2.30")}
    assert f"pid {good}" not in by_pid
