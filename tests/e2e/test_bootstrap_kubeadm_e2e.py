"""Real kubeadm as the oracle of the bootstrap guardrail.

For each configuration of the set below, the kubeadm built by `make kube` (v1.37.2) writes the kube-apiserver
static pod (`kubeadm init phase control-plane apiserver --config ... --rootfs DIR`: kubeadm chroots into DIR first,
so the manifest lands in DIR/etc/kubernetes/manifests and nothing of this machine is touched; it runs as root, as
CI does). Then:

- the command line we compute from the configuration equals the one kubeadm wrote, item for item, and so does the
  image;
- our verdict on the configuration equals our verdict on kubeadm's manifest, control by control;
- where kubeadm refuses a configuration, we refuse it too (exit 2 from `check`).

kubeadm 1.37 no longer reads v1beta3 (it says so, and the test proves it) and reads v1 only behind an experimental
switch that `init phase` does not have; a v1beta3 configuration is checked through its v1beta4 form (kubeadm's own
conversion: the map becomes a list sorted by name), and Cluster API and kind configurations through the kubeadm
ClusterConfiguration they reduce to.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import cli
from tests.e2e.conftest import require_built
from tests.e2e.controlplane import KUBE_BIN
from webhook.bootstrap.generated import ConfigError, Generated
from webhook.bootstrap.kubeadm import recognise
from webhook.core.engine import evaluate
from webhook.core.policy import Policy

KUBEADM = KUBE_BIN / "kubeadm"
V1BETA4 = "kubeadm.k8s.io/v1beta4"
INIT = {"apiVersion": V1BETA4, "kind": "InitConfiguration", "localAPIEndpoint": {"advertiseAddress": "10.0.0.5"}}


@pytest.fixture(scope="module", autouse=True)
def kubeadm_built() -> None:
    require_built(KUBEADM)


def cluster(version: str = "v1.37.2", **fields: Any) -> dict[str, Any]:
    return {"apiVersion": V1BETA4, "kind": "ClusterConfiguration", "kubernetesVersion": version, **fields}


def args(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"extraArgs": [{"name": n, "value": v} for n, v in pairs]}


# name -> (what it exercises, the ClusterConfiguration)
CONFIGURATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "defaults-1.37": ("kubeadm's defaults alone", cluster()),
    "defaults-1.36": ("another control-plane version kubeadm 1.37 deploys", cluster("v1.36.3")),
    "overrides": (
        "replacing defaults, adding flags kubeadm never sets, a weak cipher",
        cluster(
            apiServer=args(
                ("authorization-mode", "AlwaysAllow"),
                ("kubelet-certificate-authority", "/etc/kubernetes/pki/ca.crt"),
                ("tls-cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"),
                ("token-auth-file", "/etc/kubernetes/tokens.csv"),
            )
        ),
    ),
    "repeats": (
        "the same flag twice: both written, the last wins",
        cluster(apiServer=args(("anonymous-auth", "false"), ("anonymous-auth", "true"))),
    ),
    "removals": (
        "an empty value empties the flag (it is still written)",
        cluster(apiServer=args(("tls-cert-file", ""), ("client-ca-file", ""), ("kubelet-client-key", ""))),
    ),
    "fixed": (
        "everything kubeadm leaves out, added: no finding",
        cluster(
            apiServer=args(
                ("kubelet-certificate-authority", "/etc/kubernetes/pki/ca.crt"),
                ("anonymous-auth", "false"),
                ("tls-cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            )
        ),
    ),
    "v1-field-in-v1beta4": (
        "an unknown field: kubeadm only warns (strict decoding error) and drops it, so this is a plain replace",
        cluster(apiServer={"extraArgs": [{"name": "anonymous-auth", "value": ",x", "mergeMethod": "append"}]}),
    ),
    "structured-authz": (
        "authorization-config replaces the authorization-mode default",
        cluster(apiServer=args(("authorization-config", "/etc/kubernetes/authz.yaml"))),
    ),
    "authz-unknown-mode": (
        "a mode kube-apiserver refuses: kubeadm warns and writes it anyway",
        cluster(apiServer=args(("authorization-mode", "Node,Foo,RBAC"))),
    ),
    "external-etcd-plain": (
        "external etcd without certificates",
        cluster(etcd={"external": {"endpoints": ["https://etcd-0:2379", "https://etcd-1:2379"]}}),
    ),
    "external-etcd-tls": (
        "external etcd with its CA and client pair",
        cluster(
            etcd={
                "external": {
                    "endpoints": ["https://etcd-0:2379"],
                    "caFile": "/etc/etcd/ca.crt",
                    "certFile": "/etc/etcd/client.crt",
                    "keyFile": "/etc/etcd/client.key",
                }
            }
        ),
    ),
    "paths": (
        "certificatesDir, serviceSubnet, dnsDomain, imageRepository",
        cluster(
            certificatesDir="/srv/pki",
            imageRepository="mirror.example/k8s",
            networking={"serviceSubnet": "10.200.0.0/16", "dnsDomain": "corp.local"},
        ),
    ),
}


def run_kubeadm(work: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    root = work / "root"
    root.mkdir(parents=True)
    (root / "kubeadm.yaml").write_text(yaml.safe_dump_all(docs))
    return subprocess.run(
        [
            str(KUBEADM),
            "init",
            "phase",
            "control-plane",
            "apiserver",
            "--config",
            "/kubeadm.yaml",
            "--rootfs",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubeadm_manifest(work: Path, docs: list[dict[str, Any]]) -> dict[str, Any]:
    result = run_kubeadm(work, docs)
    assert result.returncode == 0, result.stderr
    manifest: dict[str, Any] = yaml.safe_load((work / "root/etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    return manifest


def verdicts(obj: dict[str, Any]) -> dict[str, str]:
    return {f.key: f.detail for f in evaluate(obj, Policy()).findings}


def assert_same(ours: Generated, manifest: dict[str, Any]) -> None:
    [container] = manifest["spec"]["containers"]
    assert list(ours.command) == container["command"]
    assert ours.image == container["image"]
    theirs = verdicts(manifest)
    mine = verdicts(ours.pod())
    assert sorted(mine) == sorted(theirs)
    assert mine == theirs  # the same detail too: the same command line read the same way


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_our_command_line_is_kubeadms(name: str, tmp_path: Path) -> None:
    _, config = CONFIGURATIONS[name]
    ours = recognise(config, INIT)
    assert ours is not None
    assert_same(ours, kubeadm_manifest(tmp_path, [INIT, config]))


def test_the_set_finds_what_it_should() -> None:
    """The set is worth running: its configurations do not all pass, nor all fail the same controls."""
    failing = {}
    for name, (_, config) in CONFIGURATIONS.items():
        generated = recognise(config, INIT)
        assert generated is not None
        failing[name] = set(verdicts(generated.pod()))
    assert failing["fixed"] == set()
    assert failing["defaults-1.37"] == {
        "kubelet-certificate-authority",
        "anonymous-auth-disabled",
        "tls-cipher-suites-strong",
    }
    assert {"tls-cert-and-key", "client-ca-file", "kubelet-client-cert-and-key"} <= failing["removals"]
    assert {"etcd-cert-and-key", "etcd-ca-file"} <= failing["external-etcd-plain"]
    assert "authz-not-always-allow" in failing["overrides"]


def test_v1beta3_is_read_as_its_v1beta4_conversion(tmp_path: Path) -> None:
    extra = {"tls-cert-file": "", "authorization-mode": "RBAC", "anonymous-auth": "false"}
    v1beta3 = {**cluster(), "apiVersion": "kubeadm.k8s.io/v1beta3", "apiServer": {"extraArgs": extra}}
    refused = run_kubeadm(tmp_path / "v1beta3", [{**INIT, "apiVersion": "kubeadm.k8s.io/v1beta3"}, v1beta3])
    assert refused.returncode != 0 and "old API spec" in refused.stderr
    converted = cluster(apiServer=args(*sorted(extra.items())))
    ours = recognise(v1beta3, INIT)
    assert ours is not None and ours.assumption is None
    assert_same(ours, kubeadm_manifest(tmp_path / "v1beta4", [INIT, converted]))


def kcp(api_version: str, extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "KubeadmControlPlane",
        "metadata": {"name": "cp", "namespace": "capi"},
        "spec": {
            "version": "v1.37.2",
            "kubeadmConfigSpec": {
                "clusterConfiguration": {"apiServer": {"extraArgs": extra}},
                "initConfiguration": {"localAPIEndpoint": {"advertiseAddress": "10.0.0.5"}},
            },
        },
    }


@pytest.mark.parametrize(
    "doc",
    [
        kcp("controlplane.cluster.x-k8s.io/v1beta1", {"client-ca-file": "", "anonymous-auth": "false"}),
        kcp(
            "controlplane.cluster.x-k8s.io/v1beta2",
            [{"name": "anonymous-auth", "value": "false"}, {"name": "client-ca-file", "value": ""}],
        ),
        {
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "kind": "Cluster",
            "nodes": [{"role": "control-plane", "image": "kindest/node:v1.37.2"}],
            "kubeadmConfigPatches": [
                "kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    client-ca-file: ''\n",
                "kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    anonymous-auth: 'false'\n",
            ],
        },
    ],
    ids=["capi-v1beta1", "capi-v1beta2", "kind"],
)
def test_cluster_api_and_kind_reduce_to_what_kubeadm_writes(doc: dict[str, Any], tmp_path: Path) -> None:
    ours = recognise(doc, INIT)
    assert ours is not None
    reduced = cluster(apiServer=args(("anonymous-auth", "false"), ("client-ca-file", "")))
    theirs = kubeadm_manifest(tmp_path, [INIT, reduced])
    if doc["kind"] == "KubeadmControlPlane":
        assert_same(ours, theirs)
    else:
        # kind writes no InitConfiguration of ours: the advertise address is kubeadm's own pick; nothing judges it
        mine = [i for i in ours.command if not i.startswith("--advertise-address=")]
        assert mine == [i for i in theirs["spec"]["containers"][0]["command"] if not i.startswith("--advertise-")]
        assert verdicts(ours.pod()) == verdicts(theirs)


@pytest.mark.parametrize(
    ("change", "ours_says"),
    [
        (lambda c: c["apiServer"]["extraArgs"][0].update(value=False), "must be a string, got bool"),
        (
            lambda c: c.update(etcd={"external": {"endpoints": ["https://e:2379"], "certFile": "/c"}}),
            "both or none of certFile and keyFile",
        ),
    ],
    ids=["bool-value", "etcd-cert-without-key"],
)
def test_what_kubeadm_refuses_we_refuse(change: Any, ours_says: str, tmp_path: Path) -> None:
    config = copy.deepcopy(cluster(apiServer=args(("anonymous-auth", "false"))))
    change(config)
    assert run_kubeadm(tmp_path, [INIT, config]).returncode != 0
    with pytest.raises(ConfigError, match=ours_says):
        recognise(config, INIT)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all([INIT, config]))
    result = cli("check", str(path))
    assert result.returncode == 2 and ours_says.split(" (")[0] in result.stderr
