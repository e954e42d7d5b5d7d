"""A CA and the webhook's serving certificate, made with `cryptography`, in one readable class.

kube-apiserver verifies the webhook against `caBundle` and the DNS name `<service>.<namespace>.svc`, so the
serving certificate carries that name (and its longer and shorter forms) as subjectAltNames.

About 300 lines on purpose: the CA, its leaf, their files and the one serving-certificate check stay together,
as trustme keeps a whole CA in one place; split, each part would need the others to be read.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVICE = "apiserver-tls-guard"
DEFAULT_NAMESPACE = "apiserver-tls-guard"
CA_DAYS = 3650
SERVING_DAYS = 365
# Re-issue when less than this is left, so a restart or rotation always happens long before expiry.
RENEW_BEFORE = dt.timedelta(days=30)
# The CA is rotated (introduce, promote, retire) this long before it expires.
CA_RENEW_BEFORE = dt.timedelta(days=365)


def service_identities(service: str = DEFAULT_SERVICE, namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    """The names and addresses the serving certificate must carry: the Service's DNS forms (kube-apiserver checks
    `<svc>.<ns>.svc`), localhost and the loopback addresses.
    """
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "::1",
    ]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """ECDSA keys sign: handshakes always, certificates and CRLs only for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _san(identity: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(identity))
    except ValueError:
        return x509.DNSName(identity)


@dataclass(frozen=True)
class LeafCert:
    """A serving certificate and its key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def __repr__(self) -> str:  # never print key material
        return f"LeafCert(subject={self.cert.subject.rfc4514_string()!r}, not_after={self.cert.not_valid_after_utc})"


class CA:
    """A self-signed certificate authority that issues serving certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self._key = key

    @classmethod
    def create(
        cls, common_name: str = "apiserver-tls-guard CA", days: int = CA_DAYS, now: dt.datetime | None = None
    ) -> CA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = now or _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signs_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CA:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("CA key is not an EC key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self._key)

    def issue_cert(self, *identities: str, days: int = SERVING_DAYS, now: dt.datetime | None = None) -> LeafCert:
        """A serverAuth certificate for the given DNS names and IP addresses, signed by this CA."""
        if not identities:
            raise ValueError("a serving certificate needs at least one identity")
        key = ec.generate_private_key(ec.SECP256R1())
        now = now or _now()
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identities[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signs_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([_san(i) for i in identities]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return LeafCert(cert, key)

    def __repr__(self) -> str:  # never print key material
        return f"CA(subject={self.cert.subject.rfc4514_string()!r}, not_after={self.cert.not_valid_after_utc})"


def ca_bundle(ca_pem: bytes) -> str:
    """The base64 string a ValidatingWebhookConfiguration's caBundle takes."""
    return base64.b64encode(ca_pem).decode("ascii")


# --- files ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    """Where the certificate files live in a directory: ca.crt, ca.key, tls.crt, tls.key."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> Path:
        return self.directory / "tls.key"


Owner = tuple[int, int]  # uid, gid


def write_file(path: Path, data: bytes, private: bool, owner: Owner | None = None) -> None:
    """Write atomically; private files are created 0600 and never exist with wider permissions.

    `owner` (uid, gid) is set before the file appears under its name, so a reader running as that user (the static
    pod, UID 65532) never sees the new file with the wrong owner. Without it, a file replaced keeps the owner of the
    one it replaces: a renewal run without `--owner` must not leave that reader a key it cannot open.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if owner is None:
        try:
            found = path.stat()
        except FileNotFoundError:
            pass
        else:
            if (found.st_uid, found.st_gid) != (os.geteuid(), os.getegid()):
                owner = (found.st_uid, found.st_gid)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _usable_ca(files: CertFiles) -> CA | None:
    try:
        ca = CA.load(files.ca_cert.read_bytes(), files.ca_key.read_bytes())
    except (OSError, ValueError):
        return None
    return ca if ca.cert.not_valid_after_utc - _now() > RENEW_BEFORE else None


def serving_ok(
    cert: x509.Certificate,
    key: PrivateKeyTypes,
    ca: CA,
    identities: Sequence[str],
    now: dt.datetime,
    renew_before: dt.timedelta = RENEW_BEFORE,
) -> bool:
    """True when the serving pair can be kept: key matches, signed by `ca`, more than `renew_before` left,
    not outliving its CA, and every identity present as a DNS or IP subjectAltName.

    The one check used by both the local files (`ensure_certs`) and the cluster Secret (`certs.rotation.plan`).
    """
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return False
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if cert.not_valid_after_utc - now <= renew_before or cert.not_valid_after_utc > ca.cert.not_valid_after_utc:
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = {str(v) for v in sans.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    return all(i in present or str(_ip_or_none(i)) in present for i in identities)


def _files_serving_ok(files: CertFiles, ca: CA, identities: Sequence[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    return serving_ok(cert, key, ca, identities, _now())


def _ip_or_none(identity: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(identity)
    except ValueError:
        return None


@dataclass(frozen=True)
class EnsureResult:
    """What `ensure_certs` found or made."""

    files: CertFiles
    created_ca: bool
    created_serving: bool


def ensure_certs(
    directory: str | Path,
    service: str = DEFAULT_SERVICE,
    namespace: str = DEFAULT_NAMESPACE,
    owner: Owner | None = None,
) -> EnsureResult:
    """Keep valid existing files; make whatever is missing, expiring, mismatched or not signed by the CA.

    `owner`: who owns what the server reads (tls.key, tls.crt, ca.crt), kept files too. ca.key stays with whoever
    runs this: the server never signs, so the user it runs as has no use for the CA's key.
    """
    files = CertFiles(Path(directory))
    identities = service_identities(service, namespace)
    ca = _usable_ca(files)
    created_ca = ca is None
    if ca is None:
        ca = CA.create()
        write_file(files.ca_key, ca.key_pem, private=True)
        write_file(files.ca_cert, ca.cert_pem, private=False, owner=owner)
    created_serving = created_ca or not _files_serving_ok(files, ca, identities)
    if created_serving:
        leaf = ca.issue_cert(*identities)
        write_file(files.key, leaf.key_pem, private=True, owner=owner)
        write_file(files.cert, leaf.cert_pem, private=False, owner=owner)
    for private in (files.ca_key, files.key):
        # Files kept from an earlier run keep their content, never looser permissions.
        os.chmod(private, 0o600)
    if owner is not None:
        for served in (files.key, files.cert, files.ca_cert):
            os.chown(served, *owner)
    return EnsureResult(files, created_ca, created_serving)
