"""A hosted control plane's lifecycle with the real kube-controller-manager and the webhook in enforce mode
throughout: a bad kube-apiserver Deployment is denied, a fixed one rolls out (the Deployment controller scales the
old, non-compliant ReplicaSet to zero: an UPDATE that must pass), a version bump rolls out again, and a
foreground-cascade delete completes (the garbage collector's finalizer removal: UPDATEs that must pass).
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import (
    BAD_FLAGS,
    GOOD_FLAGS,
    RegisterFactory,
    apiserver_deployment,
    unique,
    unregister,
    wait_for,
)
from tests.e2e.controlplane import ControlPlane

NAMESPACE = "clusters-e2e"
HOSTED_LABEL = "apiserver-tls-guard.io/hosted-control-plane"


def _replica_sets(control_plane: ControlPlane, app: str) -> list[dict[str, Any]]:
    result = control_plane.kubectl("get", "replicasets", "-n", NAMESPACE, "-l", f"app={app}", "-o", "json")
    return list(json.loads(result.stdout or "{}").get("items", []))


def _image(rs: dict[str, Any]) -> str:
    return str(rs["spec"]["template"]["spec"]["containers"][0]["image"])


def test_hosted_control_plane_rolls_out_and_deletes_under_enforce(
    control_plane: ControlPlane, registered: RegisterFactory
) -> None:
    kubectl = control_plane.kubectl
    kubectl("create", "namespace", NAMESPACE)
    kubectl("label", "namespace", NAMESPACE, f"{HOSTED_LABEL}=true", "--overwrite", check=True)
    name = unique("kas")

    # Before the guard: a non-compliant control plane already runs.
    unregister(control_plane)
    kubectl("create", "-f", "-", stdin=json.dumps(apiserver_deployment(name, NAMESPACE, BAD_FLAGS)), check=True)
    wait_for(lambda: _replica_sets(control_plane, name), what="the first ReplicaSet")

    guard = registered("enforce", "enforce")
    refused = kubectl(
        "create", "-f", "-", stdin=json.dumps(apiserver_deployment(unique("kas-bad"), NAMESPACE, BAD_FLAGS))
    )
    assert refused.returncode == 1
    assert 'admission webhook "workloads.apiserver-tls-guard.io" denied the request' in refused.stderr

    # The fix rolls out: the controller's UPDATE scaling the old, bad ReplicaSet to 0 is admitted.
    kubectl("apply", "-f", "-", stdin=json.dumps(apiserver_deployment(name, NAMESPACE, GOOD_FLAGS)), check=True)

    def fixed() -> bool:
        sets = _replica_sets(control_plane, name)
        bad = [rs for rs in sets if "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt" not in json.dumps(rs)]
        good = [rs for rs in sets if rs not in bad]
        return bool(bad and good and all(rs["spec"]["replicas"] == 0 for rs in bad) and good[0]["spec"]["replicas"])

    wait_for(fixed, timeout=60, what="the old, non-compliant ReplicaSet scaled to 0")
    old_rs_updates = [
        r
        for r in guard.records()
        if r.get("kind") == "ReplicaSet" and r.get("operation") == "UPDATE" and r["objectName"].startswith(name)
    ]
    assert any(d["verdict"] == "warned" for d in old_rs_updates), old_rs_updates
    assert not any(d["verdict"] == "denied" for d in old_rs_updates)

    # A version bump rolls out again.
    kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(apiserver_deployment(name, NAMESPACE, GOOD_FLAGS, tag="v1.37.3")),
        check=True,
    )

    def bumped() -> bool:
        sets = _replica_sets(control_plane, name)
        new = [rs for rs in sets if _image(rs).endswith(":v1.37.3")]
        return bool(
            new and new[0]["spec"]["replicas"] == 1 and all(rs["spec"]["replicas"] == 0 for rs in sets if rs not in new)
        )

    wait_for(bumped, timeout=60, what="the version bump rolled out")

    # A foreground-cascade delete finishes: the garbage collector's finalizer removal is admitted.
    deleted = kubectl(
        "delete",
        "deployment",
        name,
        "-n",
        NAMESPACE,
        "--cascade=foreground",
        "--wait=true",
        "--timeout=60s",
        timeout=90,
    )
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: not _replica_sets(control_plane, name), timeout=60, what="the ReplicaSets gone")
    gone = kubectl("get", "deployment", name, "-n", NAMESPACE)
    assert gone.returncode == 1 and "NotFound" in gone.stderr
