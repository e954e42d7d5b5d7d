"""kubeadm, Cluster API and kind configurations reduced to the command line kubeadm writes.

Expected command lines are worked out by hand from kubeadm v1.37.2's ArgumentsToCommand and getAPIServerCommand
(cmd/kubeadm/app/util/arguments.go, cmd/kubeadm/app/phases/controlplane/manifests.go); the end-to-end suite checks
the same configurations against the manifests real kubeadm writes (tests/e2e/test_bootstrap_kubeadm_e2e.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from webhook.bootstrap.generated import ConfigError
from webhook.bootstrap.kubeadm import Arg, arguments_to_command, merge_patch, read_extra_args, recognise
from webhook.core.engine import evaluate
from webhook.core.policy import Policy


def failing(doc: dict[str, Any]) -> set[str]:
    generated = recognise(doc)
    assert generated is not None
    return {f.key for f in evaluate(generated.pod(), Policy()).findings}


def cluster(api_version: str = "kubeadm.k8s.io/v1beta4", **fields: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "ClusterConfiguration", "kubernetesVersion": "v1.37.2", **fields}


# kubeadm's defaults fail only what kubeadm never sets: the kubelet CA, anonymous auth off, a cipher list.
KUBEADM_DEFAULT_FAILS = {"kubelet-certificate-authority", "anonymous-auth-disabled", "tls-cipher-suites-strong"}


def test_base_sorted_overrides_replace_and_go_last() -> None:
    base = [Arg("b", "1"), Arg("a", "2"), Arg("c", "3")]
    assert arguments_to_command(base, [Arg("b", "9"), Arg("z", "0")]) == ["--a=2", "--c=3", "--b=9", "--z=0"]


def test_repeated_override_is_written_each_time() -> None:
    assert arguments_to_command([Arg("x", "base")], [Arg("x", "1"), Arg("x", "2")]) == ["--x=1", "--x=2"]


def test_merge_methods_merge_onto_the_default_in_place() -> None:
    base = [Arg("authorization-mode", "Node,RBAC"), Arg("a", "1")]
    assert arguments_to_command(base, [Arg("authorization-mode", ",Webhook", "append")]) == [
        "--a=1",
        "--authorization-mode=Node,RBAC,Webhook",
    ]
    assert arguments_to_command(base, [Arg("authorization-mode", "AlwaysAllow,", "prepend")])[1] == (
        "--authorization-mode=AlwaysAllow,Node,RBAC"
    )


def test_an_empty_override_empties_the_flag_it_does_not_remove_it() -> None:
    assert arguments_to_command([Arg("tls-cert-file", "/pki/apiserver.crt")], [Arg("tls-cert-file", "")]) == [
        "--tls-cert-file="
    ]


def test_defaults_alone() -> None:
    assert failing(cluster()) == KUBEADM_DEFAULT_FAILS
    generated = recognise(cluster(certificatesDir="/srv/pki/"))
    assert generated is not None
    assert "--tls-cert-file=/srv/pki/apiserver.crt" in generated.command
    assert "--authorization-mode=Node,RBAC" in generated.command
    assert generated.image == "registry.k8s.io/kube-apiserver:v1.37.2"


@pytest.mark.parametrize(
    ("extra", "newly_failing"),
    [
        ([{"name": "tls-cert-file", "value": ""}], {"tls-cert-and-key"}),
        ([{"name": "client-ca-file", "value": ""}], {"client-ca-file"}),
        (
            [{"name": "authorization-mode", "value": "AlwaysAllow"}],
            {"authz-not-always-allow", "authz-includes-node", "authz-includes-rbac"},
        ),
        ([{"name": "authorization-mode", "value": "RBAC"}], {"authz-includes-node"}),
        # the last of two repeats wins, as pflag reads the generated command line
        ([{"name": "anonymous-auth", "value": "false"}, {"name": "anonymous-auth", "value": "true"}], set()),
        ([{"name": "token-auth-file", "value": "/etc/tokens.csv"}], {"token-auth-file-unset"}),
    ],
)
def test_overrides(extra: list[dict[str, str]], newly_failing: set[str]) -> None:
    assert failing(cluster(apiServer={"extraArgs": extra})) == KUBEADM_DEFAULT_FAILS | newly_failing


def test_overrides_that_fix_what_kubeadm_leaves_out() -> None:
    extra = [
        {"name": "kubelet-certificate-authority", "value": "/etc/kubernetes/pki/ca.crt"},
        {"name": "anonymous-auth", "value": "false"},
        {"name": "tls-cipher-suites", "value": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
    ]
    assert failing(cluster(apiServer={"extraArgs": extra})) == set()


def test_structured_authorization_drops_the_authorization_mode_default() -> None:
    extra = [{"name": "authorization-config", "value": "/etc/kubernetes/authz.yaml"}]
    generated = recognise(cluster(apiServer={"extraArgs": extra}))
    assert generated is not None
    assert not any(item.startswith("--authorization-mode") for item in generated.command)


def test_v1beta3_map_is_the_sorted_list() -> None:
    as_map = cluster("kubeadm.k8s.io/v1beta3", apiServer={"extraArgs": {"z-flag": "1", "anonymous-auth": "false"}})
    as_list = cluster(
        apiServer={"extraArgs": [{"name": "anonymous-auth", "value": "false"}, {"name": "z-flag", "value": "1"}]}
    )
    a, b = recognise(as_map), recognise(as_list)
    assert a is not None and b is not None and a.command == b.command


def test_an_unknown_field_is_dropped_as_kubeadm_drops_it() -> None:
    # kubeadm v1.37.2 prints 'strict decoding error: unknown field "apiServer.extraArgs[0].mergeMethod"' as a
    # warning, decodes leniently and writes a plain replace (tests/e2e/test_bootstrap_kubeadm_e2e.py)
    doc = cluster(apiServer={"extraArgs": [{"name": "authorization-mode", "value": "RBAC", "mergeMethod": "append"}]})
    generated = recognise(doc)
    assert generated is not None and "--authorization-mode=RBAC" in generated.command


def test_v1_merge_method() -> None:
    doc = cluster(
        "kubeadm.k8s.io/v1",
        apiServer={"extraArgs": [{"name": "authorization-mode", "value": ",AlwaysAllow", "mergeMethod": "append"}]},
    )
    generated = recognise(doc)
    assert generated is not None
    assert "--authorization-mode=Node,RBAC,AlwaysAllow" in generated.command
    assert "authz-not-always-allow" in failing(doc)


@pytest.mark.parametrize(
    ("api_version", "extra", "message"),
    [
        ("kubeadm.k8s.io/v1beta4", [{"name": "secure-port", "value": 6443}], "value must be a string, got int"),
        ("kubeadm.k8s.io/v1", [{"name": "a", "value": "b", "mergeMethod": "replace"}], "append or prepend"),
        ("kubeadm.k8s.io/v1beta3", {"anonymous-auth": False}, "must be a string, got bool"),
        ("kubeadm.k8s.io/v1beta4", {"anonymous-auth": "false"}, "must be a list"),
        ("kubeadm.k8s.io/v1beta2", [], "not a format kubeadm reads"),
    ],
)
def test_configurations_kubeadm_refuses(api_version: str, extra: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        recognise(cluster(api_version, apiServer={"extraArgs": extra}))


def test_external_etcd_without_certificates_fails_the_etcd_controls() -> None:
    doc = cluster(etcd={"external": {"endpoints": ["https://etcd-0:2379"]}})
    assert failing(doc) == KUBEADM_DEFAULT_FAILS | {"etcd-cert-and-key", "etcd-ca-file"}
    # a certificate without its key: kubeadm refuses the configuration
    doc = cluster(etcd={"external": {"endpoints": ["https://e:2379"], "caFile": "/ca", "certFile": "/c"}})
    with pytest.raises(ConfigError, match="both or none of certFile and keyFile"):
        recognise(doc)


def test_an_unknown_version_is_judged_with_the_known_defaults_and_says_so() -> None:
    generated = recognise(cluster(kubernetesVersion="v1.30.4"))
    assert generated is not None and generated.assumption is not None
    assert "kubeadm 1.37's defaults for 1.30" in generated.assumption
    exact = recognise(cluster())
    assert exact is not None and exact.assumption is None


def kcp(api_version: str, extra: Any, template: bool = False) -> dict[str, Any]:
    spec = {"version": "v1.37.2", "kubeadmConfigSpec": {"clusterConfiguration": {"apiServer": {"extraArgs": extra}}}}
    if template:
        return {
            "apiVersion": api_version,
            "kind": "KubeadmControlPlaneTemplate",
            "metadata": {"name": "cp", "namespace": "capi"},
            "spec": {"template": {"spec": spec}},
        }
    return {
        "apiVersion": api_version,
        "kind": "KubeadmControlPlane",
        "metadata": {"name": "cp", "namespace": "capi"},
        "spec": spec,
    }


@pytest.mark.parametrize("template", [False, True])
def test_cluster_api_reduces_to_the_same_kubeadm_configuration(template: bool) -> None:
    plain = recognise(cluster(apiServer={"extraArgs": [{"name": "authorization-mode", "value": "AlwaysAllow"}]}))
    v1beta1 = recognise(kcp("controlplane.cluster.x-k8s.io/v1beta1", {"authorization-mode": "AlwaysAllow"}, template))
    v1beta2 = recognise(
        kcp("controlplane.cluster.x-k8s.io/v1beta2", [{"name": "authorization-mode", "value": "AlwaysAllow"}], template)
    )
    assert plain is not None and v1beta1 is not None and v1beta2 is not None
    assert plain.command == v1beta1.command == v1beta2.command
    assert v1beta1.image == plain.image
    assert v1beta1.section.startswith("spec.template.spec." if template else "spec.kubeadmConfigSpec")


def kind_cluster(*patches: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "kind": "Cluster",
        "nodes": [{"role": "control-plane", "image": "kindest/node:v1.37.2@sha256:abc"}, {"role": "worker"}],
        "kubeadmConfigPatches": [yaml.safe_dump(p) for p in patches],
        **fields,
    }


def test_kind_patches_reduce_to_the_same_kubeadm_configuration() -> None:
    patch = {"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {"authorization-mode": "AlwaysAllow"}}}
    generated = recognise(kind_cluster(patch, {"kind": "InitConfiguration", "nodeRegistration": {}}))
    plain = recognise(cluster("kubeadm.k8s.io/v1beta3", apiServer={"extraArgs": {"authorization-mode": "AlwaysAllow"}}))
    assert generated is not None and plain is not None
    assert generated.command == plain.command
    assert generated.image.endswith(":v1.37.2")


def test_kind_later_patches_win_and_null_removes() -> None:
    first = {"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {"client-ca-file": ""}}}
    second = {"kind": "ClusterConfiguration", "apiServer": {"extraArgs": {"client-ca-file": None}}}
    assert "client-ca-file" in failing(kind_cluster(first))
    assert "client-ca-file" not in failing(kind_cluster(first, second))
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_kind_json6902_patches_make_the_command_line_unreadable() -> None:
    doc = kind_cluster(
        kubeadmConfigPatchesJSON6902=[
            {"group": "kubeadm.k8s.io", "version": "v1beta3", "kind": "ClusterConfiguration", "patch": "[]"}
        ]
    )
    generated = recognise(doc)
    assert generated is not None
    findings = evaluate(generated.pod(), Policy()).findings
    assert {f.key for f in findings} >= {"tls-cert-and-key", "client-ca-file"}
    assert all("kubeadmConfigPatchesJSON6902" in f.detail for f in findings if f.key == "tls-cert-and-key")


def test_other_documents_are_not_bootstrap_configurations() -> None:
    assert recognise({"apiVersion": "v1", "kind": "Pod"}) is None
    assert recognise({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration"}) is None
    assert read_extra_args(None, "list", "x") == []
