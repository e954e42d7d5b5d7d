"""The webhook over HTTPS, as kube-apiserver calls it: the real server process, our own certificates.

tests/apiserver_client.py reproduces kube-apiserver's webhook client from ../shared/webhook-contract.md (chain and
service-name verification, ?timeout=, uid/apiVersion checks): fast, and able to send what the real one never
would. The real kube-apiserver calls the webhook in tests/e2e/.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.apiserver_client import ApiserverClient, CallFailure, admission_review
from tests.conftest import RunningServer, ServerFactory, start_server, stop_server
from webhook.runtime.tls import server_context


def apiserver_pod(
    *flags: str, name: str = "kube-apiserver-cp-1", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": labels or {"component": "kube-apiserver", "tier": "control-plane"},
            "annotations": {"kubernetes.io/config.mirror": "abc"},
        },
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "image": "registry.k8s.io/kube-apiserver:v1.30.2",
                    "command": ["kube-apiserver", *flags],
                }
            ]
        },
    }


# Passes every control in the catalog; tests drop the flags they are about.
COMPLIANT = (
    "--tls-cert-file=/pki/apiserver.crt",
    "--tls-private-key-file=/pki/apiserver.key",
    "--client-ca-file=/pki/ca.crt",
    "--kubelet-client-certificate=/pki/apiserver-kubelet-client.crt",
    "--kubelet-client-key=/pki/apiserver-kubelet-client.key",
    "--kubelet-certificate-authority=/pki/ca.crt",
    "--etcd-certfile=/pki/apiserver-etcd-client.crt",
    "--etcd-keyfile=/pki/apiserver-etcd-client.key",
    "--etcd-cafile=/pki/etcd/ca.crt",
    "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "--anonymous-auth=false",
    "--authorization-mode=Node,RBAC",
    "--service-account-key-file=/pki/sa.pub",
)


def without(*names: str) -> tuple[str, ...]:
    return tuple(f for f in COMPLIANT if f.split("=", 1)[0].lstrip("-") not in names)


GOOD = COMPLIANT
NO_TLS = without("tls-cert-file", "tls-private-key-file")
SEEDS_MISSING = without("tls-cert-file", "tls-private-key-file", "client-ca-file")


def test_compliant_apiserver_is_allowed(enforce_client: ApiserverClient) -> None:
    response = enforce_client.review(admission_review(apiserver_pod(*GOOD)))
    assert response["allowed"] is True
    assert "warnings" not in response


def test_enforce_denies_with_403_and_a_message_naming_id_fix_and_file(
    enforce_client: ApiserverClient,
) -> None:
    response = enforce_client.review(admission_review(apiserver_pod("--v=2")))
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 403
    message = status["message"]
    assert "CIS 1.2.30 (benchmark v1.5.1)" in message and "CIS 1.2.31 (benchmark v1.5.1)" in message
    assert "/etc/kubernetes/manifests/kube-apiserver.yaml" in message
    assert "--tls-cert-file=<path" in message and "--tls-private-key-file=<path" in message
    assert "self-signed certificate" in message  # what really happens without the flags


def test_warn_allows_with_one_short_printable_warning_per_finding(warn_client: ApiserverClient) -> None:
    response = warn_client.review(admission_review(apiserver_pod(*SEEDS_MISSING)))
    assert response["allowed"] is True
    warnings = response["warnings"]
    assert len(warnings) == 2
    assert any(w.startswith("CIS 1.2.30 v1.5.1") for w in warnings)
    assert any(w.startswith("CIS 1.2.31 v1.5.1") for w in warnings)
    for warning in warnings:
        assert len(warning) <= 120
        assert all(ch.isprintable() for ch in warning), "kube-apiserver drops warnings with control characters"
    assert sum(len(w) for w in warnings) < 4096


def test_audit_allows_and_records_valid_audit_annotations(server_factory: ServerFactory) -> None:
    client = server_factory("--mode", "audit").client()
    response = client.review(admission_review(apiserver_pod(*NO_TLS)))
    assert response["allowed"] is True and "warnings" not in response
    annotations = response["auditAnnotations"]
    assert "tls-cert-and-key" in annotations and "client-ca-file" not in annotations
    assert annotations["verdict"] == "audited"
    for key in annotations:
        assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", key)


@pytest.mark.parametrize("dry_run", [True, False])
def test_dry_run_gets_the_same_verdict(
    enforce_client: ApiserverClient, warn_client: ApiserverClient, dry_run: bool
) -> None:
    denied = enforce_client.review(admission_review(apiserver_pod(*NO_TLS), dry_run=dry_run))
    assert denied["allowed"] is False and "CIS 1.2.30" in denied["status"]["message"]
    warned = warn_client.review(admission_review(apiserver_pod(*NO_TLS), dry_run=dry_run))
    assert warned["allowed"] is True and len(warned["warnings"]) == 1


def test_update_is_judged_delete_and_connect_are_not(enforce_client: ApiserverClient) -> None:
    worse = admission_review(apiserver_pod(), operation="UPDATE", old_object=apiserver_pod(*GOOD))
    assert enforce_client.review(worse)["allowed"] is False
    assert enforce_client.review(admission_review(apiserver_pod(), operation="DELETE"))["allowed"] is True
    assert enforce_client.review(admission_review(apiserver_pod(), operation="CONNECT"))["allowed"] is True


def test_pods_without_apiserver_and_other_kinds_are_allowed(enforce_client: ApiserverClient) -> None:
    coredns = {
        "kind": "Pod",
        "metadata": {"name": "coredns"},
        "spec": {"containers": [{"name": "c", "image": "coredns"}]},
    }
    assert enforce_client.review(admission_review(coredns))["allowed"] is True
    configmap = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "kube-apiserver"}}
    assert enforce_client.review(admission_review(configmap))["allowed"] is True


def test_v1beta1_is_answered_in_v1beta1(enforce_client: ApiserverClient) -> None:
    review = admission_review(apiserver_pod(), api_version="admission.k8s.io/v1beta1")
    response = enforce_client.review(review)  # the client checks the apiVersion echo
    assert response["allowed"] is False


def test_per_control_mode_overrides_global(server_factory: ServerFactory, tmp_path: Any) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text("mode: enforce\ncontrols:\n  client-ca-file: {mode: warn}\n")
    client = server_factory("--config", str(config)).client()
    only_ca_missing = apiserver_pod(*without("client-ca-file"))
    response = client.review(admission_review(only_ca_missing))
    assert response["allowed"] is True
    assert [w[:17] for w in response["warnings"]] == ["CIS 1.2.31 v1.5.1"]
    assert client.review(admission_review(apiserver_pod(*NO_TLS)))["allowed"] is False


def test_exemptions_come_from_config_never_from_the_object(server_factory: ServerFactory, tmp_path: Any) -> None:
    config = tmp_path / "exempt.yaml"
    config.write_text(
        "exemptions:\n  names: [{pattern: 'kube-apiserver-lab-*', namespaces: [kube-system]}]\n"
        "  labelSelectors:\n  - {namespaces: [kube-system], matchLabels: {env: sandbox}}\n"
    )
    client = server_factory("--config", str(config)).client()
    assert client.review(admission_review(apiserver_pod(name="kube-apiserver-lab-3")))["allowed"] is True
    assert client.review(admission_review(apiserver_pod(labels={"env": "sandbox"})))["allowed"] is True
    sneaky = apiserver_pod()
    sneaky["metadata"]["annotations"]["apiserver-tls-guard/exempt"] = "true"
    sneaky["metadata"]["labels"]["apiserver-tls-guard.io/skip"] = "true"
    assert client.review(admission_review(sneaky))["allowed"] is False


# --- bad input -----------------------------------------------------------------------------------------


def _post(client: ApiserverClient, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    result = client.post("/validate?timeout=10s", body, content_type)
    return result.status, result.json()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"[]", 400, "JSON object"),
        (
            b'{"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {}}',
            400,
            "apiVersion",
        ),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {}}', 400, "kind"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', 400, "request"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}',
            400,
            "uid",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}',
            400,
            "uid",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
            b'"request": {"uid": "u", "operation": "CREATE", "object": []}}',
            400,
            "object",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", '
            b'"request": {"uid": "u", "operation": "CREATE", "dryRun": "yes"}}',
            400,
            "dryRun",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, ""),
    ],
)
def test_malformed_reviews_get_400_saying_what_is_wrong(
    enforce_client: ApiserverClient, body: bytes, status: int, says: str
) -> None:
    got, answer = _post(enforce_client, body)
    assert got == status
    assert says in answer["error"]


def test_non_json_content_type_gets_415(enforce_client: ApiserverClient) -> None:
    assert _post(enforce_client, b"{}", "text/plain")[0] == 415


def test_oversized_body_gets_413_and_exactly_7mib_is_read(enforce_client: ApiserverClient) -> None:
    """An UPDATE with object and oldObject of 3 MiB each (kube-apiserver's limit) must be judged, not refused."""
    limit = 7 * 1024 * 1024
    review = admission_review(apiserver_pod(*GOOD))
    review["request"]["object"]["metadata"]["annotations"]["pad"] = ""
    base = len(json.dumps(review).encode())
    review["request"]["object"]["metadata"]["annotations"]["pad"] = "x" * (limit - base)
    exact = json.dumps(review).encode()
    assert len(exact) == limit
    assert enforce_client.post("/validate", exact).status == 200
    assert enforce_client.post("/validate", exact + b" ").status == 413


def test_unknown_paths_and_methods_are_not_500(enforce_client: ApiserverClient) -> None:
    assert enforce_client.get("/nope").status == 404
    assert enforce_client.get("/validate").status == 405


def test_health_endpoints(enforce_client: ApiserverClient) -> None:
    assert enforce_client.get("/healthz").status == 200
    assert enforce_client.get("/readyz").status == 200


def test_log_has_decisions_but_never_bodies_or_keys(
    enforce_server: RunningServer, enforce_client: ApiserverClient
) -> None:
    review = admission_review(apiserver_pod("--tls-cert-file=/SECRET-PATH-MARKER"))
    enforce_client.review(review)
    log = enforce_server.log_text()
    decisions = [d for d in map(json.loads, log.splitlines()) if d.get("msg") == "decision"]
    [ours] = [d for d in decisions if d["uid"] == review["request"]["uid"]]  # this request's line, not the last one
    assert set(ours) >= {"uid", "kind", "namespace", "objectName", "verdict", "controls", "durationMs"}
    assert ours["verdict"] == "denied"
    assert "tls-cert-and-key" in ours["controls"] and "client-ca-file" in ours["controls"]
    assert "SECRET-PATH-MARKER" not in log
    assert "PRIVATE KEY" not in log
    assert (enforce_server.certs / "tls.key").read_text().splitlines()[1] not in log


# --- TLS as kube-apiserver needs it --------------------------------------------------------------------


def test_chain_and_service_name_verify(enforce_server: RunningServer) -> None:
    for name in ("apiserver-tls-guard.apiserver-tls-guard.svc", "localhost"):
        client = enforce_server.client(server_name=name)
        assert client.get("/healthz").status == 200
        client.close()


def test_wrong_service_name_fails_verification(enforce_server: RunningServer) -> None:
    client = enforce_server.client(server_name="other.apiserver-tls-guard.svc")
    with pytest.raises(ssl.SSLCertVerificationError):
        client.get("/healthz")


def _handshake(server: RunningServer, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return context.wrap_socket(sock, server_hostname="localhost")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_is_refused(enforce_server: RunningServer) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(enforce_server, context).close()
    # The server process closes without saying why; our TLS context, driven in memory, tells the reason: the
    # protocol version, not "no shared cipher" (which a server with weak settings could also answer).
    server = server_context(str(enforce_server.certs / "tls.crt"), str(enforce_server.certs / "tls.key"))
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = context.wrap_bio(client_in, client_out, server_hostname="localhost")
    accepted = server.wrap_bio(server_in, server_out, server_side=True)
    with pytest.raises(ssl.SSLError):
        client.do_handshake()
    server_in.write(client_out.read())
    with pytest.raises(ssl.SSLError) as refused:
        accepted.do_handshake()
    reason = str(refused.value.reason).upper()
    assert "UNSUPPORTED_PROTOCOL" in reason or "VERSION_TOO_LOW" in reason, refused.value
    assert "CIPHER" not in reason


def test_only_aead_forward_secret_ciphers_on_tls_1_2(enforce_server: RunningServer) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(enforce_server.certs / "ca.crt"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with _handshake(enforce_server, context) as tls:
        name, version, _ = tls.cipher()  # type: ignore[misc]
        assert version == "TLSv1.2" and "ECDHE" in name and ("GCM" in name or "CHACHA20" in name)
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.load_verify_locations(str(enforce_server.certs / "ca.crt"))
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ECDHE+AES128+SHA:AES256-SHA:AES128-SHA")  # CBC only
    with pytest.raises(ssl.SSLError):
        _handshake(enforce_server, weak).close()


def test_http_1_1_is_negotiated(enforce_server: RunningServer) -> None:
    context = ssl.create_default_context(cafile=str(enforce_server.certs / "ca.crt"))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with _handshake(enforce_server, context) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_client_judges_a_wrong_uid_as_call_failure() -> None:
    # The stand-in must be able to fail: a forged answer with another uid is rejected like kube-apiserver does.
    class Forged(ApiserverClient):
        def post(self, path: str, body: bytes, content_type: str = "application/json") -> Any:
            from tests.apiserver_client import HttpResult

            answer = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": "other", "allowed": True},
            }
            return HttpResult(200, json.dumps(answer).encode(), {})

    client = Forged.__new__(Forged)
    client.timeout_seconds = 10
    with pytest.raises(CallFailure):
        client.review(admission_review(apiserver_pod()))


def hosted_apiserver(kind: str, *flags: str, namespace: str = "clusters-prod") -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": "kube-apiserver"}},
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "image": "registry.k8s.io/kube-apiserver:v1.30.2",
                    "command": ["kube-apiserver", *flags],
                }
            ]
        },
    }
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "kas", "namespace": namespace}, "spec": spec}


