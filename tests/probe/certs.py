"""Certificates for the probe's tests, made with `cryptography`: RSA or EC, any size and dates, and a replica of
the self-signed pair kube-apiserver generates without --tls-cert-file (client-go util/cert/cert.go
GenerateSelfSignedCertKeyWithOptions), built here from that source, not from the probe's code.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


@dataclass
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def ca(
    cn: str = "kubernetes", key: CertificateIssuerPrivateKeyTypes | None = None, parent: Issued | None = None
) -> Issued:
    """A CA: self-signed, or an intermediate under `parent`."""
    key = key or ec_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(parent.cert.subject if parent else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    return Issued(builder.sign(parent.key if parent else key, hashes.SHA256()), key)


def leaf(
    issuer: Issued,
    *sans: str,
    cn: str = "kube-apiserver",
    key: CertificateIssuerPrivateKeyTypes | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = key or ec_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def apiserver_generated(
    host: str = "10.0.0.5", alternate_ips: tuple[str, ...] = ("10.96.0.1",), lifetime_days: int = 365
) -> tuple[Issued, Issued]:
    """(leaf, CA) as GenerateSelfSignedCertKeyWithOptions makes them for kube-apiserver: both RSA-2048, CN
    "<host>@<unix>" and "<host>-ca@<unix>", valid from an hour ago for maxAge, serverAuth leaf, the host as IP SAN
    followed by the alternate IPs and kube-apiserver's alternate DNS names (cmd/kube-apiserver/app/server.go)."""
    unix = int(NOW.timestamp())
    valid_from = NOW - dt.timedelta(hours=1)
    ca_key = rsa_key()
    ca_name = _name(f"{host}-ca@{unix}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_from + dt.timedelta(days=lifetime_days))
        .add_extension(x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa_key()
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(h)) for h in (host, *alternate_ips)]
    names += [x509.DNSName(d) for d in ("kubernetes.default.svc", "kubernetes.default", "kubernetes")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{host}@{unix}"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_from + dt.timedelta(days=lifetime_days))
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert, key), Issued(ca_cert, ca_key)


def write_pair(directory: Path, name: str, served: Issued, *chain: Issued) -> tuple[Path, Path]:
    """`<name>.crt` (the leaf, then `chain`) and `<name>.key`."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(served.pem + b"".join(c.pem for c in chain))
    key.write_bytes(served.key_pem)
    return cert, key
