"""From what one endpoint showed to a verdict per control: pure, no I/O (the clock is passed in).

Each control gets one of three states: pass, fail, or not observable. A control the network cannot decide is
never a pass (../shared/observed-tls.md says what a client can see, and the source that decides it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.core import yaml_text
from webhook.core.catalog import Catalog, Control, load_catalog, parse_catalog
from webhook.probe.anonymous import Answer
from webhook.probe.handshake import CaName
from webhook.probe.observe import Observation

PASS, FAIL, UNOBSERVABLE = "pass", "fail", "not observable"
# apiserver's public paths (bootstrappolicy policy.go system:public-info-viewer): anonymous may reach these
# alone under KEP-4633's AuthenticationConfiguration anonymous.conditions.
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/version"})
SERVICE_NAME = "kubernetes.default.svc"
MIN_RSA_BITS, MIN_EC_BITS = 2048, 256
# client-go util/cert/cert.go GenerateSelfSignedCertKeyWithOptions: leaf CN "<host>@<unix>", CA CN
# "<host>-ca@<unix>", both RSA-2048, valid 365 days from an hour before (100 years for --cert-dir fixtures).
_GENERATED_LEAF = re.compile(r"(?P<host>.+)@(?P<time>\d+)")
_GENERATED_LIFETIMES = (dt.timedelta(days=365), dt.timedelta(days=100 * 365))
# kubeadm's requestheader CA (cmd/kubeadm/app/constants FrontProxyCACertAndKeyBaseName) and its usual kin.
_FRONT_PROXY_HINTS = ("front-proxy", "requestheader", "aggregator")

# Why the network cannot show a control: said per control where there is more to say than "a flag".
_HIDDEN: Mapping[str, str] = {
    "token-auth-file-unset": "a token from a static file looks like any other bearer token",
    "kubelet-client-cert-and-key": "it is kube-apiserver's own client identity towards kubelets",
    "kubelet-certificate-authority": "it governs kube-apiserver's connections to kubelets",
    "etcd-cert-and-key": "it is kube-apiserver's own client identity towards etcd",
    "etcd-ca-file": "it governs kube-apiserver's connections to etcd",
    "authz-includes-node": "the Node authorizer only answers requests from kubelets' identities",
    "authz-includes-rbac": "which authorizer refused a request is not in the answer",
    "service-account-key-file": "token verification keys are not served",
    "service-account-lookup": "it shows only with the token of a deleted service account",
}


@dataclass(frozen=True)
class Outcome:
    """One control's state on one endpoint, and why."""

    key: str
    state: str
    detail: str


@dataclass(frozen=True)
class Trust:
    """What the served chain must lead to: the CAs given (--ca or the kubeconfig's), and where they came from."""

    cas: tuple[x509.Certificate, ...]
    source: str


@dataclass(frozen=True)
class Known:
    """What the probe knows about the cluster besides the endpoint: the CA that signed the kubeconfig user's
    client certificate, and the kubernetes Service's IP (with the reason when it is not known)."""

    client_issuer: x509.Name | None = None
    service_ip: str | None = None
    service_ip_unknown: str = "no kubeconfig to read the kubernetes Service from; give --service-ip"


@functools.cache
def probe_catalog() -> Catalog:
    """The shipped catalog with the observed-only controls (controls.yaml `observed_controls`) added."""
    base = load_catalog()
    text = resources.files("webhook.core").joinpath("controls.yaml").read_text(encoding="utf-8")
    raw = yaml_text.safe_load(text)
    observed = parse_catalog({"benchmarks": list(base.benchmarks), "controls": raw["observed_controls"]}).controls
    return dataclasses.replace(base, controls=base.controls + observed)


def observed_keys() -> tuple[str, ...]:
    """The controls the probe judges, in its report's order."""
    cis = ("tls-cert-and-key", "client-ca-file", "anonymous-auth-disabled", "authz-not-always-allow")
    own = tuple(c.key for c in probe_catalog().controls if c.check.get("op") == "observed")
    return (*cis, "tls-cipher-suites-strong", *own)


def unobservable(catalog: Catalog) -> list[tuple[Control, str]]:
    """Every catalog control the probe does not judge, with the reason the network cannot show it."""
    judged = set(observed_keys())
    out = []
    for control in catalog.controls:
        if control.key in judged:
            continue
        if control.check.get("op") == "retired":
            reason = "a kube-apiserver given a removed flag does not start; a serving one shows nothing of its flags"
        else:
            reason = _HIDDEN.get(control.key, "a command-line setting that no answer shows")
        out.append((control, reason))
    return out


