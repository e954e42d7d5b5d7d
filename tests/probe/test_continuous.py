"""The continuous probe's rounds and the metrics they leave, against local TLS servers."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from prometheus_client import REGISTRY

from tests.probe.conftest import Pki
from tests.probe.servers import ANONYMOUS_ON, API_TOKEN, Config, serving
from webhook.core.policy import PolicyInForce, load_policy
from webhook.probe import targets
from webhook.probe.continuous import ProbeLoop, Targets, in_cluster_targets
from webhook.probe.judge import Known, Trust
from webhook.probe.observe import Endpoint


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(f"tlsguard_{name}", labels)


def test_a_round_exports_expiry_findings_and_last_success_and_forgets_gone_endpoints(pki: Pki) -> None:
    in_force = PolicyInForce(load_policy(None), "test")
    trust = Trust((pki.cluster_ca.cert,), "test CA")
    config = Config(pki.rsa_cert, pki.rsa_key, ciphers="ECDHE-RSA-AES128-GCM-SHA256", statuses=ANONYMOUS_ON)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = Endpoint("127.0.0.1", closed.getsockname()[1])
        with serving(config) as port:
            live = Endpoint("127.0.0.1", port)
            endpoints = [live, dead]
            loop = ProbeLoop(in_force, 60, lambda: Targets(list(endpoints), trust, Known(service_ip="10.96.0.1")))
            errors_before = _value("probe_runs_total", result="error") or 0
            assert loop.once() == 1
    url = live.url
    served = x509.load_pem_x509_certificate(pki.rsa_cert.read_bytes())
    assert (
        _value("probe_certificate_expiry_timestamp_seconds", target_endpoint=url)
        == served.not_valid_after_utc.timestamp()
    )
    assert _value("probe_findings", target_endpoint=url, control="anonymous-auth-disabled") == 1
    assert _value("probe_findings", target_endpoint=url, control="tls-cert-and-key") == 0
    assert _value("probe_findings", target_endpoint=url, control="authz-not-always-allow") == 0
    assert _value("probe_findings", target_endpoint=url, control="client-ca-file") == 1
    assert (_value("probe_last_success_timestamp_seconds", target_endpoint=url) or 0) > 0
    assert _value("probe_last_success_timestamp_seconds", target_endpoint=dead.url) is None
    assert _value("probe_runs_total", result="error") == errors_before + 1
    # The endpoint leaves the EndpointSlice: its series go with it.
    endpoints.remove(live)
    loop.once()
    assert _value("probe_certificate_expiry_timestamp_seconds", target_endpoint=url) is None
    assert _value("probe_findings", target_endpoint=url, control="anonymous-auth-disabled") is None


def test_a_round_hands_its_cluster_report_to_the_writer(pki: Pki) -> None:
    written: list[dict[str, Any]] = []
    with serving(Config(pki.rsa_cert, pki.rsa_key)) as port, socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoints = [Endpoint("127.0.0.1", port), Endpoint("127.0.0.1", closed.getsockname()[1])]
        trust = Trust((pki.cluster_ca.cert,), "test CA")
        loop = ProbeLoop(
            PolicyInForce(load_policy(None), "test"),
            60,
            lambda: Targets(endpoints, trust, Known()),
            write_report=written.append,
            report_api="openreports.io/v1alpha1",
        )
        loop.once()
    [report] = written
    assert report["kind"] == "ClusterReport"
    endpoints_seen = {r["properties"]["endpoint"] for r in report["results"] if "properties" in r}
    assert endpoints_seen == {f"https://127.0.0.1:{port}"}
    [error] = [r for r in report["results"] if r["result"] == "error"]
    assert error["message"].endswith("connection refused")


def test_in_a_pod_the_round_reads_the_endpointslices_alone(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chart's and manifests/components/probe's Role grants `list` on endpointslices in default, nothing
    # more: the Service IP comes from $KUBERNETES_SERVICE_HOST, never from a read of the Service.
    slices = {"items": [{"ports": [{"name": "https", "port": 6443}], "endpoints": [{"addresses": ["10.0.0.7"]}]}]}
    config = Config(pki.rsa_cert, pki.rsa_key, api={targets.SLICES_PATH: slices})
    token = tmp_path / "token"
    token.write_text(API_TOKEN)
    monkeypatch.setattr(targets, "IN_CLUSTER_TOKEN", token)
    monkeypatch.setattr(targets, "IN_CLUSTER_CA", pki.file("in-cluster-ca.crt", pki.cluster_ca))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with serving(config) as port:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(port))
        got = in_cluster_targets(None)
    assert config.requests == [targets.SLICES_PATH]
    assert [e.url for e in got.endpoints] == ["https://10.0.0.7:6443"]
    assert got.known.service_ip == "127.0.0.1"
