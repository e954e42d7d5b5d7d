"""The in-cluster certificate lifecycle, through the official kubernetes client, against tests/fake_kube_api.py.

No kube-apiserver can run on these machines; the stand-in keeps objects with resourceVersions and answers
404 NotFound, 409 Conflict / AlreadyExists and 403 Forbidden with the API's own Status bodies.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import ROOT
from tests.fake_kube_api import FakeKubeApi, serve_fake_api
from webhook.kube import api_client
from webhook.pki.authority import CertFiles
from webhook.pki.cluster import ClusterCertificates
from webhook.pki.rotation import Timing
from webhook.pki.secret import LifecycleNames, read_state

NAMES = LifecycleNames("apiserver-tls-guard", "apiserver-tls-guard-certs", "apiserver-tls-guard", "apiserver-tls-guard")
SECRET = "/api/v1/namespaces/apiserver-tls-guard/secrets/apiserver-tls-guard-certs"
SECRETS = "/api/v1/namespaces/apiserver-tls-guard/secrets"
VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/apiserver-tls-guard"
T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def vwc() -> dict[str, Any]:
    """The configuration as the API would return it: our own manifest, with the fields the API defaults."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "manifests/base/validatingwebhookconfiguration.yaml").read_text())
    config["metadata"]["resourceVersion"] = "1"
    for hook in config["webhooks"]:
        hook.setdefault("objectSelector", {})
        hook["clientConfig"]["service"].setdefault("port", 443)
    return config


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKubeApi, Path]]:
    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        yield api, kubeconfig


def replica(kubeconfig: Path, tmp: Path, name: str, timing: Timing | None = None) -> ClusterCertificates:
    return ClusterCertificates(api_client(str(kubeconfig), None), NAMES, CertFiles(tmp / name), timing or Timing())


def bundle_of(api: FakeKubeApi) -> list[x509.Certificate]:
    hooks = api.objects[VWC]["webhooks"]
    bundles = {h["clientConfig"]["caBundle"] for h in hooks}
    assert len(bundles) == 1, "every webhook carries the same caBundle"
    return x509.load_pem_x509_certificates(base64.b64decode(bundles.pop()))


def test_first_replica_creates_secret_publishes_cabundle_and_writes_files(
    cluster: tuple[FakeKubeApi, Path], tmp_path: Path
) -> None:
    api, kubeconfig = cluster
    actions = replica(kubeconfig, tmp_path, "a").sync_once(T0)
    assert actions == ["created CA", "issued a serving certificate"]
    state = read_state(api.objects[SECRET])
    assert state.ca is not None and state.serving is not None
    assert bundle_of(api) == [state.ca.cert]
    files = CertFiles(tmp_path / "a")
    assert files.cert.read_bytes() == state.serving.cert_pem
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    sans = state.serving.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "apiserver-tls-guard.apiserver-tls-guard.svc" in sans.get_values_for_type(x509.DNSName)


def test_second_replica_adopts_without_writing(cluster: tuple[FakeKubeApi, Path], tmp_path: Path) -> None:
    api, kubeconfig = cluster
    replica(kubeconfig, tmp_path, "a").sync_once(T0)
    writes = len([r for r in api.requests if r[0] in ("POST", "PUT")])
    assert replica(kubeconfig, tmp_path, "b").sync_once(T0) == []
    assert len([r for r in api.requests if r[0] in ("POST", "PUT")]) == writes
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes()


def test_racing_replicas_resolve_through_already_exists(cluster: tuple[FakeKubeApi, Path], tmp_path: Path) -> None:
    api, kubeconfig = cluster
    a, b = replica(kubeconfig, tmp_path, "a"), replica(kubeconfig, tmp_path, "b")
    # b's whole sync happens after a has read "404" and before a's create reaches the API.
    api.hooks[f"POST {SECRETS}"] = lambda: b.sync_once(T0)
    a.sync_once(T0)
    assert sum(1 for r in api.requests if r[0] == "POST") == 2  # both tried; one got 409 AlreadyExists
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes()
    assert read_state(api.objects[SECRET]).serving is not None


def test_racing_updates_resolve_through_conflict(cluster: tuple[FakeKubeApi, Path], tmp_path: Path) -> None:
    api, kubeconfig = cluster
    short = Timing(serving_days=40)  # re-issued when less than 30 days are left
    replica(kubeconfig, tmp_path, "a", short).sync_once(T0)
    a, b = replica(kubeconfig, tmp_path, "a", short), replica(kubeconfig, tmp_path, "b", short)
    later = T0 + dt.timedelta(days=20)
    api.hooks[f"PUT {SECRET}"] = lambda: b.sync_once(later)
    a.sync_once(later)
    codes = [r for r in api.requests if r[0] == "PUT" and r[1].startswith(SECRET)]
    assert len(codes) == 2  # a's first PUT carried a stale resourceVersion: 409 Conflict, then a re-read
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes()