def _cn(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def _rsa_bits(cert: x509.Certificate) -> int | None:
    key = cert.public_key()
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def generated_pair(chain: Sequence[x509.Certificate]) -> str | None:
    """When the chain is kube-apiserver's own self-signed pair (no --tls-cert-file), a description of it."""
    if len(chain) < 2:
        return None
    leaf, ca = chain[0], chain[1]
    leaf_cn, ca_cn = _cn(leaf.subject), _cn(ca.subject)
    match = _GENERATED_LEAF.fullmatch(leaf_cn or "")
    if match is None or ca_cn is None or not re.fullmatch(re.escape(match["host"]) + r"-ca@\d+", ca_cn):
        return None
    if leaf.issuer != ca.subject or ca.issuer != ca.subject or (_rsa_bits(leaf), _rsa_bits(ca)) != (2048, 2048):
        return None
    if leaf.not_valid_after_utc - leaf.not_valid_before_utc not in _GENERATED_LIFETIMES:
        return None
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if list(eku) != [ExtendedKeyUsageOID.SERVER_AUTH]:
            return None
        leaf.verify_directly_issued_by(ca)
    except (x509.ExtensionNotFound, InvalidSignature, ValueError, TypeError):
        return None
    made = dt.datetime.fromtimestamp(int(match["time"]), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"CN={leaf_cn}, issued by CN={ca_cn}, generated {made}"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def chains_to(chain: Sequence[x509.Certificate], cas: Sequence[x509.Certificate]) -> bool:
    """Whether the leaf leads, through CA certificates the server sent, to one of `cas` by signature.

    Dates are left out on purpose: an expired certificate is served-cert-not-expiring's finding, not a
    question of who signed it.
    """
    current, sent = chain[0], list(chain[1:])
    for _ in range(len(chain) + 1):
        if any(_same(ca, current) or _signed_by(current, ca) for ca in cas):
            return True
        parents = [c for c in sent if _is_ca(c) and _signed_by(current, c)]
        if not parents:
            return False
        current = parents[0]
        sent.remove(current)
    return False


def _same(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.fingerprint(hashes.SHA256()) == b.fingerprint(hashes.SHA256())


def tls_cert_and_key(obs: Observation, trust: Trust) -> Outcome:
    key = "tls-cert-and-key"
    chain = obs.handshake.chain
    generated = generated_pair(chain)
    if generated:
        return Outcome(
            key,
            FAIL,
            f"the served certificate is kube-apiserver's own self-signed pair ({generated}): "
            "--tls-cert-file and --tls-private-key-file are not set",
        )
    issuer = obs.handshake.leaf.issuer.rfc4514_string()
    if not chains_to(chain, trust.cas):
        return Outcome(key, FAIL, f"the served certificate (issued by {issuer}) does not chain to {trust.source}")
    return Outcome(key, PASS, f"served certificate issued by {issuer}, chains to {trust.source}")


def _looks_front_proxy(name: CaName) -> bool:
    return any(hint in name.text.lower() for hint in _FRONT_PROXY_HINTS)


def client_ca_file(obs: Observation, trust: Trust, known: Known) -> Outcome:
    key = "client-ca-file"
    hs = obs.handshake
    if not hs.requested_client_cert:
        return Outcome(
            key, FAIL, "the handshake carries no CertificateRequest: no client CA is configured (--client-ca-file)"
        )
    names = hs.client_ca_names
    listed = "; ".join(n.text for n in names)
    if not names:
        return Outcome(key, FAIL, "a client certificate is requested but no CA is named, so which CA is unknown")
    if known.client_issuer is not None:
        wanted = known.client_issuer.public_bytes()
        if any(n.der == wanted for n in names):
            return Outcome(key, PASS, f"client CAs named: {listed} (the kubeconfig user's CA among them)")
        return Outcome(
            key,
            FAIL,
            f"the CertificateRequest names only {listed}, not {known.client_issuer.rfc4514_string()}, the CA of the "
            "kubeconfig user's client certificate"
            + (
                " (a front-proxy CA: --requestheader-client-ca-file alone)"
                if all(map(_looks_front_proxy, names))
                else ""
            ),
        )
    if any(n.names(ca) for n in names for ca in trust.cas):
        return Outcome(key, PASS, f"client CAs named: {listed} (the cluster CA among them)")
    if all(_looks_front_proxy(n) for n in names):
        return Outcome(
            key,
            FAIL,
            f"the CertificateRequest names only the front-proxy CA ({listed}): --requestheader-client-ca-file is "
            "set, --client-ca-file is not",
        )
    return Outcome(key, PASS, f"client CAs named: {listed}")


def _status(answers: Mapping[str, Answer], path: str) -> str:
    answer = answers.get(path)
    if answer is None:
        return f"{path} not asked"
    if answer.status is None:
        tries = f" after {answer.attempts} attempts" if answer.attempts > 1 else ""
        return f"{path} no answer{tries} ({answer.message})"
    return f"{path} {answer.status}"


def anonymous_auth(obs: Observation, benchmark: str) -> Outcome:
    key = "anonymous-auth-disabled"
    answers = obs.anonymous
    seen = "; ".join(_status(answers, p) for p in answers)
    unanswered = [p for p, a in answers.items() if a.status is None]
    if unanswered:
        return Outcome(key, FAIL, f"could not observe: {seen}")
    odd = [p for p, a in answers.items() if a.status not in (200, 401, 403)]
    if odd:
        return Outcome(key, FAIL, f"could not tell from these answers: {seen}")
    reached = [p for p, a in answers.items() if a.status != 401]  # 401 is authentication's refusal, before authz
    if not reached:
        return Outcome(
            key, PASS, f"every request without credentials gets 401 ({seen}): anonymous authentication is off"
        )
    if set(reached) <= PUBLIC_PATHS:
        return Outcome(
            key,
            FAIL,
            f"restricted anonymous (KEP-4633, an AuthenticationConfiguration's anonymous.conditions): anonymous "
            f"requests reach only {', '.join(reached)} ({seen}). CIS v2.1.0 accepts this; benchmark v{benchmark} "
            "asks for --anonymous-auth=false",
        )
    forbidden = next((a.message for a in answers.values() if a.status == 403 and a.message), "")
    why = f": {forbidden}" if forbidden else ""
    return Outcome(
        key,
        FAIL,
        f"anonymous authentication is on: requests without credentials reach {', '.join(reached)} ({seen}){why}",
    )


def authz_not_always_allow(obs: Observation) -> Outcome:
    key = "authz-not-always-allow"
    path = "/api/v1/namespaces"
    answer = obs.anonymous.get(path)
    if answer is None or answer.status is None:
        return Outcome(key, FAIL, f"could not observe: {_status(obs.anonymous, path)}")
    if answer.status == 200:
        return Outcome(
            key,
            FAIL,
            f"a request without credentials lists namespaces ({path} 200): system:anonymous is authorized to read "
            "resources (AlwaysAllow, or a binding for system:anonymous or system:unauthenticated)",
        )
    if answer.status == 403:
        return Outcome(key, PASS, f"the authorizer refuses system:anonymous ({path} 403): not AlwaysAllow")
    if answer.status == 401:
        return Outcome(
            key,
            UNOBSERVABLE,
            f"requests without credentials stop at authentication ({path} 401), before any authorizer",
        )
    return Outcome(key, FAIL, f"could not tell from {path} {answer.status}")


def strong_suites(catalog: Catalog, benchmark: str) -> frozenset[str]:
    """The benchmark's strong list in IANA names (Kubernetes' legacy ChaCha names mapped), less Go's insecure."""
    control = catalog.control("tls-cipher-suites-strong")
    aliases: Mapping[str, str] = control.check.get("aliases") or {}
    names = catalog.cipher_lists.get(catalog.cipher_list_for.get(benchmark, ""), ())
    return frozenset(aliases.get(n, n) for n in names) - catalog.insecure_ciphers


def cipher_suites(obs: Observation, catalog: Catalog, benchmark: str) -> Outcome:
    key = "tls-cipher-suites-strong"
    strong = strong_suites(catalog, benchmark)
    accepted = obs.suites.accepted
    weak = [s for s in accepted if s not in strong]
    old = [v for v, ok in obs.old_versions.items() if ok is True]
    unknown_versions = [f"{v}: {ok}" for v, ok in obs.old_versions.items() if isinstance(ok, str)]
    problems = []
    if weak:
        problems.append(f"TLS 1.2 accepts {len(weak)} suite(s) outside the v{benchmark} strong list: {', '.join(weak)}")
    if old:
        problems.append(f"{' and '.join(old)} accepted (below TLS 1.2)")
    if obs.suites.unknown or unknown_versions:
        problems.append(f"could not tell for {'; '.join((*obs.suites.unknown, *unknown_versions))}")
    if problems:
        return Outcome(key, FAIL, "; ".join(problems))
    if not accepted:
        return Outcome(key, PASS, "no TLS 1.2 suite accepted (TLS 1.3 only); TLS 1.0 and 1.1 refused")
    return Outcome(
        key,
        PASS,
        f"TLS 1.2 accepts only {', '.join(accepted)} (of {len(obs.suites.offered)} offered); TLS 1.0 and 1.1 refused",
    )


def expiry(obs: Observation, now: dt.datetime, days: int) -> Outcome:
    key = "served-cert-not-expiring"
    leaf = obs.handshake.leaf
    end = leaf.not_valid_after_utc
    left = end - now
    when = end.strftime("%Y-%m-%d %H:%M UTC")
    if left <= dt.timedelta(0):
        return Outcome(key, FAIL, f"the served certificate expired on {when}")
    if left < dt.timedelta(days=days):
        return Outcome(key, FAIL, f"the served certificate expires on {when}, in {_span(left)} (margin {days} days)")
    return Outcome(key, PASS, f"expires on {when}, in {_span(left)}")


def _span(left: dt.timedelta) -> str:
    if left >= dt.timedelta(days=2):
        return f"{left.days} days"
    hours = int(left.total_seconds() // 3600)
    return f"{hours} hours" if hours >= 1 else f"{int(left.total_seconds() // 60)} minutes"


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a certificate carries as subjectAltNames."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return [str(d) for d in ext.get_values_for_type(x509.DNSName)], [
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    ]


def names(obs: Observation, known: Known) -> Outcome:
    key = "served-cert-names"
    dns, ips = sans(obs.handshake.leaf)
    missing = [] if SERVICE_NAME in dns else [f"DNS:{SERVICE_NAME}"]
    if known.service_ip is not None:
        wanted = ipaddress.ip_address(known.service_ip)
        if not any(ipaddress.ip_address(i) == wanted for i in ips):
            missing.append(f"IP:{known.service_ip} (the kubernetes Service)")
    carried = ", ".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]) or "none"
    if missing:
        return Outcome(key, FAIL, f"the served certificate lacks {', '.join(missing)}; it carries {carried}")
    if known.service_ip is None:
        return Outcome(
            key, UNOBSERVABLE, f"{SERVICE_NAME} is there, the Service IP not known ({known.service_ip_unknown})"
        )
    return Outcome(key, PASS, f"{SERVICE_NAME} and IP:{known.service_ip} among {carried}")


def key_strength(obs: Observation) -> Outcome:
    key = "serving-key-strength"
    public = obs.handshake.leaf.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        bits, floor, kind = public.key_size, MIN_RSA_BITS, "RSA"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        bits, floor, kind = public.curve.key_size, MIN_EC_BITS, f"EC {public.curve.name}"
    elif isinstance(public, dsa.DSAPublicKey):
        return Outcome(key, FAIL, f"a {public.key_size}-bit DSA key, which TLS 1.3 and Go no longer accept")
    else:
        return Outcome(key, PASS, f"a {type(public).__name__.removesuffix('PublicKey')} key")
    if bits < floor:
        return Outcome(key, FAIL, f"a {bits}-bit {kind} key, below {floor} bits")
    return Outcome(key, PASS, f"a {bits}-bit {kind} key")


def judge(
    obs: Observation, trust: Trust, known: Known, catalog: Catalog, benchmark: str, now: dt.datetime, expiry_days: int
) -> list[Outcome]:
    """Every control the probe judges, in observed_keys() order."""
    return [
        tls_cert_and_key(obs, trust),
        client_ca_file(obs, trust, known),
        anonymous_auth(obs, benchmark),
        authz_not_always_allow(obs),
        cipher_suites(obs, catalog, benchmark),
        expiry(obs, now, expiry_days),
        names(obs, known),
        key_strength(obs),
    ]
