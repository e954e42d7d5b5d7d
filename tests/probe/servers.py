"""Local TLS servers for the probe's tests, each knob standing for one kube-apiserver setting.

The served chain (--tls-cert-file), the client CAs named in an optional CertificateRequest (--client-ca-file,
--requestheader-client-ca-file; Go's RequestClientCert names `ClientCAs.Subjects()`), the TLS 1.2 suites
(--tls-cipher-suites), the lowest version (--tls-min-version), and what requests without credentials get
(--anonymous-auth and the authorizer). pyOpenSSL serves: the standard library's `ssl` cannot name client CAs
in a CertificateRequest (it never sets OpenSSL's client CA list).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from OpenSSL import SSL

# kube-apiserver with anonymous authentication off: 401 everywhere (apiserver filters/authentication.go).
ANONYMOUS_OFF: Mapping[str, int] = {}
# Anonymous on under the default RBAC: public-info-viewer's paths only.
ANONYMOUS_ON = {"/version": 200, "/livez": 200, "/api": 403, "/api/v1/namespaces": 403}
RESTRICTED = {"/version": 200, "/livez": 200}
ALWAYS_ALLOW = {"/version": 200, "/livez": 200, "/api": 200, "/api/v1/namespaces": 200}


@dataclass
class Config:
    cert_chain: Path
    key: Path
    client_cas: Path | None = None
    ciphers: str | None = None  # OpenSSL names, TLS 1.2
    minimum: int = SSL.TLS1_2_VERSION
    maximum: int = SSL.TLS1_3_VERSION
    statuses: Mapping[str, int] = field(default_factory=dict)  # path -> status; others 401
    # path (with query) -> JSON answered 200 to `Authorization: Bearer <API_TOKEN>`: a tiny Kubernetes API
    api: Mapping[str, object] = field(default_factory=dict)
    # path -> how many of its next requests are read and then reset unanswered (a front end dropping them)
    drops: dict[str, int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # every request line's path, in order: what was read


_DROPS = threading.Lock()


API_TOKEN = "probe-unit-token"


def context(config: Config) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.use_certificate_chain_file(str(config.cert_chain))
    ctx.use_privatekey_file(str(config.key))
    ctx.set_min_proto_version(config.minimum)
    ctx.set_max_proto_version(config.maximum)
    ctx.set_cipher_list(f"{config.ciphers or 'ALL'}:@SECLEVEL=0".encode())
    if config.client_cas:
        for ca in x509.load_pem_x509_certificates(config.client_cas.read_bytes()):
            ctx.add_client_ca(ca)
        # Asked for, never required: Go's tls.RequestClientCert, as kube-apiserver sets it.
        ctx.set_verify(SSL.VERIFY_PEER, lambda *_: True)
    return ctx


def _answer(conn: SSL.Connection, config: Config) -> None:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    path = data.split(b" ", 2)[1].decode() if data.count(b" ") >= 2 else "/"
    config.requests.append(path)
    with _DROPS:
        drop = config.drops.get(path, 0) > 0
        if drop:
            config.drops[path] -= 1
    if drop:  # a reset, no status line: _serve_one's close sends the RST
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raise ConnectionResetError
    status = config.statuses.get(path, 401)
    message = {401: "Unauthorized", 403: f'forbidden: User "system:anonymous" cannot get path "{path}"'}
    body = json.dumps({"kind": "Status", "code": status, "message": message.get(status, "")}).encode()
    if path in config.api and f"authorization: bearer {API_TOKEN}".encode() in data.lower():
        status, body = 200, json.dumps(config.api[path]).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)


def _serve_one(sock: socket.socket, ctx: SSL.Context, config: Config) -> None:
    # Blocking (pyOpenSSL turns a socket timeout into WantReadError), with a kernel receive timeout instead.
    sock.setblocking(True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
    conn = SSL.Connection(ctx, sock)
    conn.set_accept_state()
    try:
        conn.do_handshake()
        _answer(conn, config)
        conn.shutdown()
    except (SSL.Error, OSError):
        pass  # a refused handshake: what kube-apiserver counts in apiserver_tls_handshake_errors_total
    finally:
        sock.close()


@contextmanager
def serving(config: Config) -> Iterator[int]:
    """Serve on a free loopback port until the block ends; yields the port."""
    ctx = context(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve_one, args=(sock, ctx, config), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() alone would leave blocked
        listener.close()
        thread.join(2)


@contextmanager
def silent() -> Iterator[int]:
    """A port that accepts TCP connections and never says anything: a hung endpoint."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
