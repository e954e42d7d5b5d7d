"""`serve --cluster-certs` against the real apiserver, with the ServiceAccount and RBAC exactly as
manifests/base ships them and a token from `kubectl create token`: the Secret is created, the caBundle is
published to the real webhook configuration, and a rotation of the serving certificate and then of the CA
(requested with the Secret's rotate annotation) happens while the real apiserver keeps sending reviews, none of
which may fail. Any permission the manifests lack shows up as a 403 in the server's log.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from tests.conftest import ROOT, RunningServer, _wait_ready, free_port, stop_server
from tests.e2e.conftest import (
    GOOD_FLAGS,
    WEBHOOK_CONFIG,
    apiserver_pod,
    service_account_kubeconfig,
    unregister,
    wait_for,
)
from tests.e2e.controlplane import ControlPlane
from webhook.kube import api_client

NAMESPACE = "apiserver-tls-guard"
SECRET = "apiserver-tls-guard-certs"


def _secret(control_plane: ControlPlane) -> dict[str, Any]:
    result = control_plane.kubectl("get", "secret", SECRET, "-n", NAMESPACE, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _certs(secret: dict[str, Any], key: str) -> list[x509.Certificate]:
    data = (secret.get("data") or {}).get(key)
    return x509.load_pem_x509_certificates(base64.b64decode(data)) if data else []


def _published_bundle(control_plane: ControlPlane) -> str:
    result = control_plane.kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "-o", "json", check=True)
    bundles = {w["clientConfig"].get("caBundle", "") for w in json.loads(result.stdout)["webhooks"]}
    return bundles.pop() if len(bundles) == 1 else ""


class Traffic(threading.Thread):
    """Dry-run creates of a compliant kube-apiserver pod through the real apiserver, as fast as they go; with
    failurePolicy Fail, any failed call to the webhook is an error here."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(daemon=True)
        self.api = client.CoreV1Api(api_client(str(kubeconfig), None))
        self.sent = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pod: Any = apiserver_pod(f"traffic-{self.sent}", GOOD_FLAGS)
            try:
                self.api.create_namespaced_pod("kube-system", pod, dry_run="All", _request_timeout=15)
            except Exception as err:
                self.failures.append(f"{type(err).__name__}: {str(err)[:300]}")
            self.sent += 1


@pytest.fixture
def installed(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Path]:
    """The enforce overlay applied as shipped, the webhook's clientConfig pointed at loopback (no kube-proxy);
    returns a kubeconfig that authenticates as the overlay's ServiceAccount."""
    control_plane.kubectl("apply", "-k", str(ROOT / "manifests" / "overlays" / "enforce"), check=True)
    control_plane.kubectl("delete", "secret", SECRET, "-n", NAMESPACE, "--ignore-not-found")
    kubeconfig = service_account_kubeconfig(
        control_plane, tmp_path / "serviceaccount.kubeconfig", "apiserver-tls-guard", NAMESPACE
    )
    yield kubeconfig
    unregister(control_plane)


def _start_cluster_certs_server(kubeconfig: Path, workdir: Path) -> RunningServer:
    port = free_port()
    certs = workdir / "certs"
    log = workdir / "server.log"
    exe = Path(sys.executable).with_name("apiserver-tls-guard")
    argv = [
        str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--certs-dir", str(certs),
        "--cluster-certs", "--kubeconfig", str(kubeconfig), "--mode", "enforce",
        "--cert-sync-interval", "1", "--ca-overlap", "8", "--reload-interval", "0.5",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    wait_for(lambda: (certs / "ca.crt").is_file() or process.poll() is not None, what="the certificates")
    _wait_ready(port, certs / "ca.crt", process, log)
    return RunningServer(port, certs, process, log)


def test_cluster_certificates_rotate_under_real_traffic(
    control_plane: ControlPlane, installed: Path, tmp_path: Path
) -> None:
    # Point the shipped configuration at loopback, caBundle left for the server to publish.
    patch = [
        {"op": "replace", "path": f"/webhooks/{i}/clientConfig", "value": {"url": "https://127.0.0.1:1/validate"}}
        for i in range(2)
    ]
    control_plane.kubectl(
        "patch", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--type=json", "-p", json.dumps(patch), check=True
    )
    server = _start_cluster_certs_server(installed, tmp_path)
    try:
        url_patch = [
            {"op": "replace", "path": f"/webhooks/{i}/clientConfig/url", "value": f"https://127.0.0.1:{server.port}/validate"}
            for i in range(2)
        ]  # fmt: skip
        control_plane.kubectl(
            "patch", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--type=json", "-p", json.dumps(url_patch),
            check=True,
        )  # fmt: skip
        secret = wait_for(lambda: _secret(control_plane), what="the Secret made by the server")
        first_ca = _certs(secret, "ca.crt")[0]
        bundle = base64.b64encode(base64.b64decode(secret["data"]["ca-bundle.crt"])).decode()
        wait_for(lambda: _published_bundle(control_plane) == bundle, what="the caBundle published")

        traffic = Traffic(control_plane.kubeconfig)
        wait_for(lambda: _probe_ok(traffic), what="the apiserver reaching the webhook with the published caBundle")
        traffic.start()
        started = time.monotonic()
        first_serial = _certs(secret, "tls.crt")[0].serial_number

        control_plane.kubectl("annotate", "secret", SECRET, "-n", NAMESPACE, "apiserver-tls-guard.io/rotate=serving")
        wait_for(
            lambda: _certs(_secret(control_plane), "tls.crt")[0].serial_number != first_serial,
            what="a new serving certificate",
        )
        time.sleep(3)
        control_plane.kubectl("annotate", "secret", SECRET, "-n", NAMESPACE, "apiserver-tls-guard.io/rotate=ca")
        wait_for(lambda: len(_certs(_secret(control_plane), "ca-bundle.crt")) == 2, what="the next CA introduced")
        wait_for(
            lambda: _certs(_secret(control_plane), "ca.crt")[0] != first_ca, timeout=40, what="the next CA promoted"
        )
        wait_for(lambda: len(_certs(_secret(control_plane), "ca-bundle.crt")) == 1, timeout=40, what="old CA retired")
        final = _secret(control_plane)
        wait_for(
            lambda: _published_bundle(control_plane) == final["data"]["ca-bundle.crt"], what="the new bundle published"
        )
        time.sleep(3)  # and reviews keep passing with the old CA gone
        traffic.stop.set()
        traffic.join(30)
        elapsed = time.monotonic() - started
        print(
            f"\nrotation under real traffic: {traffic.sent} reviews in {elapsed:.1f} s, {len(traffic.failures)} failed"
        )
        assert traffic.failures == [], traffic.failures[:5]
        assert traffic.sent > 50
        assert _certs(final, "ca.crt")[0] != first_ca
        served = x509.load_pem_x509_certificate((server.certs / "tls.crt").read_bytes())
        served.verify_directly_issued_by(_certs(final, "ca.crt")[0])
        records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        problems = [r for r in records if r["level"] in ("warning", "error")]
        assert problems == [], problems  # a permission the manifests lack would be "HTTP 403 forbidden by RBAC"
        actions = [a for r in records if r["msg"] == "certificates updated" for a in r["actions"]]
        print("certificate actions:", actions)
    finally:
        stop_server(server)


def _probe_ok(traffic: Traffic) -> bool:
    try:
        pod: Any = apiserver_pod("probe", GOOD_FLAGS)
        traffic.api.create_namespaced_pod("kube-system", pod, dry_run="All")
        return True
    except Exception:
        return False
