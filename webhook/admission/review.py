"""admission.k8s.io AdmissionReview: reading requests and building answers, as kube-apiserver expects them.

Answers are built with one tiny constructor per outcome (`allowed`, `denied`), as controller-runtime's
admission package does, so the HTTP layer reads like a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.core.operators import clip

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
# Audit annotation keys are qualified-name parts; kube-apiserver silently drops anything else.
_ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

# What one answer may carry. The object under review is the submitter's; nothing it holds may make the answer
# (or the memory behind it) grow with it: a 2.9 MB pod once got a 22.7 MB answer.
# - Warnings: kube-apiserver's warning recorder (apiserver/pkg/endpoints/filters/warning.go) keeps 4 * 1024 runes
#   of warnings per request (truncateAtTotalRunes) and past that cuts every warning to 256 (truncateItemRunes);
#   the count itself is unbounded there, every warning a response header. We keep whole warnings within the 4096.
WARNINGS_TOTAL = 4096
# - Audit annotations: each is `<webhook>/<key>: value` in the audit event; with --audit-log-truncate-enabled (or
#   the webhook backend's) an event over 100 KiB (MaxEventSize, apiserver/pkg/server/options/audit.go) loses its
#   request and response objects, and is dropped whole when the metadata alone is still too large
#   (apiserver/plugin/pkg/audit/truncate/truncate.go). The status message is in the event too (responseStatus).
#   So each annotation value is cut at 1 KiB, all of them at 16 KiB, the message at 16 KiB: 32 KiB, a third of it.
ANNOTATION_LIMIT = 1024
ANNOTATIONS_TOTAL = 16 * 1024
MESSAGE_LIMIT = 16 * 1024
# - The whole answer, as serialized, without the uid (kube-apiserver's own, echoed): the parts above plus the JSON
#   envelope and escapes. An answer past it is sent as its compact form (`Response.compact`).
ANSWER_LIMIT = 64 * 1024


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

    def compact(self) -> Response:
        """The same verdict in a few hundred bytes: the message's first line, no warnings, the `verdict` annotation.
        For an answer that would still be past ANSWER_LIMIT (JSON escapes of a hostile command line)."""
        head = clip(self.message.split("\n", 1)[0], 512) if self.message else ""
        note = "the full answer was too large to send; see the webhook's log and `apiserver-tls-guard check`"
        audit = {k: v for k, v in self.audit.items() if k in ("verdict", "exempt")}
        return Response(self.uid, self.allowed, f"{head}\n{note}" if head else "", self.code, self.reason, (), audit)


def bounded_warnings(warnings: Sequence[str], total: int = WARNINGS_TOTAL) -> tuple[str, ...]:
    """Whole warnings while they fit in `total` characters, then one saying how many were left out."""
    kept: list[str] = []
    used = 0
    for i, text in enumerate(warnings):
        if used + len(text) > total - 100:  # room for the last line
            kept.append(f"apiserver-tls-guard: {len(warnings) - i} more warnings left out; see the audit log")
            break
        kept.append(text)
        used += len(text)
    return tuple(kept)


_FIRST = ("verdict", "exempt")


def _audit(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The annotations kube-apiserver keeps (valid keys), each value and all of them within their limits."""
    kept: dict[str, str] = {}
    used = 0
    given = annotations or {}
    # The verdict first: of all annotations it is the one that must never be the one left out.
    ordered = [(k, given[k]) for k in _FIRST if k in given] + [(k, v) for k, v in given.items() if k not in _FIRST]
    for key, value in ordered:
        if not _ANNOTATION_KEY.match(key):
            continue
        value = clip(value, ANNOTATION_LIMIT)
        if used + len(value) > ANNOTATIONS_TOTAL:
            kept["truncated"] = "more annotations left out (too large)"
            break
        kept[key] = value
        used += len(value)
    return kept


def allowed(uid: str, warnings: Sequence[str] = (), audit: Mapping[str, str] | None = None) -> Response:
    """An admission: HTTP 200, allowed=true, with warnings (kubectl prints them) and audit annotations (keys that kube-
    apiserver would drop are left out).
    """
    return Response(uid, True, warnings=bounded_warnings(warnings), audit=_audit(audit))


def denied(uid: str, message: str, warnings: Sequence[str] = (), audit: Mapping[str, str] | None = None) -> Response:
    """A policy denial: HTTP 200 with allowed=false and a 403 status that kubectl prints."""
    return Response(
        uid, False, clip(message, MESSAGE_LIMIT), 403, "Forbidden", bounded_warnings(warnings), _audit(audit)
    )
