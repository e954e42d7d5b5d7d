"""The kubeconfig as the probe reads it: kubectl's merge rules (client-go clientcmd loader.go), relative paths,
inline data, token files, and the reasons when it cannot be used."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.probe import certs
from webhook.probe import targets
from webhook.probe.targets import TargetError

CA = certs.ca("kubeconfig-ca")


def _write(path: Path, clusters: list[dict[str, Any]], users: list[dict[str, Any]], current: str | None) -> Path:
    contexts = [{"name": "x", "context": {"cluster": "c", "user": "u"}}]
    data: dict[str, Any] = {"clusters": clusters, "users": users, "contexts": contexts}
    if current:
        data["current-context"] = current
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_paths_are_read_beside_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(CA.pem)
    (tmp_path / "token").write_text("abc\n")
    cluster = {"name": "c", "cluster": {"server": "https://10.0.0.5:6443", "certificate-authority": "pki/ca.crt"}}
    path = _write(tmp_path / "config", [cluster], [{"name": "u", "user": {"tokenFile": "token"}}], "x")
    config = targets.load(str(path), None)
    assert (config.server, config.ca_pem, config.token) == ("https://10.0.0.5:6443", CA.pem, "abc")
    assert config.ca_source == f"the kubeconfig's CA ({tmp_path / 'pki' / 'ca.crt'})"
    assert not config.plugin and config.client_issuer() is None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_inline_data_and_the_users_issuer(tmp_path: Path) -> None:
    user_cert = certs.leaf(CA, cn="admin")
    cluster = {"name": "c", "cluster": {"server": "https://a:6443", "certificate-authority-data": b64(CA.pem)}}
    user = {
        "name": "u",
        "user": {"client-certificate-data": b64(user_cert.pem), "client-key-data": b64(user_cert.key_pem)},
    }
    config = targets.load(str(_write(tmp_path / "config", [cluster], [user], "x")), None)
    assert config.client_issuer() == CA.cert.subject
    assert config.ca_source == "the kubeconfig's CA (the kubeconfig's certificate-authority-data)"


def test_kubeconfig_files_merge_with_the_first_one_winning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _write(tmp_path / "a", [{"name": "c", "cluster": {"server": "https://first:6443"}}], [], None)
    second = _write(tmp_path / "b", [{"name": "c", "cluster": {"server": "https://second:6443"}}], [], "x")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    config = targets.load(None, None)
    assert config.server == "https://first:6443"  # the first file to name cluster "c"; current-context from b


def test_exec_users_are_left_to_the_kubernetes_client(tmp_path: Path) -> None:
    cluster = {"name": "c", "cluster": {"server": "https://a:6443"}}
    user = {"name": "u", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}}}
    assert targets.load(str(_write(tmp_path / "config", [cluster], [user], "x")), None).plugin


@pytest.mark.parametrize(
    ("clusters", "current", "context", "reason"),
    [
        ([{"name": "c", "cluster": {"server": "https://a"}}], None, None, "no kubeconfig context"),
        ([{"name": "c", "cluster": {"server": "https://a"}}], "x", "y", "context 'y' not found"),
        ([{"name": "other", "cluster": {"server": "https://a"}}], "x", None, "cluster 'c' (context 'x') not found"),
        ([{"name": "c", "cluster": {}}], "x", None, "cluster 'c' has no server"),
        (
            [{"name": "c", "cluster": {"server": "https://a", "certificate-authority": "nope"}}],
            "x",
            None,
            "cannot read",
        ),
    ],
)
def test_unusable_kubeconfigs_say_why(
    tmp_path: Path, clusters: list[dict[str, Any]], current: str | None, context: str | None, reason: str
) -> None:
    path = _write(tmp_path / "config", clusters, [], current)
    with pytest.raises(TargetError, match=re.escape(reason)):
        targets.load(str(path), context)


def test_a_file_that_is_not_a_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("- just\n- a list\n")
    with pytest.raises(TargetError, match="not a kubeconfig"):
        targets.load(str(path), None)
