"""k3s and RKE2 config.yaml: k3s's apiServer() defaults, kube-apiserver-arg applied as GetArgsList does."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.bootstrap.generated import ConfigError
from webhook.bootstrap.k3s import from_config, installer_of_path
from webhook.core.engine import evaluate
from webhook.core.policy import Policy

# k3s sets the kubelet CA and turns anonymous auth off itself; it sets no cipher list.
K3S_DEFAULT_FAILS = {"tls-cipher-suites-strong"}
SQLITE_FAILS = {"etcd-cert-and-key", "etcd-ca-file"}


def failing(doc: dict[str, Any], installer: str = "k3s") -> dict[str, str]:
    generated = from_config(doc, installer)
    assert generated is not None
    return {f.key: f.detail for f in evaluate(generated.pod(), Policy()).findings}


def test_sqlite_default_has_no_etcd_tls() -> None:
    assert set(failing({})) == K3S_DEFAULT_FAILS | SQLITE_FAILS


@pytest.mark.parametrize("doc", [{"cluster-init": True}, {"server": "https://10.0.0.1:6443", "token": "x"}])
def test_embedded_etcd_has_the_etcd_client_certificates(doc: dict[str, Any]) -> None:
    assert set(failing(doc)) == K3S_DEFAULT_FAILS


def test_external_datastore_uses_its_certificates() -> None:
    doc = {"datastore-endpoint": "https://etcd:2379", "datastore-cafile": "/ca", "datastore-certfile": "/c"}
    assert set(failing(doc)) == K3S_DEFAULT_FAILS | {"etcd-cert-and-key"}


def test_rke2_always_runs_embedded_etcd() -> None:
    assert set(failing({}, "rke2")) == K3S_DEFAULT_FAILS
    generated = from_config({}, "rke2")
    assert generated is not None
    assert "--tls-cert-file=/var/lib/rancher/rke2/server/tls/serving-kube-apiserver.crt" in generated.command


def test_args_replace_defaults_last_wins() -> None:
    doc = {"cluster-init": True, "kube-apiserver-arg": ["anonymous-auth=true", "--authorization-mode=AlwaysAllow"]}
    assert set(failing(doc)) == K3S_DEFAULT_FAILS | {
        "anonymous-auth-disabled",
        "authz-not-always-allow",
        "authz-includes-node",
        "authz-includes-rbac",
    }
    doc = {"cluster-init": True, "kube-apiserver-arg": ["anonymous-auth=true", "anonymous-auth=false"]}
    assert set(failing(doc)) == K3S_DEFAULT_FAILS


def test_forms_we_do_not_follow_are_unreadable_not_passing() -> None:
    detail = failing({"cluster-init": True, "kube-apiserver-arg": ["client-ca-file+=/extra.crt"]})["client-ca-file"]
    assert "cannot be read" in detail
    findings = failing({"cluster-init": True, "kube-apiserver-arg": ["tls-cert-file"]})
    assert "could not read the command line" in findings["tls-cert-and-key"]


def test_disabled_apiserver_is_not_judged_and_bad_types_are_refused() -> None:
    assert from_config({"disable-apiserver": True}, "k3s") is None
    with pytest.raises(ConfigError, match="must be a list"):
        from_config({"kube-apiserver-arg": {"a": "b"}}, "k3s")


@pytest.mark.parametrize(
    ("path", "installer"),
    [
        ("/etc/rancher/k3s/config.yaml", "k3s"),
        ("nodes/cp-1/rke2/config.yaml", "rke2"),
        ("/etc/rancher/k3s/config.yaml.d/10-cis.yaml", "k3s"),
        ("k3s-config.yaml", None),
        ("/etc/rancher/k3s/registries.yaml", None),
    ],
)
def test_recognised_by_path(path: str, installer: str | None) -> None:
    assert installer_of_path(path) == installer
