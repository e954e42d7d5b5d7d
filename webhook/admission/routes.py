"""The routes: `POST /validate` (the admission review) and the operations endpoints (`/healthz`, `/readyz`,
`/metrics`), one APIRouter each.

/validate is the hot path, so FastAPI neither parses nor validates its body: the `review_body` dependency hands
over the raw bytes, `answer_review` decodes them with orjson and answers pre-built bytes from the verdict cache in a
plain `Response`. The bodies are described for the OpenAPI document by reference to the pydantic models of
models.py (`responses=`, `openapi_extra=`), which api.py adds to the document's components when it is asked for.
Not `response_model=`: a model there makes FastAPI build a field for it and import pydantic.v1 (to rule out a v1
model) as each route is made: 35 ms of CPU on the way to ready (routes 27 ms, models 10 ms) for a document
nobody asks for at start-up.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from webhook.admission.app import MAX_BODY_BYTES, answer_review
from webhook.core.policy import PolicyInForce
from webhook.runtime import metrics, readiness

JSON = "application/json"


def _json(model: str, description: str) -> dict[str, Any]:
    """An OpenAPI response (or request body) of JSON described by the model of that name in models.py."""
    return {"description": description, "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{model}"}}}}


_VALIDATE_DOCS: dict[str, Any] = {
    "requestBody": {"required": True, **_json("AdmissionReviewRequest", "an AdmissionReview with its request")},
    # kube-apiserver appends ?timeout=<N>s (what is left of timeoutSeconds); it is read by nobody here.
    "parameters": [
        {
            "name": "timeout",
            "in": "query",
            "required": False,
            "description": "the time kube-apiserver still waits for the answer, in whole seconds; ignored",
            "schema": {"type": "string"},
        }
    ],
}
_VALIDATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _json("AdmissionReviewResponse", "the verdict, in the request's apiVersion, with its uid"),
    400: _json("Problem", "the body is not JSON, or not an AdmissionReview (the error says why)"),
    413: _json("Problem", f"the body is larger than {MAX_BODY_BYTES} bytes (7 MiB)"),
    415: _json("Problem", "the Content-Type is not JSON"),
}
_PROBE: dict[int | str, dict[str, Any]] = {200: _json("Probe", "the process is up (healthz) or ready (readyz)")}


_TOO_LARGE = f"body is larger than {MAX_BODY_BYTES} bytes"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


async def review_body(request: Request) -> bytes:
    """The request body: 415 unless it is JSON, 413 past MAX_BODY_BYTES (at once when the Content-Length says so,
    else at the first chunk past it: an oversized body is never read whole).

    Starlette's own `max_body_size` cannot do this: for a declared oversized body it replaces whatever the app
    answers with a text/plain 413, and the contract's refusals are JSON problems.
    """
    if not _is_json(request.headers.get("content-type", "")):
        raise HTTPException(415, "Content-Type must be application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, _TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, _TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


def admission_router(in_force: PolicyInForce) -> APIRouter:
    """POST /validate under the policy in force (the policy reloader may swap it between two requests)."""
    router = APIRouter()

    @router.post(
        "/validate",
        summary="Judge an AdmissionReview",
        description="What kube-apiserver calls: always 200 with the verdict for a readable review.",
        response_class=Response,
        responses=_VALIDATE_RESPONSES,
        openapi_extra=_VALIDATE_DOCS,
    )
    async def validate(body: Annotated[bytes, Depends(review_body)]) -> Response:
        status, payload = answer_review(in_force.policy, body)
        return Response(payload, status_code=status, media_type=JSON)

    return router


operations = APIRouter()


@operations.get("/healthz", summary="Liveness", responses=_PROBE)
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@operations.get(
    "/readyz",
    summary="Readiness",
    responses={**_PROBE, 503: _json("Probe", "with --cluster-certs: the caBundle is not yet published")},
)
async def readyz() -> Response:
    if not readiness.ready():  # runtime/readiness.py: with --cluster-certs, the caBundle not yet published
        return Response(b'{"status":"not ready: caBundle not yet published"}', status_code=503, media_type=JSON)
    return Response(b'{"status":"ready"}', media_type=JSON)


@operations.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    response_description="Prometheus' text exposition format",
)
async def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
