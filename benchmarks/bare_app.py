"""The baseline for the end-to-end benchmark: the least an ASGI app can do to answer an admission review.

It reads the whole body and returns one fixed allowed AdmissionReview. It runs under the same uvicorn, TLS
context, parser and settings as the webhook (webhook.runtime.serving with another app factory), so the ratio between the
two is the cost of everything the webhook adds: routing, parsing, judging, logging, metrics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

ANSWER = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}'
)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


def build() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return app
