"""The Helm chart: linted and rendered by real helm (built from helm.sh/helm/v3 by `make kube`), equal to the
kustomize overlays for the same choices, refusing bad values with a message that says what to change, and
installed, upgraded and uninstalled on the real apiserver.

Compared after normalisations, each for a reason: the labels helm and the release add (`managed-by`,
`helm.sh/chart`, `instance`, `version`) are dropped; the policy ConfigMap's content-hash suffix is dropped
(kustomize and the chart both name it by a hash of its content, with different hash functions) and the policy
files are compared as the YAML they parse to; the chart's hooks (uninstall, `helm test`) have no kustomize
counterpart, and the chart never makes the namespace it is installed into.
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
RELEASE_LABELS = (
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
)


@pytest.fixture(scope="module", autouse=True)
def helm_built() -> None:
    require_built(HELM)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120, check=False)


def template(*values: str) -> str:
    sets = [item for value in values for item in ("--set", value)]
    result = helm("template", "apiserver-tls-guard", str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.37.2",
                  *sets)  # fmt: skip
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
        if not doc or "helm.sh/hook" in (doc["metadata"].get("annotations") or {}) or doc["kind"] == "Namespace":
            continue
        meta = doc["metadata"]
        template = (doc.get("spec") or {}).get("template") or {}
        for labels in (meta.get("labels") or {}, (template.get("metadata") or {}).get("labels") or {}):
            for label in RELEASE_LABELS:
                labels.pop(label, None)
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
        # issue 24 point 11: the cert-manager component used to replace every argument, the audit's among them
        ("warn", ("audit", "cert-manager"), ("audit.enabled=true", "certificates.source=cert-manager")),
        ("warn", ("cert-manager", "audit"), ("audit.enabled=true", "certificates.source=cert-manager")),
    ],
    ids=["warn", "enforce", "warn+audit", "warn+cert-manager", "warn+audit+cert-manager", "warn+cert-manager+audit"],
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
            "expansionFailurePolicy=Fail",
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
    assert container["image"] == "ghcr.io/apiserver-tls-guard/apiserver-tls-guard:9.9.9"
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


# --- issue 24: values are checked, each defect has its test ---------------------------------------------------


def render(tmp_path: Path, *values: str, file: str = "") -> subprocess.CompletedProcess[str]:
    """helm template with --set values and, given, a values file written as a user writes one (YAML types)."""
    sets = [item for value in values for item in ("--set", value)]
    if file:
        (tmp_path / "values.yaml").write_text(file)
        sets += ["-f", str(tmp_path / "values.yaml")]
    return helm("template", "g", str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.37.2", *sets)


@pytest.mark.parametrize(
    ("values", "file", "says"),
    [
        ((), "mode: enforec\n", "/mode"),
        ((), "cisVersion: 1.20\n", "/cisVersion"),  # YAML reads 1.2, a number: the server would refuse it
        ((), "cisVersion: '1.99'\n", "/cisVersion"),
        (("certificates.source=certmanager",), "", "/certificates/source"),
        (("certificates.source=external",), "", "certificates.external.caBundle is required"),
        (("createNamespace=true",), "", "createNamespace was removed"),
        (("replica=3",), "", "'replica' not allowed"),
        (("timeoutSeconds=60",), "", "/timeoutSeconds"),
        (("image.digest=latest",), "", "/image/digest"),
        (("failurePolicy=fail",), "", "/failurePolicy"),
        (("controls.no-such-control.mode=warn",), "", "no-such-control"),
        (("controls.client-ca-file.mode=block",), "", "/controls/client-ca-file"),
        (("audit.policyReports=wgpolicyk8s.io/v1",), "", "/audit/policyReports"),
        (("podDisruptionBudget.maxUnavailable=1",), "", "not both"),
        (("podDisruptionBudget.minAvailable=2",), "", "no node could ever be drained"),
        (("podDisruptionBudget.minAvailable=100%",), "", "no node could ever be drained"),
        (("networkPolicy.apiServerPorts={}",), "", "/networkPolicy/apiServerPorts"),
        (("serviceMonitor.interval=often",), "", "/serviceMonitor/interval"),
        # No self-exemption (issue 20 point 4): a name or label exemption names its namespaces.
        ((), "exemptions: {names: [kube-apiserver-lab-*]}\n", "/exemptions/names/0"),
        ((), "exemptions: {names: [{pattern: kube-apiserver-lab-*}]}\n", "/exemptions/names/0"),
        ((), "exemptions: {labelSelectors: [{matchLabels: {env: lab}}]}\n", "/exemptions/labelSelectors/0"),
    ],
)
def test_bad_values_are_refused_with_what_to_change(
    tmp_path: Path, values: tuple[str, ...], file: str, says: str
) -> None:
    result = render(tmp_path, *values, file=file)
    assert result.returncode == 1, result.stdout[:500]
    assert says in result.stderr, result.stderr


def docs(result: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], Any]:
    assert result.returncode == 0, result.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stdout) if d}


def _container(rendered: dict[tuple[str, str], Any]) -> dict[str, Any]:
    [container] = rendered[("Deployment", "apiserver-tls-guard")]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _policy(rendered: dict[tuple[str, str], Any]) -> Any:
    [config] = [d for (kind, _), d in rendered.items() if kind == "ConfigMap"]
    return yaml.safe_load(config["data"]["policy.yaml"])


def test_mode_in_any_case_enforces_and_fails_closed(tmp_path: Path) -> None:
    """The server reads `Enforce` as enforce; the failurePolicy used to compare case-sensitively (Ignore)."""
    rendered = docs(render(tmp_path, "mode=Enforce"))
    hooks = rendered[("ValidatingWebhookConfiguration", "apiserver-tls-guard")]["webhooks"]
    assert {h["name"]: h["failurePolicy"] for h in hooks} == {
        "pods.apiserver-tls-guard.io": "Fail", "workloads.apiserver-tls-guard.io": "Fail",
        "expansions.apiserver-tls-guard.io": "Ignore"}  # fmt: skip
    assert _policy(rendered)["mode"] == "enforce"


def test_unquoted_off_for_policy_reports_is_off(tmp_path: Path) -> None:
    rendered = docs(render(tmp_path, file="audit:\n  enabled: true\n  policyReports: off\n"))
    assert "--policy-reports=off" in _container(rendered)["args"]


def test_the_default_image_is_the_published_one_fully_qualified(tmp_path: Path) -> None:
    """A bare `apiserver-tls-guard` is Docker Hub's library namespace: nothing is published there."""
    from release.pin import chart_image
    from webhook.commands.static import DEFAULT_IMAGE

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    published = f"{chart_image()}:{chart['appVersion']}"
    assert _container(docs(render(tmp_path)))["image"] == published == DEFAULT_IMAGE
    assert published.startswith("ghcr.io/")
    digest = "sha256:" + "a" * 64
    assert _container(docs(render(tmp_path, f"image.digest={digest}")))["image"] == f"{published}@{digest}"
    mirror = _container(docs(render(tmp_path, "image.registry=registry.example:5000", "image.tag=1.2.3")))
    assert mirror["image"] == "registry.example:5000/apiserver-tls-guard/apiserver-tls-guard:1.2.3"
    assert _container(docs(render(tmp_path, "image.registry=")))["image"].startswith("apiserver-tls-guard/")


