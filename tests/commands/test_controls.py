"""`apiserver-tls-guard controls`: what will be enforced, before installing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli
from webhook.core.catalog import load_catalog


def rows(*args: str) -> dict[str, dict[str, object]]:
    result = cli("controls", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return {row["key"]: row for row in json.loads(result.stdout)}


def test_every_control_once_with_the_benchmarks_id() -> None:
    table = rows()
    assert list(table) == list(load_catalog().keys)
    # CIS 1.2.30 and 1.2.31 in benchmark v1.5.1 (the issue's own ids), 1.2.24 and 1.2.25 in v2.0.1
    assert table["tls-cert-and-key"]["cisId"] == "1.2.30" and table["client-ca-file"]["cisId"] == "1.2.31"
    newer = rows("--cis-version", "2.0.1")
    assert newer["tls-cert-and-key"]["cisId"] == "1.2.24" and newer["client-ca-file"]["cisId"] == "1.2.25"
    assert table["insecure-port-removed"]["cisId"] is None


def test_modes_follow_the_policy(tmp_path: Path) -> None:
    table = rows()
    assert table["tls-cert-and-key"]["mode"] == "enforce"
    assert table["anonymous-auth-disabled"]["mode"] == "warn"  # manual controls are capped at warn under enforce
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: audit\ncontrols:\n  client-ca-file: {mode: off}\n  tls-cert-and-key: {mode: enforce}\n")
    table = rows("--config", str(policy))
    assert table["client-ca-file"]["mode"] == "off"
    assert table["tls-cert-and-key"]["mode"] == "enforce"
    assert table["etcd-ca-file"]["mode"] == "audit"


def test_what_passes_is_said_for_each_kind_of_check() -> None:
    table = rows()
    assert table["tls-cert-and-key"]["passesWhen"] == "--tls-cert-file and --tls-private-key-file are set, non-empty"
    assert table["token-auth-file-unset"]["passesWhen"] == "--token-auth-file is absent"
    assert table["anonymous-auth-disabled"]["passesWhen"] == "--anonymous-auth is false (unset means true)"
    assert table["authz-includes-node"]["passesWhen"] == "--authorization-mode includes Node (unset means AlwaysAllow)"
    assert "strong list" in str(table["tls-cipher-suites-strong"]["passesWhen"])
    assert str(table["kubelet-https-removed"]["passesWhen"]).startswith("no --kubelet-https on Kubernetes >= 1.22")


def test_text_table() -> None:
    result = cli("controls", "--mode", "warn")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "CIS Kubernetes Benchmark v1.5.1; modes under the policy given"
    assert lines[1].split()[:4] == ["KEY", "CIS", "SCORED", "MODE"]
    assert any(line.split()[:4] == ["client-ca-file", "1.2.31", "yes", "warn"] for line in lines)
    assert cli("controls", "--config", "/nonexistent/policy.yaml").returncode == 2
