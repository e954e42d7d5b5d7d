"""The install: kustomize renders, schemas validate, the security scan finds only what the README justifies,
the Dockerfile lints and its build steps run.

The scanners come from the tools virtualenv `make test` installs (.venv-tools; TOOLS_BIN points at it).
No Docker engine and no kube-apiserver run here: the image is linted and its Python build step is run; CEL is
evaluated with the CEL library instead of kube-apiserver.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, cli

OVERLAYS = ["warn", "enforce"]
TOOLS = Path(os.environ.get("TOOLS_BIN") or ROOT / ".venv-tools" / "bin")


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run the tests through `make test`, which installs the scanners")
    return str(path)


def render(overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    docs = render(request.param)
    out = tmp_path_factory.mktemp(f"render-{request.param}") / f"{request.param}.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    return request.param, out


def test_overlays_render_with_their_failure_policy_and_mode() -> None:
    for overlay, policy, mode in (("warn", "Ignore", "warn"), ("enforce", "Fail", "enforce")):
        docs = render(overlay)
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == sorted(
            [
                "Namespace",
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
                "ConfigMap",
                "Service",
                "Deployment",
                "PodDisruptionBudget",
                "NetworkPolicy",
                "ValidatingWebhookConfiguration",
            ]
        )
        hooks = {h["name"]: h["failurePolicy"] for h in by_kind(docs, "ValidatingWebhookConfiguration")["webhooks"]}
        # Pods that only an expansion could make a kube-apiserver (CNI scripts look so) fail open in every mode.
        assert hooks == {"pods.apiserver-tls-guard.io": policy, "workloads.apiserver-tls-guard.io": policy,
                         "expansions.apiserver-tls-guard.io": "Ignore"}  # fmt: skip
        assert yaml.safe_load(by_kind(docs, "ConfigMap")["data"]["policy.yaml"])["mode"] == mode


def test_schemas_validate(rendered: tuple[str, Path]) -> None:
    _, path = rendered
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _justified_checks() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Security scan", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\| `(CKV2?_K8S_\d+)` \|", section))


def test_security_scan_finds_nothing_the_readme_does_not_justify(rendered: tuple[str, Path]) -> None:
    _, path = rendered
    result = subprocess.run(
        [
            tool("checkov"),
            "-f",
            str(path),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert report["summary"]["passed"] > 100
    assert failed <= _justified_checks(), f"unjustified findings: {sorted(failed - _justified_checks())}"


def test_webhook_configuration_is_safe_by_construction() -> None:
    for overlay in OVERLAYS:
        docs = render(overlay)
        for hook in by_kind(docs, "ValidatingWebhookConfiguration")["webhooks"]:
            assert hook["sideEffects"] == "None"  # dry-run requests are sent
            assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
            assert hook["timeoutSeconds"] <= 5
            assert hook["clientConfig"]["service"] == {
                "name": "apiserver-tls-guard",
                "namespace": "apiserver-tls-guard",
                "path": "/validate",
                "port": 443,
            }
            assert hook["matchConditions"], "only kube-apiserver workloads are sent"
            expressions = hook["namespaceSelector"]["matchExpressions"]
            own = {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["apiserver-tls-guard"]}
            assert own not in expressions
            assert {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["apiserver-tls-guard"],
            } in expressions, "our own pods never wait on us"
            rules = {(op, res) for rule in hook["rules"] for op in rule["operations"] for res in rule["resources"]}
            assert all(op in ("CREATE", "UPDATE") for op, _ in rules)


def test_deployment_is_hardened() -> None:
    docs = render("enforce")
    deployment = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "--cluster-certs" in container["args"]
    assert by_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("components", [("audit", "cert-manager"), ("cert-manager", "audit")])
def test_components_keep_each_others_arguments(tmp_path: Path, components: tuple[str, ...]) -> None:
    """The cert-manager component used to replace the whole args list, dropping the audit's flags when it came
    second (issue 24 point 11): it now changes only the certificate arguments."""
    folder = ROOT / "manifests" / "overlays" / f".test-{tmp_path.name}"
    folder.mkdir()
    try:
        (folder / "kustomization.yaml").write_text(
            yaml.safe_dump({"resources": ["../warn"], "components": [f"../../components/{c}" for c in components]})
        )
        result = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True)
    finally:
        shutil.rmtree(folder)
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    args = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["serve", "--host=", "--port=8443", "--certs-dir=/var/run/apiserver-tls-guard/certs",
                    "--config=/etc/apiserver-tls-guard/policy.yaml", "--external-certs", "--shutdown-timeout=20",
                    "--audit-interval=300", "--policy-reports=wgpolicyk8s.io/v1alpha2"]  # fmt: skip


def test_rbac_is_scoped_to_its_own_objects_by_name() -> None:
    docs = render("warn")
    role = by_kind(docs, "Role")
    cluster_role = by_kind(docs, "ClusterRole")
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["apiserver-tls-guard-certs"],
            "verbs": ["get", "update"],
        }
    ]
    unnamed = [r for r in role["rules"] if "resourceNames" not in r]
    assert unnamed == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": ["apiserver-tls-guard"],
            "verbs": ["get", "update"],
        }
    ]


# --- matchConditions: tests/commands/test_prefilter.py evaluates them on every fixture with CEL ----------------


# --- render ----------------------------------------------------------------------------------------------------


def test_render_fills_the_cabundle_and_never_writes_to_the_cluster(tmp_path: Path) -> None:
    result = cli(
        "render",
        "--overlay",
        "enforce",
        "--namespace",
        "guard",
        "--certs-dir",
        str(tmp_path / "c"),
        "--manifests",
        str(ROOT / "manifests"),
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    ca = (tmp_path / "c" / "ca.crt").read_bytes()
    hooks = by_kind(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert all(base64.b64decode(h["clientConfig"]["caBundle"]) == ca for h in hooks)
    assert all(h["clientConfig"]["service"]["namespace"] == "guard" for h in hooks)
    assert {d["kind"] for d in docs}.isdisjoint({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"})
    container = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--external-certs" in container["args"] and "--cluster-certs" not in container["args"]
    assert all(d["metadata"].get("namespace", "guard") == "guard" for d in docs)
    assert "PRIVATE KEY" not in result.stdout
    assert "kubectl -n guard create secret generic apiserver-tls-guard-tls" in result.stderr
    (tmp_path / "r.yaml").write_text(result.stdout)
    check = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", str(tmp_path / "r.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout


def test_render_unknown_overlay_is_an_error(tmp_path: Path) -> None:
    result = cli("render", "--overlay", "strict", "--certs-dir", str(tmp_path))
    assert result.returncode == 2


# --- Dockerfile ------------------------------------------------------------------------------------------------


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_a_fixed_non_root_user_from_a_copied_venv() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = [s for s in re.split(r"^FROM ", text, flags=re.M) if s.strip() and not s.startswith("#")]
    assert len(stages) == 2
    final = stages[-1]
    assert re.search(r"^USER 65532:65532$", final, re.M)
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "pip install" not in final and "apt-get" not in final
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert {"certs", ".venv", "*.key", "**/*.key"} <= set(ignored)
    # An allow-list: everything is left out, then exactly what the build stage copies is let back in.
    copied = {src for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for src in line.split()[:-1]}
    assert ignored[0] == "*"
    assert {line[1:].rstrip("/") for line in ignored if line.startswith("!")} == {c.rstrip("/") for c in copied}


def test_dockerfile_build_step_makes_a_complete_package(tmp_path: Path) -> None:
    # The build stage runs `pip install .`: build the same wheel and check what the image would get.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = tmp_path.glob("apiserver_tls_guard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "webhook/core/controls.yaml" in names and "webhook/runtime/serving.py" in names
    assert "webhook/bootstrap/installers.yaml" in names
    for layer in ("core", "cmdline", "admission", "runtime", "pki", "offline", "bootstrap", "commands"):
        assert f"webhook/{layer}/__init__.py" in names, layer
    assert not any(n.startswith(("tests/", "certs/", "benchmarks/")) for n in names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "apiserver-tls-guard = webhook.cli:main" in entry


def test_dockerfile_keeps_bytecode_the_image_can_use(tmp_path: Path) -> None:
    """The build stage's compile step, run on the package: every module gets bytecode that Python uses without
    writing anything or checking timestamps (the image's filesystem is read-only, PYTHONDONTWRITEBYTECODE is set)."""
    text = (ROOT / "Dockerfile").read_text()
    step = re.search(r"python -m compileall (.*) /opt/venv/lib", text)
    assert step is not None and "__pycache__" not in text.split("FROM ${PYTHON_IMAGE}\n")[-1]
    tree = tmp_path / "lib"
    shutil.copytree(ROOT / "webhook", tree / "webhook", ignore=shutil.ignore_patterns("__pycache__"))
    args = step.group(1).split()
    compiled = subprocess.run([sys.executable, "-m", "compileall", *args, str(tree)], capture_output=True, check=False)
    assert compiled.returncode == 0, compiled.stderr
    sources = list(tree.rglob("*.py"))
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        flags = int.from_bytes(cached.read_bytes()[4:8], "little")
        assert flags == 0b01, source  # hash-based, source not checked (PEP 552)
    probe = "import sys, webhook.cli; print(sum(1 for m in sys.modules if m.startswith('webhook')))"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tree)}
    env.pop("PYTHONPYCACHEPREFIX", None)
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert ran.returncode == 0 and int(ran.stdout) > 10, ran.stderr
