"""The certificate lifecycle leaves no gap (issue 21): a lost Secret keeps the CA replicas still serve from in the
caBundle, promotion waits for the published bundle, a bad annotation is "now", writes keep foreign metadata, and a
replica is ready only once the caBundle is confirmed.

Against tests/fake_kube_api.py for the cases that need a failure on cue (a forbidden write at one exact step, a
Secret removed between two syncs of one replica, an unreadable annotation with no admission in the way); the same
cases on the real control plane, under review traffic, are in tests/e2e/test_cluster_certs_e2e.py.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import logging
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import start_server, stop_server
from tests.fake_kube_api import FakeKubeApi, serve_fake_api
from tests.pki.test_cluster_certs import SECRET, T0, VWC, bundle_of, replica, vwc
from webhook.pki.authority import CA, service_identities
from webhook.pki.rotation import CertState, Timing, plan
from webhook.pki.secret import PHASE_ANNOTATION, read_state

ROTATE = "apiserver-tls-guard.io/rotate"
OVERLAP = dt.timedelta(minutes=15)


def served_by(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_deleted_secret_keeps_the_published_ca_until_the_overlap_has_passed(tmp_path: Path) -> None:
    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        a, b = replica(kubeconfig, tmp_path, "a"), replica(kubeconfig, tmp_path, "b")
        a.sync_once(T0)
        b.sync_once(T0)
        [old] = bundle_of(api)
        del api.objects[SECRET]  # `kubectl delete secret`, or a namespace restore without it
        t1 = T0 + dt.timedelta(minutes=1)
        actions = a.sync_once(t1)
        assert actions[:2] == ["created CA", "kept 1 CA(s) still trusted in the caBundle for the overlap"]
        new = read_state(api.objects[SECRET]).ca
        assert new is not None and new.cert != old
        assert bundle_of(api) == [old, new.cert]  # before: [new] only, while b still served from `old`
        served_by(tmp_path / "b" / "tls.crt").verify_directly_issued_by(old)  # b has not synced yet: still trusted
        served_by(tmp_path / "a" / "tls.crt").verify_directly_issued_by(new.cert)
        b.sync_once(t1 + dt.timedelta(minutes=1))
        served_by(tmp_path / "b" / "tls.crt").verify_directly_issued_by(new.cert)
        assert a.sync_once(t1 + OVERLAP) == ["retired the old CA from the caBundle"]
        assert bundle_of(api) == [new.cert]


def test_new_certificate_is_held_back_while_its_ca_cannot_be_published(tmp_path: Path) -> None:
    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        a = replica(kubeconfig, tmp_path, "a")
        a.sync_once(T0)
        [old] = bundle_of(api)
        served = (tmp_path / "a" / "tls.crt").read_bytes()
        del api.objects[SECRET]
        api.forbidden.add(f"PUT {VWC}")
        a.sync_once(T0 + dt.timedelta(minutes=1))
        assert (tmp_path / "a" / "tls.crt").read_bytes() == served  # kube-apiserver can still verify it
        assert any("held back" in e for e in a.errors)
        api.forbidden.clear()
        a.sync_once(T0 + dt.timedelta(minutes=2))
        new = read_state(api.objects[SECRET]).ca
        assert new is not None and bundle_of(api) == [old, new.cert]
        served_by(tmp_path / "a" / "tls.crt").verify_directly_issued_by(new.cert)


def test_promotion_waits_until_the_bundle_with_the_next_ca_is_published(tmp_path: Path) -> None:
    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        a = replica(kubeconfig, tmp_path, "a")
        a.sync_once(T0)
        [old] = bundle_of(api)
        api.objects[SECRET]["metadata"]["annotations"][ROTATE] = "ca"
        api.forbidden.add(f"PUT {VWC}")  # publishing the bundle old + next fails
        assert a.sync_once(T0) == ["introduced the next CA into the caBundle"]
        late = T0 + OVERLAP + dt.timedelta(minutes=5)
        assert a.sync_once(late) == []  # on time, but kube-apiserver does not trust the next CA: before, promoted
        assert read_state(api.objects[SECRET]).ca is not None
        assert read_state(api.objects[SECRET]).ca.cert == old  # type: ignore[union-attr]
        api.forbidden.clear()
        assert a.sync_once(late) == []  # this sync publishes old + next
        assert "promoted the next CA: serving certificate now issued by it" in a.sync_once(late)


@pytest.mark.parametrize("value", ["2026-11-25T10:00:00", "yesterday", "2026-13-45T00:00:00Z"])
def test_phase_annotation_without_utc_offset_is_now_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        a = replica(kubeconfig, tmp_path, "a")
        a.sync_once(T0)
        api.objects[SECRET]["metadata"]["annotations"][ROTATE] = "ca"
        a.sync_once(T0)
        api.objects[SECRET]["metadata"]["annotations"][PHASE_ANNOTATION] = value  # edited by hand
        caplog.set_level(logging.WARNING, logger="apiserver_tls_guard")
        t1 = T0 + dt.timedelta(minutes=1)
        # Before: TypeError (naive minus aware) at every sync, and a restarted pod never became ready.
        assert a.sync_once(t1) == ["rotation phase start unreadable: set to now"]
        assert any("unreadable rotation phase start" in r.getMessage() for r in caplog.records)
        since = read_state(api.objects[SECRET]).since
        assert since == t1
        caplog.clear()
        assert a.sync_once(t1 + dt.timedelta(minutes=1)) == []  # written back: no warning at every sync
        assert not any("unreadable rotation phase start" in r.getMessage() for r in caplog.records)
        assert a.sync_once(t1 + OVERLAP - dt.timedelta(minutes=1)) == []  # the overlap counts from t1
        assert "promoted the next CA: serving certificate now issued by it" in a.sync_once(t1 + OVERLAP)


def test_bad_phase_annotation_on_a_settled_secret_is_written_back_once(tmp_path: Path) -> None:
    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        a = replica(kubeconfig, tmp_path, "a")
        a.sync_once(T0)
        api.objects[SECRET]["metadata"]["annotations"][PHASE_ANNOTATION] = "2026-11-25 10:00"
        assert a.sync_once(T0) == ["rotation phase start unreadable: set to now"]
        assert a.sync_once(T0) == []
        assert read_state(api.objects[SECRET]).since == T0


def test_secret_writes_keep_foreign_metadata_and_data(tmp_path: Path) -> None:
    api = FakeKubeApi(objects={VWC: vwc()})
    with serve_fake_api(api, tmp_path) as kubeconfig:
        a = replica(kubeconfig, tmp_path, "a")
        a.sync_once(T0)
        meta = api.objects[SECRET]["metadata"]
        meta["labels"]["velero.io/backup-name"] = "nightly"
        meta["annotations"]["argocd.argoproj.io/tracking-id"] = "guard:/Secret:apiserver-tls-guard/certs"
        meta["annotations"][ROTATE] = "serving"
        owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "1234"}
        meta["ownerReferences"] = [owner]
        meta["finalizers"] = ["example.com/keep"]
        api.objects[SECRET]["data"]["extra.txt"] = base64.b64encode(b"someone else's").decode()
        before = copy.deepcopy(api.objects[SECRET])
        assert "serving certificate rotation requested" in a.sync_once(T0)
        after = api.objects[SECRET]
        assert after["data"]["tls.crt"] != before["data"]["tls.crt"]  # it was written
        assert after["metadata"]["labels"]["velero.io/backup-name"] == "nightly"
        assert after["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"].startswith("guard:")
        assert ROTATE not in after["metadata"]["annotations"]  # the request was taken
        assert after["metadata"]["ownerReferences"] == [owner]
        assert after["metadata"]["finalizers"] == ["example.com/keep"]
        assert after["data"]["extra.txt"] == before["data"]["extra.txt"]


def test_plan_keeps_a_lost_secrets_bundle_too() -> None:
    """The Secret's CA unreadable (its key damaged) but its bundle readable: those CAs stay for the overlap."""
    old = CA.create()
    state = CertState(ca=None, bundle=(old.cert,))
    after, actions = plan(state, T0, service_identities(), Timing(), published=())
    assert after.ca is not None and after.bundle == (old.cert, after.ca.cert)
    assert "kept 1 CA(s) still trusted in the caBundle for the overlap" in actions


