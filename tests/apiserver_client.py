"""A client that calls the webhook the way kube-apiserver does.

No kube-apiserver can run on these machines (none is packaged anywhere the project can reach), so this stands in
for its webhook client, following ../shared/webhook-contract.md:
- HTTPS, TLS 1.2+, HTTP/1.1 only (ALPN http/1.1), connections kept alive and reused;
- the serving certificate is verified against the caBundle (our ca.crt) and the service DNS name
  `<service>.<namespace>.svc`, whatever address the connection really goes to;
- POST to the path with `?timeout=<N>s` appended, Content-Type application/json;
- the answer only counts when it is HTTP 200, decodes, has the request's apiVersion and kind, and echoes the uid;
  anything else is a *call failure* (raised here as CallFailure).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_NAME = "apiserver-tls-guard.apiserver-tls-guard.svc"


class CallFailure(Exception):
    """What kube-apiserver would treat as a failed webhook call (failurePolicy decides)."""


class _Connection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        # Go's net/http (kube-apiserver) sets TCP_NODELAY; without it a request waits ~40 ms on delayed ACKs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._server_name)


def apiserver_tls_context(ca_file: str | Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class HttpResult:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class ApiserverClient:
    def __init__(
        self,
        port: int,
        ca_file: str | Path,
        server_name: str = SERVICE_NAME,
        host: str = "127.0.0.1",
        timeout_seconds: int = 10,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.context = apiserver_tls_context(ca_file)
        self.conn = _Connection(host, port, self.context, server_name, timeout_seconds)

    def close(self) -> None:
        self.conn.close()

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> HttpResult:
        headers = {"Content-Type": content_type, "Accept": "application/json, */*"}
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # kube-apiserver retries once on a connection the server closed while idle.
            self.conn.close()
            self.conn.request("POST", path, body=body, headers=headers)
            response = self.conn.getresponse()
        data = response.read()
        return HttpResult(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    def get(self, path: str) -> HttpResult:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        data = response.read()
        return HttpResult(response.status, data, {k.lower(): v for k, v in response.getheaders()})

    def review(self, review: dict[str, Any]) -> dict[str, Any]:
        """Send an AdmissionReview and return its `response`, judged as kube-apiserver judges it."""
        result = self.post(f"/validate?timeout={self.timeout_seconds}s", json.dumps(review).encode())
        if result.status != 200:
            raise CallFailure(f"HTTP {result.status}: {result.body[:200]!r}")
        try:
            answer = result.json()
        except ValueError as err:
            raise CallFailure(f"answer does not decode: {err}") from None
        if answer.get("apiVersion") != review["apiVersion"] or answer.get("kind") != "AdmissionReview":
            raise CallFailure(f"answer has apiVersion/kind {answer.get('apiVersion')}/{answer.get('kind')}")
        response = answer.get("response")
        if not isinstance(response, dict) or response.get("uid") != review["request"]["uid"]:
            raise CallFailure("answer does not echo the request uid")
        if not isinstance(response.get("allowed"), bool):
            raise CallFailure("answer has no boolean allowed")
        if "patch" in response or "patchType" in response:
            raise CallFailure("a validating webhook must not patch")
        return response


def admission_review(
    obj: dict[str, Any] | None,
    operation: str = "CREATE",
    namespace: str = "kube-system",
    dry_run: bool = False,
    api_version: str = "admission.k8s.io/v1",
    username: str = "system:node:cp-1",
    old_object: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview request shaped like the ones kube-apiserver sends; an UPDATE's oldObject defaults to
    the object itself (a change that leaves the command lines alone)."""
    kind = (obj or {}).get("kind", "Pod")
    resource = {"Pod": "pods"}.get(kind, kind.lower() + "s")
    group = "" if kind == "Pod" else "apps"
    meta = (obj or {}).get("metadata") or {}
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", namespace),
            "operation": operation,
            "userInfo": {"username": username, "groups": ["system:nodes", "system:authenticated"]},
            "object": obj if operation != "DELETE" else None,
            "oldObject": (old_object or obj) if operation in ("UPDATE", "DELETE") else None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
