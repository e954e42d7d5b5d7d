"""The chart installed on the node as a user installs it (real helm), and what its webhook pods logged."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from tests.conftest import ROOT
from tests.e2e.conftest import BAD_FLAGS, GOOD_FLAGS, apiserver_pod
from tests.e2e.controlplane import KUBE_BIN
from tests.e2e.node.node import Node

CHART = ROOT / "charts" / "apiserver-tls-guard"
SELECTOR = "app.kubernetes.io/name=apiserver-tls-guard,app.kubernetes.io/component=webhook"
WEBHOOK_CONFIG = "apiserver-tls-guard"


def helm(node: Node, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBE_BIN / "helm"), f"--kubeconfig={node.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def reachable(node: Node, timeout: float = 60) -> float:
    """Seconds until kube-apiserver reaches the webhook through its Service: a compliant kube-apiserver pod
    (server-side dry run) admitted. Pods Ready is not enough: until kube-proxy has written the new endpoints'
    rules, the ClusterIP refuses connections (measured: 2 s after the EndpointSlice update, on 2 loaded cores),
    and with failurePolicy Fail every such review fails."""
    body = json.dumps(apiserver_pod("reachable-probe", GOOD_FLAGS))
    started = time.monotonic()
    while True:
        result = node.kubectl("create", "--dry-run=server", "-f", "-", stdin=body)
        if result.returncode == 0:
            return time.monotonic() - started
        if "failed calling webhook" not in result.stderr or time.monotonic() - started > timeout:
            raise AssertionError(f"the webhook is not reachable through its Service: {result.stderr}")
        time.sleep(0.2)


def in_force(node: Node, mode: str, timeout: float = 60, runs: int = 10) -> float:
    """Seconds until `runs` reviews in a row answer in `mode` (`enforce`: a bad pod denied; `warn`: admitted with
    the webhook's warnings). `helm upgrade --wait` returns once the new pods are Ready, while the old ones,
    terminating (preStop sleep 5 s) and still in kube-proxy's rules until its next sync, answer with the old
    policy: one right answer through the Service is not proof, several in a row are (kube-proxy picks an endpoint
    at random for each connection)."""
    body = json.dumps(apiserver_pod("mode-probe", BAD_FLAGS))
    started = time.monotonic()
    streak = 0
    while streak < runs:
        result = node.kubectl("create", "--dry-run=server", "-f", "-", stdin=body)
        if mode == "enforce":
            right = result.returncode != 0 and "denied the request" in result.stderr
        else:
            right = result.returncode == 0 and "Warning: CIS 1.2.30" in result.stderr
        streak = streak + 1 if right else 0
        if time.monotonic() - started > timeout:
            raise AssertionError(f"reviews do not answer in {mode} mode after {timeout:.0f} s: {result.stderr}")
    return time.monotonic() - started


@dataclass
class Release:
    """A helm release of the chart in `namespace`; `ready_seconds`: from `helm install` to `--wait` returning;
    `reachable_seconds`: from then to the first review answered through the Service."""

    node: Node
    namespace: str
    ready_seconds: float = 0.0
    reachable_seconds: float = 0.0

    def install(self, *values: str) -> None:
        sets = [item for value in values for item in ("--set", value)]
        started = time.monotonic()
        result = helm(self.node, "install", "guard", str(CHART), "--namespace", self.namespace,
                      "--create-namespace", "--wait", "--timeout", "4m", *sets)  # fmt: skip
        self.ready_seconds = time.monotonic() - started
        if result.returncode != 0:
            pods = self.node.kubectl("get", "pods", "-n", self.namespace, "-o", "wide").stdout
            events = self.node.kubectl("get", "events", "-n", self.namespace).stdout
            raise AssertionError(f"helm install failed:\n{result.stderr}\n{pods}\n{events}")
        self.reachable_seconds = reachable(self.node)

    def upgrade(self, *values: str) -> float:
        """`helm upgrade --reuse-values --wait` with `values` set, as a user changes a setting; seconds until it
        returned. A new policy is a new ConfigMap name (templates/configmap.yaml), so the Deployment rolls."""
        sets = [item for value in values for item in ("--set", value)]
        started = time.monotonic()
        result = helm(self.node, "upgrade", "guard", str(CHART), "--namespace", self.namespace, "--reuse-values",
                      "--wait", "--timeout", "4m", *sets)  # fmt: skip
        assert result.returncode == 0, f"helm upgrade failed:\n{result.stderr}"
        return time.monotonic() - started

    def hook_logs(self) -> str:
        """What the pre-delete hook's pods printed (a failed Job keeps its pods: hook-delete-policy is
        hook-succeeded), and the Job's conditions: the first thing to read when `helm uninstall` fails."""
        jobs = self.node.kubectl("get", "jobs", "-n", self.namespace, "-o", "wide").stdout
        logs = self.node.kubectl("logs", "-n", self.namespace, "-l", "app.kubernetes.io/component=uninstall",
                                 "--all-containers", "--prefix", "--tail=50").stdout  # fmt: skip
        described = self.node.kubectl("describe", "jobs", "-n", self.namespace).stdout
        return f"{jobs}\n{logs}\n{described[-3000:]}"

    def uninstall_strictly(self) -> tuple[subprocess.CompletedProcess[str], float]:
        """`helm uninstall --wait` with its pre-delete hook and no fallback, as a user runs it; and its seconds."""
        started = time.monotonic()
        result = helm(self.node, "uninstall", "guard", "--namespace", self.namespace, "--wait", "--timeout", "3m")
        return result, time.monotonic() - started

    def uninstall(self) -> None:
        """helm uninstall, pre-delete hook included. Once in a full CI run it left the release behind (the next
        module's install then met our ClusterRoles owned by this release); what the hook's Job and pods showed is
        printed, and the release is removed without hooks so later modules still start clean. The hook itself is
        proved in tests/e2e/test_chart_lifecycle_e2e.py."""
        result = helm(self.node, "uninstall", "guard", "--namespace", self.namespace, "--wait", "--timeout", "2m")
        if result.returncode != 0:
            print(f"helm uninstall failed, removing the release without hooks:\n{result.stderr}\n{self.hook_logs()}")
            again = helm(self.node, "uninstall", "guard", "--namespace", self.namespace, "--no-hooks", "--wait")
            assert again.returncode == 0, again.stderr
        self.node.kubectl("delete", "namespace", self.namespace, "--wait=false")

    def pods(self) -> list[dict[str, Any]]:
        result = self.node.kubectl("get", "pods", "-n", self.namespace, "-l", SELECTOR, "-o", "json", check=True)
        return list(json.loads(result.stdout)["items"])

    def logs(self) -> str:
        """Every webhook container's log, the previous containers' included (a restarted pod keeps its history)."""
        out = []
        for pod in self.pods():
            name = pod["metadata"]["name"]
            out.append(self.node.kubectl("logs", "-n", self.namespace, name, "--tail=-1").stdout)
        return "\n".join(out)

    def decisions(self, name: str | None = None) -> list[dict[str, Any]]:
        records = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("msg") == "decision" and (name is None or record.get("objectName") == name):
                    records.append(record)
        return records

    def metric(self, name: str) -> dict[str, float]:
        """One metric summed over the webhook pods, by label set, read through the apiserver's pod proxy."""
        totals: dict[str, float] = {}
        for pod in self.pods():
            path = f"/api/v1/namespaces/{self.namespace}/pods/https:{pod['metadata']['name']}:8443/proxy/metrics"
            text = self.node.kubectl("get", "--raw", path, check=True).stdout
            for line in text.splitlines():
                if line.startswith(name):
                    labels, value = line.rsplit(" ", 1)
                    totals[labels] = totals.get(labels, 0.0) + float(value)
        return totals
