"""What to probe and what to hold it to: the kubeconfig's server, CA and user, and the cluster's own view of its
API server (the kubernetes Service's IP, the `default/kubernetes` EndpointSlice).

The kubeconfig is read here as kubectl reads it (client-go tools/clientcmd loader.go): --kubeconfig, else every
file of $KUBECONFIG with the first file to name a map key winning, else ~/.kube/config; inside a pod without one,
the service account's CA and $KUBERNETES_SERVICE_HOST (rest.InClusterConfig).
"""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from webhook.core import yaml_text

IN_CLUSTER_CA = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
SERVICE_PATH = "/api/v1/namespaces/default/services/kubernetes"
SERVICE_LABEL = "kubernetes.io/service-name=kubernetes"
SLICES_PATH = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?" + urllib.parse.urlencode(
    {"labelSelector": SERVICE_LABEL}
)


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
    client_key_pem: bytes | None = None
    token: str | None = None
    insecure: bool = False  # insecure-skip-tls-verify: only for the API reads, the probe never trusts anyway
    plugin: bool = False  # exec or auth-provider credentials: only the kubernetes client can get them

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
    user = (user_item.get("user") or {}) if user_item is not None else {}
    client_pem = client_key = None
    token = user.get("token")
    if user_item is not None:
        where = origin[f"user/{user_name}"]
        client_pem, _ = _data(user, "client-certificate", where, "client certificate")
        client_key, _ = _data(user, "client-key", where, "client key")
        if not token and user.get("tokenFile"):
            token_data, _ = _data({"t": user["tokenFile"]}, "t", where, "token file")
            token = token_data.decode().strip() if token_data else None
    return ClusterConfig(
        server=str(server),
        server_name=cluster.get("tls-server-name"),
        ca_pem=ca_pem,
        ca_source=f"the kubeconfig's CA ({ca_source})" if ca_pem else "",
        client_cert_pem=client_pem,
        kubeconfig=str(paths[0]),
        client_key_pem=client_key,
        token=str(token) if token else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        plugin=bool(user.get("exec") or user.get("auth-provider")),
    )


def _in_cluster() -> ClusterConfig:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    try:
        ca = IN_CLUSTER_CA.read_bytes()
    except OSError:
        ca = None
    try:
        token = IN_CLUSTER_TOKEN.read_text().strip()
    except OSError:
        token = None
    source = f"the service account's CA ({IN_CLUSTER_CA})"
    return ClusterConfig(f"https://{host}:{port}", None, ca, source, None, None, token=token)


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


class _ApiError(Exception):
    """A read of the API that did not work: the reason, for the report."""


def _get(config: ClusterConfig, path: str, timeout: float) -> Any:
    """GET one API path with the kubeconfig's own credentials (certificate or token), JSON decoded."""
    import http.client
    import json
    import ssl
    import tempfile

    context = ssl.create_default_context(cadata=config.ca_pem.decode() if config.ca_pem else None)
    if config.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.client_cert_pem and config.client_key_pem:
        # ssl loads a client pair from files only: a private directory that lives for the call.
        with tempfile.TemporaryDirectory() as directory:
            pair = Path(directory) / "client.pem"
            pair.write_bytes(config.client_key_pem + b"\n" + config.client_cert_pem)
            context.load_cert_chain(pair)
    parts = urllib.parse.urlsplit(config.server)
    if config.server_name:
        context.check_hostname = False  # tls-server-name: the name differs from the address; the CA still holds
    connection = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, timeout=timeout, context=context)
    headers = {"Accept": "application/json", "User-Agent": "apiserver-tls-guard-probe"}
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    try:
        connection.request("GET", parts.path.rstrip("/") + path, headers=headers)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as err:
        raise _ApiError(_short(err)) from None
    finally:
        connection.close()
    if response.status != 200:
        raise _ApiError(f"HTTP {response.status} {response.reason}".strip())
    try:
        return json.loads(body)
    except ValueError:
        raise _ApiError("the answer is not JSON") from None


def cluster_view(
    config: ClusterConfig, context: str | None, want_endpoints: bool, service_ip: str | None = None
) -> ClusterView:
    """Read the kubernetes Service (and, when asked, its EndpointSlices) with the kubeconfig's credentials.

    A `service_ip` already known (inside a pod: $KUBERNETES_SERVICE_HOST) is used instead of reading the Service,
    so the continuous probe's RBAC is the EndpointSlice list alone. Directly over HTTPS when the kubeconfig holds
    a certificate or token: the kubernetes client takes longer to import (0.5-5 s on a loaded machine) than the
    whole probe; it is used only for exec and auth-provider users.
    """
    if config.plugin:
        return _cluster_view_by_client(config.kubeconfig, context, want_endpoints, service_ip)
    ip, ip_why = service_ip, ""
    if ip is None:
        try:
            service = _get(config, SERVICE_PATH, 5)
            ip = (service.get("spec") or {}).get("clusterIP")
        except _ApiError as err:
            ip_why = f"could not read Service default/kubernetes: {err}"
    if not want_endpoints:
        return ClusterView(ip, ip_why, None, "")
    try:
        slices = _get(config, SLICES_PATH, 5).get("items") or []
    except _ApiError as err:
        return ClusterView(ip, ip_why, None, f"could not list EndpointSlices of default/kubernetes: {err}")
    return _view(ip, ip_why, slices)


def _view(ip: str | None, ip_why: str, slices: list[Any]) -> ClusterView:
    found: list[tuple[str, int]] = []
    for item in slices:
        ports = [p["port"] for p in item.get("ports") or () if p.get("port") and p.get("name") in (None, "", "https")]
        for endpoint in item.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or ():
                found.extend((address, port) for port in ports)
    if not found:
        return ClusterView(ip, ip_why, None, "the default/kubernetes EndpointSlices list no ready address")
    return ClusterView(ip, ip_why, tuple(dict.fromkeys(found)), "")


def _cluster_view_by_client(
    kubeconfig: str | None, context: str | None, want_endpoints: bool, service_ip: str | None
) -> ClusterView:
    from kubernetes import client  # slow to import: only for credentials only it can get

    from webhook.kube import KubeConfigError, api_client

    try:
        api = api_client(kubeconfig, context)
    except KubeConfigError as err:
        return ClusterView(None, str(err), None, str(err))
    with api:
        ip, ip_why = service_ip, ""
        try:
            if ip is None:
                service = client.CoreV1Api(api).read_namespaced_service("kubernetes", "default", _request_timeout=5)
                ip = service.spec.cluster_ip if service.spec else None
        except Exception as err:  # ApiException, urllib3 errors: the reason goes into the report
            ip_why = f"could not read Service default/kubernetes: {_short(err)}"
        if not want_endpoints:
            return ClusterView(ip, ip_why, None, "")
        try:
            slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
                "default", label_selector=SERVICE_LABEL, _request_timeout=5
            )
        except Exception as err:
            return ClusterView(ip, ip_why, None, f"could not list EndpointSlices of default/kubernetes: {_short(err)}")
    items = [api.sanitize_for_serialization(i) for i in slices.items]  # type: ignore[no-untyped-call]
    return _view(ip, ip_why, items)


def _short(err: Exception) -> str:
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__
