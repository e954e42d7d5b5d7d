"""The TLS settings the webhook serves with: what we demand of kube-apiserver, we do ourselves."""

from __future__ import annotations

import ssl
from pathlib import Path

# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are all AEAD already).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """The serving TLS context: TLS 1.2+, ECDHE with AEAD ciphers only, ALPN http/1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # kube-apiserver speaks HTTP/1.1 to webhooks; uvicorn serves nothing else.
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(str(cert_file), str(key_file))
    return context
