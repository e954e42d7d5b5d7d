"""The shipped selectors and matchConditions, evaluated by the real kube-apiserver: pods that do not run
kube-apiserver, and everything in our own namespace, never reach the webhook (so an outage of ours can never block
them); kube-apiserver pods anywhere else do, and kube-apiserver workloads in labelled namespaces.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import BAD_FLAGS, Registered, RegisterFactory, apiserver_deployment, apiserver_pod, unique

HOSTED_LABEL = "apiserver-tls-guard.io/hosted-control-plane"


def _pod(name: str, image: str, command: list[str], namespace: str = "kube-system") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": image, "command": command}]},
    }


@pytest.fixture(scope="module")
def enforce(registered: RegisterFactory) -> Registered:
    guard = registered("enforce", "enforce")
    kubectl = guard.control_plane.kubectl
    for namespace, labelled in (("hosted-a", True), ("plain-b", False)):
        kubectl("create", "namespace", namespace)
        if labelled:
            kubectl("label", "namespace", namespace, f"{HOSTED_LABEL}=true", "--overwrite", check=True)
    kubectl("create", "namespace", "apiserver-tls-guard")
    kubectl("label", "namespace", "apiserver-tls-guard", f"{HOSTED_LABEL}=true", "--overwrite", check=True)
    return guard


def _create(guard: Registered, obj: dict[str, Any]) -> tuple[int, str]:
    result = guard.control_plane.kubectl("create", "-f", "-", stdin=json.dumps(obj))
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    ("image", "command"),
    [
        ("registry.k8s.io/coredns/coredns:v1.12.0", ["/coredns", "-conf", "/etc/coredns/Corefile"]),
        ("registry.k8s.io/kube-proxy:v1.37.2", ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/c.conf"]),
        ("docker.io/calico/node:v3.29.0", ["start_runit"]),
        ("docker.io/cilium/cilium:v1.17.0", ["cilium-agent", "--config-dir=/tmp/cilium/config-map"]),
    ],
)
def test_kube_system_pods_that_are_not_apiservers_never_reach_us(
    image: str, command: list[str], enforce: Registered
) -> None:
    name = unique("other")
    code, stderr = _create(enforce, _pod(name, image, command))
    assert code == 0, stderr
    sentinel = unique("sentinel")
    _create(enforce, apiserver_pod(sentinel, BAD_FLAGS))
    assert enforce.reached(sentinel), "the webhook is registered and reachable"
    assert not enforce.reached(name), "matchConditions let a non-apiserver kube-system pod through to us"


def test_apiserver_pods_are_judged_in_any_namespace(enforce: Registered) -> None:
    """A hosted control plane's ReplicaSet makes its pods outside kube-system, in namespaces nobody labelled."""
    name = unique("bare")
    code, stderr = _create(enforce, apiserver_pod(name, BAD_FLAGS, namespace="plain-b"))
    assert code == 1
    assert 'admission webhook "pods.apiserver-tls-guard.io" denied the request' in stderr
    assert enforce.reached(name)


def test_nothing_in_our_own_namespace_reaches_us(enforce: Registered) -> None:
    """Even labelled as a hosted control plane: our own pods must never wait on us (no deadlock on restart)."""
    for obj in (
        apiserver_deployment(unique("own"), "apiserver-tls-guard", BAD_FLAGS),
        apiserver_pod(unique("own"), BAD_FLAGS, namespace="apiserver-tls-guard"),
    ):
        _, stderr = _create(enforce, obj)
        # Once our overlay has installed the namespace, Pod Security (restricted) may refuse the pod: not us.
        assert "admission webhook" not in stderr, stderr
        assert not enforce.reached(obj["metadata"]["name"])


def test_workloads_in_labelled_namespaces_are_judged(enforce: Registered) -> None:
    name = unique("hosted")
    code, stderr = _create(enforce, apiserver_deployment(name, "hosted-a", BAD_FLAGS))
    assert code == 1
    assert 'admission webhook "workloads.apiserver-tls-guard.io" denied the request' in stderr
    assert "--tls-cert-file" in stderr
    assert enforce.reached(name)


def test_workloads_in_unlabelled_namespaces_are_not_sent(enforce: Registered) -> None:
    name = unique("plain")
    code, stderr = _create(enforce, apiserver_deployment(name, "plain-b", BAD_FLAGS))
    assert code == 0, stderr
    assert not enforce.reached(name)


def _with_init(name: str, restart_policy: str | None) -> dict[str, Any]:
    obj = _pod(name, "registry.k8s.io/pause:3.10", ["/pause"])
    init: dict[str, Any] = {
        "name": "kube-apiserver",
        "image": "registry.k8s.io/kube-apiserver:v1.37.2",
        "command": ["kube-apiserver", *BAD_FLAGS],
    }
    if restart_policy:
        init["restartPolicy"] = restart_policy
    obj["spec"]["initContainers"] = [init]
    return obj


def test_native_sidecar_apiserver_is_sent_and_denied(enforce: Registered) -> None:
    """An init container with restartPolicy Always runs for the pod's lifetime (1.28+): the apiserver's CEL
    sends it, and it is judged like a container."""
    name = unique("sidecar")
    code, stderr = _create(enforce, _with_init(name, "Always"))
    assert code == 1, stderr
    assert "container 'kube-apiserver'" in stderr and "--tls-cert-file" in stderr


def test_plain_init_container_apiserver_is_sent(enforce: Registered) -> None:
    """A plain init container running kube-apiserver never exits: it serves for the pod's life while the pod stays
    in Init (kubelet computeInitContainerActions). kube-apiserver sends it (this test used to say the opposite)."""
    name = unique("init")
    _create(enforce, _with_init(name, None))
    assert enforce.reached(name)
