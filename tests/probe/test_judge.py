"""The verdicts from what an endpoint showed, one control at a time, against observations built by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.probe import certs
from webhook.probe import judge
from webhook.probe.anonymous import Answer
from webhook.probe.handshake import CaName, Handshake, SuiteScan
from webhook.probe.judge import FAIL, PASS, UNOBSERVABLE, Known, Trust
from webhook.probe.observe import Endpoint, Observation

CATALOG = judge.probe_catalog()
CLUSTER = certs.ca("kubernetes", key=certs.rsa_key())
FRONT = certs.ca("front-proxy-ca")
SERVED = certs.leaf(CLUSTER, "10.0.0.5", "10.96.0.1", "kubernetes.default.svc")
TRUST = Trust((CLUSTER.cert,), "the kubeconfig's CA")
ANON_OFF = {"/version": 401, "/livez": 401, "/api": 401, "/api/v1/namespaces": 401}


def _name(ca: certs.Issued) -> CaName:
    return CaName(ca.cert.subject.public_bytes(), ca.cert.subject.rfc4514_string())


def observation(
    chain: Sequence[certs.Issued] = (SERVED,),
    requested: bool = True,
    cas: Sequence[certs.Issued] = (CLUSTER, FRONT),
    accepted: Sequence[str] = ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",),
    old: Mapping[str, bool | str] | None = None,
    statuses: Mapping[str, int | None] = ANON_OFF,
) -> Observation:
    hs = Handshake(
        tuple(c.cert for c in chain), requested, tuple(_name(c) for c in cas), "TLSv1.3", "TLS_AES_128_GCM_SHA256"
    )
    return Observation(
        Endpoint("10.0.0.5", 6443),
        hs,
        SuiteScan(("a", "b"), tuple(accepted), ()),
        dict(old or {"TLS 1.0": False, "TLS 1.1": False}),
        {
            p: Answer(p, s, "" if s != 403 else f'forbidden: User "system:anonymous" cannot get path "{p}"')
            for p, s in statuses.items()
        },
        0.1,
    )


# --- tls-cert-and-key (1.2.30) --------------------------------------------------------------------------


def test_kube_apiservers_generated_pair_fails_and_is_named() -> None:
    served, generated_ca = certs.apiserver_generated()
    outcome = judge.tls_cert_and_key(observation(chain=(served, generated_ca)), Trust((generated_ca.cert,), "x"))
    # Even trusted, as when someone copied the generated CA into the kubeconfig: it is still the unset flag.
    assert outcome.state == FAIL
    assert "kube-apiserver's own self-signed pair" in outcome.detail
    assert "CN=10.0.0.5@" in outcome.detail and "-ca@" in outcome.detail


def test_fixture_lifetime_of_cert_dir_is_recognised_too() -> None:
    served, generated_ca = certs.apiserver_generated(lifetime_days=100 * 365)
    assert judge.generated_pair([served.cert, generated_ca.cert])


@pytest.mark.parametrize(
    "change",
    ["ec-key", "two-years", "cn-without-time", "ca-for-another-host"],
)
def test_lookalikes_of_the_generated_pair_are_not_it(change: str) -> None:
    served, generated_ca = certs.apiserver_generated()
    if change == "ec-key":
        served = certs.leaf(generated_ca, "10.0.0.5", cn=served.cert.subject.rfc4514_string()[3:])
    elif change == "two-years":
        served, generated_ca = certs.apiserver_generated(lifetime_days=730)
    elif change == "cn-without-time":
        served = certs.leaf(generated_ca, "10.0.0.5", cn="10.0.0.5", key=certs.rsa_key())
    else:
        _, other_ca = certs.apiserver_generated(host="10.0.0.6")
        served = certs.leaf(other_ca, cn=served.cert.subject.rfc4514_string()[3:], key=certs.rsa_key())
        generated_ca = other_ca
    assert judge.generated_pair([served.cert, generated_ca.cert]) is None


def test_a_certificate_from_another_ca_fails_naming_its_issuer() -> None:
    stranger = certs.leaf(certs.ca("someone-else"), "10.0.0.5")
    outcome = judge.tls_cert_and_key(observation(chain=(stranger,)), TRUST)
    assert outcome.state == FAIL
    assert outcome.detail == "the served certificate (issued by CN=someone-else) does not chain to the kubeconfig's CA"


def test_a_chain_through_a_sent_intermediate_passes() -> None:
    middle = certs.ca("apiserver-intermediate", parent=CLUSTER)
    served = certs.leaf(middle, "10.0.0.5")
    assert judge.tls_cert_and_key(observation(chain=(served, middle)), TRUST).state == PASS
    # Without the intermediate the leaf cannot be tied to the CA.
    assert judge.tls_cert_and_key(observation(chain=(served,)), TRUST).state == FAIL


def test_a_non_ca_in_the_middle_does_not_count() -> None:
    not_a_ca = certs.leaf(CLUSTER, "x", cn="not-a-ca")
    served = certs.leaf(not_a_ca, "10.0.0.5")
    assert judge.tls_cert_and_key(observation(chain=(served, not_a_ca)), TRUST).state == FAIL


# --- client-ca-file (1.2.31) ----------------------------------------------------------------------------


def test_no_certificate_request_fails() -> None:
    outcome = judge.client_ca_file(observation(requested=False, cas=()), TRUST, Known())
    assert outcome.state == FAIL and "no CertificateRequest" in outcome.detail


def test_front_proxy_ca_alone_fails_as_requestheader_only() -> None:
    outcome = judge.client_ca_file(observation(cas=(FRONT,)), Trust((), "none"), Known())
    assert outcome.state == FAIL
    assert "--requestheader-client-ca-file is set, --client-ca-file is not" in outcome.detail


def test_the_kubeconfig_users_ca_must_be_named() -> None:
    user_issuer = CLUSTER.cert.subject
    passed = judge.client_ca_file(observation(cas=(CLUSTER, FRONT)), TRUST, Known(client_issuer=user_issuer))
    assert passed.state == PASS and "CN=kubernetes; CN=front-proxy-ca" in passed.detail
    failed = judge.client_ca_file(observation(cas=(FRONT,)), TRUST, Known(client_issuer=user_issuer))
    assert failed.state == FAIL and "not CN=kubernetes" in failed.detail and "front-proxy" in failed.detail


def test_the_cluster_ca_named_passes_without_a_client_certificate() -> None:
    assert judge.client_ca_file(observation(cas=(CLUSTER,)), TRUST, Known()).state == PASS


def test_a_request_naming_no_ca_is_not_a_pass() -> None:
    assert judge.client_ca_file(observation(cas=()), TRUST, Known()).state == FAIL


# --- anonymous-auth-disabled (1.2.1) and authz-not-always-allow -----------------------------------------

ON = {"/version": 200, "/livez": 200, "/api": 403, "/api/v1/namespaces": 403}
RESTRICTED = {"/version": 200, "/livez": 200, "/api": 401, "/api/v1/namespaces": 401}
ALLOW = {"/version": 200, "/livez": 200, "/api": 200, "/api/v1/namespaces": 200}


def test_anonymous_off_passes() -> None:
    outcome = judge.anonymous_auth(observation(statuses=ANON_OFF), "1.5.1")
    assert outcome.state == PASS and "anonymous authentication is off" in outcome.detail


def test_anonymous_on_fails_with_the_forbidden_message() -> None:
    outcome = judge.anonymous_auth(observation(statuses=ON), "1.5.1")
    assert outcome.state == FAIL
    assert 'User "system:anonymous" cannot get path "/api"' in outcome.detail


def test_restricted_anonymous_is_named_kep_4633() -> None:
    outcome = judge.anonymous_auth(observation(statuses=RESTRICTED), "2.0.1")
    assert outcome.state == FAIL
    assert "restricted anonymous (KEP-4633" in outcome.detail and "/version, /livez" in outcome.detail


@pytest.mark.parametrize("status", [None, 502, 404])
def test_answers_that_decide_nothing_are_not_a_pass(status: int | None) -> None:
    statuses = {**ANON_OFF, "/api": status}
    assert judge.anonymous_auth(observation(statuses=statuses), "1.5.1").state == FAIL


def test_authz_always_allow_fails_where_anonymous_lists_namespaces() -> None:
    assert judge.authz_not_always_allow(observation(statuses=ALLOW)).state == FAIL
    assert judge.authz_not_always_allow(observation(statuses=ON)).state == PASS
    off = judge.authz_not_always_allow(observation(statuses=ANON_OFF))
    assert off.state == UNOBSERVABLE and "before any authorizer" in off.detail


# --- tls-cipher-suites-strong (1.2.35) ------------------------------------------------------------------

GO_DEFAULT_RSA = (
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
)


def test_gos_default_suites_fail_by_name() -> None:
    outcome = judge.cipher_suites(observation(accepted=GO_DEFAULT_RSA), CATALOG, "1.5.1")
    assert outcome.state == FAIL
    assert outcome.detail == (
        "TLS 1.2 accepts 2 suite(s) outside the v1.5.1 strong list: "
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
    )


def test_the_benchmarks_own_list_decides() -> None:
    # v1.10.0's list names the ECDHE-RSA CBC suites: Go's default passes there.
    assert judge.cipher_suites(observation(accepted=GO_DEFAULT_RSA), CATALOG, "1.10.0").state == PASS


def test_go_insecure_suites_fail_even_where_a_list_names_them() -> None:
    # v1.5.1's list names TLS_RSA_WITH_AES_128_GCM_SHA256; Go's InsecureCipherSuites lists it (catalog).
    outcome = judge.cipher_suites(observation(accepted=("TLS_RSA_WITH_AES_128_GCM_SHA256",)), CATALOG, "1.5.1")
    assert outcome.state == FAIL


def test_versions_below_tls12_fail() -> None:
    old = {"TLS 1.0": True, "TLS 1.1": False}
    outcome = judge.cipher_suites(observation(old=old), CATALOG, "1.5.1")
    assert outcome.state == FAIL and "TLS 1.0 accepted (below TLS 1.2)" in outcome.detail


def test_strong_suites_only_pass() -> None:
    outcome = judge.cipher_suites(observation(), CATALOG, "1.5.1")
    assert outcome.state == PASS and "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in outcome.detail


def test_an_unanswered_handshake_is_not_a_pass() -> None:
    obs = observation()
    obs = dataclasses.replace(obs, suites=SuiteScan(("x",), (), ("TLS_X: 10.0.0.5:6443: no answer within 3 s",)))
    assert judge.cipher_suites(obs, CATALOG, "1.5.1").state == FAIL


# --- served certificate ---------------------------------------------------------------------------------

NOW = certs.NOW


@pytest.mark.parametrize(("days_left", "state"), [(-1, FAIL), (10, FAIL), (29, FAIL), (31, PASS)])
def test_expiry_margin(days_left: int, state: str) -> None:
    served = certs.leaf(
        CLUSTER, "x", not_before=NOW - dt.timedelta(days=300), not_after=NOW + dt.timedelta(days=days_left)
    )
    outcome = judge.expiry(observation(chain=(served,)), NOW, 30)
    assert outcome.state == state
    if days_left < 0:
        assert "expired on" in outcome.detail


def test_names_need_the_service_name_and_ip() -> None:
    assert judge.names(observation(), Known(service_ip="10.96.0.1")).state == PASS
    missing_ip = judge.names(observation(), Known(service_ip="10.43.0.1"))
    assert missing_ip.state == FAIL and "IP:10.43.0.1 (the kubernetes Service)" in missing_ip.detail
    bare = certs.leaf(CLUSTER, "10.0.0.5")
    missing_dns = judge.names(observation(chain=(bare,)), Known(service_ip="10.0.0.5"))
    assert missing_dns.state == FAIL and "DNS:kubernetes.default.svc" in missing_dns.detail
    unknown = judge.names(observation(), Known())
    assert unknown.state == UNOBSERVABLE


@pytest.mark.parametrize(
    ("key", "state"),
    [
        (lambda: certs.rsa_key(1024), FAIL),
        (lambda: certs.rsa_key(2048), PASS),
        (lambda: certs.ec_key(ec.SECP224R1()), FAIL),
        (lambda: certs.ec_key(ec.SECP256R1()), PASS),
        (lambda: certs.ec_key(ec.SECP384R1()), PASS),
    ],
    ids=["rsa1024", "rsa2048", "p224", "p256", "p384"],
)
def test_key_strength(key: object, state: str) -> None:
    served = certs.leaf(CLUSTER, "x", key=key())  # type: ignore[operator]
    assert judge.key_strength(observation(chain=(served,))).state == state


def test_every_catalog_control_is_judged_or_said_unobservable() -> None:
    judged = set(judge.observed_keys())
    hidden = {c.key for c, _ in judge.unobservable(CATALOG)}
    assert judged | hidden == set(CATALOG.keys) and not judged & hidden
    assert judged >= {"served-cert-not-expiring", "served-cert-names", "serving-key-strength"}


def test_probe_only_controls_stay_out_of_the_flag_checks() -> None:
    from webhook.core.catalog import load_catalog

    assert "served-cert-not-expiring" not in load_catalog().keys