def test_ca_rotation_keeps_old_and_new_ca_in_the_bundle_until_every_replica_has_moved(
    cluster: tuple[FakeKubeApi, Path], tmp_path: Path
) -> None:
    api, kubeconfig = cluster
    timing = Timing(ca_days=400, ca_renew_before=dt.timedelta(days=365), overlap=dt.timedelta(minutes=15))
    a, b = replica(kubeconfig, tmp_path, "a", timing), replica(kubeconfig, tmp_path, "b", timing)
    a.sync_once(T0)
    old = read_state(api.objects[SECRET]).ca
    assert old is not None
    # 40 days on, the CA has less than a year left: the next CA joins the bundle; serving stays on the old CA.
    t1 = T0 + dt.timedelta(days=40)
    assert a.sync_once(t1) == ["introduced the next CA into the caBundle"]
    b.sync_once(t1)
    state = read_state(api.objects[SECRET])
    assert state.next_ca is not None
    assert bundle_of(api) == [old.cert, state.next_ca.cert]
    serving = x509.load_pem_x509_certificate((tmp_path / "b" / "tls.crt").read_bytes())
    assert serving.issuer == old.cert.subject
    serving.verify_directly_issued_by(old.cert)  # raises if not
    # Within the overlap nothing moves.
    assert b.sync_once(t1 + dt.timedelta(minutes=5)) == []
    # After it: promote; both replicas serve from the new CA, and the bundle still trusts both.
    t2 = t1 + dt.timedelta(minutes=16)
    assert "promoted the next CA: serving certificate now issued by it" in a.sync_once(t2)
    b.sync_once(t2)
    new = read_state(api.objects[SECRET]).ca
    assert new is not None and new.cert == state.next_ca.cert
    assert bundle_of(api) == [old.cert, new.cert]
    for name in ("a", "b"):
        x509.load_pem_x509_certificate((tmp_path / name / "tls.crt").read_bytes()).verify_directly_issued_by(new.cert)
    # After another overlap: the old CA leaves the bundle.
    t3 = t2 + dt.timedelta(minutes=16)
    assert b.sync_once(t3) == ["retired the old CA from the caBundle"]
    assert bundle_of(api) == [new.cert]
    assert (tmp_path / "a" / "ca.crt").read_bytes() != (tmp_path / "b" / "ca.crt").read_bytes()  # a syncs later
    a.sync_once(t3)
    assert (tmp_path / "a" / "ca.crt").read_bytes() == (tmp_path / "b" / "ca.crt").read_bytes()


def test_forbidden_cabundle_update_is_reported_and_serving_goes_on(
    cluster: tuple[FakeKubeApi, Path], tmp_path: Path
) -> None:
    api, kubeconfig = cluster
    api.forbidden.add(f"PUT {VWC}")
    lifecycle = replica(kubeconfig, tmp_path, "a")
    lifecycle.sync_once(T0)
    assert any("HTTP 403 forbidden by RBAC" in e for e in lifecycle.errors)
    assert (tmp_path / "a" / "tls.crt").is_file()  # the replica can still serve


def test_missing_webhook_configuration_is_reported(tmp_path: Path) -> None:
    api = FakeKubeApi()
    with serve_fake_api(api, tmp_path) as kubeconfig:
        lifecycle = replica(kubeconfig, tmp_path, "a")
        lifecycle.sync_once(T0)
    assert any("HTTP 404 not installed yet" in e for e in lifecycle.errors)
    assert SECRET in api.objects


def test_secret_holds_no_surprises(cluster: tuple[FakeKubeApi, Path], tmp_path: Path) -> None:
    api, kubeconfig = cluster
    replica(kubeconfig, tmp_path, "a").sync_once(T0)
    secret = api.objects[SECRET]
    assert set(secret["data"]) == {"ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"}
    assert secret["type"] == "Opaque"
    assert json.dumps(secret).count("PRIVATE KEY") == 0  # base64 in data, never plain text elsewhere


def test_serve_with_cluster_certs_publishes_and_serves_the_secrets_chain(tmp_path: Path) -> None:
    # The real server process, started as the Deployment starts it, against the API stand-in.
    from tests.apiserver_client import ApiserverClient
    from tests.conftest import start_server, stop_server

    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        certs = tmp_path / "certs"
        server = start_server(
            certs,
            tmp_path,
            "--cluster-certs",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            "apiserver-tls-guard",
            "--service",
            "apiserver-tls-guard",
        )
        try:
            state = read_state(api.objects[SECRET])
            assert state.ca is not None
            bundle = tmp_path / "bundle.crt"
            bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in bundle_of(api)))
            client = ApiserverClient(server.port, bundle)  # trusts exactly what the caBundle says
            assert client.get("/healthz").status == 200
            peer = client.conn.sock.getpeercert(binary_form=True) if client.conn.sock else None
            assert peer is not None
            x509.load_der_x509_certificate(peer).verify_directly_issued_by(state.ca.cert)
            client.close()
        finally:
            stop_server(server)
