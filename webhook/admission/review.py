"""admission.k8s.io AdmissionReview: reading requests and building answers, as kube-apiserver expects them.

Answers are built with one tiny constructor per outcome (`allowed`, `denied`), as controller-runtime's
admission package does, so the HTTP layer reads like a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
# Audit annotation keys are qualified-name parts; kube-apiserver silently drops anything else.
_ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


class BadReview(ValueError):
    """The body is not a usable AdmissionReview; the message says which field and why."""


@dataclass(frozen=True)
class Request:
    """The parts of an AdmissionReview request the webhook reads, validated by `parse_review`."""

    api_version: str
    uid: str
    operation: str
    kind: str
    namespace: str
    name: str
    obj: Mapping[str, Any] | None
    dry_run: bool
    username: str
    old_obj: Mapping[str, Any] | None = None  # UPDATE only: the object as it was


def _field(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = mapping.get(key)
    if value is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        readable = {"dict": "object", "str": "string", "bool": "boolean", "list": "array"}
        raise BadReview(f"{where}{key} must be {readable.get(names, names)}, got {type(value).__name__}")
    return value


def parse_review(body: Any) -> Request:
    """Validate a decoded JSON body as an AdmissionReview request."""
    if not isinstance(body, dict):
        raise BadReview("body must be a JSON object (an AdmissionReview)")
    api_version = body.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise BadReview(f"apiVersion must be one of {', '.join(API_VERSIONS)}, got {api_version!r}")
    if body.get("kind") != "AdmissionReview":
        raise BadReview(f"kind must be AdmissionReview, got {body.get('kind')!r}")
    request = body.get("request")
    if not isinstance(request, dict):
        raise BadReview("request is missing or not an object")
    uid = _field(request, "uid", str, "request.")
    if not uid:
        raise BadReview("request.uid is missing or empty")
    operation = _field(request, "operation", str, "request.") or ""
    if operation not in OPERATIONS:
        raise BadReview(f"request.operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")
    kind = _field(request, "kind", dict, "request.") or {}
    kind_name = _field(kind, "kind", str, "request.kind.") or ""
    obj = _field(request, "object", dict, "request.")
    old_obj = _field(request, "oldObject", dict, "request.")
    dry_run = _field(request, "dryRun", bool, "request.")
    user = _field(request, "userInfo", dict, "request.") or {}
    return Request(
        api_version=api_version,
        uid=uid,
        operation=operation,
        kind=kind_name,
        namespace=_field(request, "namespace", str, "request.") or "",
        name=_field(request, "name", str, "request.") or "",
        obj=obj,
        dry_run=bool(dry_run),
        username=_field(user, "username", str, "request.userInfo.") or "",
        old_obj=old_obj,
    )


@dataclass(frozen=True)
class Response:
    """One answer; `review(api_version)` is the AdmissionReview sent back, in the request's own apiVersion."""

    uid: str
    allowed: bool
    message: str = ""
    code: int = 200
    reason: str = ""
    warnings: tuple[str, ...] = ()
    audit: Mapping[str, str] = field(default_factory=dict)

    def review(self, api_version: str, uid: str | None = None) -> dict[str, Any]:
        """The AdmissionReview to send back, in the request's own apiVersion (with another `uid` when given)."""
        response: dict[str, Any] = {"uid": self.uid if uid is None else uid, "allowed": self.allowed}
        if not self.allowed:
            response["status"] = {
                "metadata": {},
                "status": "Failure",
                "code": self.code,
                "reason": self.reason,
                "message": self.message,
            }
        if self.warnings:
            response["warnings"] = list(self.warnings)
        if self.audit:
            response["auditAnnotations"] = dict(self.audit)
        return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def _audit(annotations: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (annotations or {}).items() if _ANNOTATION_KEY.match(k)}


def allowed(uid: str, warnings: Sequence[str] = (), audit: Mapping[str, str] | None = None) -> Response:
    """An admission: HTTP 200, allowed=true, with warnings (kubectl prints them) and audit annotations (keys that kube-
    apiserver would drop are left out).
    """
    return Response(uid, True, warnings=tuple(warnings), audit=_audit(audit))


def denied(uid: str, message: str, warnings: Sequence[str] = (), audit: Mapping[str, str] | None = None) -> Response:
    """A policy denial: HTTP 200 with allowed=false and a 403 status that kubectl prints."""
    return Response(uid, False, message, 403, "Forbidden", tuple(warnings), _audit(audit))
