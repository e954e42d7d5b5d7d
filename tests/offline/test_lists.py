"""Lists read as kubectl and the kubelet read them (issue 19, point 4).

The rules, from upstream source:
- apimachinery `unstructured/helpers.go` (`decode`, `decodeToList`): a document with an `items` field is a list;
  an item with neither `kind` nor `apiVersion` gets the list's kind minus `List` and the list's apiVersion. The
  apiserver's own list answers (`kubectl get --raw /api/v1/pods`, client libraries, backups) carry bare items.
- cli-runtime `FlattenListVisitor`: lists inside lists are expanded too.
- kubelet `pkg/kubelet/config/common.go` `tryDecodePodList`: a static pod file holding a `PodList` is decoded into
  typed Pods, so every item runs as a pod whatever `kind` it names.

Expected findings are worked out by hand from the flags written here (SEEDS_MISSING lacks the serving certificate,
its key and the client CA: controls tls-cert-and-key and client-ca-file), never from the product's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.admission.test_http import COMPLIANT, SEEDS_MISSING
from tests.conftest import cli

SEED_FAILS = {"tls-cert-and-key", "client-ca-file"}
IMAGE = "registry.k8s.io/kube-apiserver:v1.30.2"


def bare_pod(name: str, flags: tuple[str, ...]) -> dict[str, Any]:
    """A pod as an item of the apiserver's PodList: no kind, no apiVersion."""
    return {
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"containers": [{"name": "kube-apiserver", "image": IMAGE, "command": ["kube-apiserver", *flags]}]},
    }


def bare_deployment(name: str, flags: tuple[str, ...]) -> dict[str, Any]:
    template = bare_pod(name, flags)
    return {
        "metadata": {"name": name, "namespace": "hosted"},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template},
    }


def findings(path: Path) -> tuple[int, dict[str, Any], set[tuple[str, str, str]]]:
    result = cli("check", "--format", "json", str(path))
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    return result.returncode, report, {(f["kind"], f["name"], f["control"]) for f in report["findings"]}


def test_podlist_with_bare_items_is_judged_item_by_item(tmp_path: Path) -> None:
    manifest = tmp_path / "pods.yaml"
    podlist = {
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": "4711"},
        "items": [bare_pod("kube-apiserver-cp-1", SEEDS_MISSING), bare_pod("kube-apiserver-cp-2", COMPLIANT)],
    }
    manifest.write_text(yaml.safe_dump(podlist, sort_keys=False))
    code, report, found = findings(manifest)
    assert report["objects"] == 2 and report["apiservers"] == 2
    assert found == {("Pod", "kube-apiserver-cp-1", key) for key in SEED_FAILS}
    assert code == 1


def test_podlist_as_json(tmp_path: Path) -> None:
    manifest = tmp_path / "pods.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": [bare_pod("a", SEEDS_MISSING)]}))
    code, _, found = findings(manifest)
    assert found == {("Pod", "a", key) for key in SEED_FAILS} and code == 1


def test_deploymentlist_items_are_deployments(tmp_path: Path) -> None:
    manifest = tmp_path / "deployments.yaml"
    listed = {
        "apiVersion": "apps/v1",
        "kind": "DeploymentList",
        "items": [bare_deployment("hosted-api", SEEDS_MISSING)],
    }
    manifest.write_text(yaml.safe_dump(listed))
    code, _, found = findings(manifest)
    assert found == {("Deployment", "hosted-api", key) for key in SEED_FAILS} and code == 1


def test_kind_list_with_typed_items(tmp_path: Path) -> None:
    manifest = tmp_path / "list.yaml"
    pod = {"apiVersion": "v1", "kind": "Pod", **bare_pod("p", SEEDS_MISSING)}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", **bare_deployment("d", SEEDS_MISSING)}
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [pod, deployment]}))
    code, report, found = findings(manifest)
    assert report["objects"] == 2
    assert found == {(kind, name, key) for kind, name in (("Pod", "p"), ("Deployment", "d")) for key in SEED_FAILS}
    assert code == 1


def test_an_item_that_names_its_kind_keeps_it(tmp_path: Path) -> None:
    # Only an item with neither kind nor apiVersion is given the list's (decodeToList).
    manifest = tmp_path / "mixed.yaml"
    deployment = {"kind": "Deployment", **bare_deployment("d", SEEDS_MISSING)}
    manifest.write_text(yaml.safe_dump({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "items": [deployment]}))
    _, _, found = findings(manifest)
    assert found == {("Deployment", "d", key) for key in SEED_FAILS}


def test_lists_inside_lists_are_expanded(tmp_path: Path) -> None:
    manifest = tmp_path / "nested.yaml"
    inner = {"apiVersion": "v1", "kind": "PodList", "items": [bare_pod("inner", SEEDS_MISSING)]}
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [inner]}))
    _, _, found = findings(manifest)
    assert found == {("Pod", "inner", key) for key in SEED_FAILS}


def test_a_podlist_item_runs_as_a_pod_whatever_kind_it_names(tmp_path: Path) -> None:
    # In a static pod directory the kubelet decodes the items into typed Pods (tryDecodePodList).
    manifest = tmp_path / "kube-apiserver.yaml"
    item = {"apiVersion": "v1", "kind": "Secret", **bare_pod("kube-apiserver-cp-1", SEEDS_MISSING)}
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "PodList", "items": [item]}))
    code, _, found = findings(manifest)
    assert found == {("Pod", "kube-apiserver-cp-1", key) for key in SEED_FAILS} and code == 1


def test_items_of_an_object_whose_kind_is_not_a_list(tmp_path: Path) -> None:
    # kubectl decodes anything with `items` as a list; the item takes the kind itself (TrimSuffix changes nothing).
    manifest = tmp_path / "odd.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "items": [bare_pod("x", SEEDS_MISSING)]}))
    _, _, found = findings(manifest)
    assert found == {("Pod", "x", key) for key in SEED_FAILS}


def test_items_kubectl_would_refuse_are_not_objects(tmp_path: Path) -> None:
    # `kind: List` minus `List` is no kind: kubectl refuses such items ("Object 'Kind' is missing").
    manifest = tmp_path / "untyped.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [bare_pod("x", SEEDS_MISSING)]}))
    result = cli("check", str(manifest))
    assert result.returncode == 2 and "no Kubernetes object" in result.stderr


def test_each_item_is_pointed_at_in_its_own_lines(tmp_path: Path) -> None:
    # Two pods in one PodList, both with an empty --client-ca-file: each finding points into its own pod.
    flags = (*(f for f in COMPLIANT if not f.startswith("--client-ca-file")), "--client-ca-file=")
    manifest = tmp_path / "pods.yaml"
    podlist = {"apiVersion": "v1", "kind": "PodList", "items": [bare_pod("first", flags), bare_pod("second", flags)]}
    manifest.write_text(yaml.safe_dump(podlist, sort_keys=False))
    lines = manifest.read_text().splitlines()
    written = [number for number, text in enumerate(lines, 1) if text.strip() == "- --client-ca-file="]
    assert len(written) == 2
    result = cli("check", "--format", "sarif", str(manifest))
    assert result.returncode == 1
    located = [
        r["locations"][0]["physicalLocation"]["region"]["startLine"]
        for r in json.loads(result.stdout)["runs"][0]["results"]
        if r["ruleId"] == "client-ca-file"
    ]
    assert located == written