def test_the_kustomize_base_uses_the_same_image(control_plane: ControlPlane, tmp_path: Path) -> None:
    rendered = objects(kustomize(control_plane, ROOT / "manifests/overlays/warn"))
    [container] = rendered[("Deployment", "apiserver-tls-guard")]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == _container(docs(render(tmp_path)))["image"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), {"minAvailable": 1}),
        (("replicas=1",), None),  # one replica: any budget would block every drain
        (("replicas=3", "podDisruptionBudget.minAvailable=null", "podDisruptionBudget.maxUnavailable=1"),
         {"maxUnavailable": 1}),
        (("replicas=3", "podDisruptionBudget.minAvailable=50%"), {"minAvailable": "50%"}),
        (("podDisruptionBudget.enabled=false",), None),
    ],
)  # fmt: skip
def test_the_disruption_budget_is_rendered_only_when_it_can_be_met(
    tmp_path: Path, values: tuple[str, ...], expected: dict[str, Any] | None
) -> None:
    budget = docs(render(tmp_path, *values)).get(("PodDisruptionBudget", "apiserver-tls-guard"))
    spec = budget["spec"] if budget is not None else None
    assert (spec and {k: v for k, v in spec.items() if k != "selector"}) == expected


def test_network_policy_can_be_off_and_its_api_ports_set(tmp_path: Path) -> None:
    assert ("NetworkPolicy", "apiserver-tls-guard") not in docs(render(tmp_path, "networkPolicy.enabled=false"))
    rendered = docs(render(tmp_path, "networkPolicy.apiServerPorts={443,16443,8443}"))
    egress = rendered[("NetworkPolicy", "apiserver-tls-guard")]["spec"]["egress"]
    assert egress[1]["ports"] == [{"port": p, "protocol": "TCP"} for p in (443, 16443, 8443)]


