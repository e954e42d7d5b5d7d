"""Swap the serving certificate of a running server, without a restart and without failing a request.

The TLS context each worker serves with is registered here when it is made. A watcher reads the certificate files
every few seconds; when they change, the pair is validated before it touches a live context, and only a pair that
loads is swapped in. New handshakes use the new chain; connections already open keep theirs until they close. The
watcher runs on the event loop's thread, so no handshake can see a context halfway through the swap.

Why validate first: `SSLContext.load_cert_chain` is OpenSSL's SSL_CTX_use_certificate_chain_file, then
SSL_CTX_use_PrivateKey_file. The first installs the new certificate and, when it does not match the key in the
context, frees that key (ssl/ssl_rsa.c, ssl_set_cert: "don't fail for a cert/key mismatch, just free current
private key"); the second then fails on the old key. A certificate written before its key (any writer that is
not atomic over both files) left the live context with no usable key, and every handshake failed until the key
arrived. So the files are read once, the pair loaded into a scratch context built the same way, and only then
the same bytes loaded into the live ones. A pair that does not load is refused, logged and counted
(`certificate_reload_errors_total`) once, and read again at the next look.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import tempfile
from pathlib import Path

from webhook.pki.authority import write_file
from webhook.runtime import logs, metrics
from webhook.runtime.tls import server_context

log = logging.getLogger("apiserver_tls_guard")
CONTEXTS: list[ssl.SSLContext] = []  # the contexts this process serves with (one per listening server)


def register(context: ssl.SSLContext) -> ssl.SSLContext:
    """Remember a TLS context this process serves with, so the reloader can load new certificates into it."""
    CONTEXTS.append(context)
    return context


class CertReloader:
    """Loads changed certificate files into the serving contexts every `interval` seconds (5 by default)."""

    def __init__(self, cert: Path, key: Path, ca: Path | None = None, interval: float = 5.0) -> None:
        self.cert, self.key, self.ca, self.interval = cert, key, ca, interval
        pair = self._read()
        self._loaded = _fingerprint(*pair) if pair else None
        self._refused: str | None = None  # the last pair refused: logged and counted once, not at every look

    def _read(self) -> tuple[bytes, bytes] | None:
        try:
            return self.cert.read_bytes(), self.key.read_bytes()
        except OSError:
            return None

    def check(self) -> bool:
        """Load the files into every registered context if they changed and are usable; True when swapped."""
        pair = self._read()
        if pair is None:
            return False
        current = _fingerprint(*pair)
        if current in (self._loaded, self._refused):
            return False
        try:
            with tempfile.TemporaryDirectory(prefix="apiserver-tls-guard-reload-", dir=_scratch_root()) as scratch:
                # The bytes read above, and no others: the files may change again while we load.
                cert, key = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
                write_file(cert, pair[0], private=False)
                write_file(key, pair[1], private=True)
                server_context(cert, key)  # a pair OpenSSL refuses raises here, before any live context is touched
                for context in CONTEXTS:
                    context.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError, ValueError) as err:
            self._refused = current
            metrics.CERT_RELOAD_ERRORS.inc()
            log.warning(
                "new certificate refused; serving with the one loaded",
                extra=logs.fields(certificate=str(self.cert), reason=f"{type(err).__name__}: {err}"),
            )
            return False
        self._loaded, self._refused = current, None
        metrics.record_certificates(self.cert, self.ca or self.cert)
        log.info("serving certificate reloaded", extra=logs.fields(certificate=str(self.cert)))
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception as err:  # the watcher outlives any bug of ours; the loaded pair keeps serving
                log.error("certificate reload failed", extra=logs.fields(error=f"{type(err).__name__}: {err}"))


def _scratch_root() -> str | None:
    """Where the pair is copied for the scratch load: a tmpfs when there is one (/dev/shm, writable in a container
    with a read-only root filesystem), so the private key never lands on the node's disk; else the default."""
    shm = "/dev/shm"  # noqa: S108 - a private folder is made inside it, 0700, and removed after the load
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _fingerprint(cert: bytes, key: bytes) -> str:
    return hashlib.sha256(cert + b"\0" + key).hexdigest()
