"""A half-written certificate pair never reaches the live TLS context (issue 21).

Through the real server process over HTTPS, with the verifying client loop of test_rotation.py running: the new
certificate is written and its key only a second later (ten looks of the reloader), as a writer that is not atomic
over both files does. Before: OpenSSL installed the new certificate into the live context and freed the old key,
and every handshake failed until the key arrived. Now the pair is tried in a scratch context first: refused
(logged, counted once), the old pair keeps serving, and the new one is served once its key is there.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.conftest import RunningServer, start_server, stop_server
from tests.runtime.test_rotation import Loop, Trust, install
from webhook.pki.authority import CA, service_identities, write_file


def _metric(server: RunningServer, name: str) -> float:
    client = server.client()
    try:
        text = client.get("/metrics").body.decode()
    finally:
        client.close()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_certificate_written_before_its_key_keeps_handshakes_working(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    ca = CA.create()
    first = install(certs, ca)
    trust = Trust(tmp_path / "bundle.crt", ca)
    server = start_server(certs, tmp_path, "--external-certs", "--reload-interval", "0.1", "--log-level", "warning")
    loop = Loop(server.port, trust)
    loop.start()
    try:
        loop.wait_for_serial(first)
        leaf = ca.issue_cert(*service_identities())
        write_file(certs / "tls.crt", leaf.cert_pem, private=False)  # the certificate first ...
        sent = loop.sent
        time.sleep(1.0)
        assert loop.sent - sent > 10, "the loop kept sending while the pair was half-written"
        assert loop.failed == 0, loop.errors[:3]
        assert loop.serials[-1] == first  # the old pair still serves
        write_file(certs / "tls.key", leaf.key_pem, private=True)  # ... its key a second later
        loop.wait_for_serial(leaf.cert.serial_number)
        time.sleep(0.3)
        assert _metric(server, "tlsguard_certificate_reload_errors_total") == 1.0  # once, not per look
    finally:
        loop.stop.set()
        loop.join(timeout=10)
        stop_server(server)
    print(f"\nhalf-written pair: {loop.sent} requests, {loop.failed} failed")
    assert loop.failed == 0, loop.errors[:3]
    assert server.log_text().count("new certificate refused") == 1


def test_mismatched_pair_is_refused_and_the_old_one_keeps_serving(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    ca = CA.create()
    first = install(certs, ca)
    trust = Trust(tmp_path / "bundle.crt", ca)
    server = start_server(certs, tmp_path, "--external-certs", "--reload-interval", "0.1", "--log-level", "warning")
    loop = Loop(server.port, trust)
    loop.start()
    try:
        loop.wait_for_serial(first)
        one, other = ca.issue_cert(*service_identities()), ca.issue_cert(*service_identities())
        write_file(certs / "tls.key", other.key_pem, private=True)
        write_file(certs / "tls.crt", one.cert_pem, private=False)  # a pair that never matches
        time.sleep(1.0)
        assert _metric(server, "tlsguard_certificate_reload_errors_total") == 1.0
        assert loop.serials[-1] == first
    finally:
        loop.stop.set()
        loop.join(timeout=10)
        stop_server(server)
    assert loop.failed == 0, loop.errors[:3]
    assert "key values mismatch" in server.log_text() or "KEY_VALUES_MISMATCH" in server.log_text()


def test_the_scratch_copy_of_the_key_is_gone_after_the_load(tmp_path: Path) -> None:
    import tempfile

    from webhook.runtime import reload
    from webhook.runtime.tls import server_context

    certs = tmp_path / "certs"
    ca = CA.create()
    install(certs, ca)
    context = server_context(certs / "tls.crt", certs / "tls.key")
    reload.CONTEXTS.append(context)
    try:
        reloader = reload.CertReloader(certs / "tls.crt", certs / "tls.key", interval=0.1)
        install(certs, ca)
        assert reloader.check() is True
    finally:
        reload.CONTEXTS.remove(context)
    for root in {reload._scratch_root() or tempfile.gettempdir(), tempfile.gettempdir()}:
        assert not list(Path(root).glob("apiserver-tls-guard-reload-*")), root
