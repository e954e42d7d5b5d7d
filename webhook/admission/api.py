"""The FastAPI application: the routes (routes.py), error bodies as JSON problems, the background tasks in its
lifespan, and its OpenAPI document (served only with `serve --openapi`; committed as docs/openapi.json).

`python -m webhook.admission.api > docs/openapi.json` writes the document again after a change of the contract
(tests/admission/test_openapi.py says when it is out of date).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from webhook.admission.app import problem_body
from webhook.admission.routes import JSON, admission_router, operations
from webhook.core.policy import Policy, PolicyInForce
from webhook.runtime import logs

log = logging.getLogger("apiserver_tls_guard")
Job = Callable[[], Coroutine[Any, Any, None]]
# The version of the HTTP contract the document describes, not of the package (release/pin.py does not touch it).
API_VERSION = "1"
OPENAPI_URL = "/openapi.json"


class WebhookAPI(FastAPI):
    """FastAPI, whose OpenAPI document holds the models the routes refer to (models.py), made when it is asked for."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            from pydantic.json_schema import models_json_schema

            from webhook.admission.models import DOCUMENTED

            document = super().openapi()
            _, defs = models_json_schema(DOCUMENTED, ref_template="#/components/schemas/{model}")
            document.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            return document
        return self.openapi_schema


def _problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(problem_body(status, message), status_code=status, headers=headers, media_type=JSON)


async def _http_error(_: Request, exc: Exception) -> Response:
    """Every refusal raised by FastAPI, Starlette or a dependency (404, 405 with Allow, 413, 415) as a JSON
    problem."""
    assert isinstance(exc, HTTPException)
    return _problem(exc.status_code, str(exc.detail), exc.headers)


async def _disconnected(_: Request, __: Exception) -> Response:
    # Nobody is left to read the answer (uvicorn drops it); answering keeps the traceback out of the log.
    return _problem(400, "the client went away before the body was read")


async def _unexpected(_: Request, exc: Exception) -> Response:  # pragma: no cover - last resort
    log.error("internal error", extra=logs.fields(error=type(exc).__name__))
    return _problem(400, "request could not be processed")


def create_app(policy: Policy | PolicyInForce, background: Sequence[Job] = (), openapi: bool = False) -> FastAPI:
    """The webhook's ASGI app. A `PolicyInForce` may be swapped while serving (the policy reloader); a bare `Policy`
    is fixed. `background` jobs (certificate and policy reloaders, the audit) run for as long as the server does.
    """
    in_force = policy if isinstance(policy, PolicyInForce) else PolicyInForce(policy, "")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(job()) for job in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = WebhookAPI(
        title="apiserver-tls-guard",
        summary="Validating admission webhook: kube-apiserver's TLS and client-authentication flags (CIS 1.2)",
        version=API_VERSION,
        openapi_url=OPENAPI_URL if openapi else None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            ClientDisconnect: _disconnected,
            Exception: _unexpected,
        },
    )
    app.include_router(admission_router(in_force))
    app.include_router(operations)
    return app


def openapi_document() -> str:
    """The OpenAPI document as committed in docs/openapi.json."""
    from webhook.core.policy import load_policy

    return json.dumps(create_app(load_policy(None)).openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(openapi_document())
