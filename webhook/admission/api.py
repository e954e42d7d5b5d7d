"""The FastAPI part of the HTTP layer: what is not on the hot path or the start-up path (webhook/admission/app.py
imports it on the first request that needs it)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from webhook.admission.app import problem_body
from webhook.runtime import logs, metrics

log = logging.getLogger("apiserver_tls_guard")


def _problem(status: int, message: str) -> Response:
    return Response(problem_body(status, message), status_code=status, media_type="application/json")


def create_api() -> FastAPI:
    """Everything the plain ASGI paths do not answer: JSON problems for unknown paths and methods (and the probes
    and metrics again, for a HEAD or whatever else reaches here)."""
    app = FastAPI(title="apiserver-tls-guard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _problem(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:  # pragma: no cover - last resort
        log.error("internal error", extra=logs.fields(error=type(exc).__name__))
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

    return app
