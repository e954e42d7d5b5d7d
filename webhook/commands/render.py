"""`apiserver-tls-guard render`: the manifests for GitOps, with the caBundle filled in and no writes to the cluster.

The overlay is rendered with `kubectl kustomize`, then changed so that the webhook never talks to the API:
- every webhook's caBundle is the CA from `--certs-dir` (made there if missing, kept if valid);
- the Deployment serves the certificate from a Secret you create (`--external-certs`), and only reloads it;
- the Role, ClusterRole and bindings the certificate lifecycle needs are left out.
The private key is never printed: the command tells on stderr how to create the Secret from the certs directory.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from webhook.pki.authority import DEFAULT_NAMESPACE, DEFAULT_SERVICE, ca_bundle, ensure_certs

OVERLAYS = ("warn", "enforce")
TLS_SECRET = "apiserver-tls-guard-tls"
CERTS_MOUNT = "/var/run/apiserver-tls-guard/certs"
LIFECYCLE_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


class RenderError(Exception):
    """The overlay could not be rendered; the message says why."""

    pass


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The overlay rendered by kubectl's built-in kustomize."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError("kubectl is needed to render the overlays (kubectl kustomize)")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _retarget_namespace(doc: dict[str, Any], namespace: str) -> None:
    meta = doc.setdefault("metadata", {})
    if doc["kind"] == "Namespace":
        meta["name"] = namespace
    elif "namespace" in meta:
        meta["namespace"] = namespace
    for subject in doc.get("subjects") or []:
        if subject.get("kind") == "ServiceAccount":
            subject["namespace"] = namespace
    for hook in doc.get("webhooks") or []:
        hook["clientConfig"]["service"]["namespace"] = namespace
        for expr in (hook.get("namespaceSelector") or {}).get("matchExpressions") or []:
            if expr.get("operator") == "NotIn" and DEFAULT_NAMESPACE in expr.get("values", []):
                expr["values"] = [namespace if v == DEFAULT_NAMESPACE else v for v in expr["values"]]


def _external_certs(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    pod["automountServiceAccountToken"] = False  # nothing left that talks to the API
    for container in pod["containers"]:
        args = [
            a
            for a in container.get("args", [])
            if not a.startswith(("--cluster-certs", "--secret=", "--webhook-config="))
        ]
        container["args"] = [*args, "--external-certs"]
    for volume in pod.get("volumes", []):
        if volume["name"] == "certs":
            volume.clear()
            volume.update({"name": "certs", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o440}})


def render(
    manifests: Path, overlay: str, namespace: str = DEFAULT_NAMESPACE, certs_dir: Path = Path("certs")
) -> tuple[str, str]:
    """(the manifests as YAML, the instructions for stderr)."""
    if overlay not in OVERLAYS:
        raise RenderError(f"--overlay must be one of {', '.join(OVERLAYS)}")
    directory = manifests / "overlays" / overlay
    if not directory.is_dir():
        raise RenderError(f"{directory}: no such overlay (run from a checkout, or pass --manifests)")
    files = ensure_certs(certs_dir, DEFAULT_SERVICE, namespace).files
    bundle = ca_bundle(files.ca_cert.read_bytes())
    out: list[Mapping[str, Any]] = []
    for doc in kustomize(directory):
        if doc["kind"] in LIFECYCLE_KINDS:
            continue
        _retarget_namespace(doc, namespace)
        if doc["kind"] == "ValidatingWebhookConfiguration":
            for hook in doc["webhooks"]:
                hook["clientConfig"]["caBundle"] = bundle
        if doc["kind"] == "Deployment":
            _external_certs(doc)
        if doc["kind"] == "ServiceAccount":
            doc["automountServiceAccountToken"] = False
        out.append(doc)
    text = yaml.safe_dump_all(out, sort_keys=False)
    hint = (
        f"# The webhook serves the certificate in Secret {namespace}/{TLS_SECRET}; create it from {certs_dir}:\n"
        f"#   kubectl -n {namespace} create secret generic {TLS_SECRET} \\\n"
        f"#     --from-file=tls.crt={files.cert} --from-file=tls.key={files.key} --from-file=ca.crt={files.ca_cert}\n"
        f"# Keep {files.ca_key} and {files.key} out of git (a sealed or external secret store is the place)."
    )
    return text, hint
