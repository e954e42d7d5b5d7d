"""`check` on a tree of bootstrap configurations, run as a user runs it: findings at the file and line to edit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli

KUBEADM = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.5
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.37.2
apiServer:
  extraArgs:
    - name: anonymous-auth
      value: "false"
    - name: client-ca-file   # line 13: emptied, so client certificates are off
      value: ""
"""

KCP = """\
apiVersion: controlplane.cluster.x-k8s.io/v1beta1
kind: KubeadmControlPlane
metadata:
  name: prod
  namespace: clusters
spec:
  version: v1.37.2
  kubeadmConfigSpec:
    clusterConfiguration:
      apiServer:
        extraArgs:
          authorization-mode: AlwaysAllow
          anonymous-auth: "false"
          kubelet-certificate-authority: /etc/kubernetes/pki/ca.crt
          tls-cipher-suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
"""

K3S = """\
cluster-init: true
kube-apiserver-arg:
  - tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  - tls-private-key-file=
"""


def tree(tmp_path: Path) -> Path:
    (tmp_path / "kubeadm").mkdir()
    (tmp_path / "kubeadm" / "cluster.yaml").write_text(KUBEADM)
    (tmp_path / "capi").mkdir()
    (tmp_path / "capi" / "control-plane.yaml").write_text(KCP)
    (tmp_path / "k3s").mkdir()
    (tmp_path / "k3s" / "config.yaml").write_text(K3S)
    return tmp_path


def test_each_finding_at_its_file_and_line(tmp_path: Path) -> None:
    root = tree(tmp_path)
    result = cli("check", "--format", "sarif", str(root))
    assert result.returncode == 1, result.stderr
    places = {
        (
            r["ruleId"],
            Path(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]).relative_to(root).as_posix(),
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in json.loads(result.stdout)["runs"][0]["results"]
    }
    assert places == {
        # kubeadm: the emptied flag where it is written; what kubeadm leaves out at the extraArgs key
        ("client-ca-file", "kubeadm/cluster.yaml", 13),
        ("kubelet-certificate-authority", "kubeadm/cluster.yaml", 10),
        ("tls-cipher-suites-strong", "kubeadm/cluster.yaml", 10),
        # Cluster API: the one flag, three controls
        ("authz-not-always-allow", "capi/control-plane.yaml", 12),
        ("authz-includes-node", "capi/control-plane.yaml", 12),
        ("authz-includes-rbac", "capi/control-plane.yaml", 12),
        # k3s: the emptied key file
        ("tls-cert-and-key", "k3s/config.yaml", 4),
    }


def test_text_names_the_key_to_change_or_add(tmp_path: Path) -> None:
    result = cli("check", str(tree(tmp_path)))
    assert result.returncode == 1
    assert (
        "cluster.yaml at line 10: add --kubelet-certificate-authority to ClusterConfiguration.apiServer.extraArgs"
        in (result.stdout)
    )
    assert (
        "control-plane.yaml at line 12: change it in spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs"
        in result.stdout
    )
    assert "config.yaml at line 4: change it in kube-apiserver-arg" in result.stdout
    assert "kubeadm ClusterConfiguration" in result.stdout and "KubeadmControlPlane clusters/prod" in result.stdout


def test_clean_configuration_exits_0(tmp_path: Path) -> None:
    clean = tmp_path / "cluster.yaml"
    clean.write_text(
        KUBEADM.replace(
            '    - name: client-ca-file   # line 13: emptied, so client certificates are off\n      value: ""\n', ""
        )
        + "    - name: kubelet-certificate-authority\n      value: /etc/kubernetes/pki/ca.crt\n"
        + "    - name: tls-cipher-suites\n      value: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
    )
    result = cli("check", str(clean))
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("2 objects read, 1 run kube-apiserver, 0 findings")


def test_a_configuration_kubeadm_refuses_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text(KUBEADM.replace('value: "false"', "value: false"))
    result = cli("check", str(bad))
    assert result.returncode == 2
    assert "line 6: ClusterConfiguration.apiServer.extraArgs[0].value must be a string, got bool" in result.stderr


def test_k3s_config_named_with_a_flag(tmp_path: Path) -> None:
    elsewhere = tmp_path / "server-config.yaml"
    elsewhere.write_text(K3S)
    # An untyped YAML file: not an object, so nothing is judged, which `check` no longer calls a pass.
    untyped = cli("check", str(elsewhere))
    assert untyped.returncode == 2 and "nothing judged" in untyped.stderr
    result = cli("check", "--k3s-config", str(elsewhere))
    assert result.returncode == 1
    assert "k3s config.yaml" in result.stdout and "--tls-private-key-file is empty" in result.stdout