WORKLOAD_KINDS = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"]


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_hosted_control_plane_workloads_are_judged(enforce_client: ApiserverClient, kind: str, operation: str) -> None:
    compliant = hosted_apiserver(kind, *COMPLIANT)
    bad = enforce_client.review(admission_review(hosted_apiserver(kind, *NO_TLS), operation, old_object=compliant))
    assert bad["allowed"] is False
    assert f"edit the pod template of {kind} clusters-prod/kas" in bad["status"]["message"]
    good = enforce_client.review(admission_review(hosted_apiserver(kind, *COMPLIANT), operation=operation))
    assert good["allowed"] is True


def test_workload_namespaces_limit_where_workloads_are_judged(server_factory: ServerFactory, tmp_path: Any) -> None:
    config = tmp_path / "hosted.yaml"
    config.write_text("workloadNamespaces: ['clusters-*']\n")
    client = server_factory("--config", str(config)).client()
    assert client.review(admission_review(hosted_apiserver("Deployment", *NO_TLS)))["allowed"] is False
    elsewhere = hosted_apiserver("Deployment", *NO_TLS, namespace="team-a")
    assert client.review(admission_review(elsewhere))["allowed"] is True
    assert client.review(admission_review(apiserver_pod(*NO_TLS)))["allowed"] is False  # pods: wherever sent


@pytest.mark.parametrize(("mode", "allowed"), [("enforce", False), ("warn", True)])
def test_an_internal_error_denies_in_enforce_and_warns_otherwise(
    certs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, allowed: bool
) -> None:
    """Fault injection through a real request: the server's failpoint makes judging raise."""
    monkeypatch.setenv("APISERVER_TLS_GUARD_FAILPOINT", "decide")
    server = start_server(certs_dir, tmp_path, "--mode", mode)
    try:
        client = server.client()
        review = admission_review(apiserver_pod(*COMPLIANT))
        answer = client.review(review)
        client.close()
        assert answer["allowed"] is allowed
        assert answer["uid"] == review["request"]["uid"]
        text = answer["status"]["message"] if not allowed else answer["warnings"][0]
        assert "could not evaluate this object" in text
        assert any(json.loads(line)["msg"] == "could not evaluate" for line in server.log_text().splitlines())
    finally:
        stop_server(server)
