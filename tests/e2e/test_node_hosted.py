"""A hosted control plane with running pods, the chart installed in enforce mode (failurePolicy Fail): Deployments
of the real kube-apiserver image built here, on the pod network, certificates from a Secret, each a cluster of
its own on the node's etcd (over TLS, tests/e2e/node/apiservers.py). The real Deployment and ReplicaSet
controllers, scheduler and kubelet run them.

- A compliant Deployment becomes Ready and serves /readyz over HTTPS (verified against its CA, as a client
  certificate user) from the node's network.
- In a namespace labelled `apiserver-tls-guard.io/hosted-control-plane=true` a non-compliant Deployment is denied
  by the workloads webhook; in any other namespace it is admitted (only pods are judged there) and its
  ReplicaSet's pod creates are denied: FailedCreate events with our message, no pod. Fixed with `kubectl patch`,
  it rolls out.
- A non-compliant Deployment that predates the guard, with a running pod, fixed with `kubectl patch`: the new
  pod comes up and serves, the old pod is really replaced, and the old ReplicaSet is scaled to zero (an UPDATE
  the webhook admits: README, "UPDATEs: only what a change makes worse").
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import unique, wait_for
from tests.e2e.node.apiservers import deployment, flags, secret, serving, write_pki
from tests.e2e.node.chart import Release
from tests.e2e.node.node import Node

NAMESPACE = "guard-hosted"
HOSTED = "clusters-e2e"  # labelled: its workloads are judged too
OTHER = "tenant-e2e"  # not labelled: only its pods are judged
SECRET = "kube-apiserver-certs"
LABEL = "apiserver-tls-guard.io/hosted-control-plane=true"
DENIED_WORKLOAD = 'admission webhook "workloads.apiserver-tls-guard.io" denied the request'
DENIED_POD = 'admission webhook "pods.apiserver-tls-guard.io" denied the request'


@dataclass
class Hosted:
    release: Release
    legacy: str  # a non-compliant Deployment of HOSTED, running since before the guard


def apply(node: Node, *objects: dict[str, Any]) -> None:
    node.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
                 check=True)  # fmt: skip


def rollout(node: Node, namespace: str, name: str) -> float:
    """Seconds until `kubectl rollout status` says the Deployment is rolled out (its pods Ready)."""
    started = time.monotonic()
    node.kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=240s", check=True,
                 timeout=260)  # fmt: skip
    return time.monotonic() - started


def pods(node: Node, namespace: str, app: str) -> list[dict[str, Any]]:
    result = node.kubectl("get", "pods", "-n", namespace, "-l", f"app={app}", "-o", "json", check=True)
    return [p for p in json.loads(result.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready_pod(node: Node, namespace: str, app: str) -> dict[str, Any]:
    [pod] = pods(node, namespace, app)
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "True", pod["status"]
    return pod


def to_compliant(node: Node, namespace: str, name: str) -> None:
    """`kubectl patch` of the container's command to the compliant command line."""
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/command",
              "value": ["kube-apiserver", *flags(f"{namespace}-{name}", compliant=True)]}]  # fmt: skip
    node.kubectl("patch", "deployment", name, "-n", namespace, "--type=json", "-p", json.dumps(patch), check=True)


@pytest.fixture(scope="module")
def hosted(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosted]:
    files = write_pki(node, tmp_path_factory.mktemp("pki"))
    for namespace in (HOSTED, OTHER):
        node.kubectl("create", "namespace", namespace, check=True)
        apply(node, secret(SECRET, namespace, files))
    node.kubectl("label", "namespace", HOSTED, LABEL, check=True)
    release = Release(node, NAMESPACE)
    legacy = unique("legacy")
    try:
        # Before the guard: a non-compliant hosted kube-apiserver, running while the chart installs.
        apply(node, deployment(legacy, HOSTED, flags(f"{HOSTED}-{legacy}", compliant=False), SECRET))
        release.install("mode=enforce")
        rollout(node, HOSTED, legacy)
        yield Hosted(release, legacy)
    finally:
        if node.kubectl("get", "namespace", NAMESPACE).returncode == 0:
            release.uninstall()
        for namespace in (HOSTED, OTHER):
            node.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_compliant_hosted_apiserver_becomes_ready_and_serves(hosted: Hosted, node: Node) -> None:
    name = unique("good")
    apply(node, deployment(name, HOSTED, flags(f"{HOSTED}-{name}", compliant=True), SECRET))
    try:
        seconds = rollout(node, HOSTED, name)
        pod = ready_pod(node, HOSTED, name)
        started = time.monotonic()
        body = serving(node, pod["status"]["podIP"])
        print(
            f"compliant hosted kube-apiserver: Ready (listening) {seconds:.1f} s after kubectl apply, /readyz "
            f"{body!r} {time.monotonic() - started:.1f} s after that (its post-start hooks, on this loaded node)"
        )
        assert body == "ok"
        [workload] = hosted.release.decisions(name)
        assert (workload["kind"], workload["verdict"]) == ("Deployment", "clean")
        assert [d["verdict"] for d in hosted.release.decisions(pod["metadata"]["name"])] == ["clean"]
    finally:
        node.kubectl("delete", "deployment", name, "-n", HOSTED, "--wait=false")


