"""Hostile clients against the real server process: oversized heads are refused (431) before they cost memory,
too many headers too, a client that trickles its request is cut off, and meanwhile a real review is answered."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admission.test_http import COMPLIANT, apiserver_pod
from tests.apiserver_client import SERVICE_NAME, admission_review, apiserver_tls_context
from tests.conftest import RunningServer, start_server, stop_server


@pytest.fixture(scope="module")
def server(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(certs_dir, tmp_path_factory.mktemp("hostile"))
    yield running
    stop_server(running)


def _tls(server: RunningServer) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    return apiserver_tls_context(server.certs / "ca.crt").wrap_socket(sock, server_hostname=SERVICE_NAME)


def _read_all(sock: ssl.SSLSocket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ssl.SSLError, ConnectionError, TimeoutError):
        pass
    return out


def _rss_mib(server: RunningServer) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def _review_ok(server: RunningServer) -> float:
    client = server.client()
    try:
        started = time.monotonic()
        answer = client.review(admission_review(apiserver_pod(*COMPLIANT)))
        assert answer["allowed"] is True
        return time.monotonic() - started
    finally:
        client.close()


def test_a_64_mib_head_is_refused_without_growing_the_server(server: RunningServer) -> None:
    sock = _tls(server)
    sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
    sent = 0
    try:
        while sent < 64 * 1024 * 1024:
            sock.sendall(b"X-Pad: " + b"a" * 8000 + b"\r\n")
            sent += 8009
    except (ssl.SSLError, ConnectionError):
        pass
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert sent < 16 * 1024 * 1024, "the server read far past its limit"
    assert _rss_mib(server) < 256
    assert _review_ok(server) < 2


def test_too_many_headers_are_refused(server: RunningServer) -> None:
    sock = _tls(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n")
    assert _read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_trickling_clients_are_cut_off_and_real_reviews_still_answered(server: RunningServer) -> None:
    """Also: an idle kept-alive connection is not cut by the read deadline (between requests the keep-alive
    timeout of 120 s rules)."""
    kept = server.client()
    assert kept.review(admission_review(apiserver_pod(*COMPLIANT)))["allowed"] is True
    kept_sock = kept.conn.sock
    socks = [_tls(server) for _ in range(100)]
    for sock in socks:
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for sock in socks:
                with contextlib.suppress(OSError, ssl.SSLError):
                    sock.sendall(b"X: y\r\n")
            time.sleep(0.5)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        assert max(_review_ok(server) for _ in range(5)) < 2
        assert _rss_mib(server) < 256
        time.sleep(11)  # past the 10 s request-read deadline
        closed = 0
        for sock in socks:
            sock.settimeout(2)
            try:
                closed += sock.recv(1) == b""
            except (ssl.SSLError, ConnectionError):
                closed += 1
            except TimeoutError:
                pass
        assert closed == len(socks)
        assert kept.review(admission_review(apiserver_pod(*COMPLIANT)))["allowed"] is True
        assert kept.conn.sock is kept_sock, "the idle connection was reused, not re-opened"
    finally:
        stop.set()
        thread.join()
        kept.close()
    assert "request not received in time" in server.log_text()
