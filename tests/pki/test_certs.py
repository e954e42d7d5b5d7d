"""`apiserver-tls-guard certs`, run as a user runs it, and the CA class behind it."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.conftest import cli
from webhook.pki.authority import CA, ensure_certs, service_identities, write_file


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {
        *ext.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress)),
    }


def test_certs_command_writes_ca_cert_and_private_key(tmp_path: Path) -> None:
    result = cli("certs", "--out", str(tmp_path), "--service", "guard", "--namespace", "sec")
    assert result.returncode == 0, result.stderr
    ca_pem = (tmp_path / "ca.crt").read_bytes()
    assert base64.b64decode(result.stdout.strip()) == ca_pem  # stdout is the caBundle
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert.verify_directly_issued_by(ca)
    assert _sans(cert) == {
        "guard",
        "guard.sec",
        "guard.sec.svc",
        "guard.sec.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "::1",
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    for key in ("tls.key", "ca.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_defaults_name_the_service_apiserver_tls_guard(tmp_path: Path) -> None:
    assert cli("certs", "--out", str(tmp_path)).returncode == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    assert "apiserver-tls-guard.apiserver-tls-guard.svc" in _sans(cert)


def test_valid_files_are_kept_and_a_name_change_reissues_only_the_serving_cert(tmp_path: Path) -> None:
    cli("certs", "--out", str(tmp_path))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = cli("certs", "--out", str(tmp_path))
    assert again.returncode == 0 and "kept" in again.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    cli("certs", "--out", str(tmp_path), "--service", "renamed")
    assert (tmp_path / "ca.crt").read_bytes() == before["ca.crt"]
    assert (tmp_path / "tls.crt").read_bytes() != before["tls.crt"]


def test_expiring_or_foreign_serving_cert_is_replaced(tmp_path: Path) -> None:
    ensure_certs(tmp_path)
    ca = CA.load((tmp_path / "ca.crt").read_bytes(), (tmp_path / "ca.key").read_bytes())
    short = ca.issue_cert("apiserver-tls-guard.apiserver-tls-guard.svc", days=10)
    write_file(tmp_path / "tls.crt", short.cert_pem, private=False)
    write_file(tmp_path / "tls.key", short.key_pem, private=True)
    assert ensure_certs(tmp_path).created_serving
    foreign = CA.create().issue_cert("apiserver-tls-guard.apiserver-tls-guard.svc")
    write_file(tmp_path / "tls.crt", foreign.cert_pem, private=False)
    assert ensure_certs(tmp_path).created_serving
    (tmp_path / "tls.key").write_bytes(CA.create().issue_cert("x").key_pem)  # key no longer matches
    assert ensure_certs(tmp_path).created_serving


def test_serving_cert_is_renewed_before_it_expires_never_signs_and_never_outlives_its_ca(tmp_path: Path) -> None:
    ensure_certs(tmp_path)
    ca = CA.load((tmp_path / "ca.crt").read_bytes(), (tmp_path / "ca.key").read_bytes())
    names = service_identities()
    in_31_days = ca.issue_cert(*names, days=31)  # outside the 30-day window: kept
    write_file(tmp_path / "tls.crt", in_31_days.cert_pem, private=False)
    write_file(tmp_path / "tls.key", in_31_days.key_pem, private=True)
    assert not ensure_certs(tmp_path).created_serving
    in_29_days = ca.issue_cert(*names, days=29)  # inside it: renewed, although every name still matches
    write_file(tmp_path / "tls.crt", in_29_days.cert_pem, private=False)
    write_file(tmp_path / "tls.key", in_29_days.key_pem, private=True)
    assert ensure_certs(tmp_path).created_serving
    serving = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    usage = serving.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign is False and usage.crl_sign is False
    assert serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert serving.not_valid_after_utc <= ca.cert.not_valid_after_utc
    short_ca = CA.create(days=100)
    assert short_ca.issue_cert(*names, days=365).cert.not_valid_after_utc <= short_ca.cert.not_valid_after_utc


def test_an_expiring_ca_is_replaced(tmp_path: Path) -> None:
    ensure_certs(tmp_path)
    expiring = CA.create(days=20)  # inside the 30-day window
    write_file(tmp_path / "ca.crt", expiring.cert_pem, private=False)
    write_file(tmp_path / "ca.key", expiring.key_pem, private=True)
    result = ensure_certs(tmp_path)
    assert result.created_ca and result.created_serving
    new_ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    assert new_ca.serial_number != expiring.cert.serial_number


def test_loosened_key_permissions_are_tightened(tmp_path: Path) -> None:
    ensure_certs(tmp_path)
    (tmp_path / "tls.key").chmod(0o644)
    ensure_certs(tmp_path)
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600


def test_ca_issues_ip_sans_and_never_reprs_keys() -> None:
    ca = CA.create()
    leaf = ca.issue_cert("127.0.0.1", "svc.ns.svc")
    ips = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    )
    assert ips == [ipaddress.ip_address("127.0.0.1")]
    assert leaf.cert.not_valid_after_utc <= ca.cert.not_valid_after_utc
    assert leaf.cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    assert "PRIVATE" not in repr(ca) + repr(leaf)


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli("certs", "--out", str(blocker / "sub"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(blocker) in result.stderr
