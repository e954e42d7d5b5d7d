"""`kubectl apply -k` of the kustomize overlays on the real node, as the README's install says: enforce first
(pods Ready from the image built here, the Secret and caBundle made by `--cluster-certs`, a denial through the
Service), then warn applied over it (the same pod admitted, kubectl printing the webhook's warning)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import BAD_FLAGS, apiserver_pod, unique, wait_for
from tests.e2e.node.chart import reachable
from tests.e2e.node.node import Node

NAMESPACE = "apiserver-tls-guard"  # the overlays' own
OVERLAYS = ROOT / "manifests" / "overlays"


def apply(node: Node, overlay: str) -> float:
    """Seconds from `kubectl apply -k` until the Deployment is rolled out and the caBundle is published."""
    started = time.monotonic()
    node.kubectl("apply", "-k", str(OVERLAYS / overlay), check=True)
    node.kubectl("rollout", "status", "deployment/apiserver-tls-guard", "-n", NAMESPACE, "--timeout=180s",
                 check=True, timeout=200)  # fmt: skip

    def published() -> bool:
        config = node.kubectl("get", "validatingwebhookconfiguration", "apiserver-tls-guard", "-o", "json").stdout
        return all(w["clientConfig"].get("caBundle") for w in json.loads(config)["webhooks"])

    wait_for(published, 60, "the caBundle")
    seconds = time.monotonic() - started
    print(f"  then {reachable(node):.1f} s until a review came through the Service")
    return seconds


@pytest.fixture(scope="module")
def overlays(node: Node) -> Iterator[Node]:
    yield node
    node.kubectl("delete", "-k", str(OVERLAYS / "enforce"), "--ignore-not-found", "--wait=false", timeout=120)


def test_the_enforce_overlay_denies_through_the_service(overlays: Node) -> None:
    node = overlays
    seconds = apply(node, "enforce")
    print(f"kubectl apply -k manifests/overlays/enforce to available with its caBundle: {seconds:.1f} s")
    secret = node.kubectl("get", "secret", "apiserver-tls-guard-certs", "-n", NAMESPACE, "-o", "json", check=True)
    assert "tls.crt" in json.loads(secret.stdout)["data"]
    name = unique("bad")
    result = node.kubectl("create", "-f", "-", stdin=json.dumps(apiserver_pod(name, BAD_FLAGS)))
    print(f"$ kubectl create -f {name}.json\n{result.stderr.strip()}")
    assert result.returncode != 0
    assert 'admission webhook "pods.apiserver-tls-guard.io" denied the request' in result.stderr


def test_the_warn_overlay_admits_with_a_warning(overlays: Node) -> None:
    node = overlays
    seconds = apply(node, "warn")
    print(f"kubectl apply -k manifests/overlays/warn over enforce, rolled out: {seconds:.1f} s")
    name = unique("bad")

    # The policy is live-reloaded and the Deployment rolls; until every pod has the warn policy a review may
    # still be judged in enforce, so wait for the first admitted one.
    def admitted() -> str | None:
        result = node.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(apiserver_pod(name, BAD_FLAGS)))
        return result.stderr if result.returncode == 0 else None

    stderr = wait_for(admitted, 60, "a warn-mode answer")
    print(f"$ kubectl create --dry-run=server -f {name}.json\n{stderr.strip()}")
    assert "Warning:" in stderr
