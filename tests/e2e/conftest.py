"""Fixtures of the end-to-end suite: one real control plane per session, our own `serve` processes, and our own
overlays registered with it.

The overlays reach the webhook through a Service; here `clientConfig` is replaced by
`url: https://127.0.0.1:<port>/validate` (the caBundle filled in), because a Service's ClusterIP needs kube-proxy
and no kube-proxy runs here, and EndpointSlice validation refuses loopback addresses. Everything else in the
ValidatingWebhookConfiguration (rules, selectors, matchConditions, failurePolicy, timeouts) is as shipped, and it
is the real kube-apiserver that evaluates it.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, RunningServer, ServerFactory
from tests.e2e.controlplane import KUBE_BIN, ControlPlane, missing_binaries
from tests.e2e.node.fixture import node  # noqa: F401  (the node suite's session fixture: tests/e2e/node)

WEBHOOK_CONFIG = "apiserver-tls-guard"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    missing = missing_binaries()
    if missing:
        message = (
            f"the real control plane is not built ({', '.join(missing)} missing in {KUBE_BIN}): "
            "`make kube` builds it (needs go)"
        )
        if os.environ.get("REQUIRE_E2E"):
            pytest.fail(message)
        pytest.skip(message)
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    plane.start()
    yield plane
    errors = plane.stop()
    assert not errors, errors


def overlay_config(overlay: str, server: RunningServer, control_plane: ControlPlane) -> dict[str, Any]:
    """Our overlay's ValidatingWebhookConfiguration, rendered by real kubectl kustomize, pointed at `server`."""
    rendered = control_plane.kubectl("kustomize", str(ROOT / "manifests" / "overlays" / overlay), check=True).stdout
    [config] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ValidatingWebhookConfiguration"]
    bundle = base64.b64encode((server.certs / "ca.crt").read_bytes()).decode()
    for webhook in config["webhooks"]:
        webhook["clientConfig"] = {"url": f"https://127.0.0.1:{server.port}/validate", "caBundle": bundle}
    return dict(config)


def require_built(binary: Path) -> None:
    """Fail (under REQUIRE_E2E, as in CI) or skip, saying so, when `make kube` has not built this binary."""
    if not binary.is_file():
        message = f"{binary.name} is not built ({binary} missing): `make kube` builds it (needs go)"
        if os.environ.get("REQUIRE_E2E"):
            pytest.fail(message)
        pytest.skip(message)


def service_account_kubeconfig(control_plane: ControlPlane, path: Path, account: str, namespace: str) -> Path:
    """A kubeconfig (0600) that authenticates as the ServiceAccount, with a token from `kubectl create token`."""
    token = control_plane.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h", check=True
    ).stdout.strip()
    assert control_plane.apiserver is not None
    cluster = {"server": control_plane.apiserver.url, "certificate-authority": str(control_plane.directory / "ca.crt")}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def apiserver_pod(name: str, flags: list[str], namespace: str = "kube-system") -> dict[str, Any]:
    """A kube-apiserver Pod the way kubeadm writes one, with the flags given."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"component": "kube-apiserver"}},
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "image": "registry.k8s.io/kube-apiserver:v1.37.2",
                    "command": ["kube-apiserver", *flags],
                }
            ]
        },
    }


def apiserver_deployment(name: str, namespace: str, flags: list[str], tag: str = "v1.37.2") -> dict[str, Any]:
    """A hosted control plane's kube-apiserver Deployment (one replica), pods labelled app=<name>."""
    spec = apiserver_pod(name, flags)["spec"]
    spec["containers"][0]["image"] = f"registry.k8s.io/kube-apiserver:{tag}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            # No kubelet runs, so no pod ever becomes available: Recreate scales the old ReplicaSet down without
            # waiting for the new one, as a rolling update with maxUnavailable 100% would.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


GOOD_FLAGS = [
    "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
    "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    "--client-ca-file=/etc/kubernetes/pki/ca.crt",
    "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
    "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
    "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
    "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
    "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
    "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt",
    "--anonymous-auth=false",
    "--authorization-mode=Node,RBAC",
    "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
    "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
]
BAD_FLAGS = [f for f in GOOD_FLAGS if not f.startswith(("--tls-cert-file", "--tls-private-key-file"))]


@dataclass
class Registered:
    """Our webhook configuration as the real apiserver holds it, and the `serve` process it points at."""

    control_plane: ControlPlane
    server: RunningServer
    overlay: str

    def records(self) -> list[dict[str, Any]]:
        """Our server's decision log: one JSON line per review, naming the object."""
        lines = self.server.log_text().splitlines()
        return [r for r in (json.loads(line) for line in lines if line.startswith("{")) if r.get("msg") == "decision"]

    def decisions(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("objectName") == name]

    def reached(self, name: str) -> bool:
        """Whether our server reviewed an object of this name."""
        return bool(self.decisions(name))


def register(control_plane: ControlPlane, server: RunningServer, overlay: str) -> Registered:
    """Apply the overlay's configuration and wait until the apiserver's informer has it (a probe reaches us)."""
    config = overlay_config(overlay, server, control_plane)
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(config), check=True)
    registered = Registered(control_plane, server, overlay)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = unique("probe")
        control_plane.kubectl(
            "create", "--dry-run=server", "-f", "-", stdin=json.dumps(apiserver_pod(probe, BAD_FLAGS))
        )
        if registered.reached(probe):
            return registered
        time.sleep(0.5)
    raise AssertionError(f"the apiserver never called the {overlay} webhook at port {server.port}")


def unregister(control_plane: ControlPlane) -> None:
    control_plane.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--ignore-not-found")


RegisterFactory = Callable[[str, str], Registered]


@pytest.fixture(scope="module")
def registered(control_plane: ControlPlane, server_factory: ServerFactory) -> Iterator[RegisterFactory]:
    """Register an overlay in front of a `serve` process in the given mode; unregistered after the module."""

    def make(overlay: str, mode: str) -> Registered:
        return register(control_plane, server_factory("--mode", mode), overlay)

    yield make
    unregister(control_plane)


def audit_events(control_plane: ControlPlane, name: str) -> list[dict[str, Any]]:
    """The real apiserver's audit events about the object of this name."""
    assert control_plane.apiserver is not None
    events = []
    for line in control_plane.apiserver.audit_log.read_text().splitlines():
        event = json.loads(line)
        if (event.get("objectRef") or {}).get("name") == name:
            events.append(event)
    return events


def wait_for(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def as_kube_system_pod(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """A corpus object as a fresh kube-system Pod: workloads give their pod template; what the server assigns
    (uid, resourceVersion, status, owner) and priority classes this cluster lacks are dropped, so the real
    apiserver accepts the create."""
    obj = copy.deepcopy(obj)
    kind = obj.get("kind")
    spec = obj["spec"]
    metadata = dict(obj.get("metadata") or {})
    if kind != "Pod":
        template = spec["jobTemplate"]["spec"]["template"] if kind == "CronJob" else spec["template"]
        spec = template["spec"]
        metadata = dict(template.get("metadata") or {})
    keep = {k: metadata[k] for k in ("labels", "annotations") if k in metadata}
    # The Priority admission plugin refuses a class this cluster does not define, before any webhook is called.
    spec = {k: v for k, v in spec.items() if k not in ("priorityClassName", "priority")}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**keep, "name": name, "namespace": "kube-system"},
        "spec": spec,
    }


def write_json(path: Path, obj: dict[str, Any]) -> Path:
    path.write_text(json.dumps(obj))
    return path
