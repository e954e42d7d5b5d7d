"""`serve --cluster-certs` against the real apiserver, with the ServiceAccount and RBAC exactly as
manifests/base ships them and a token from `kubectl create token`: the Secret is created, the caBundle is
published to the real webhook configuration, and a rotation of the serving certificate and then of the CA
(requested with the Secret's rotate annotation) happens while the real apiserver keeps sending reviews, none of
which may fail. Any permission the manifests lack shows up as a 403 in the server's log.
"""

from __future__ import annotations

import base64
import datetime as dt
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
    apiserver_deployment,
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


def _start_cluster_certs_server(kubeconfig: Path, workdir: Path, sync: str = "1") -> RunningServer:
    port = free_port()
    certs = workdir / "certs"
    log = workdir / "server.log"
    exe = Path(sys.executable).with_name("apiserver-tls-guard")
    argv = [
        str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--certs-dir", str(certs),
        "--cluster-certs", "--kubeconfig", str(kubeconfig), "--mode", "enforce",
        "--cert-sync-interval", sync, "--ca-overlap", "8", "--reload-interval", "0.5",
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
    _point_webhooks_nowhere(control_plane)
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


# --- issue 21: no gap through a lost Secret, an overwritten configuration, two replicas ------------------------


class TwoReplicaTraffic(threading.Thread):
    """Dry-run creates through the real apiserver, alternating a kube-apiserver Pod (the pods webhook, pointed at
    replica A) and a Deployment (the workloads webhook, pointed at replica B), so every review of both replicas is
    counted; with failurePolicy Fail, a handshake kube-apiserver cannot verify is a failed create here."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(daemon=True)
        made = api_client(str(kubeconfig), None)
        self.core, self.apps = client.CoreV1Api(made), client.AppsV1Api(made)
        self.sent = {"A": 0, "B": 0}
        self.failures: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def one(self, replica: str) -> None:
        name = f"traffic-{sum(self.sent.values())}"
        body: Any = (
            apiserver_pod(name, GOOD_FLAGS) if replica == "A" else apiserver_deployment(name, "kube-system", GOOD_FLAGS)
        )
        if replica == "A":
            self.core.create_namespaced_pod("kube-system", body, dry_run="All", _request_timeout=15)
        else:
            self.apps.create_namespaced_deployment("kube-system", body, dry_run="All", _request_timeout=15)

    def run(self) -> None:
        while not self.stop.is_set():
            for replica in ("A", "B"):
                try:
                    self.one(replica)
                except Exception as err:
                    self.failures.append((time.monotonic(), f"{replica}: {type(err).__name__}: {str(err)[:200]}"))
                self.sent[replica] += 1


def _point(control_plane: ControlPlane, a: RunningServer, b: RunningServer) -> None:
    patch = [
        {"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": f"https://127.0.0.1:{a.port}/validate"},
        {"op": "replace", "path": "/webhooks/1/clientConfig/url", "value": f"https://127.0.0.1:{b.port}/validate"},
    ]
    control_plane.kubectl(
        "patch", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--type=json", "-p", json.dumps(patch), check=True
    )


def _issuer_of(server: RunningServer) -> x509.Name:
    return x509.load_pem_x509_certificate((server.certs / "tls.crt").read_bytes()).issuer


def _webhook_config(control_plane: ControlPlane) -> dict[str, Any]:
    result = control_plane.kubectl("get", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "-o", "json", check=True)
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _point_webhooks_nowhere(control_plane: ControlPlane) -> None:
    """The shipped configuration's clientConfig (a Service) replaced by a url on loopback and no caBundle, which
    the server under test must publish; each test then points the url at its server."""
    patch = [
        {"op": "replace", "path": f"/webhooks/{i}/clientConfig", "value": {"url": "https://127.0.0.1:1/validate"}}
        for i in range(2)
    ]
    control_plane.kubectl(
        "patch", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--type=json", "-p", json.dumps(patch), check=True
    )


def test_two_replicas_survive_secret_deletion_rotation_and_an_emptied_cabundle(
    control_plane: ControlPlane, installed: Path, tmp_path: Path
) -> None:
    _point_webhooks_nowhere(control_plane)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _start_cluster_certs_server(installed, tmp_path / "a")
    b = _start_cluster_certs_server(installed, tmp_path / "b")
    traffic = TwoReplicaTraffic(control_plane.kubeconfig)
    try:
        _point(control_plane, a, b)
        secret = wait_for(lambda: _secret(control_plane), what="the Secret")
        wait_for(
            lambda: _published_bundle(control_plane) == secret["data"]["ca-bundle.crt"], what="the caBundle published"
        )
        [first_ca] = _certs(secret, "ca.crt")
        wait_for(lambda: _issuer_of(a) == _issuer_of(b) == first_ca.subject, what="both replicas on the CA")

        def both_reachable() -> bool:
            try:
                traffic.one("A")
                traffic.one("B")
                return True
            except Exception:
                return False

        wait_for(both_reachable, what="the apiserver reaching both replicas")
        traffic.start()
        started = time.monotonic()

        # 1. The Secret is deleted while both replicas serve from its CA.
        time.sleep(2)
        deleted_at = time.monotonic()
        control_plane.kubectl("delete", "secret", SECRET, "-n", NAMESPACE, check=True)
        remade = wait_for(
            lambda: (s := _secret(control_plane)) and _certs(s, "ca.crt")[0] != first_ca and s, what="a new CA"
        )
        [second_ca] = _certs(remade, "ca.crt")
        assert first_ca in _certs(remade, "ca-bundle.crt"), "the CA both replicas serve from left the bundle"
        wait_for(lambda: _issuer_of(a) == _issuer_of(b) == second_ca.subject, what="both replicas on the new CA")
        wait_for(
            lambda: _certs(_secret(control_plane), "ca-bundle.crt") == [second_ca], timeout=40, what="old CA retired"
        )
        deletion_seconds = time.monotonic() - deleted_at
        time.sleep(2)
        failed_deletion = len(traffic.failures)

        # 2. A CA rotation, both replicas serving.
        control_plane.kubectl("annotate", "secret", SECRET, "-n", NAMESPACE, "apiserver-tls-guard.io/rotate=ca")
        wait_for(lambda: len(_certs(_secret(control_plane), "ca-bundle.crt")) == 2, what="the next CA introduced")
        wait_for(lambda: _certs(_secret(control_plane), "ca.crt")[0] != second_ca, timeout=40, what="promoted")
        [third_ca] = _certs(_secret(control_plane), "ca.crt")
        wait_for(lambda: _issuer_of(a) == _issuer_of(b) == third_ca.subject, what="both replicas promoted")
        wait_for(lambda: _certs(_secret(control_plane), "ca-bundle.crt") == [third_ca], timeout=40, what="retired")
        wait_for(
            lambda: _published_bundle(control_plane) == _secret(control_plane)["data"]["ca-bundle.crt"],
            what="the retired bundle published",
        )
        time.sleep(2)
        traffic.stop.set()
        traffic.join(30)
        reviews = dict(traffic.sent)
        elapsed = time.monotonic() - started
        failed_rotation = len(traffic.failures) - failed_deletion

        # 3. `helm upgrade --force` / a GitOps revert: the configuration replaced, caBundle empty (here the 1 s
        # sync repairs it; test_an_emptied_cabundle_is_repaired_between_syncs measures the 2 s look alone).
        repairs = _empty_cabundle_and_time_the_repair(control_plane, both_reachable)
    finally:
        traffic.stop.set()
        stop_server(a)
        stop_server(b)
    print(
        f"\ntwo replicas under real traffic: {reviews['A']} reviews to A, {reviews['B']} to B in {elapsed:.1f} s;"
        f"\n  Secret deleted: new CA, old one kept, both replicas moved, old CA retired in {deletion_seconds:.1f} s,"
        f" {failed_deletion} failed reviews;\n  CA rotation (introduce, promote, retire): {failed_rotation} failed"
        f" reviews;\n  caBundle emptied by a replace (sync every 1 s): repaired in"
        f" {', '.join(f'{r:.2f}' for r in repairs)} s"
    )
    assert traffic.failures == [], traffic.failures[:5]
    assert reviews["A"] > 20 and reviews["B"] > 20
    assert max(repairs) < 5
    for server in (a, b):
        records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        problems = [
            r for r in records if r["level"] in ("warning", "error") and not r["msg"].startswith("caBundle changed")
        ]
        assert problems == [], problems


def test_not_ready_before_the_cabundle_and_secret_writes_keep_what_others_put_there(
    control_plane: ControlPlane, installed: Path, tmp_path: Path
) -> None:
    """A pod may start before its webhook configuration exists (one `helm install`, or a GitOps sync in waves):
    it must not be Ready, or `helm install --wait` succeeds with an empty caBundle. Then, on the real API (whose
    garbage collector acts on ownerReferences): labels, annotations and an owner others put on the Secret survive
    a rotation, and a hand-edited phase-since without UTC offset is a warning, not a sync that fails forever."""
    from tests.pki.test_lifecycle_gaps import _get

    shipped = _webhook_config(control_plane)
    control_plane.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG, check=True)
    server = _start_cluster_certs_server(installed, tmp_path)
    try:
        time.sleep(3)
        assert _get(server.port, "/healthz") == 200
        assert _get(server.port, "/readyz") == 503  # before: 200
        for webhook in shipped["webhooks"]:
            webhook["clientConfig"] = {"url": f"https://127.0.0.1:{server.port}/validate"}
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            shipped["metadata"].pop(key, None)
        applied = time.monotonic()
        control_plane.kubectl("create", "-f", "-", stdin=json.dumps(shipped), check=True)
        wait_for(lambda: _get(server.port, "/readyz") == 200, what="ready once the caBundle is published")
        ready_seconds = time.monotonic() - applied
        assert _published_bundle(control_plane) == _secret(control_plane)["data"]["ca-bundle.crt"]

        control_plane.kubectl("create", "configmap", "secret-owner", "-n", NAMESPACE, check=True)
        owner_uid = control_plane.kubectl(
            "get", "configmap", "secret-owner", "-n", NAMESPACE, "-o", "jsonpath={.metadata.uid}", check=True
        ).stdout
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "secret-owner", "uid": owner_uid}
        owners = json.dumps({"metadata": {"ownerReferences": [owner]}})
        control_plane.kubectl("patch", "secret", SECRET, "-n", NAMESPACE, "--type=merge", "-p", owners, check=True)
        control_plane.kubectl("label", "secret", SECRET, "-n", NAMESPACE, "velero.io/backup-name=nightly", check=True)
        control_plane.kubectl(
            "annotate", "secret", SECRET, "-n", NAMESPACE, "--overwrite",
            "apiserver-tls-guard.io/phase-since=2026-11-25T10:00:00", "example.com/keep=yes", check=True,
        )  # fmt: skip
        serial = _certs(_secret(control_plane), "tls.crt")[0].serial_number
        control_plane.kubectl("annotate", "secret", SECRET, "-n", NAMESPACE, "apiserver-tls-guard.io/rotate=serving")
        wait_for(lambda: _certs(_secret(control_plane), "tls.crt")[0].serial_number != serial, what="a rotation")
        meta = _secret(control_plane)["metadata"]
    finally:
        stop_server(server)
        control_plane.kubectl("delete", "configmap", "secret-owner", "-n", NAMESPACE, "--ignore-not-found")
    print(f"\nready {ready_seconds:.1f} s after the webhook configuration was created")
    assert meta["labels"]["velero.io/backup-name"] == "nightly"
    assert meta["annotations"]["example.com/keep"] == "yes"
    assert meta["ownerReferences"] == [owner]
    assert "apiserver-tls-guard.io/rotate" not in meta["annotations"]
    assert dt.datetime.fromisoformat(meta["annotations"]["apiserver-tls-guard.io/phase-since"]).tzinfo is not None
    log = server.log_text()
    assert "unreadable rotation phase start; treated as now" in log
    assert "certificate sync failed" not in log


def _empty_cabundle_and_time_the_repair(control_plane: ControlPlane, reachable: Any) -> list[float]:
    """`helm upgrade --force` / a GitOps revert: the configuration replaced without caBundle, three times, at
    different moments of the replicas' looks; seconds until it carries a caBundle again, each time."""
    registration = client.AdmissionregistrationV1Api(api_client(str(control_plane.kubeconfig), None))
    config = _webhook_config(control_plane)
    for webhook in config["webhooks"]:
        webhook["clientConfig"].pop("caBundle", None)
    for key in ("uid", "creationTimestamp", "managedFields", "generation"):
        config["metadata"].pop(key, None)

    def repaired() -> bool:
        hooks = registration.read_validating_webhook_configuration(WEBHOOK_CONFIG).webhooks or []
        return all(h.client_config.ca_bundle for h in hooks)

    repairs: list[float] = []
    for pause in (0.0, 0.7, 1.4):
        time.sleep(pause)
        current = registration.read_validating_webhook_configuration(WEBHOOK_CONFIG)
        config["metadata"]["resourceVersion"] = current.metadata.resource_version if current.metadata else None
        registration.replace_validating_webhook_configuration(WEBHOOK_CONFIG, config)  # type: ignore[arg-type]
        emptied_at = time.monotonic()
        while not repaired():
            assert time.monotonic() - emptied_at < 30, "the emptied caBundle was never repaired"
            time.sleep(0.05)
        repairs.append(time.monotonic() - emptied_at)
        wait_for(reachable, what="reviews passing again after the repair")
    return repairs


def test_an_emptied_cabundle_is_repaired_between_syncs(
    control_plane: ControlPlane, installed: Path, tmp_path: Path
) -> None:
    """With the default sync (60 s), only the 2 s look at the configuration can repair it in seconds."""
    _point_webhooks_nowhere(control_plane)
    server = _start_cluster_certs_server(installed, tmp_path, sync="60")
    probe = Traffic(control_plane.kubeconfig)
    try:
        url_patch = [
            {"op": "replace", "path": f"/webhooks/{i}/clientConfig/url", "value": f"https://127.0.0.1:{server.port}/validate"}
            for i in range(2)
        ]  # fmt: skip
        control_plane.kubectl(
            "patch", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--type=json", "-p", json.dumps(url_patch),
            check=True,
        )  # fmt: skip
        wait_for(lambda: _probe_ok(probe), what="the apiserver reaching the webhook")
        repairs = _empty_cabundle_and_time_the_repair(control_plane, lambda: _probe_ok(probe))
    finally:
        stop_server(server)
    print(f"\ncaBundle emptied by a replace (sync every 60 s, look every 2 s): repaired in "
          f"{', '.join(f'{r:.2f}' for r in repairs)} s")  # fmt: skip
    assert max(repairs) < 4  # before: up to the next sync, 60 s
