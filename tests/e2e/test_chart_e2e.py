"""The Helm chart: linted and rendered by real helm (built from helm.sh/helm/v3 by `make kube`), equal to the
kustomize overlays for the same choices, and installed with `--dry-run=server` on the real apiserver.

Compared after two normalisations, each for a reason: helm's own labels (`app.kubernetes.io/managed-by`,
`helm.sh/chart`) are dropped, and the policy ConfigMap's content-hash suffix is dropped (kustomize and the chart
both name it by a hash of its content, with different hash functions); the policy files are compared as the YAML
they parse to.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.conftest import require_built
from tests.e2e.controlplane import KUBE_BIN, ControlPlane

HELM = KUBE_BIN / "helm"
CHART = ROOT / "charts" / "apiserver-tls-guard"
NAMESPACE = "apiserver-tls-guard"
HASHED = re.compile(r"-[a-z0-9]{10}$")


@pytest.fixture(scope="module", autouse=True)
def helm_built() -> None:
    require_built(HELM)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120, check=False)


def template(*values: str) -> str:
    sets = [item for value in values for item in ("--set", value)]
    result = helm("template", "apiserver-tls-guard", str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.37.2",
                  "--set", "createNamespace=true", *sets)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def kustomize(control_plane: ControlPlane, overlay: Path) -> str:
    return control_plane.kubectl("kustomize", str(overlay), check=True).stdout


def with_components(tmp_path: Path, base: str, *components: str) -> Path:
    folder = tmp_path / "overlay"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "manifests/overlays" / base, folder)],
                "components": [os.path.relpath(ROOT / "manifests/components" / c, folder) for c in components],
            }
        )
    )
    return folder


def objects(text: str) -> dict[tuple[str, str], Any]:
    out = {}
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        meta = doc["metadata"]
        for label in ("app.kubernetes.io/managed-by", "helm.sh/chart"):
            (meta.get("labels") or {}).pop(label, None)
        if doc["kind"] == "ConfigMap":
            meta["name"] = HASHED.sub("", meta["name"])
            doc["data"] = {key: yaml.safe_load(value) for key, value in doc["data"].items()}
        if doc["kind"] == "Deployment":
            for volume in doc["spec"]["template"]["spec"]["volumes"]:
                if "configMap" in volume:
                    volume["configMap"]["name"] = HASHED.sub("", volume["configMap"]["name"])
        out[(doc["kind"], meta["name"])] = doc
    return out


def assert_same(kustomized: str, rendered: str) -> None:
    ours, theirs = objects(kustomized), objects(rendered)
    assert sorted(ours) == sorted(theirs)
    for key, obj in ours.items():
        if obj != theirs[key]:
            diff = difflib.unified_diff(
                yaml.safe_dump(obj).splitlines(), yaml.safe_dump(theirs[key]).splitlines(), "kustomize", "helm", n=2
            )
            pytest.fail(f"{key} differs:\n" + "\n".join(diff))


def test_chart_lints_clean() -> None:
    result = helm("lint", "--strict", str(CHART), "--kube-version", "1.37.2")
    assert result.returncode == 0, result.stdout + result.stderr
    for values in (["mode=enforce", "audit.enabled=true"], ["certificates.source=cert-manager"],
                   ["certificates.source=external", "certificates.external.caBundle=Zm9v"]):  # fmt: skip
        sets = [item for value in values for item in ("--set", value)]
        result = helm("lint", "--strict", str(CHART), "--kube-version", "1.37.2", *sets)
        assert result.returncode == 0, (values, result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("overlay", "components", "values"),
    [
        ("warn", (), ()),
        ("enforce", (), ("mode=enforce",)),
        ("warn", ("audit",), ("audit.enabled=true",)),
        ("warn", ("cert-manager",), ("certificates.source=cert-manager",)),
    ],
    ids=["warn", "enforce", "warn+audit", "warn+cert-manager"],
)
def test_chart_renders_what_kustomize_renders(
    control_plane: ControlPlane, tmp_path: Path, overlay: str, components: tuple[str, ...], values: tuple[str, ...]
) -> None:
    folder = with_components(tmp_path, overlay, *components) if components else ROOT / "manifests/overlays" / overlay
    assert_same(kustomize(control_plane, folder), template(*values))


def test_chart_values_reach_the_policy_and_the_deployment() -> None:
    rendered = objects(
        template(
            "mode=audit",
            "controls.client-ca-file.mode=off",
            "exemptions.namespaces[0]=lab",
            "replicas=3",
            "failurePolicy=Fail",
            "image.tag=9.9.9",
            "resources.limits.memory=512Mi",
        )
    )
    policy = rendered[("ConfigMap", "apiserver-tls-guard-policy")]["data"]["policy.yaml"]
    assert policy == {"mode": "audit", "cisVersion": "1.5.1", "controls": {"client-ca-file": {"mode": "off"}},
                      "exemptions": {"namespaces": ["lab"]}}  # fmt: skip
    deployment = rendered[("Deployment", "apiserver-tls-guard")]["spec"]
    assert deployment["replicas"] == 3
    [container] = deployment["template"]["spec"]["containers"]
    assert container["image"] == "apiserver-tls-guard:9.9.9"
    assert container["resources"]["limits"]["memory"] == "512Mi"
    webhooks = rendered[("ValidatingWebhookConfiguration", "apiserver-tls-guard")]["webhooks"]
    assert {w["failurePolicy"] for w in webhooks} == {"Fail"}


def test_the_policy_the_chart_renders_is_one_the_webhook_accepts(tmp_path: Path) -> None:
    from tests.conftest import cli

    rendered = objects(template("mode=enforce", "controls.anonymous-auth-disabled.mode=enforce",
                                "exemptions.names[0].pattern=kube-apiserver-lab-*",
                                "exemptions.names[0].namespaces[0]=lab"))  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(rendered[("ConfigMap", "apiserver-tls-guard-policy")]["data"]["policy.yaml"]))
    result = cli("controls", "--config", str(policy), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert {r["key"]: r["mode"] for r in yaml.safe_load(result.stdout)}["anonymous-auth-disabled"] == "enforce"


def test_external_certificates() -> None:
    rendered = objects(template("certificates.source=external", "certificates.external.caBundle=Zm9v"))
    webhooks = rendered[("ValidatingWebhookConfiguration", "apiserver-tls-guard")]["webhooks"]
    assert {w["clientConfig"]["caBundle"] for w in webhooks} == {"Zm9v"}
    assert ("Role", "apiserver-tls-guard-certs") not in rendered
    [container] = rendered[("Deployment", "apiserver-tls-guard")]["spec"]["template"]["spec"]["containers"]
    assert "--external-certs" in container["args"] and "--cluster-certs" not in container["args"]


@pytest.mark.parametrize(
    "values", [(), ("certificates.source=cert-manager", "audit.enabled=true")], ids=["default", "cert-manager+audit"]
)
def test_install_dry_run_on_the_real_apiserver(control_plane: ControlPlane, values: tuple[str, ...]) -> None:
    crds = KUBE_BIN / "crds"
    control_plane.kubectl("apply", "--server-side", "-f", str(crds), check=True)
    control_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True)
    sets = [item for value in values for item in ("--set", value)]

    def install() -> subprocess.CompletedProcess[str]:
        return helm("install", "guard", str(CHART), "--namespace", "helm-dry-run", "--create-namespace",
                    "--dry-run=server", "--kubeconfig", str(control_plane.kubeconfig), *sets)  # fmt: skip

    # Installed with kustomize first (as other tests here do): helm will not take over its cluster-wide objects.
    control_plane.kubectl("apply", "-k", str(ROOT / "manifests/overlays/warn"), check=True)
    refused = install()
    assert refused.returncode == 1 and "exists and cannot be imported into the current release" in refused.stderr
    control_plane.kubectl(
        "delete", "clusterrole,clusterrolebinding,validatingwebhookconfiguration",
        "-l", "app.kubernetes.io/part-of=apiserver-tls-guard", check=True,
    )  # fmt: skip
    result = install()
    assert result.returncode == 0, result.stderr
    assert "STATUS: pending-install" in result.stdout


def test_cert_manager_overlay_on_the_real_apiserver(control_plane: ControlPlane) -> None:
    """cert-manager's own CRDs (from its Go module) installed, the overlay applied with strict validation: the
    Issuers and Certificates are accepted as cert-manager defines them and the injector's annotation is set. No
    cert-manager controller runs here, so nothing issues the certificate; tests/runtime/test_rotation.py shows the
    server following a Secret volume that a renewal swaps."""
    control_plane.kubectl("apply", "--server-side", "-f", str(KUBE_BIN / "crds"), check=True)
    control_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True)
    overlay = ROOT / "manifests/overlays/cert-manager"
    try:
        applied = control_plane.kubectl("apply", "--validate=strict", "-k", str(overlay))
        assert applied.returncode == 0, applied.stderr
        certificate = yaml.safe_load(
            control_plane.kubectl(
                "get", "certificate", "apiserver-tls-guard", "-n", NAMESPACE, "-o", "yaml", check=True
            ).stdout
        )
        assert certificate["spec"]["dnsNames"][0] == "apiserver-tls-guard.apiserver-tls-guard.svc"
        config = yaml.safe_load(
            control_plane.kubectl(
                "get", "validatingwebhookconfiguration", "apiserver-tls-guard", "-o", "yaml", check=True
            ).stdout
        )
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/apiserver-tls-guard"
    finally:
        control_plane.kubectl("delete", "validatingwebhookconfiguration", "apiserver-tls-guard", "--ignore-not-found")
        control_plane.kubectl("delete", "certificates,issuers", "--all", "-n", NAMESPACE)
