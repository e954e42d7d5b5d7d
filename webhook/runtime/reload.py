"""Swap the serving certificate of a running server, without a restart and without failing a request.

The TLS context each worker serves with is registered here when it is made. A watcher reads the certificate files
every few seconds; when they change and the new certificate and key match, it loads them into the live context.
New handshakes use the new chain; connections already open keep theirs until they close. The watcher runs on the
event loop's thread, so no handshake can see a context halfway through the swap. Files that do not (yet) match —
a certificate written before its key — are left alone and read again at the next look.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from pathlib import Path

from webhook.runtime import logs, metrics

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
        self._loaded = self._fingerprint()

    def _fingerprint(self) -> str | None:
        try:
            return hashlib.sha256(self.cert.read_bytes() + b"\0" + self.key.read_bytes()).hexdigest()
        except OSError:
            return None

    def check(self) -> bool:
        """Load the files into every registered context if they changed and are usable; True when swapped."""
        current = self._fingerprint()
        if current is None or current == self._loaded:
            return False
        try:
            for context in CONTEXTS:
                context.load_cert_chain(str(self.cert), str(self.key))
        except (ssl.SSLError, OSError) as err:
            log.warning("new certificate not loaded yet", extra=logs.fields(reason=type(err).__name__))
            return False
        self._loaded = current
        metrics.record_certificates(self.cert, self.ca or self.cert)
        log.info("serving certificate reloaded", extra=logs.fields(certificate=str(self.cert)))
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
