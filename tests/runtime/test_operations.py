"""Operating the server: /metrics, graceful shutdown with a review in flight, several workers."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.admission.test_http import COMPLIANT, NO_TLS, apiserver_pod
from tests.apiserver_client import SERVICE_NAME, admission_review, apiserver_tls_context
from tests.conftest import RunningServer, ServerFactory, start_server, stop_server


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_metrics_show_requests_findings_latency_expiry_and_build(server_factory: ServerFactory) -> None:
    server = server_factory("--mode", "enforce", "--log-level", "warning")
    client = server.client()
    for _ in range(3):
        client.review(admission_review(apiserver_pod(*NO_TLS)))
    client.review(admission_review(apiserver_pod(*COMPLIANT), operation="UPDATE"))
    client.post("/validate", b"nope")
    text = client.get("/metrics").body.decode()
    client.close()
    assert _metric(text, "tlsguard_admission_requests_total", operation="CREATE", verdict="denied", mode="enforce") == 3
    assert _metric(text, "tlsguard_admission_requests_total", operation="UPDATE", verdict="clean", mode="enforce") == 1
    assert _metric(text, "tlsguard_findings_total", control="tls-cert-and-key", mode="enforce") == 3
    assert _metric(text, "tlsguard_rejected_requests_total", code="400") == 1
    assert _metric(text, "tlsguard_admission_duration_seconds_count") == 4
    expiry = _metric(text, "tlsguard_certificate_expiry_timestamp_seconds", certificate="serving")
    assert 300 * 86400 < expiry - time.time() < 366 * 86400
    assert _metric(text, "tlsguard_build_info", version="0.1.0") == 1


def test_sigterm_finishes_the_review_in_flight_then_exits(certs_dir: Path, tmp_path: Path) -> None:
    server = start_server(certs_dir, tmp_path, "--mode", "enforce")
    try:
        body = json.dumps(admission_review(apiserver_pod(*NO_TLS))).encode()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        tls = apiserver_tls_context(certs_dir / "ca.crt").wrap_socket(sock, server_hostname=SERVICE_NAME)
        head = (
            f"POST /validate?timeout=10s HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        tls.sendall(head + body[:100])  # the review is in flight: headers read, body still coming
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None, "the server must wait for the review in flight"
        tls.sendall(body[100:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}}"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line == b"HTTP/1.1 200 OK"
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["response"]["allowed"] is False
        assert b"connection: close" in answer.lower()  # no keep-alive while shutting down
        tls.close()
        assert server.process.wait(timeout=10) == 0  # a clean exit, not uvicorn's re-raised SIGTERM
    finally:
        stop_server(server)


def test_idle_keep_alive_connections_are_closed_on_shutdown(certs_dir: Path, tmp_path: Path) -> None:
    # kube-apiserver reuses idle connections; a pod that goes away must close them (EOF), not leave them hanging.
    server = start_server(certs_dir, tmp_path, "--mode", "enforce")
    try:
        client = server.client()
        assert client.get("/healthz").status == 200  # the connection stays open, idle
        sock = client.conn.sock
        assert sock is not None
        server.process.send_signal(signal.SIGTERM)
        sock.settimeout(5)
        started = time.monotonic()
        try:
            closed = sock.recv(1) == b""  # Go's client keeps a reader on pooled connections, as here
        except (ssl.SSLError, ConnectionError):
            closed = True
        assert closed and time.monotonic() - started < 5
        client.close()
        assert server.process.wait(timeout=10) == 0
    finally:
        stop_server(server)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigint_and_sigterm_exit_0_without_a_traceback(
    certs_dir: Path, tmp_path: Path, sig: signal.Signals, workers: str
) -> None:
    server = start_server(certs_dir, tmp_path, "--workers", workers)
    try:
        time.sleep(0.5)
        server.process.send_signal(sig)
        assert server.process.wait(timeout=15) == 0
        log = server.log_text()
        assert "Traceback" not in log and "KeyboardInterrupt" not in log
    finally:
        stop_server(server)


def test_two_workers_answer_and_sum_their_metrics(server_factory: ServerFactory) -> None:
    server: RunningServer = server_factory("--workers", "2")

    def decisions() -> list[dict[str, object]]:
        return [d for d in map(json.loads, server.log_text().splitlines()) if d.get("msg") == "decision"]

    sent = 0
    while sent < 300 and (sent < 40 or len({d["pid"] for d in decisions()}) < 2):
        client = server.client()  # new connections are spread over the workers by the kernel
        assert client.review(admission_review(apiserver_pod(*COMPLIANT)))["allowed"] is True
        client.close()
        sent += 1
    time.sleep(0.2)  # the last log lines reach the file
    assert len(decisions()) == sent
    assert len({d["pid"] for d in decisions()}) == 2, "both workers answered"
    client = server.client()
    text = client.get("/metrics").body.decode()
    client.close()
    assert _metric(text, "tlsguard_admission_requests_total", verdict="clean") == sent  # summed
