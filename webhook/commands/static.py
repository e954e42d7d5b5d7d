"""`apiserver-tls-guard static DIR`: the guardrail as files kube-apiserver loads at start (Kubernetes 1.37+,
feature gate ManifestBasedAdmissionControlConfig, beta and on by default; KEP-5793).

Objects loaded this way are in force from the apiserver's first request, before anything can be created or deleted
through the API, and cannot be changed through the API: a true bootstrap guardrail. What kube-apiserver v1.37
requires (k8s.io/apiserver pkg/admission/plugin/manifest/validation.go and webhook/manifest/loader/loader.go):
names ending in `.static.k8s.io`, webhooks reached by `url` only (no Service), and the folders named in the
admission configuration (`--admission-control-config-file`) under each plugin's `staticManifestsDir`; the folders
are read again on every change (filesystem.WatchUntil, fsnotify) and at least every minute.

Written to DIR:
- `vap/`: the ValidatingAdmissionPolicies and bindings of `apiserver-tls-guard vap`, renamed `*.static.k8s.io`;
- `webhooks/`: a ValidatingWebhookConfiguration for a webhook served on the node's loopback (`url`), with the
  caBundle of the certificates in --certs-dir, and failurePolicy Ignore so that a node can always boot;
- `apiserver-tls-guard.yaml`: the static pod that serves that webhook (host network, 127.0.0.1, certificates from
  the host folder --certs-dir, read as RUN_AS: `certs --owner 65532:65532` makes them its own, see `unreadable`);
- `admission-configuration.yaml`: the AdmissionConfiguration that points kube-apiserver at both folders.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

from webhook.commands.vap import MATCH_CONDITIONS, RESOURCE_RULES, generate
from webhook.core.policy import Policy

SUFFIX = ".static.k8s.io"
# The published image, fully qualified (a bare name would be Docker Hub's library namespace); release/pin.py keeps
# its registry path and tag equal to the chart's and the kustomize base's.
DEFAULT_IMAGE = "ghcr.io/apiserver-tls-guard/apiserver-tls-guard:0.1.0"
WEBHOOK = f"apiserver-tls-guard{SUFFIX}"
# The image's user (Dockerfile: USER 65532:65532); the static pod runs as it and reads the host's files as it.
RUN_AS = 65532


def _static(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    renamed = copy.deepcopy(objects)
    for obj in renamed:
        obj["metadata"]["name"] += SUFFIX
        if obj["kind"] == "ValidatingAdmissionPolicyBinding":
            obj["spec"]["policyName"] += SUFFIX
    return renamed


def webhook_configuration(port: int, ca_pem: bytes, failure_policy: str) -> dict[str, Any]:
    """The static ValidatingWebhookConfiguration: url-only, the caBundle given, the same rules and matchConditions as
    the policies.
    """

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK},
        "webhooks": [
            {
                "name": f"node.{WEBHOOK}",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": RESOURCE_RULES,
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["apiserver-tls-guard"]}
                    ]
                },
                "matchConditions": MATCH_CONDITIONS,
            }
        ],
    }


def admission_configuration(directory: Path) -> dict[str, Any]:
    """The AdmissionConfiguration naming both static folders (absolute paths, as kube-apiserver requires)."""
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [
            {
                "name": "ValidatingAdmissionPolicy",
                "configuration": {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "ValidatingAdmissionPolicyConfiguration",
                    "staticManifestsDir": str(directory / "vap"),
                },
            },
            {
                "name": "ValidatingAdmissionWebhook",
                "configuration": {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "WebhookAdmissionConfiguration",
                    "kubeConfigFile": "",
                    "staticManifestsDir": str(directory / "webhooks"),
                },
            },
        ],
    }


def _probe(path: str, port: int, period: int, failures: int) -> dict[str, Any]:
    # host: the kubelet probes a host-network pod at the node's address, and the webhook listens on loopback only.
    get = {"host": "127.0.0.1", "port": port, "path": path, "scheme": "HTTPS"}
    return {"httpGet": get, "periodSeconds": period, "failureThreshold": failures}


def static_pod(port: int, certs_dir: str, image: str) -> dict[str, Any]:
    """The static pod that serves the node-local webhook on 127.0.0.1, as RUN_AS, reading the host's `certs_dir`.

    No fsGroup: the kubelet changes the ownership of no hostPath volume (pkg/volume/hostpath/host_path.go, SetUp
    only checks the path's type), so the files must already be readable by RUN_AS (`certs --owner`).
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "apiserver-tls-guard", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "webhook",
                    "image": image,
                    "args": ["serve", "--host=127.0.0.1", f"--port={port}", "--certs-dir=/certs", "--external-certs"],
                    # As the chart's: start-up can take long on a busy node; liveness only once it serves.
                    "startupProbe": _probe("/healthz", port, 2, 60),
                    "readinessProbe": _probe("/readyz", port, 5, 2),
                    "livenessProbe": _probe("/healthz", port, 10, 3),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "certs", "hostPath": {"path": certs_dir, "type": "Directory"}}],
        },
    }


def unreadable(certs_dir: Path, uid: int = RUN_AS, gid: int = RUN_AS) -> list[Path]:
    """What of `certs_dir` the static pod's user cannot open: the folder (search), tls.key, tls.crt, ca.crt (read).

    The kernel's order (fs/namei.c, acl_permission_check): the owner's bits if the user owns it, else the group's if
    its group matches, else the others'; no ACLs here.
    """
    from webhook.pki.authority import CertFiles

    files = CertFiles(certs_dir)
    wanted = [(certs_dir, 0o1), (files.key, 0o4), (files.cert, 0o4), (files.ca_cert, 0o4)]
    refused = []
    for path, bit in wanted:
        try:
            found = path.stat()
        except OSError:
            refused.append(path)
            continue
        shift = 6 if found.st_uid == uid else 3 if found.st_gid == gid else 0
        if not found.st_mode & (bit << shift):
            refused.append(path)
    return refused


def write(
    directory: Path,
    policy: Policy,
    *,
    ca_pem: bytes | None,
    port: int = 8443,
    failure_policy: str = "Ignore",
    host_certs_dir: str = "/etc/kubernetes/apiserver-tls-guard",
    image: str = DEFAULT_IMAGE,
) -> list[Path]:
    """Write the static guardrail into `directory` (absolute paths inside the admission configuration)."""
    directory = directory.resolve()
    written: list[Path] = []
    (directory / "vap").mkdir(parents=True, exist_ok=True)
    for obj in _static(generate(policy)):
        path = directory / "vap" / f"{obj['metadata']['name']}.{obj['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False, width=10_000))
        written.append(path)
    (directory / "webhooks").mkdir(exist_ok=True)
    if ca_pem is not None:
        path = directory / "webhooks" / f"{WEBHOOK}.yaml"
        path.write_text(yaml.safe_dump(webhook_configuration(port, ca_pem, failure_policy), sort_keys=False))
        written.append(path)
        path = directory / "apiserver-tls-guard.yaml"
        path.write_text(yaml.safe_dump(static_pod(port, host_certs_dir, image), sort_keys=False))
        written.append(path)
    path = directory / "admission-configuration.yaml"
    path.write_text(yaml.safe_dump(admission_configuration(directory), sort_keys=False))
    written.append(path)
    return written
