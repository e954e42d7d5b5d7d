"""The pure engine and the policy: messages, where the fix goes, modes, exemptions, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admission.test_http import COMPLIANT, SEEDS_MISSING, apiserver_pod, without
from tests.conftest import cli
from webhook.core.engine import evaluate, shorten
from webhook.core.policy import ConfigError, Mode, Policy, load_policy, parse_policy


def deployment(*flags: str) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "kube-apiserver", "namespace": "clusters-prod"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "kas"}},
                "spec": {"containers": [{"name": "kas", "command": ["kube-apiserver", *flags]}]},
            }
        },
    }


def test_static_pod_fix_points_at_the_manifest_on_every_control_plane_node() -> None:
    [finding, _] = evaluate(apiserver_pod(*SEEDS_MISSING), Policy()).findings
    message = finding.message()
    assert message.startswith("CIS 1.2.30 (benchmark v1.5.1), container 'kube-apiserver':")
    assert "edit /etc/kubernetes/manifests/kube-apiserver.yaml on every control-plane node" in message
    assert "--tls-cert-file and --tls-private-key-file are not set" in message


def test_workload_fix_points_at_its_pod_template() -> None:
    [finding, _] = evaluate(deployment(*SEEDS_MISSING), Policy()).findings
    assert "edit the pod template of Deployment clusters-prod/kube-apiserver" in finding.message()


def test_empty_and_missing_are_told_apart() -> None:
    [finding] = evaluate(
        apiserver_pod(*without("tls-cert-file", "tls-private-key-file"), "--tls-cert-file="), Policy()
    ).findings
    assert finding.detail == "--tls-private-key-file is not set; --tls-cert-file is empty"


def test_benchmark_selects_the_ids_shown() -> None:
    findings = evaluate(apiserver_pod(*SEEDS_MISSING), Policy(cis_version="2.0.1")).findings
    assert [f.cis_id for f in findings] == ["1.2.24", "1.2.25"]
    assert findings[0].warning().startswith("CIS 1.2.24 v2.0.1 kube-apiserver:")


def test_openshift_config_file_is_named_as_the_reason_the_check_could_not_see() -> None:
    pod = apiserver_pod("--openshift-config=/etc/kubernetes/config.yaml")
    findings = evaluate(pod, Policy()).findings
    assert {"tls-cert-and-key", "client-ca-file", "etcd-ca-file"} <= {f.key for f in findings}
    for finding in findings:
        assert finding.hidden_by == "--openshift-config"
        assert "could not see the setting" in finding.message()


def test_warnings_are_one_printable_line_of_at_most_120() -> None:
    text = shorten("a\nb\tc" + "x" * 300)
    assert len(text) == 120 and text.startswith("a b c") and text.isprintable()


def test_policy_file_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="mode"):
        parse_policy({"mode": "block"})
    with pytest.raises(ConfigError, match="no such control"):
        parse_policy({"controls": {"tls-everything": {"mode": "warn"}}})
    with pytest.raises(ConfigError, match="cisVersion"):
        parse_policy({"cisVersion": "9.9"})
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_policy({"exemptions": {}, "exempt": {}})
    with pytest.raises(ConfigError, match="operator"):
        parse_policy({"exemptions": {"labelSelectors": [{"matchExpressions": [{"key": "a", "operator": "Near"}]}]}})


def test_a_control_can_be_switched_off() -> None:
    policy = parse_policy({"controls": {"client-ca-file": "off"}})
    assert {f.key for f in evaluate(apiserver_pod(*SEEDS_MISSING), policy).findings} == {"tls-cert-and-key"}


def test_label_selector_operators() -> None:
    policy = parse_policy(
        {
            "exemptions": {
                "labelSelectors": [
                    {
                        "namespaces": ["kube-system"],  # a label exemption applies only where the policy says
                        "matchExpressions": [
                            {"key": "env", "operator": "In", "values": ["lab", "dev"]},
                            {"key": "prod", "operator": "DoesNotExist"},
                        ],
                    }
                ]
            }
        }
    )
    assert evaluate(apiserver_pod(labels={"env": "lab"}), policy).exempt
    assert not evaluate(apiserver_pod(labels={"env": "lab", "prod": "1"}), policy).exempt
    assert not evaluate(apiserver_pod(labels={"env": "prod"}), policy).exempt


def test_namespace_exemption() -> None:
    policy = parse_policy({"exemptions": {"namespaces": ["clusters-lab"]}})
    assert not evaluate(deployment(), policy).exempt
    lab = deployment()
    lab["metadata"] = {"name": "kas", "namespace": "clusters-lab"}
    assert evaluate(lab, policy).exempt == "namespace clusters-lab is exempt"


def test_command_line_mode_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("mode: audit\n")
    assert load_policy(config).mode is Mode.AUDIT
    assert load_policy(config, mode="warn").mode is Mode.WARN


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("mode: [", "not valid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("mode: maybe\n", "not a mode"),
        # Typos that must never switch the guard off: each names the file, the field and what was expected.
        ('exemptions: {names: "lab-*"}\n', "exemptions.names: expected a list of name patterns"),
        ("exemptions: {names: ['*']}\n", "would exempt every pod"),
        ("exemptions: {labelSelectors: [{}]}\n", "an empty selector would exempt every pod"),
        ("exemptions: {labelSelectors: [{matchLabel: {a: b}}]}\n", "unknown keys ['matchLabel']"),
        ("exemptions: {namespace: [lab]}\n", "exemptions: unknown keys ['namespace']"),
        ("exemptions: {namespaces: lab}\n", "exemptions.namespaces: expected a list of namespaces"),
        ("controls: {client-ca-file: {mode: warn, note: x}}\n", "controls.client-ca-file: unknown keys ['note']"),
        ("workloadNamespaces: clusters-*\n", "workloadNamespaces: expected a list"),
        (
            "exemptions: {labelSelectors: [{matchExpressions: [{key: a, operator: In}]}]}\n",
            "In needs values",
        ),
    ],
)
def test_serve_with_a_bad_config_exits_2_with_the_reason(tmp_path: Path, content: str, says: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    result = cli("serve", "--config", str(config), "--certs-dir", str(tmp_path / "c"), "--port", "1")
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr
    assert str(config) in result.stderr
    checked = cli("check", "--config", str(config), "-", stdin="kind: ConfigMap\n")
    assert checked.returncode == 2 and says in checked.stderr


def test_serve_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    result = cli("serve", "--config", str(tmp_path / "none.yaml"), "--certs-dir", str(tmp_path / "c"))
    assert result.returncode == 2 and "cannot read" in result.stderr


@pytest.mark.parametrize(
    ("image", "benchmark", "tls_id"),
    [
        ("registry.k8s.io/kube-apiserver:v1.22.17", "1.23", "1.2.27"),
        ("registry.k8s.io/kube-apiserver:v1.28.1", "1.10.0", "1.2.24"),
        ("k8s.gcr.io/kube-apiserver:v1.18.0", "1.6.0", "1.2.30"),
        ("gcr.io/google_containers/hyperkube:v1.8.5", "1.5.1", "1.2.30"),  # older than every benchmark
        ("registry.k8s.io/kube-apiserver:v1.34.0", "2.0.1", "1.2.24"),  # 1.12.0 and 2.0.1 both cover 1.34
        ("registry.k8s.io/kube-apiserver:v1.40.0", "2.0.1", "1.2.24"),  # newer than every benchmark
        ("${IMAGE}", "2.0.1", "1.2.24"),  # unknown: the newest
    ],
)
def test_auto_picks_the_benchmark_from_the_image_tag(image: str, benchmark: str, tls_id: str) -> None:
    pod = apiserver_pod(*SEEDS_MISSING)
    pod["spec"]["containers"][0]["image"] = image
    finding = evaluate(pod, Policy(cis_version="auto")).findings[0]
    assert (finding.benchmark, finding.cis_id) == (benchmark, tls_id)


def test_cipher_list_follows_the_benchmark() -> None:
    cbc = "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
    pod = apiserver_pod(*without("tls-cipher-suites"), cbc)
    keys = {
        b: {f.key for f in evaluate(pod, Policy(cis_version=b)).findings} for b in ("1.5.1", "1.9.0", "1.11", "2.0.1")
    }
    assert keys == {
        "1.5.1": {"tls-cipher-suites-strong"},
        "1.9.0": set(),  # the 1.23-1.9.0 list still accepts ECDHE-RSA CBC
        "1.11": set(),
        "2.0.1": {"tls-cipher-suites-strong"},
    }


@pytest.mark.parametrize(
    ("image", "flag", "retired"),
    [
        ("registry.k8s.io/kube-apiserver:v1.24.0", "--insecure-port=0", True),
        ("registry.k8s.io/kube-apiserver:v1.23.9", "--insecure-port=0", False),
        ("registry.k8s.io/kube-apiserver:v1.19.0", "--basic-auth-file=/b.csv", True),
        ("k8s.gcr.io/kube-apiserver:v1.18.2", "--basic-auth-file=/b.csv", False),
        ("registry.k8s.io/kube-apiserver:v1.22.0", "--kubelet-https=true", True),
        ("registry.k8s.io/kube-apiserver:v1.30.0", "--insecure-bind-address=127.0.0.1", True),
        ("my-registry/apiserver-custom:latest", "--insecure-port=0", False),  # version unknown: not judged
    ],
)
def test_retired_flags_only_when_the_version_is_known(image: str, flag: str, retired: bool) -> None:
    pod = apiserver_pod(*COMPLIANT, flag)
    pod["spec"]["containers"][0]["image"] = image
    findings = [f for f in evaluate(pod, Policy()).findings if f.key.endswith("-removed")]
    assert bool(findings) == retired
    if retired:
        assert "refuses to start" in findings[0].message() and findings[0].cis_id is None


def test_authorization_config_is_named_when_it_hides_the_mode() -> None:
    pod = apiserver_pod(*without("authorization-mode"), "--authorization-config=/etc/kubernetes/authz.yaml")
    findings = {f.key: f for f in evaluate(pod, Policy()).findings}
    assert set(findings) == {"authz-not-always-allow", "authz-includes-node", "authz-includes-rbac"}
    assert all(f.hidden_by == "--authorization-config" for f in findings.values())


def test_a_spent_reading_budget_fails_every_flag_control_as_could_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20.1: each evaluation reads command lines under one CPU budget (webhook/cmdline/budget.py); once it
    is spent the container is judged as unreadable, so an enforced control denies (fail closed), not allows."""
    script = "echo starting; " * 600 + "exec kube-apiserver " + " ".join(COMPLIANT)
    pod = apiserver_pod()
    pod["spec"]["containers"][0]["command"] = ["/bin/sh", "-c", script]
    assert not evaluate(pod, Policy()).findings  # within the budget: read whole, and compliant
    monkeypatch.setattr("webhook.cmdline.budget.CPU_SECONDS", 0.0)
    findings = {f.key: f.detail for f in evaluate(pod, Policy()).findings}
    assert findings["tls-cert-and-key"] == (
        "could not read the command line: the rest of the command line, which this reader stopped reading (reading"
        " it took more than this reader's time budget), may set --tls-cert-file"
    )