def failed_creates(node: Node, namespace: str) -> list[str]:
    result = node.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=FailedCreate", "-o", "json")
    items = json.loads(result.stdout)["items"] if result.returncode == 0 else []
    return [e["message"] for e in items if e["involvedObject"]["kind"] == "ReplicaSet"]


def test_a_non_compliant_hosted_apiserver_is_denied_and_its_fix_rolls_out(hosted: Hosted, node: Node) -> None:
    name = unique("bad")
    manifest = deployment(name, HOSTED, flags(f"{HOSTED}-{name}", compliant=False), SECRET)
    result = node.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    print(f"$ kubectl create -f {name}.json   (namespace {HOSTED}, labelled)\n{result.stderr.strip()}")
    assert result.returncode != 0 and DENIED_WORKLOAD in result.stderr
    assert "CIS 1.2.30" in result.stderr
    assert node.kubectl("get", "deployment", name, "-n", HOSTED).returncode != 0

    # Unlabelled: the Deployment is admitted, its ReplicaSet's pods are not.
    manifest["metadata"]["namespace"] = OTHER
    node.kubectl("create", "-f", "-", stdin=json.dumps(manifest), check=True)
    [message, *_] = wait_for(lambda: failed_creates(node, OTHER), 60, "the ReplicaSet's FailedCreate events")
    print(f"ReplicaSet event in {OTHER} (FailedCreate):\n{message}")
    assert message.startswith(f"Error creating: {DENIED_POD}: apiserver-tls-guard: Pod {OTHER}/{name}-")
    assert "CIS 1.2.30" in message
    assert pods(node, OTHER, name) == []

    to_compliant(node, OTHER, name)
    seconds = rollout(node, OTHER, name)
    pod = ready_pod(node, OTHER, name)
    print(f"fixed with kubectl patch: rolled out in {seconds:.1f} s")
    assert serving(node, pod["status"]["podIP"]) == "ok"
    node.kubectl("delete", "deployment", name, "-n", OTHER, "--wait=false")


def replica_sets(node: Node, namespace: str, app: str) -> dict[str, dict[str, Any]]:
    result = node.kubectl("get", "replicasets", "-n", namespace, "-l", f"app={app}", "-o", "json", check=True)
    return {rs["metadata"]["name"]: rs for rs in json.loads(result.stdout)["items"]}


def test_a_fix_of_a_hosted_apiserver_from_before_the_guard_replaces_its_pod(hosted: Hosted, node: Node) -> None:
    [old] = pods(node, HOSTED, hosted.legacy)
    [old_rs] = replica_sets(node, HOSTED, hosted.legacy)
    to_compliant(node, HOSTED, hosted.legacy)
    seconds = rollout(node, HOSTED, hosted.legacy)
    # rollout status returns once the new pod is available and the old ReplicaSet is scaled down; the old pod may
    # still be terminating.
    wait_for(lambda: old["metadata"]["uid"] not in {p["metadata"]["uid"] for p in pods(node, HOSTED, hosted.legacy)},
             60, "the old pod to go")  # fmt: skip
    new = ready_pod(node, HOSTED, hosted.legacy)
    sets = replica_sets(node, HOSTED, hosted.legacy)
    print(
        f"fix of a pre-guard hosted kube-apiserver: rolled out in {seconds:.1f} s; pod {old['metadata']['name']} "
        f"replaced by {new['metadata']['name']}; ReplicaSets: "
        + ", ".join(f"{n} {rs['spec']['replicas']}" for n, rs in sets.items())
    )
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert sets[old_rs]["spec"]["replicas"] == 0
    assert serving(node, new["status"]["podIP"]) == "ok"
    # The Deployment controller's scale-down of the old, non-compliant ReplicaSet was an UPDATE the webhook
    # admitted (the findings were there before), with a warning.
    scale_down = [d for d in hosted.release.decisions(old_rs) if d["operation"] == "UPDATE"]
    assert scale_down and all(d["verdict"] != "denied" for d in scale_down), scale_down
