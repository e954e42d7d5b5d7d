"""The HTTP layer: FastAPI routes for /validate, /healthz and /readyz. Thin on purpose; the work is elsewhere."""

from __future__ import annotations

import json
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from webhook import admission, metrics
from webhook.admission import BadReview
from webhook.decide import decide
from webhook.policy import Mode, Policy

MAX_BODY_BYTES = 3 * 1024 * 1024  # kube-apiserver's own limit for a request body
log = logging.getLogger("apiserver_tls_guard")


class _TooLarge(Exception):
    pass


def _problem(status: int, message: str) -> JSONResponse:
    metrics.BAD_REQUESTS.labels(str(status)).inc()
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def create_app(policy: Policy) -> FastAPI:
    app = FastAPI(title="apiserver-tls-guard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - last resort
        log.error("internal error: %s", type(exc).__name__)
        return _problem(400, "request could not be processed")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/validate")
    async def validate(request: Request) -> Response:
        started = time.perf_counter()
        if not _is_json(request.headers.get("content-type", "")):
            return _problem(415, "Content-Type must be application/json")
        try:
            body = await _read_body(request)
        except _TooLarge:
            return _problem(413, f"body is larger than {MAX_BODY_BYTES} bytes")
        try:
            review = admission.parse_review(json.loads(body))
        except (ValueError, RecursionError) as err:
            reason = str(err) if isinstance(err, BadReview) else "body is not valid JSON"
            return _problem(400, reason)
        findings: list[tuple[str, str]] = []
        try:
            decision = decide(review, policy)
            response = decision.response
            outcome = decision.outcome
            if decision.verdict is not None:
                findings = [(f.key, f.mode.value) for f in decision.verdict.findings]
        except Exception as err:  # a bug of ours must still produce an answer kube-apiserver understands
            log.error("could not evaluate uid=%s: %s", review.uid, type(err).__name__)
            text = "apiserver-tls-guard could not evaluate this object; see the webhook's log"
            response = (
                admission.denied(review.uid, text)
                if policy.mode is Mode.ENFORCE
                else admission.allowed(review.uid, [text])
            )
            outcome = "error"
        answer = JSONResponse(response.review(review.api_version))
        elapsed = time.perf_counter() - started
        metrics.LATENCY.observe(elapsed)
        metrics.REQUESTS.labels(review.operation, outcome, policy.mode.value).inc()
        for key, mode in findings:
            metrics.FINDINGS.labels(key, mode).inc()
        log.info(
            "decision",
            extra={
                "uid": review.uid,
                "kind": review.kind,
                "namespace": review.namespace,
                "objectName": review.name,
                "operation": review.operation,
                "dryRun": review.dry_run,
                "verdict": outcome,
                "controls": [key for key, _ in findings],
                "durationMs": round(elapsed * 1000, 3),
            },
        )
        return answer

    return app