def test_monitoring_values(tmp_path: Path) -> None:
    rendered = docs(render(tmp_path, "prometheusRule.enabled=true", "prometheusRule.labels.release=kps",
                           "monitoring.job=guard", "monitoring.runbookBaseURL=https://docs.example/rb",
                           "serviceMonitor.enabled=true", "serviceMonitor.labels.release=kps"))  # fmt: skip
    rule = rendered[("PrometheusRule", "apiserver-tls-guard")]
    assert rule["metadata"]["labels"]["release"] == "kps"
    rules = rule["spec"]["groups"][0]["rules"]
    assert all(r["annotations"]["runbook_url"].startswith("https://docs.example/rb#") for r in rules)
    down = next(r for r in rules if r["alert"] == "ApiserverTLSGuardDown")
    assert 'job="guard"' in down["expr"] and "apiserver-tls-guard" not in down["expr"]
    monitor = rendered[("ServiceMonitor", "apiserver-tls-guard")]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["path"] == "/metrics"
    ca = {"secret": {"name": "apiserver-tls-guard-certs", "key": "ca.crt"}}
    assert endpoint["tlsConfig"] == {"serverName": f"apiserver-tls-guard.{NAMESPACE}.svc", "ca": ca}
    service = rendered[("Service", "apiserver-tls-guard")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_labels_and_pod_settings(tmp_path: Path) -> None:
    rendered = docs(render(tmp_path, "imagePullSecrets[0].name=regcred", "priorityClassName=system-cluster-critical",
                           "tolerations[0].operator=Exists", "extraArgs[0]=--log-level=debug", "env[0].name=X",
                           "env[0].value=y", "podLabels.team=platform", "podAnnotations.a=b"))  # fmt: skip
    for (_, name), doc in rendered.items():
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "g" and labels["app.kubernetes.io/version"] == "0.1.0", name
    deployment = rendered[("Deployment", "apiserver-tls-guard")]["spec"]
    pod = deployment["template"]
    assert deployment["selector"]["matchLabels"] == {"app.kubernetes.io/component": "webhook",
                                                     "app.kubernetes.io/name": "apiserver-tls-guard"}  # fmt: skip
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "g"
    assert pod["metadata"]["labels"]["team"] == "platform" and pod["metadata"]["annotations"] == {"a": "b"}
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}] and spec["priorityClassName"] == "system-cluster-critical"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    container = spec["containers"][0]
    assert container["args"][-1] == "--log-level=debug" and container["args"][1] == "--host="
    assert {"name": "X", "value": "y"} in container["env"]


def test_hooks_remove_the_webhook_configuration_first_and_test_the_answer(tmp_path: Path) -> None:
    rendered = docs(render(tmp_path))
    job = rendered[("Job", "apiserver-tls-guard-uninstall")]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:4] == ["python", "-m", "webhook.commands.lifecycle", "uninstall"]
    # The webhook pods stop before their Secret goes: they would make it again (test_node_chart_lifecycle.py).
    assert container["args"] == [
        "--secret=apiserver-tls-guard-certs",
        "--stop-deployment=apiserver-tls-guard",
        "--policy-reports",
    ]
    selftest = rendered[("Pod", "apiserver-tls-guard-selftest")]
    assert selftest["metadata"]["annotations"]["helm.sh/hook"] == "test"
    kept = docs(render(tmp_path, "uninstall.deleteSecret=false", "uninstall.deletePolicyReports=false"))
    assert kept[("Job", "apiserver-tls-guard-uninstall")]["spec"]["template"]["spec"]["containers"][0]["args"] == []
    assert ("Job", "apiserver-tls-guard-uninstall") not in docs(render(tmp_path, "uninstall.enabled=false"))


def test_host_network_port_and_webhook_selectors(tmp_path: Path) -> None:
    rendered = docs(render(tmp_path, "hostNetwork=true", "port=10250",
                           "webhooks.namespaceSelector[0].key=team", "webhooks.namespaceSelector[0].operator=NotIn",
                           "webhooks.namespaceSelector[0].values[0]=sandbox",
                           "webhooks.objectSelector.matchLabels.tier=control-plane"))  # fmt: skip
    spec = rendered[("Deployment", "apiserver-tls-guard")]["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    container = spec["containers"][0]
    assert "--port=10250" in container["args"] and container["ports"][0]["containerPort"] == 10250
    ingress = rendered[("NetworkPolicy", "apiserver-tls-guard")]["spec"]["ingress"]
    assert ingress == [{"ports": [{"port": 10250, "protocol": "TCP"}]}]
    hooks = {h["name"]: h for h in rendered[("ValidatingWebhookConfiguration", "apiserver-tls-guard")]["webhooks"]}
    for name in ("pods.apiserver-tls-guard.io", "expansions.apiserver-tls-guard.io"):
        expressions = hooks[name]["namespaceSelector"]["matchExpressions"]
        assert expressions[0]["values"] == [NAMESPACE], "our own namespace stays excluded"
        assert expressions[1] == {"key": "team", "operator": "NotIn", "values": ["sandbox"]}
        assert hooks[name]["objectSelector"] == {"matchLabels": {"tier": "control-plane"}}
    assert "objectSelector" not in hooks["workloads.apiserver-tls-guard.io"]
    assert render(tmp_path, "port=80").returncode == 1  # below 1024: the pod runs without privileges


def test_grafana_dashboard_for_the_sidecar(tmp_path: Path) -> None:
    import json

    assert ("ConfigMap", "apiserver-tls-guard-dashboard") not in docs(render(tmp_path))
    rendered = docs(
        render(tmp_path, "grafanaDashboard.enabled=true", "grafanaDashboard.annotations.grafana_folder=Sec")
    )
    config = rendered[("ConfigMap", "apiserver-tls-guard-dashboard")]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "Sec"}
    dashboard = json.loads(config["data"]["apiserver-tls-guard.json"])
    assert dashboard == json.loads((ROOT / "manifests/monitoring/dashboard.json").read_text())
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "job", "namespace"}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all('job=~"$job"' in e for e in exprs)
