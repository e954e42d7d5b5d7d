"""kube-apiservers that really run on the node, as users run them: static pods the kubelet runs (host network, as
kubeadm writes them) and hosted-control-plane Deployments (pod network, certificates from a Secret).

Each is a cluster of its own: an etcd prefix of its own on the node's etcd, reached over TLS with a client
certificate on the node's address (tests/e2e/node/node.py, etcd's flags), so the node's kube-apiserver never sees
its objects. The compliant command line is tests/e2e/conftest.py's GOOD_FLAGS, every path in it a real file that
`write_pki` makes, plus what kube-apiserver needs to start at all; the non-compliant one is BAD_FLAGS (no
--tls-cert-file/--tls-private-key-file: CIS 1.2.30 in v1.5.1), with which kube-apiserver still runs, serving a
self-signed certificate it writes into --cert-dir (pkg/controlplane/apiserver/options/options.go, Complete,
MaybeDefaultWithSelfSignedCerts).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.e2e import pki
from tests.e2e.conftest import BAD_FLAGS, GOOD_FLAGS, apiserver_deployment, apiserver_pod
from tests.e2e.node.node import APISERVER_IMAGE, ETCD_TLS_PORT, NODE_IP, Node

PKI_DIR = "/etc/kubernetes/pki"  # where GOOD_FLAGS names every file
PORT = 6443  # in a pod; static pods share the node's network and need ports of their own


def write_pki(node: Node, directory: Path) -> dict[str, bytes]:
    """The files GOOD_FLAGS names, issued by the node's CA (so the node's admin certificate authenticates to every
    such kube-apiserver), written under `directory` and returned by their path relative to PKI_DIR."""
    assert node.ca is not None
    ca = node.ca.cert_pem
    serving, serving_key = node.ca.serving(ips=(NODE_IP,))  # also names kubernetes.default.svc
    etcd_client, etcd_client_key = node.ca.client("kube-apiserver-etcd-client", None)
    kubelet_client, kubelet_client_key = node.ca.client("kube-apiserver-kubelet-client", "system:masters")
    signing = pki.service_account_key()
    public = serialization.load_pem_private_key(signing, None).public_key()
    files = {
        "ca.crt": ca,
        "etcd/ca.crt": ca,
        "apiserver.crt": serving,
        "apiserver.key": serving_key,
        "apiserver-etcd-client.crt": etcd_client,
        "apiserver-etcd-client.key": etcd_client_key,
        "apiserver-kubelet-client.crt": kubelet_client,
        "apiserver-kubelet-client.key": kubelet_client_key,
        "sa.pub": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "sa.key": signing,
    }
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        pki.write(directory / name, data)  # 0644: the static pods' kube-apiserver runs as root anyway
    return files


def flags(cluster: str, compliant: bool, port: int = PORT) -> list[str]:
    """A command line kube-apiserver runs with: GOOD_FLAGS or BAD_FLAGS, then its etcd (its own prefix: a cluster
    of its own), port, and the ServiceAccount token issuer it refuses to start without."""
    return [
        *(GOOD_FLAGS if compliant else BAD_FLAGS),
        f"--etcd-servers=https://{NODE_IP}:{ETCD_TLS_PORT}",
        f"--etcd-prefix=/{cluster}",
        f"--secure-port={port}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-signing-key-file={PKI_DIR}/sa.key",
    ]


def static_pod(name: str, command_flags: list[str], pki_dir: Path | None = None) -> dict[str, Any]:
    """A kube-apiserver static pod as kubeadm writes one (host network, node-critical), of the image built here;
    with `pki_dir`, that folder of the node mounted at PKI_DIR, as kubeadm mounts /etc/kubernetes/pki."""
    pod = apiserver_pod(name, command_flags)
    pod["metadata"]["labels"]["tier"] = "control-plane"
    # kubeadm sets both: without `priority` the kubelet warns that the mirror pod's create may fail (Priority
    # admission), pkg/kubelet/config/common.go.
    pod["spec"].update({"hostNetwork": True, "priorityClassName": "system-node-critical", "priority": 2000001000})
    container = pod["spec"]["containers"][0]
    container["image"] = APISERVER_IMAGE
    if pki_dir is not None:
        container["volumeMounts"] = [{"name": "k8s-certs", "mountPath": PKI_DIR, "readOnly": True}]
        pod["spec"]["volumes"] = [
            {"name": "k8s-certs", "hostPath": {"path": str(pki_dir), "type": "DirectoryOrCreate"}}
        ]
    return pod


def secret_key(path: str) -> str:
    return path.replace("/", "-")


def secret(name: str, namespace: str, files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {secret_key(path): data.decode() for path, data in files.items()},
    }


def deployment(name: str, namespace: str, command_flags: list[str], secret_name: str) -> dict[str, Any]:
    """A hosted control plane's kube-apiserver Deployment on the pod network, its certificates from `secret_name`
    at PKI_DIR. The default rolling update (one replica: maxSurge 1, maxUnavailable 0): a new pod must be Ready
    before the old one goes. Ready means listening (a TCP probe): with --anonymous-auth=false, as CIS 1.2.1 wants,
    kube-apiserver answers the kubelet's unauthenticated HTTPS probes with 401, which a probe counts as failure."""
    made = copy.deepcopy(apiserver_deployment(name, namespace, command_flags))
    del made["spec"]["strategy"]  # that helper's Recreate is for a control plane without a kubelet
    spec = made["spec"]["template"]["spec"]
    container = spec["containers"][0]
    container["image"] = APISERVER_IMAGE
    container["readinessProbe"] = {"tcpSocket": {"port": PORT}, "periodSeconds": 2}
    container["volumeMounts"] = [{"name": "k8s-certs", "mountPath": PKI_DIR, "readOnly": True}]
    files = ("ca.crt", "etcd/ca.crt", "apiserver.crt", "apiserver.key", "apiserver-etcd-client.crt",
             "apiserver-etcd-client.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
             "sa.pub", "sa.key")  # fmt: skip
    items = [{"key": secret_key(path), "path": path} for path in files]
    spec["volumes"] = [{"name": "k8s-certs", "secret": {"secretName": secret_name, "items": items}}]
    spec["automountServiceAccountToken"] = False
    return made


