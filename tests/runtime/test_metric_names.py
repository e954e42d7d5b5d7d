"""Our metric names and labels as Prometheus stores them.

- The prefix is the application's own single word (Prometheus "Metric and label naming": a single-word
  application prefix, the namespace of client libraries), as Kyverno's `kyverno_`, Gatekeeper's `gatekeeper_` and
  cert-manager's `certmanager_` (its hyphen dropped) are; never `apiserver_`, kube-apiserver's own namespace
  (`apiserver_request_total`, `apiserver_tls_handshake_errors_total`, `apiserver_admission_webhook_*`).
- No label is one the scrape itself sets on the target: with honor_labels false (the default) Prometheus renames
  a clashing scraped label to `exported_<name>`, so `namespace` became `exported_namespace` and alerts grouped by
  the webhook's own namespace; the Prometheus Operator adds `endpoint` (the ServiceMonitor's port name,
  pkg/prometheus/promcfg.go), `service`, `pod` and `container`.
"""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from webhook.runtime import metrics

TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "container", "endpoint"})


def _families() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            out[value._name] = tuple(value._labelnames)
        elif isinstance(value, metrics._Snapshot):
            out[value.name] = value.labels
    return out


def test_every_family_has_the_single_word_prefix() -> None:
    families = _families()
    assert len(families) >= 17  # the probe's four included
    assert [name for name in families if not name.startswith("tlsguard_")] == []
    assert "tlsguard_probe_findings" in families and "tlsguard_audit_violations" in families


def test_no_label_is_one_the_scrape_sets() -> None:
    clashing = {name: set(labels) & TARGET_LABELS for name, labels in _families().items()}
    assert {name: clash for name, clash in clashing.items() if clash} == {}
    assert _families()["tlsguard_audit_violations"] == ("control", "target_namespace")
    assert _families()["tlsguard_probe_findings"] == ("target_endpoint", "control")
