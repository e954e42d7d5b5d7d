"""The handshakes against local TLS servers configured as kube-apiserver's flags would configure Go's."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from OpenSSL import SSL

from tests.probe.conftest import Pki
from tests.probe.servers import Config, serving, silent
from webhook.probe import handshake
from webhook.probe.handshake import ProbeError


@pytest.mark.parametrize("top", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION], ids=["TLS1.2", "TLS1.3"])
def test_the_certificate_request_names_the_client_cas_in_order(pki: Pki, top: int) -> None:
    bundle = pki.file("client-cas.crt", pki.cluster_ca, pki.front_proxy_ca)  # --client-ca-file first, as Go
    with serving(Config(pki.rsa_cert, pki.rsa_key, client_cas=bundle, maximum=top)) as port:
        seen = handshake.full_handshake("127.0.0.1", port, None, 2)
    assert seen.requested_client_cert
    assert [n.text for n in seen.client_ca_names] == ["CN=kubernetes", "CN=front-proxy-ca"]
    assert seen.client_ca_names[0].names(pki.cluster_ca.cert)
    assert seen.protocol == ("TLSv1.3" if top == SSL.TLS1_3_VERSION else "TLSv1.2")
    assert seen.leaf.subject.rfc4514_string() == "CN=kube-apiserver"


def test_no_client_ca_means_no_certificate_request(pki: Pki) -> None:
    with serving(Config(pki.rsa_cert, pki.rsa_key)) as port:
        seen = handshake.full_handshake("127.0.0.1", port, None, 2)
    assert not seen.requested_client_cert
    assert seen.client_ca_names == ()


def test_each_suite_is_offered_alone_and_only_those_served_are_accepted(pki: Pki) -> None:
    # Go's default list on an RSA certificate includes these two CBC suites (../shared/observed-tls.md).
    served = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
    with serving(Config(pki.rsa_cert, pki.rsa_key, ciphers=served)) as port:
        scan = handshake.scan_suites("127.0.0.1", port, None, handshake.tls12_suites("RSA"), 2)
    assert sorted(scan.accepted) == [
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    ]
    assert scan.unknown == ()
    assert "TLS_RSA_WITH_AES_128_GCM_SHA256" in scan.offered  # RSA key exchange is offered too


def test_an_ec_certificate_is_offered_the_ecdsa_suites(pki: Pki) -> None:
    suites = handshake.tls12_suites("EC")
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in suites and "ECDHE-RSA-AES128-GCM-SHA256" not in suites
    with serving(Config(pki.ec_cert, pki.ec_key, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")) as port:
        scan = handshake.scan_suites("127.0.0.1", port, None, suites, 2)
    assert scan.accepted == ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",)


def test_versions_below_tls12_are_seen_when_served(pki: Pki) -> None:
    with serving(Config(pki.rsa_cert, pki.rsa_key, minimum=SSL.TLS1_VERSION)) as port:
        old = handshake.old_versions("127.0.0.1", port, None, 2)
    assert old == {"TLS 1.0": True, "TLS 1.1": True}
    with serving(Config(pki.rsa_cert, pki.rsa_key)) as port:
        assert handshake.old_versions("127.0.0.1", port, None, 2) == {"TLS 1.0": False, "TLS 1.1": False}


def test_a_refused_port_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(ProbeError, match=rf"^127\.0\.0\.1:{port}: connection refused$"):
            handshake.full_handshake("127.0.0.1", port, None, 2)


def test_a_silent_endpoint_times_out_on_time() -> None:
    with silent() as port:
        start = time.monotonic()
        with pytest.raises(ProbeError, match=r"no answer within 0\.5 s$"):
            handshake.full_handshake("127.0.0.1", port, None, 0.5)
        assert time.monotonic() - start < 0.5 + 2  # one timeout, with slack for a loaded machine


@contextmanager
def _plain_http() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_plain_http_server_is_not_tls() -> None:
    with _plain_http() as port, pytest.raises(ProbeError, match=r"TLS handshake failed|not a TLS server"):
        handshake.full_handshake("127.0.0.1", port, None, 2)


@contextmanager
def _resetting() -> Iterator[tuple[int, list[int]]]:
    """Reads the ClientHello and resets the connection, without an alert; counts the connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[int] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.recv(4096)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


def test_a_reset_without_an_alert_is_not_a_refusal() -> None:
    # Only an alert says "not this suite"; a reset could be load or a proxy, so the suite is tried once more and
    # then unknown, not refused.
    with _resetting() as (port, accepted):
        scan = handshake.scan_suites("127.0.0.1", port, None, ["ECDHE-RSA-AES128-SHA", "AES128-SHA"], 2)
    assert scan.accepted == ()
    assert len(scan.unknown) == 2 and scan.unknown[0].startswith("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 127.0.0.1:")
    assert len(accepted) == 4  # two suites, two attempts each: bounded


def test_a_reset_once_is_tried_again_and_decides(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    # A front end that drops the first connection and then answers: the second attempt's verdict counts.
    real = handshake._open
    calls: list[int] = []

    def flaky(host: str, port: int, deadline: float) -> socket.socket:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError(104, "Connection reset by peer")
        return real(host, port, deadline)

    monkeypatch.setattr(handshake, "_open", flaky)
    with serving(Config(pki.rsa_cert, pki.rsa_key, ciphers="ECDHE-RSA-AES128-GCM-SHA256")) as port:
        got = handshake.accepts("127.0.0.1", port, None, SSL.TLS1_2_VERSION, b"ECDHE-RSA-AES128-GCM-SHA256", 2)
    assert (got, len(calls)) == (True, 2)
