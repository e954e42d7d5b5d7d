"""The address the chart and the overlays give `serve` (`--host=`, issue 24 point 8), served by the real server:
it answers on IPv4 and on IPv6, so dual-stack and IPv6-only clusters reach it as IPv4 ones do.

Why empty and not `::`: uvicorn hands the host to asyncio's loop.create_server, which sets IPV6_V6ONLY on every
IPv6 socket it makes (CPython Lib/asyncio/base_events.py), so `::` is IPv6 only; an empty host is resolved to
every address family the machine has, one socket each, and a family the kernel lacks is skipped. Measured here:
`--host ::` does not answer on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, start_server, stop_server


def _listen_host() -> str:
    deployment = yaml.safe_load((ROOT / "manifests/base/deployment.yaml").read_text())
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    [host] = [a.split("=", 1)[1] for a in args if a.startswith("--host=")]
    chart = yaml.safe_load((ROOT / "charts/apiserver-tls-guard/values.yaml").read_text())
    assert chart["listenHost"] == host
    return str(host)


def _healthy(address: str, port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as raw:
        raw.settimeout(5)
        raw.connect((address, port))
        with context.wrap_socket(raw) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return tls.recv(64).startswith(b"HTTP/1.1 200")


def test_the_shipped_listen_address_answers_on_ipv4_and_ipv6(certs_dir: Path, tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    host = _listen_host()
    assert host == ""
    server = start_server(certs_dir, tmp_path, "--host", host)  # the last --host wins (argparse)
    try:
        assert _healthy("127.0.0.1", server.port, certs_dir / "ca.crt")
        assert _healthy("::1", server.port, certs_dir / "ca.crt")
    finally:
        stop_server(server)
