"""The chart installed, upgraded and uninstalled for real (helm v3.22 against the real kube-apiserver), and what its
hooks run (`python -m webhook.commands.lifecycle`), as the hooks' own ServiceAccount with the RBAC the chart gives
it. No kubelet runs here, so pods never start: helm is run without --wait except to show that a failed
`upgrade --atomic` rolls back, and the hooks' command is run by the test with the hook's credentials, which is
what the kubelet would do with the Job's pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, ServerFactory
from tests.e2e.conftest import register, require_built, service_account_kubeconfig, unregister
from tests.e2e.controlplane import KUBE_BIN, ControlPlane

HELM = KUBE_BIN / "helm"
CHART = ROOT / "charts/apiserver-tls-guard"
NAMESPACE = "helm-guard"
RELEASE = "guard"


@pytest.fixture(scope="module", autouse=True)
def helm_built() -> None:
    require_built(HELM)


def helm(plane: ControlPlane, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args, "--kubeconfig", str(plane.kubeconfig)],
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def get(plane: ControlPlane, *what: str) -> Any:
    result = plane.kubectl("get", *what, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def _clean(plane: ControlPlane) -> None:
    """What other tests of the session registered under the same cluster-wide names."""
    unregister(plane)
    plane.kubectl("delete", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/part-of=apiserver-tls-guard")


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    _clean(control_plane)
    control_plane.kubectl("apply", "--server-side", "-f", str(KUBE_BIN / "crds"), check=True)
    control_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True)
    result = helm(control_plane, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace")
    assert result.returncode == 0, result.stderr
    assert f"helm test {RELEASE} -n {NAMESPACE}" in result.stdout  # NOTES.txt
    yield control_plane
    helm(control_plane, "uninstall", RELEASE, "-n", NAMESPACE, "--no-hooks")
    _clean(control_plane)


def _failure_policies(plane: ControlPlane) -> dict[str, str]:
    config = get(plane, "validatingwebhookconfiguration", "apiserver-tls-guard")
    return {w["name"]: w["failurePolicy"] for w in config["webhooks"]}


def test_install_with_create_namespace_and_upgrade(installed: ControlPlane) -> None:
    """`--create-namespace` installs (the chart's own namespace object never could); an upgrade to enforce turns
    the webhooks that judge named kube-apiservers to Fail and rolls the policy into a new ConfigMap."""
    assert _failure_policies(installed) == {
        "pods.apiserver-tls-guard.io": "Ignore",
        "workloads.apiserver-tls-guard.io": "Ignore",
        "expansions.apiserver-tls-guard.io": "Ignore",
    }
    before = get(installed, "deployment", "apiserver-tls-guard", "-n", NAMESPACE)
    result = helm(installed, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--set", "mode=Enforce")
    assert result.returncode == 0, result.stderr
    assert _failure_policies(installed) == {
        "pods.apiserver-tls-guard.io": "Fail",
        "workloads.apiserver-tls-guard.io": "Fail",
        "expansions.apiserver-tls-guard.io": "Ignore",
    }
    after = get(installed, "deployment", "apiserver-tls-guard", "-n", NAMESPACE)
    volumes = [{v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}["policy"] for d in (before, after)]
    assert volumes[0] != volumes[1], "a changed policy is a new ConfigMap, so the Deployment rolls"
    assert get(installed, "poddisruptionbudget", "apiserver-tls-guard", "-n", NAMESPACE) is not None


def test_a_failed_atomic_upgrade_rolls_back(installed: ControlPlane) -> None:
    """No kubelet runs, so no pod ever becomes ready: `upgrade --atomic` times out and puts the previous release
    back, webhook configuration and disruption budget included (helm's rollback then waits too, in vain here)."""
    policies = _failure_policies(installed)
    result = helm(installed, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--set", "mode=warn",
                  "--set", "replicas=1", "--atomic", "--timeout", "15s")  # fmt: skip
    assert result.returncode == 1 and "rolling back" in result.stderr, result.stderr
    assert _failure_policies(installed) == policies
    assert get(installed, "poddisruptionbudget", "apiserver-tls-guard", "-n", NAMESPACE) is not None
    values = json.loads(helm(installed, "get", "values", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)
    assert values == {"mode": "Enforce"}, "the release in force is the one before the upgrade"


def _hook_objects(values: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The chart's hook ServiceAccount and RBAC as it renders them, without the hook annotations (applied by the
    test instead of by helm)."""
    sets = [item for value in values for item in ("--set", value)]
    rendered = subprocess.run([str(HELM), "template", RELEASE, str(CHART), "-n", NAMESPACE, "--kube-version", "1.37.2",
                               "--show-only", "templates/hooks.yaml", *sets],
                              capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    objects = []
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] not in ("Job", "Pod"):
            doc["metadata"].pop("annotations", None)
            objects.append(doc)
    return objects


def _as_hook(plane: ControlPlane, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The hook's command, run with the hook ServiceAccount's token (what its pod would run with)."""
    kubeconfig = service_account_kubeconfig(plane, tmp_path / "hook.kubeconfig", "apiserver-tls-guard-hooks", NAMESPACE)
    return subprocess.run([sys.executable, "-m", "webhook.commands.lifecycle", "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_uninstall_hook_removes_the_webhook_configuration_then_what_the_webhook_made(
    installed: ControlPlane, tmp_path: Path
) -> None:
    kubectl = installed.kubectl
    for obj in _hook_objects():
        kubectl("apply", "-f", "-", stdin=json.dumps(obj), check=True)
    kubectl("create", "secret", "generic", "apiserver-tls-guard-certs", "-n", NAMESPACE, "--from-literal=ca.key=x")
    kubectl("create", "secret", "generic", "someone-else", "-n", NAMESPACE, "--from-literal=a=b")
    report = {"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
              "metadata": {"name": "apiserver-tls-guard", "namespace": "default",
                           "labels": {"app.kubernetes.io/managed-by": "apiserver-tls-guard"}}}  # fmt: skip
    kubectl("apply", "-f", "-", stdin=json.dumps(report), check=True)
    result = _as_hook(installed, tmp_path, "uninstall", f"--namespace={NAMESPACE}",
                      "--secret=apiserver-tls-guard-certs", "--policy-reports")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "deleted validatingwebhookconfiguration/apiserver-tls-guard", lines
    assert "deleted secret/apiserver-tls-guard-certs" in lines
    assert "deleted policyreports.wgpolicyk8s.io/default/apiserver-tls-guard" in lines
    assert get(installed, "validatingwebhookconfiguration", "apiserver-tls-guard") is None
    assert get(installed, "secret", "someone-else", "-n", NAMESPACE) is not None, "only what is ours"
    again = _as_hook(installed, tmp_path, "uninstall", f"--namespace={NAMESPACE}", "--secret=apiserver-tls-guard-certs")
    assert again.returncode == 0 and again.stdout == "", "a hook that runs twice finds nothing left and succeeds"
    denied = _as_hook(installed, tmp_path, "uninstall", f"--namespace={NAMESPACE}", "--secret=someone-else")
    assert denied.returncode == 1 and "403" in denied.stderr, "the hook's RBAC names its Secret, no other"
    # helm then removes the rest; the webhook configuration already gone is no error.
    result = helm(installed, "uninstall", RELEASE, "-n", NAMESPACE, "--no-hooks", "--wait")
    assert result.returncode == 0, result.stderr
    assert get(installed, "deployment", "apiserver-tls-guard", "-n", NAMESPACE) is None
    result = helm(installed, "install", RELEASE, str(CHART), "-n", NAMESPACE)  # for the fixture's teardown
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_helm_test_selftest_sees_our_answer(
    control_plane: ControlPlane, server_factory: ServerFactory, tmp_path: Path, mode: str
) -> None:
    """What `helm test` runs, with the chart's test RBAC, against the overlay served by url (no kube-proxy here
    for the release's Service): our answer is seen; without the webhook, the test fails."""
    _clean(control_plane)
    control_plane.kubectl("create", "namespace", NAMESPACE)
    for obj in _hook_objects():
        control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(obj), check=True)
    register(control_plane, server_factory("--mode", mode), mode)
    try:
        result = _as_hook(control_plane, tmp_path, "selftest", "--namespace=default", f"--mode={mode}")
        assert result.returncode == 0 and result.stdout.startswith("answered by apiserver-tls-guard"), result
    finally:
        unregister(control_plane)
    result = _as_hook(control_plane, tmp_path, "selftest", "--namespace=default", f"--mode={mode}")
    assert result.returncode == 1 and "NOT answered" in result.stdout, result
