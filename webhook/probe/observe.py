"""Everything the probe looks at on one endpoint, gathered in parallel under per-connection timeouts.

The first, full handshake decides whether the endpoint can be probed at all (a refused, silent or non-TLS
endpoint stops there, with one line saying why); the suite scan, the old-version handshakes and the
unauthenticated requests then run side by side, each bounded (webhook/probe/handshake.py PARALLEL_HANDSHAKES).
"""

from __future__ import annotations

import ipaddress
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from webhook.probe import anonymous, handshake
from webhook.probe.handshake import Handshake, ProbeError, SuiteScan

DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class Endpoint:
    """Where to connect, and the name to send as SNI (the kubeconfig's server name, when it has one)."""

    host: str
    port: int
    server_name: str | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @classmethod
    def parse(cls, url: str, server_name: str | None = None) -> Endpoint:
        """An https:// URL (or host:port); ValueError with the reason for anything else."""
        text = url if "://" in url else f"https://{url}"
        parts = urllib.parse.urlsplit(text)
        if parts.scheme != "https":
            raise ValueError(f"{url}: the probe speaks TLS only, give an https:// URL")
        if not parts.hostname:
            raise ValueError(f"{url}: no host in the URL")
        try:
            port = parts.port or 443
        except ValueError:
            raise ValueError(f"{url}: the port is not a number from 0 to 65535") from None
        name = server_name or (None if _is_ip(parts.hostname) else parts.hostname)
        return cls(parts.hostname, port, name)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Observation:
    """What one endpoint showed: the full handshake, the TLS 1.2 suites and old versions it accepts, and its
    answers to requests without credentials."""

    endpoint: Endpoint
    handshake: Handshake
    suites: SuiteScan
    old_versions: dict[str, bool | str]
    anonymous: dict[str, anonymous.Answer]
    seconds: float


def key_type(hs: Handshake) -> str:
    key = hs.leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    return type(key).__name__


def observe(endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT) -> Observation:
    """Probe one endpoint; ProbeError (one line) when it cannot be probed at all."""
    start = time.monotonic()
    host, port, name = endpoint.host, endpoint.port, endpoint.server_name
    first = handshake.full_handshake(host, port, name, timeout)
    suites = handshake.tls12_suites(key_type(first))
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="probe") as pool:
        scan = pool.submit(handshake.scan_suites, host, port, name, suites, timeout)
        versions = pool.submit(handshake.old_versions, host, port, name, timeout)
        answers = pool.submit(anonymous.ask, host, port, name, timeout)
        observation = Observation(
            endpoint, first, scan.result(), versions.result(), answers.result(), time.monotonic() - start
        )
    return observation


__all__ = ["DEFAULT_TIMEOUT", "Endpoint", "Observation", "ProbeError", "observe"]
