"""Our overlays installed for real: `kubectl apply -k` with strict server-side field validation accepts every
object (an unknown or misspelt field fails here, never at a user's install), and the controller manager turns
the Deployment into a ReplicaSet and Pods (which stay Pending: there is no scheduler or kubelet).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import WEBHOOK_CONFIG, unregister, wait_for
from tests.e2e.controlplane import ControlPlane


@pytest.mark.parametrize("overlay", ["warn", "enforce"])
def test_kubectl_apply_k_with_strict_server_side_validation(overlay: str, control_plane: ControlPlane) -> None:
    path = str(ROOT / "manifests" / "overlays" / overlay)
    try:
        result = control_plane.kubectl("apply", "-k", path, "--validate=strict")
        assert result.returncode == 0, result.stderr
        assert "Warning:" not in result.stderr, result.stderr  # no unknown or duplicate fields
        config = json.loads(
            control_plane.kubectl(
                "get", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "-o", "json", check=True
            ).stdout
        )
        policies = {hook["name"]: hook["failurePolicy"] for hook in config["webhooks"]}
        mode_policy = "Ignore" if overlay == "warn" else "Fail"
        # Pods that only an expansion could make a kube-apiserver fail open in every mode (no deadlock).
        assert policies == {"pods.apiserver-tls-guard.io": mode_policy, "workloads.apiserver-tls-guard.io": mode_policy,
                            "expansions.apiserver-tls-guard.io": "Ignore"}  # fmt: skip

        def pending_pods() -> list[str]:
            listing = json.loads(
                control_plane.kubectl(
                    "get",
                    "pods",
                    "-n",
                    "apiserver-tls-guard",
                    "-l",
                    "app.kubernetes.io/name=apiserver-tls-guard",
                    "-o",
                    "json",
                ).stdout
                or "{}"
            )
            return [p["status"].get("phase") for p in listing.get("items", [])]

        phases = wait_for(pending_pods, what="the Deployment's pods")
        assert set(phases) == {"Pending"}
    finally:
        unregister(control_plane)  # a Service nobody serves must not stay in front of later tests
