"""The pure engine and the policy: messages, where the fix goes, modes, exemptions, config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli
from tests.test_http import SEEDS_MISSING, apiserver_pod, without
from webhook.engine import evaluate, shorten
from webhook.policy import ConfigError, Mode, Policy, load_policy, parse_policy


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
                        "matchExpressions": [
                            {"key": "env", "operator": "In", "values": ["lab", "dev"]},
                            {"key": "prod", "operator": "DoesNotExist"},
                        ]
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
    ],
)
def test_serve_with_a_bad_config_exits_2_with_the_reason(tmp_path: Path, content: str, says: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    result = cli("serve", "--config", str(config), "--certs-dir", str(tmp_path / "c"), "--port", "1")
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr


def test_serve_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    result = cli("serve", "--config", str(tmp_path / "none.yaml"), "--certs-dir", str(tmp_path / "c"))
    assert result.returncode == 2 and "cannot read" in result.stderr
