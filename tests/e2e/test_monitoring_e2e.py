"""Alerts and the dashboard: every expression parsed by Prometheus' own rule parser (`promrules`, built by
`make kube` on github.com/prometheus/prometheus model/rulefmt, what `promtool check rules` runs), every metric they
name exported by a real `serve` process, the PrometheusRule accepted by the real apiserver with the Prometheus
Operator's CRD, and the chart's copy equal to the manifest's.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, RunningServer, ServerFactory
from tests.e2e.conftest import require_built
from tests.e2e.controlplane import KUBE_BIN, ControlPlane

PROMRULES = KUBE_BIN / "promrules"
ALERTS = ROOT / "charts/apiserver-tls-guard/files/alerts.yaml"
RULE = ROOT / "manifests/monitoring/prometheusrule.yaml"
DASHBOARD = ROOT / "manifests/monitoring/dashboard.json"
OURS = re.compile(r"\btlsguard_[a-z_]+")


@pytest.fixture(scope="module", autouse=True)
def promrules_built() -> None:
    require_built(PROMRULES)


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMRULES), str(path)], capture_output=True, text=True, timeout=60, check=False)


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return rules


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


def test_alerts_parse_with_prometheus_own_parser(tmp_path: Path) -> None:
    result = check_rules(ALERTS)
    assert result.returncode == 0, result.stderr
    assert "16 rules: SUCCESS" in result.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(ALERTS.read_text().replace("> 0.1", "> > 0.1"))  # the checker must be able to say no
    result = check_rules(broken)
    assert result.returncode == 1 and "parse error" in result.stderr


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:panel_{i}", "expr": expr} for i, expr in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = check_rules(path)
    assert result.returncode == 0, result.stderr
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "apiserver-tls-guard" and len({p["id"] for p in dashboard["panels"]}) == len(rules)


def test_the_alerts_the_issue_asks_for() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "up{" in exprs["ApiserverTLSGuardDown"]
    assert 'verdict="error"' in exprs["ApiserverTLSGuardErrors"]
    assert "7 * 86400" in exprs["ApiserverTLSGuardCertificateExpiring"]
    assert "policy_reload_errors" in exprs["ApiserverTLSGuardPolicyReloadFailing"]
    assert 'verdict="denied"' in exprs["ApiserverTLSGuardDenials"]
    assert "audit_violations" in exprs["ApiserverTLSGuardAuditViolations"]
    # issue 25: the continuous probe's three
    assert "probe_certificate_expiry_timestamp_seconds" in exprs["ApiserverTLSGuardProbeCertificateExpiring"]
    assert "14 * 86400" in exprs["ApiserverTLSGuardProbeCertificateExpiring"]
    assert "probe_findings" in exprs["ApiserverTLSGuardProbeControlFailing"]
    assert exprs["ApiserverTLSGuardProbeControlFailing"].endswith("== 1")
    assert 'probe_runs_total{result="error"}' in exprs["ApiserverTLSGuardProbeFailing"]


def test_every_alert_has_a_runbook_section() -> None:
    sections = set(re.findall(r"^## (\w+)$", (ROOT / "docs/runbooks.md").read_text(), re.MULTILINE))
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert rule["alert"] in sections, rule["alert"]


def exported_names(server: RunningServer) -> set[str]:
    """Every sample name the real server can export: from its `# TYPE` lines, with each type's suffixes."""
    context = ssl.create_default_context(cafile=str(server.certs / "ca.crt"))
    context.check_hostname = False
    with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/metrics", context=context, timeout=5) as r:
        text = r.read().decode()
    names = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            names.update(name + suffix for suffix in suffixes.get(kind, ()))
    return names


def test_every_metric_named_is_one_we_export(server_factory: ServerFactory) -> None:
    names = exported_names(server_factory("--mode", "warn"))
    used = {m for rule in alert_rules() for m in OURS.findall(rule["expr"])}
    used |= {m for expr in dashboard_exprs() for m in OURS.findall(expr)}
    assert len(used) >= 9
    assert used - names == set()


def test_manifest_and_chart_carry_the_same_rules() -> None:
    manifest = yaml.safe_load(RULE.read_text())
    assert manifest["spec"] == yaml.safe_load(ALERTS.read_text())
    rendered = subprocess.run(
        [str(KUBE_BIN / "helm"), "template", "t", str(ROOT / "charts/apiserver-tls-guard"), "--kube-version", "1.37.2",
         "--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert yaml.safe_load(rendered.stdout)["spec"] == manifest["spec"]


def test_prometheus_rule_applies_on_the_real_apiserver(control_plane: ControlPlane) -> None:
    crd = KUBE_BIN / "crds" / "monitoring.coreos.com_prometheusrules.yaml"
    control_plane.kubectl("apply", "--server-side", "-f", str(crd), check=True)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/prometheusrules.monitoring.coreos.com", check=True
    )
    control_plane.kubectl("create", "namespace", "apiserver-tls-guard")  # may exist already
    result = control_plane.kubectl("apply", "--validate=strict", "--dry-run=server", "-f", str(RULE))
    assert result.returncode == 0, result.stderr
