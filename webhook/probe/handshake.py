"""TLS handshakes with a server, through pyOpenSSL, and what each one shows.

pyOpenSSL and not the standard library's `ssl`: kube-apiserver's 1.2.31 verdict lives in the CertificateRequest
(Go crypto/tls handshake_server.go sends `certificate_authorities = ClientCAs.Subjects()` whenever a client CA
is configured; apiserver pkg/server/secure_serving.go sets ClientAuth RequestClientCert), and `ssl` can neither
say whether a certificate was requested nor list the CAs named. pyOpenSSL's `get_client_ca_list()` and its info
callback can, on TLS 1.2 and 1.3.

Every handshake runs on a fresh connection without a session (a resumed session carries no CertificateRequest),
under a deadline, and is closed right after: the probe only ever reads what the handshake shows.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL

from webhook.probe.suites import IANA, auth_of

# Bounded: a probe of one endpoint never holds more connections than this at once.
PARALLEL_HANDSHAKES = 8
_CERT_REQUEST_STATE = b"SSLv3/TLS read server certificate request"
VERSIONS = {"TLS 1.0": SSL.TLS1_VERSION, "TLS 1.1": SSL.TLS1_1_VERSION, "TLS 1.2": SSL.TLS1_2_VERSION}


class ProbeError(Exception):
    """The endpoint could not be probed: one line saying why (refused, timed out, not TLS, ...)."""


@dataclass(frozen=True)
class CaName:
    """One CA named in a CertificateRequest: its DER (to match certificates exactly) and its RFC 4514 text."""

    der: bytes
    text: str

    def names(self, cert: x509.Certificate) -> bool:
        return cert.subject.public_bytes() == self.der


def _ca_name(name: x509.Name) -> CaName:
    return CaName(name.public_bytes(), name.rfc4514_string())


@dataclass(frozen=True)
class Handshake:
    """What one full handshake showed: the chain as sent (leaf first), the CertificateRequest, what was agreed."""

    chain: tuple[x509.Certificate, ...]
    requested_client_cert: bool
    client_ca_names: tuple[CaName, ...]
    protocol: str
    cipher: str

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def _deadline_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _open(host: str, port: int, deadline: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=_deadline_left(deadline))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def _drive(conn: SSL.Connection, sock: socket.socket, deadline: float) -> None:
    """do_handshake on a non-blocking socket, waiting with select until the deadline."""
    while True:
        try:
            conn.do_handshake()
            return
        except SSL.WantReadError:
            ready = select.select([sock], [], [], _deadline_left(deadline))[0]
        except SSL.WantWriteError:
            ready = select.select([], [sock], [], _deadline_left(deadline))[1]
        if not ready:
            raise TimeoutError


def _context(min_version: int, max_version: int, ciphers: bytes) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(min_version)
    context.set_max_proto_version(max_version)
    # SECLEVEL=0: the probe must be able to offer what a weak server accepts, or it could not report it.
    context.set_cipher_list(ciphers)
    context.set_options(SSL.OP_NO_TICKET)
    context.set_verify(SSL.VERIFY_NONE)  # the chain is judged afterwards (webhook/probe/judge.py), never trusted
    return context


def _reason(err: BaseException, host: str, port: int, timeout: float) -> str:
    where = f"{host}:{port}"
    if isinstance(err, TimeoutError | socket.timeout):
        return f"{where}: no answer within {timeout:g} s"
    if isinstance(err, ConnectionRefusedError):
        return f"{where}: connection refused"
    if isinstance(err, socket.gaierror):
        return f"{where}: cannot resolve {host} ({err.strerror})"
    if isinstance(err, SSL.ZeroReturnError | SSL.SysCallError):
        return f"{where}: the connection closed during the TLS handshake (not a TLS server?)"
    if isinstance(err, SSL.Error):
        return f"{where}: TLS handshake failed ({_ssl_text(err)})"
    if isinstance(err, OSError):
        return f"{where}: {err.strerror or err}"
    return f"{where}: {type(err).__name__}: {err}"


def _ssl_text(err: SSL.Error) -> str:
    # pyOpenSSL's args: [[(library, function, reason), ...]]; the reason is the readable part.
    try:
        return "; ".join(str(entry[2]) for entry in err.args[0]) or "no reason given"
    except (IndexError, TypeError):
        return str(err) or "no reason given"


def _connect(
    host: str,
    port: int,
    server_name: str | None,
    context: SSL.Context,
    deadline: float,
    before: Callable[[SSL.Connection], None] | None = None,
) -> tuple[SSL.Connection, socket.socket]:
    sock = _open(host, port, deadline)
    conn = SSL.Connection(context, sock)
    if server_name:
        conn.set_tlsext_host_name(server_name.encode("idna"))
    conn.set_connect_state()
    if before:
        before(conn)
    try:
        _drive(conn, sock, deadline)
    except BaseException:
        sock.close()
        raise
    return conn, sock


def _close(conn: SSL.Connection, sock: socket.socket) -> None:
    with contextlib.suppress(SSL.Error):  # a close_notify that cannot be sent changes nothing the probe saw
        conn.shutdown()
    sock.close()


def full_handshake(host: str, port: int, server_name: str | None, timeout: float) -> Handshake:
    """One handshake at the best version both sides have: the chain, the CertificateRequest, the agreed suite."""
    deadline = time.monotonic() + timeout
    requested = False
    context = _context(SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION, b"ALL:@SECLEVEL=0")

    def watch(conn: SSL.Connection, where: int, _: int) -> None:
        nonlocal requested
        # The one state OpenSSL passes through only when the server sent a CertificateRequest, on 1.2 and 1.3 alike:
        # it tells "requested, no CA named" from "not requested".
        if where & SSL.SSL_CB_LOOP and conn.get_state_string() == _CERT_REQUEST_STATE:
            requested = True

    context.set_info_callback(watch)
    try:
        conn, sock = _connect(host, port, server_name, context, deadline)
    except (OSError, SSL.Error) as err:
        raise ProbeError(_reason(err, host, port, timeout)) from None
    try:
        chain = tuple(conn.get_peer_cert_chain(as_cryptography=True) or ())
        names = tuple(_ca_name(n) for n in conn.get_client_ca_list(as_cryptography=True))
        protocol = conn.get_protocol_version_name()
        cipher = conn.get_cipher_name() or ""
    finally:
        _close(conn, sock)
    if not chain:
        raise ProbeError(f"{host}:{port}: the server sent no certificate")
    return Handshake(chain, requested or bool(names), names, protocol, IANA.get(cipher, cipher))


def accepts(host: str, port: int, server_name: str | None, version: int, ciphers: bytes, timeout: float) -> bool | str:
    """Whether the server completes a handshake at exactly `version` with only `ciphers` offered.

    True or False when the server answered; a reason string when the network did not let us know. A connection
    closed or reset without an alert says nothing about the suite (an overloaded server, a proxy dropping it), so
    it is tried once more, within the same deadline; a timeout is not.
    """
    deadline = time.monotonic() + timeout
    for attempt in (1, 2):
        try:
            conn, sock = _connect(host, port, server_name, _context(version, version, ciphers), deadline)
        except (SSL.SysCallError, SSL.ZeroReturnError, ConnectionError) as err:
            if attempt == 1 and deadline > time.monotonic():
                continue
            return _reason(err, host, port, timeout)
        except SSL.Error:
            return False  # the server's alert (or our own "no ciphers available"): not accepted
        except (OSError, TimeoutError) as err:
            return _reason(err, host, port, timeout)
        _close(conn, sock)
        return True
    raise AssertionError("unreachable")  # the second attempt always returns


@dataclass(frozen=True)
class SuiteScan:
    """The TLS 1.2 suites offered one at a time, which were accepted (IANA names), and what could not be told."""

    offered: tuple[str, ...]
    accepted: tuple[str, ...]
    unknown: tuple[str, ...]  # "suite: reason" where the network gave no answer


def tls12_suites(key_type: str) -> list[str]:
    """The TLS 1.2 suites (OpenSSL names) a server with this certificate key type ("RSA", "EC") could accept."""
    # TLS 1.2 signs ECDHE_ECDSA suites with EdDSA keys too (RFC 8422), as Go and OpenSSL do.
    wanted = "RSA" if key_type == "RSA" else "ECDSA"
    return [name for name in IANA if auth_of(name) in (wanted, "none")]


def scan_suites(host: str, port: int, server_name: str | None, names: Sequence[str], timeout: float) -> SuiteScan:
    """One TLS 1.2 handshake per suite, at most PARALLEL_HANDSHAKES at once."""

    def one(name: str) -> bool | str:
        return accepts(host, port, server_name, SSL.TLS1_2_VERSION, f"{name}:@SECLEVEL=0".encode(), timeout)

    with ThreadPoolExecutor(max_workers=PARALLEL_HANDSHAKES, thread_name_prefix="probe-suite") as pool:
        answers = list(pool.map(one, names))
    accepted = tuple(IANA[n] for n, a in zip(names, answers, strict=True) if a is True)
    unknown = tuple(f"{IANA[n]}: {a}" for n, a in zip(names, answers, strict=True) if isinstance(a, str))
    return SuiteScan(tuple(IANA[n] for n in names), accepted, unknown)


def old_versions(host: str, port: int, server_name: str | None, timeout: float) -> dict[str, bool | str]:
    """Whether TLS 1.0 and 1.1 are accepted (with any suite this client has at all)."""
    todo = {v: n for v, n in VERSIONS.items() if v != "TLS 1.2"}
    with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="probe-version") as pool:
        futures = {
            v: pool.submit(accepts, host, port, server_name, n, b"ALL:COMPLEMENTOFALL:@SECLEVEL=0", timeout)
            for v, n in todo.items()
        }
        return {v: f.result() for v, f in futures.items()}
