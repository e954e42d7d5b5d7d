"""`apiserver-tls-guard review`: send manifests to a running webhook as kube-apiserver would, print as kubectl does.

For smoke tests of a local or port-forwarded webhook: the answer is judged like kube-apiserver judges it (HTTP 200,
same apiVersion, uid echoed), and shown like kubectl shows it (`Warning: ...`, `Error from server (Forbidden)`).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

WEBHOOK_NAME = "pods.apiserver-tls-guard.io"


class ReviewError(Exception):
    """The call failed the way kube-apiserver would count as a failed webhook call."""


def review_for(obj: Mapping[str, Any], operation: str = "CREATE", dry_run: bool = False) -> dict[str, Any]:
    """An AdmissionReview request for `obj`, shaped like kube-apiserver's."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": kind},
            "operation": operation,
            "namespace": str(meta.get("namespace") or "kube-system"),
            "name": str(meta.get("name") or ""),
            "object": dict(obj),
            "dryRun": dry_run,
        },
    }


@dataclass(frozen=True)
class Outcome:
    """The answer as kubectl shows it: allowed, the denial message, the warnings."""

    allowed: bool
    message: str
    warnings: tuple[str, ...]


class _Connection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        # Go's net/http (kube-apiserver) sets TCP_NODELAY; without it a request waits ~40 ms on delayed ACKs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


def send(server: str, ca_file: str, review: dict[str, Any], server_name: str | None, timeout: int = 10) -> Outcome:
    """POST the review to `server` (https only, TLS 1.2+, the CA given) and judge the answer as kube-apiserver does."""
    url = urlsplit(server)
    if url.scheme != "https" or not url.hostname:
        raise ReviewError(f"{server}: the webhook is only served over https://")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise ReviewError(f"--ca {ca_file}: no such file (the webhook's CA, e.g. certs/ca.crt from `certs`)") from None
    except (OSError, ssl.SSLError) as err:
        raise ReviewError(
            f"--ca {ca_file}: not a readable PEM CA bundle: {getattr(err, 'strerror', None) or err}"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    conn = _Connection(url.hostname, url.port or 443, context, server_name or url.hostname, timeout)
    try:
        body = json.dumps(review).encode()
        conn.request(
            "POST",
            f"{url.path.rstrip('/') or ''}/validate?timeout={timeout}s",
            body,
            {"Content-Type": "application/json", "Accept": "application/json, */*"},
        )
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as err:
        raise ReviewError(f"failed calling webhook {server}: {err}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise ReviewError(f"webhook answered HTTP {response.status}: {data[:300].decode(errors='replace')}")
    result = verify_answer(data, review)
    status = result.get("status") or {}
    return Outcome(bool(result.get("allowed")), str(status.get("message") or ""), tuple(result.get("warnings") or ()))


def verify_answer(data: bytes, review: Mapping[str, Any]) -> Mapping[str, Any]:
    """The answer's `response`, judged as kube-apiserver judges it (k8s.io/apiserver
    pkg/admission/plugin/webhook/request/admissionreview.go VerifyAdmissionResponse): an AdmissionReview of the
    request's own apiVersion, a response with the same uid and a boolean `allowed`, and no patch from a
    validating webhook. Anything else is "received invalid webhook response"."""
    try:
        answer = json.loads(data)
    except ValueError:
        raise ReviewError("received invalid webhook response: not JSON") from None
    if not isinstance(answer, dict) or answer.get("kind") != "AdmissionReview":
        raise ReviewError("received invalid webhook response: expected kind AdmissionReview")
    if answer.get("apiVersion") != review["apiVersion"]:
        raise ReviewError(f"received invalid webhook response: expected apiVersion {review['apiVersion']}")
    result = answer.get("response")
    if not isinstance(result, dict):
        raise ReviewError("received invalid webhook response: response is missing")
    if result.get("uid") != review["request"]["uid"]:
        raise ReviewError("received invalid webhook response: the uid is not the request's")
    if not isinstance(result.get("allowed"), bool):
        raise ReviewError("received invalid webhook response: allowed is not a boolean")
    if result.get("patch") is not None or result.get("patchType") is not None:
        raise ReviewError("received invalid webhook response: a validating webhook may not return a patch")
    return result


def render(outcome: Outcome, obj: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What kubectl prints for this answer: (stdout lines, stderr lines). kubectl writes warnings on stderr (its
    warning handler is a rest.NewWarningWriter on ErrOut, kubectl pkg/cmd/cmd.go NewKubectlCommand), errors too
    (cmdutil.CheckErr), and only the object's line on stdout."""
    errors = [f"Warning: {w}" for w in outcome.warnings]
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    what = f"{str(obj.get('kind', 'object')).lower()}/{meta.get('name', '')}"
    if outcome.allowed:
        return [f"{what} admitted"], errors
    errors.append(
        f'Error from server (Forbidden): admission webhook "{WEBHOOK_NAME}" denied the request: {outcome.message}'
    )
    return [], errors
