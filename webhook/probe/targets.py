"""What to probe and what to hold it to: the kubeconfig's server, CA and user, and the cluster's own view of its
API server (the kubernetes Service's IP, the `default/kubernetes` EndpointSlice).

The kubeconfig is read here as kubectl reads it (client-go tools/clientcmd loader.go): --kubeconfig, else every
file of $KUBECONFIG with the first file to name a map key winning, else ~/.kube/config; inside a pod without one,
the service account's CA and $KUBERNETES_SERVICE_HOST (rest.InClusterConfig).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from webhook.core import yaml_text

IN_CLUSTER_CA = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
SERVICE_LABEL = "kubernetes.io/service-name=kubernetes"


class TargetError(Exception):
    """The kubeconfig (or --ca) cannot be used: one line saying why."""


@dataclass(frozen=True)
class ClusterConfig:
    """The parts of a kubeconfig context the probe needs."""

    server: str
    server_name: str | None
    ca_pem: bytes | None
    ca_source: str
    client_cert_pem: bytes | None
    kubeconfig: str | None  # None: in-cluster

    def client_issuer(self) -> x509.Name | None:
        if not self.client_cert_pem:
            return None
        try:
            return x509.load_pem_x509_certificate(self.client_cert_pem).issuer
        except ValueError:
            return None


def _files(kubeconfig: str | None) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig)]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _named(items: Any, name: str) -> Mapping[str, Any] | None:
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and item.get("name") == name:
            return item
    return None


def _merged(paths: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """The kubeconfig files merged (first wins), and the file each cluster and user came from (relative paths)."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    origin: dict[str, Path] = {}
    for path in paths:
        try:
            data = yaml_text.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            raise TargetError(f"{path}: cannot read the kubeconfig ({err})") from None
        if not isinstance(data, Mapping):
            raise TargetError(f"{path}: not a kubeconfig")
        if not merged.get("current-context"):  # the first file that sets it wins
            merged["current-context"] = data.get("current-context")
        for section, singular in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for item in data.get(section) or []:
                if isinstance(item, Mapping) and not _named(merged[section], str(item.get("name"))):
                    merged[section].append(item)
                    origin[f"{singular}/{item.get('name')}"] = path
    return merged, origin


def _data(entry: Mapping[str, Any], field: str, base: Path, what: str) -> tuple[bytes | None, str]:
    inline = entry.get(f"{field}-data")
    if inline:
        try:
            return base64.b64decode(str(inline), validate=True), f"the kubeconfig's {field}-data"
        except ValueError:
            raise TargetError(f"the kubeconfig's {field}-data is not base64") from None
    path = entry.get(field)
    if path:
        full = Path(str(path)) if Path(str(path)).is_absolute() else base.parent / str(path)
        try:
            return full.read_bytes(), str(full)
        except OSError as err:
            raise TargetError(f"{full}: cannot read the {what} ({err.strerror})") from None
    return None, ""


def load(kubeconfig: str | None, context: str | None) -> ClusterConfig:
    """The kubeconfig context's server, CA and client certificate; in-cluster when there is no kubeconfig."""
    paths = _files(kubeconfig)
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and "KUBERNETES_SERVICE_HOST" in os.environ:
        return _in_cluster()
    merged, origin = _merged(paths)
    name = context or merged.get("current-context")
    if not name:
        raise TargetError(f"no kubeconfig context to probe ({', '.join(map(str, paths))}); give a URL or --context")
    ctx = _named(merged["contexts"], str(name))
    if ctx is None:
        raise TargetError(f"kubeconfig context {name!r} not found")
    ctx_body = ctx.get("context") or {}
    cluster_name, user_name = str(ctx_body.get("cluster", "")), str(ctx_body.get("user", ""))
    cluster_item = _named(merged["clusters"], cluster_name)
    if cluster_item is None:
        raise TargetError(f"kubeconfig cluster {cluster_name!r} (context {name!r}) not found")
    cluster = cluster_item.get("cluster") or {}
    server = cluster.get("server")
    if not server:
        raise TargetError(f"kubeconfig cluster {cluster_name!r} has no server")
    ca_pem, ca_source = _data(cluster, "certificate-authority", origin[f"cluster/{cluster_name}"], "cluster CA")
    user_item = _named(merged["users"], user_name)
    client_pem = None
    if user_item is not None:
        client_pem, _ = _data(user_item.get("user") or {}, "client-certificate", origin[f"user/{user_name}"], "cert")
    return ClusterConfig(
        server=str(server),
        server_name=cluster.get("tls-server-name"),
        ca_pem=ca_pem,
        ca_source=f"the kubeconfig's CA ({ca_source})" if ca_pem else "",
        client_cert_pem=client_pem,
        kubeconfig=str(paths[0]),
    )


def _in_cluster() -> ClusterConfig:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    try:
        ca = IN_CLUSTER_CA.read_bytes()
    except OSError:
        ca = None
    return ClusterConfig(f"https://{host}:{port}", None, ca, f"the service account's CA ({IN_CLUSTER_CA})", None, None)


def read_cas(pem: bytes, source: str) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle; TargetError when there is none."""
    try:
        cas = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as err:
        raise TargetError(f"{source}: no PEM certificates ({err})") from None
    return cas


def system_cas() -> tuple[x509.Certificate, ...]:
    """The CAs OpenSSL trusts by default on this machine (those it can parse: some roots break RFC 5280)."""
    import ssl
    import warnings

    out = []
    for der in ssl.create_default_context().get_ca_certs(binary_form=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old roots with negative serials: still roots, still usable here
            try:
                out.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
    return tuple(out)


@dataclass(frozen=True)
class ClusterView:
    """What the API itself says about its servers: the Service IP and the EndpointSlice's addresses."""

    service_ip: str | None
    service_ip_unknown: str
    endpoints: tuple[tuple[str, int], ...] | None
    endpoints_unknown: str


def cluster_view(kubeconfig: str | None, context: str | None, want_endpoints: bool) -> ClusterView:
    """Read the kubernetes Service (and, when asked, its EndpointSlices) with the kubeconfig's credentials."""
    from kubernetes import client  # the client is slow to import: only when a cluster is asked

    from webhook.kube import KubeConfigError, api_client

    try:
        api = api_client(kubeconfig, context)
    except KubeConfigError as err:
        return ClusterView(None, str(err), None, str(err))
    with api:
        try:
            service = client.CoreV1Api(api).read_namespaced_service("kubernetes", "default", _request_timeout=5)
            ip, ip_why = (service.spec.cluster_ip if service.spec else None), ""
        except Exception as err:  # ApiException, urllib3 errors: the reason goes into the report
            ip, ip_why = None, f"could not read Service default/kubernetes: {_short(err)}"
        if not want_endpoints:
            return ClusterView(ip, ip_why, None, "")
        try:
            slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
                "default", label_selector=SERVICE_LABEL, _request_timeout=5
            )
        except Exception as err:
            return ClusterView(ip, ip_why, None, f"could not list EndpointSlices of default/kubernetes: {_short(err)}")
    found: list[tuple[str, int]] = []
    for item in slices.items:
        ports = [p.port for p in item.ports or () if p.port and (p.name in (None, "", "https"))]
        for endpoint in item.endpoints or ():
            if endpoint.conditions is not None and endpoint.conditions.ready is False:
                continue
            for address in endpoint.addresses or ():
                found.extend((address, port) for port in ports)
    if not found:
        return ClusterView(ip, ip_why, None, "the default/kubernetes EndpointSlices list no ready address")
    return ClusterView(ip, ip_why, tuple(dict.fromkeys(found)), "")


def _short(err: Exception) -> str:
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__
