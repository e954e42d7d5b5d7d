"""The floor of a FastAPI webhook: one POST route that reads the body and returns one fixed allowed review.

It runs under the same uvicorn, TLS context, parser and settings as the webhook (webhook.runtime.serving with another
app factory), so the ratio between the two is the cost of everything the webhook adds to FastAPI itself: the
content-type and size checks, parsing, judging, the decision log, metrics.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from benchmarks.bare_app import ANSWER


def build() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/validate")
    async def validate(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    return app
