"""Certificates shared by the probe's tests: a cluster CA, a front-proxy CA and serving pairs (RSA and EC)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.probe import certs


@dataclass
class Pki:
    directory: Path
    cluster_ca: certs.Issued
    front_proxy_ca: certs.Issued
    rsa_cert: Path
    rsa_key: Path
    ec_cert: Path
    ec_key: Path

    def file(self, name: str, *issued: certs.Issued) -> Path:
        path = self.directory / name
        path.write_bytes(b"".join(i.pem for i in issued))
        return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("probe-pki")
    cluster = certs.ca("kubernetes", key=certs.rsa_key())
    front = certs.ca("front-proxy-ca")
    names = ("127.0.0.1", "10.96.0.1", "kubernetes.default.svc", "localhost")
    rsa_cert, rsa_key = certs.write_pair(directory, "rsa", certs.leaf(cluster, *names, key=certs.rsa_key()))
    ec_cert, ec_key = certs.write_pair(directory, "ec", certs.leaf(cluster, *names))
    return Pki(directory, cluster, front, rsa_cert, rsa_key, ec_cert, ec_key)
