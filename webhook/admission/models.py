"""The HTTP contract as pydantic models: the AdmissionReview envelope kube-apiserver sends and the one we answer,
the problem body of a refused request, the probes' body.

They describe the API for its OpenAPI document (docs/openapi.json), are imported only when it is made, and are
never run on the hot path: /validate parses with orjson and `review.parse_review`, and answers pre-built bytes
(verdict_cache). The request models accept
no more than `parse_review` does (schemathesis proves every body they allow gets a 200, tests/admission/
test_openapi.py); the object under review stays a mapping, as the engine reads it. Field names and types follow
k8s.io/api/admission/v1 (types.go: AdmissionRequest, AdmissionResponse) and k8s.io/api/authentication/v1
(UserInfo); apimachinery's metav1.Status for the denial.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ApiVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
# kube-apiserver drops a warning with a control character and cuts warnings past its 4 KiB budget; ours are one
# printable line of at most 120 characters (core.engine.shorten).
WarningText = Annotated[str, StringConstraints(max_length=120, pattern=r"^[^\u0000-\u001f\u007f]*$")]
# Audit annotation keys are qualified-name parts, as review._ANNOTATION_KEY keeps them.
AnnotationKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")]


class _Model(BaseModel):
    # Unknown fields are kept out of the answer's schema and ignored in the request's: a newer kube-apiserver may
    # send fields this version does not know, and must still be answered.
    model_config = ConfigDict(extra="ignore")


class GroupVersionKind(_Model):
    """metav1.GroupVersionKind: what kind of object is under review."""

    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(_Model):
    """metav1.GroupVersionResource: the resource the request is about."""

    group: str = ""
    version: str = ""
    resource: str = ""


class UserInfo(_Model):
    """authentication/v1 UserInfo of the requester (the kubelet for a mirror pod: `system:node:<node>`)."""

    username: str = ""
    uid: str = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}


class AdmissionRequest(_Model):
    """admission/v1 AdmissionRequest: the fields kube-apiserver sends (the webhook reads uid, kind, name,
    namespace, operation, userInfo, object, oldObject and dryRun)."""

    uid: str = Field(min_length=1, description="echoed in the answer; kube-apiserver refuses an answer without it")
    kind: GroupVersionKind = GroupVersionKind()
    resource: GroupVersionResource = GroupVersionResource()
    subResource: str = ""
    requestKind: GroupVersionKind | None = None
    requestResource: GroupVersionResource | None = None
    requestSubResource: str = ""
    name: str = Field("", description="empty on a CREATE with generateName")
    namespace: str = ""
    operation: Operation
    userInfo: UserInfo = UserInfo()
    object: dict[str, Any] | None = Field(None, description="the object as admitted; null on DELETE")
    oldObject: dict[str, Any] | None = Field(None, description="the object as it was (UPDATE, DELETE)")
    dryRun: bool = False
    options: dict[str, Any] | None = None


class AdmissionReviewRequest(_Model):
    """The body of POST /validate: an AdmissionReview carrying a request, v1 (or v1beta1 on very old clusters)."""

    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class Status(_Model):
    """metav1.Status of a denial: kubectl prints `message` after `admission webhook "..." denied the request: `."""

    metadata: dict[str, Any] = {}
    status: Literal["Failure"]
    code: int = Field(ge=400, le=599, description="403 for a policy denial")
    reason: str
    message: str


class AdmissionResponse(_Model):
    """admission/v1 AdmissionResponse of a validating webhook (never a patch)."""

    uid: str = Field(description="the request's uid")
    allowed: bool
    status: Status | None = Field(None, description="present when allowed is false")
    warnings: list[WarningText] | None = Field(None, description="each sent to the client as a Warning header")
    auditAnnotations: dict[AnnotationKey, str] | None = Field(
        None, description="added to the audit event as <webhook name>/<key>"
    )


class AdmissionReviewResponse(_Model):
    """The answer to POST /validate: an AdmissionReview of the request's own apiVersion, carrying the response."""

    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


class Problem(_Model):
    """The body of every non-200 answer: what was wrong and the HTTP status again."""

    error: str
    status: int = Field(ge=400, le=599)


class Probe(_Model):
    """The body of /healthz and /readyz."""

    status: str


# What the routes refer to (routes.py, by name), and whether each is read (validation) or written (serialization).
DOCUMENTED: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
    (AdmissionReviewRequest, "validation"),
    (AdmissionReviewResponse, "serialization"),
    (Problem, "serialization"),
    (Probe, "serialization"),
]