def _get(port: int, path: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=context, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_not_ready_until_the_cabundle_is_published_and_an_emptied_one_is_repaired_in_seconds(tmp_path: Path) -> None:
    api = FakeKubeApi()  # the webhook configuration is not installed yet
    with serve_fake_api(api, tmp_path) as kubeconfig:
        certs = tmp_path / "certs"
        server = start_server(certs, tmp_path, "--cluster-certs", "--kubeconfig", str(kubeconfig))
        try:
            assert _get(server.port, "/healthz") == 200
            time.sleep(2.5)  # a fast look or two
            assert _get(server.port, "/readyz") == 503  # before: 200, and `helm install --wait` succeeded
            api.objects[VWC] = vwc()
            started = time.monotonic()
            while _get(server.port, "/readyz") != 200:
                assert time.monotonic() - started < 10, "never ready after the configuration was installed"
                time.sleep(0.1)
            published = bundle_of(api)
            # `helm upgrade --force`: the manifest's configuration again, caBundle empty.
            api.objects[VWC] = vwc() | {"metadata": {**vwc()["metadata"], "resourceVersion": "2"}}
            started = time.monotonic()
            while not all(h["clientConfig"].get("caBundle") for h in api.objects[VWC]["webhooks"]):
                assert time.monotonic() - started < 10, "the emptied caBundle was not repaired"
                time.sleep(0.05)
            repaired = time.monotonic() - started
            assert bundle_of(api) == published
            print(f"\nemptied caBundle repaired in {repaired:.2f} s (default look every 2 s)")
            assert repaired < 4
            assert _get(server.port, "/readyz") == 200
        finally:
            stop_server(server)
