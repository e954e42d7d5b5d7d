"""The routes' refusals over real HTTPS, beyond what test_http.py covers: every one a JSON problem, 405 naming what
is allowed, the 7 MiB limit enforced before a body is read whole (declared or chunked), and a client that goes away
mid-body costs nothing but its connection."""

from __future__ import annotations

import json
import socket
import ssl
import time

from tests.admission.test_http import COMPLIANT, apiserver_pod
from tests.apiserver_client import SERVICE_NAME, admission_review, apiserver_tls_context
from tests.conftest import RunningServer

LIMIT = 7 * 1024 * 1024  # controller-runtime's webhook body limit (pkg/webhook/admission/http.go)


def _tls(server: RunningServer) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    return apiserver_tls_context(server.certs / "ca.crt").wrap_socket(sock, server_hostname=SERVICE_NAME)


def _head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /validate?timeout=10s HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def _answer(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def _still_answers(server: RunningServer) -> None:
    client = server.client()
    assert client.review(admission_review(apiserver_pod(*COMPLIANT)))["allowed"] is True
    client.close()


def test_wrong_method_is_405_naming_the_allowed_one(enforce_server: RunningServer) -> None:
    client = enforce_server.client()
    for method in ("GET", "PUT", "DELETE"):
        client.conn.request(method, "/validate")
        response = client.conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 405 and response.getheader("allow") == "POST"
        assert body == {"error": "Method Not Allowed", "status": 405}
    client.conn.request("POST", "/healthz", body=b"{}")
    response = client.conn.getresponse()
    response.read()
    assert response.status == 405 and response.getheader("allow") == "GET"
    client.close()


def test_unknown_path_is_a_json_problem(enforce_server: RunningServer) -> None:
    client = enforce_server.client()
    result = client.get("/nope")
    client.close()
    assert result.status == 404
    assert result.headers["content-type"] == "application/json"
    assert result.json() == {"error": "Not Found", "status": 404}


def test_declared_oversized_body_is_refused_before_it_is_sent(enforce_server: RunningServer) -> None:
    sock = _tls(enforce_server)
    sock.sendall(_head(LIMIT + 1) + b'{"apiVersion"')  # 13 bytes of the 7 MiB announced
    status, headers, body = _answer(sock)
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": f"body is larger than {LIMIT} bytes", "status": 413}
    sock.close()
    _still_answers(enforce_server)


def test_chunked_body_is_cut_off_past_the_limit(enforce_server: RunningServer) -> None:
    """Without a Content-Length the limit is counted as the chunks arrive: the answer comes while the client is
    still sending, long before the 64 MiB it means to send."""
    sock = _tls(enforce_server)
    sock.sendall(_head(None))
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    sock.settimeout(0.05)
    answer = b""
    while sent < 64 * 1024 * 1024 and not answer:
        try:
            sock.sendall(framed)
            sent += len(chunk)
            answer = sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (ssl.SSLError, ConnectionError):
            break
    sock.settimeout(15)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert LIMIT < sent < LIMIT + 4 * 1024 * 1024, sent
    assert b'"status": 413' in answer + sock.recv(65536)
    sock.close()
    _still_answers(enforce_server)


def test_a_client_that_goes_away_mid_body_leaves_no_trace(enforce_server: RunningServer) -> None:
    sock = _tls(enforce_server)
    sock.sendall(_head(5000) + b'{"apiVersion": "admission.k8s.io/v1"')
    time.sleep(0.2)
    sock.close()
    time.sleep(0.3)
    _still_answers(enforce_server)
    assert "Traceback" not in enforce_server.log_text()
    assert "Exception in ASGI application" not in enforce_server.log_text()