def readyz(node: Node, address: str, port: int = PORT) -> tuple[int, str]:
    """GET /readyz of a kube-apiserver at `address` over HTTPS from inside the node's network namespace, its
    certificate verified against the node's CA as kubernetes.default.svc (a name every serving certificate here
    has, whatever the pod's address), as the node's admin (system:masters). (HTTP status or 0, body or error.)"""
    assert node.namespaces is not None
    d = node.directory
    argv = [
        "curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}",
        "--cacert", str(d / "ca.crt"), "--cert", str(d / "admin.crt"), "--key", str(d / "admin.key"),
        "--resolve", f"kubernetes.default.svc:{port}:{address}", f"https://kubernetes.default.svc:{port}/readyz",
    ]  # fmt: skip
    result = node.namespaces.run(argv, timeout=30, check=False)
    body, _, code = result.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), (body or result.stderr).strip()


def serving(node: Node, address: str, port: int = PORT, timeout: float = 120) -> str:
    """Wait until /readyz answers 200 (kube-apiserver's post-start hooks done); its body."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = readyz(node, address, port)
        if status == 200:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"kube-apiserver at {address}:{port} not ready after {timeout:.0f} s: {status} {body}")
        time.sleep(1)


def container_pid(node: Node, pod_name: str, container: str = "kube-apiserver") -> int | None:
    """The PID, in the node's PID namespace, of the running `container` of the pod (mirror or not) that the
    kubelet named `pod_name`: what `ps -ef` on the node shows."""
    # One filter, its conditions joined by commas: separate filters match any (containerd pkg/filters/filter.go, Any).
    selector = f'labels."io.kubernetes.pod.name"=={pod_name},labels."io.kubernetes.container.name"=={container}'
    listed = node.ctr("containers", "list", "-q", selector).stdout.split()
    for line in node.ctr("tasks", "list").stdout.splitlines()[1:]:
        task, pid, status = line.split()
        if task in listed and status == "RUNNING":
            return int(pid)
    return None


def cmdline(node: Node, pid: int) -> list[str]:
    assert node.namespaces is not None
    raw = node.namespaces.run(["cat", f"/proc/{pid}/cmdline"], check=False).stdout
    return raw.rstrip("\0").split("\0") if raw else []
