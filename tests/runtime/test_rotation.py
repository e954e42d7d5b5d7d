"""Certificate rotation on the real server process, with zero failed requests.

A client loop behaves like kube-apiserver: it verifies the chain against the caBundle it currently trusts and the
service name, over a kept-alive connection and over new connections, and counts every request that fails. While
it runs, the serving certificate is re-issued, then the CA is rotated the way the in-cluster lifecycle does it:
the new CA joins the bundle first, then the serving certificate from the new CA is installed, then the old CA
leaves the bundle. The files are swapped in the server's certs directory (--external-certs: it only reloads).
tests/apiserver_client.py stands in for kube-apiserver's webhook client here, so that every request of the loop
is counted; the real apiserver does the same rotation under traffic in tests/e2e/test_cluster_certs_e2e.py.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.admission.test_http import COMPLIANT, apiserver_pod
from tests.apiserver_client import SERVICE_NAME, ApiserverClient, CallFailure, admission_review
from tests.conftest import start_server, stop_server
from webhook.pki.authority import CA, service_identities, write_file


class Trust:
    """The caBundle the client side trusts, changed as kube-apiserver would see the webhook configuration change."""

    def __init__(self, path: Path, *cas: CA) -> None:
        self.path = path
        self.set(*cas)

    def set(self, *cas: CA) -> None:
        write_file(self.path, b"".join(ca.cert_pem for ca in cas), private=False)


def install(certs: Path, ca: CA) -> int:
    leaf = ca.issue_cert(*service_identities())
    # The key first, then the certificate: the reloader only swaps when both match, so order must not matter.
    write_file(certs / "tls.key", leaf.key_pem, private=True)
    write_file(certs / "tls.crt", leaf.cert_pem, private=False)
    write_file(certs / "ca.crt", ca.cert_pem, private=False)
    return leaf.cert.serial_number


class Loop(threading.Thread):
    def __init__(self, port: int, trust: Trust) -> None:
        super().__init__(daemon=True)
        self.port, self.trust = port, trust
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self.serials: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        keep_alive = ApiserverClient(self.port, self.trust.path)
        review = admission_review(apiserver_pod(*COMPLIANT))
        while not self.stop.is_set():
            fresh = ApiserverClient(self.port, self.trust.path)  # re-reads the bundle, as after a caBundle change
            for client in (keep_alive, fresh):
                self.sent += 1
                try:
                    assert client.review(review)["allowed"] is True
                except (OSError, CallFailure, AssertionError) as err:
                    self.failed += 1
                    self.errors.append(repr(err))
            sock = fresh.conn.sock
            if sock is not None:
                der = sock.getpeercert(binary_form=True)
                if der:
                    self.serials.append(x509.load_der_x509_certificate(der).serial_number)
            fresh.close()
        keep_alive.close()

    def wait_for_serial(self, serial: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.serials and self.serials[-1] == serial:
                return
            time.sleep(0.05)
        raise AssertionError(f"server never served certificate {serial}")


@contextlib.contextmanager
def serving_under_traffic(certs: Path, workdir: Path, trust: Trust) -> Iterator[Loop]:
    """`serve --external-certs` on `certs`, with the verifying client loop running against it until the end."""
    server = start_server(certs, workdir, "--external-certs", "--reload-interval", "0.1", "--log-level", "warning")
    loop = Loop(server.port, trust)
    loop.start()
    try:
        yield loop
    finally:
        loop.stop.set()
        loop.join(timeout=10)
        stop_server(server)


def test_serving_cert_and_ca_rotation_with_zero_failed_requests(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    old_ca = CA.create()
    first = install(certs, old_ca)
    trust = Trust(tmp_path / "bundle.crt", old_ca)
    with serving_under_traffic(certs, tmp_path, trust) as loop:
        loop.wait_for_serial(first)
        # 1. the serving certificate is re-issued by the same CA
        time.sleep(0.5)
        loop.wait_for_serial(install(certs, old_ca))
        # 2. CA rotation: the new CA joins the bundle, the serving cert moves to it, the old CA leaves
        new_ca = CA.create()
        trust.set(old_ca, new_ca)
        time.sleep(0.5)
        loop.wait_for_serial(install(certs, new_ca))
        time.sleep(0.5)
        trust.set(new_ca)
        time.sleep(0.5)
        # 3. and once more under the new CA
        loop.wait_for_serial(install(certs, new_ca))
        time.sleep(0.5)
    print(
        f"\nrotation: {loop.sent} requests, 3 serving-certificate rotations (1 across a CA change), "
        f"{loop.failed} failed, {len(set(loop.serials))} distinct serving certificates seen"
    )
    assert loop.failed == 0, loop.errors[:3]
    assert loop.sent > 100
    assert len(set(loop.serials)) == 4


def test_external_certs_must_exist(tmp_path: Path) -> None:
    from tests.conftest import cli

    result = cli("serve", "--external-certs", "--certs-dir", str(tmp_path / "none"), "--port", "1")
    assert result.returncode == 2 and "missing" in result.stderr
    assert not (tmp_path / "none").exists()  # nothing was generated


def test_service_name_is_still_verified_after_rotation(tmp_path: Path) -> None:
    """A rotation really happens (a new CA and serving certificate, loaded by the running server), and after it
    the chain and the service name are verified as before: the right name passes, another name fails."""
    certs = tmp_path / "certs"
    old_ca = CA.create()
    first = install(certs, old_ca)
    server = start_server(certs, tmp_path, "--external-certs", "--reload-interval", "0.1")
    try:
        new_ca = CA.create()
        second = install(certs, new_ca)
        assert second != first
        write_file(tmp_path / "ca.crt", new_ca.cert_pem, private=False)
        deadline = time.monotonic() + 10
        while True:  # until the server presents the new chain
            try:
                client = ApiserverClient(server.port, tmp_path / "ca.crt", server_name=SERVICE_NAME)
                assert client.get("/healthz").status == 200
                client.close()
                break
            except (CallFailure, ssl.SSLError, OSError):
                assert time.monotonic() < deadline, "the rotated certificate was never served"
                time.sleep(0.1)
        with pytest.raises((CallFailure, ssl.SSLError, OSError)):
            ApiserverClient(server.port, tmp_path / "ca.crt", server_name="other.example.svc").get("/healthz")
    finally:
        stop_server(server)


def kubelet_secret_volume(certs: Path, version: int, ca: CA) -> int:
    """Write a Secret volume as the kubelet does (pkg/volume/util/atomic_writer.go): the files into a new folder,
    then the `..data` symlink swapped to it in one rename; tls.crt, tls.key and ca.crt point through `..data`."""
    folder = certs / f"..2026_11_30_v{version}"
    folder.mkdir(parents=True)
    leaf = ca.issue_cert(*service_identities())
    write_file(folder / "tls.key", leaf.key_pem, private=True)
    write_file(folder / "tls.crt", leaf.cert_pem, private=False)
    write_file(folder / "ca.crt", ca.cert_pem, private=False)
    staging = certs / "..data_tmp"
    staging.symlink_to(folder.name)
    staging.rename(certs / "..data")
    for name in ("tls.crt", "tls.key", "ca.crt"):
        if not (certs / name).is_symlink():
            (certs / name).symlink_to(f"..data/{name}")
    return leaf.cert.serial_number


def test_external_certs_follow_a_secret_volume_swap(tmp_path: Path) -> None:
    """cert-manager renews the Secret; the kubelet swaps `..data`; `serve --external-certs` serves the new one."""
    certs = tmp_path / "certs"
    ca = CA.create()
    first = kubelet_secret_volume(certs, 1, ca)
    trust = Trust(tmp_path / "bundle.crt", ca)
    with serving_under_traffic(certs, tmp_path, trust) as loop:
        loop.wait_for_serial(first)
        loop.wait_for_serial(kubelet_secret_volume(certs, 2, ca))
    assert loop.failed == 0, loop.errors[:3]
