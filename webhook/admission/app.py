"""The HTTP layer. Thin on purpose; the work is elsewhere.

`POST /validate` is served by a plain ASGI handler in front of FastAPI: it is the admission hot path, and
FastAPI's per-request machinery (routing, Request/Response objects, middleware stack) cost about 80 µs of the
~250 µs a review took (benchmarks/README.md). The probes and `/metrics` are plain ASGI too; FastAPI answers the
rest (unknown paths and methods, as JSON problems).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping, Sequence
from typing import Any

import orjson

from webhook.admission import review as admission
from webhook.admission.decide import Decision, decide
from webhook.admission.review import BadReview
from webhook.admission.verdict_cache import CachedAnswer, VerdictCache, serialize
from webhook.core.policy import Mode, Policy, PolicyInForce
from webhook.runtime import logs, metrics, readiness

# An UPDATE review carries `object` and `oldObject`, each up to kube-apiserver's 3 MiB request limit, plus the
# envelope: 7 MiB, as controller-runtime's webhook server allows (pkg/webhook/admission/http.go).
MAX_BODY_BYTES = 7 * 1024 * 1024
VALIDATE_PATH = "/validate"
log = logging.getLogger("apiserver_tls_guard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def problem_body(status: int, message: str) -> bytes:
    """A JSON problem body (`{"error", "status"}`) for a non-200 answer; counts it in the metrics."""
    metrics.BAD_REQUESTS.labels(str(status)).inc()
    return json.dumps({"error": message, "status": status}).encode()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


_CACHE = VerdictCache()
# A failpoint, as Go projects have them: APISERVER_TLS_GUARD_FAILPOINT=decide makes judging raise, so the tests can
# prove through a real request what an internal error answers. Off unless the variable is set at start.
_FAIL_DECIDE = os.environ.get("APISERVER_TLS_GUARD_FAILPOINT") == "decide"


def _decide(review: admission.Request, policy: Policy, cache: VerdictCache | None) -> tuple[Decision, bytes]:
    """The decision and the serialized answer, from the verdict cache when it has them."""
    if cache is None:
        decision = decide(review, policy)
        return decision, serialize(decision.response, review.api_version)
    key = cache.key(review)
    answer = cache.get(policy, key)
    metrics.cache_lookup(answer is not None)
    if answer is None:
        answer = CachedAnswer.of(decide(review, policy), review.api_version)
        cache.put(policy, key, answer)
    return answer.decision, answer.payload(review.uid)


def answer_review(policy: Policy, body: bytes, cache: VerdictCache | None = _CACHE) -> tuple[int, bytes]:
    """HTTP status and body for one /validate request body. Never raises."""
    started = time.perf_counter()
    try:
        # orjson: a third of json.loads' time on a pod review; it refuses NaN, lone surrogates and nesting deeper
        # than 1,024 levels, none of which kube-apiserver's encoding/json ever sends.
        review = admission.parse_review(orjson.loads(body))
    except (ValueError, RecursionError) as err:
        reason = str(err) if isinstance(err, BadReview) else "body is not valid JSON"
        return 400, problem_body(400, reason)
    findings: tuple[tuple[str, str], ...] = ()
    try:
        if _FAIL_DECIDE:
            raise RuntimeError("failpoint: decide")
        decision, payload = _decide(review, policy, cache)
        outcome = decision.outcome
        findings = decision.counted
    except Exception as err:  # a bug of ours must still produce an answer kube-apiserver understands
        log.error("could not evaluate", extra=logs.fields(uid=review.uid, error=type(err).__name__))
        text = "apiserver-tls-guard could not evaluate this object; see the webhook's log"
        response = (
            admission.denied(review.uid, text) if policy.mode is Mode.ENFORCE else admission.allowed(review.uid, [text])
        )
        payload = serialize(response, review.api_version)
        outcome = "error"
    elapsed = time.perf_counter() - started
    metrics.LATENCY.observe(elapsed)
    metrics.request(review.operation, outcome, policy.mode.value)
    for control, mode in findings:
        metrics.finding(control, mode)
    logs.decision(
        uid=review.uid,
        kind=review.kind,
        namespace=review.namespace,
        objectName=review.name,
        operation=review.operation,
        dryRun=review.dry_run,
        verdict=outcome,
        controls=[key for key, _ in findings],
        durationMs=round(elapsed * 1000, 3),
    )
    return 200, payload


async def _send_typed(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send(send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, declared: int | None) -> bytes | None:
    """The whole body, or None when it is larger than MAX_BODY_BYTES (read no further than that)."""
    if declared is not None and declared > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def validate_endpoint(in_force: PolicyInForce) -> ASGIApp:
    """The plain ASGI handler of POST /validate: 405 for other methods, 415 unless JSON, 413 past MAX_BODY_BYTES, else
    the review's answer.
    """

    async def validate(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _send(send, 405, problem_body(405, "Method Not Allowed"), ((b"allow", b"POST"),))
            return
        content_type = ""
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        if not _is_json(content_type):
            await _send(send, 415, problem_body(415, "Content-Type must be application/json"))
            return
        body = await _read_body(receive, declared)
        if body is None:
            await _send(send, 413, problem_body(413, f"body is larger than {MAX_BODY_BYTES} bytes"))
            return
        status, payload = answer_review(in_force.policy, body)
        await _send(send, status, payload)

    return validate


_PLAIN = {"/healthz": b'{"status":"ok"}', "/readyz": b'{"status":"ready"}'}


async def _lifespan(
    receive: Receive, send: Send, background: Sequence[Callable[[], Coroutine[Any, Any, None]]]
) -> None:
    """Run the background tasks (certificate and policy reloaders) for as long as the server does."""
    tasks: list[asyncio.Task[None]] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            tasks = [asyncio.create_task(job()) for job in background]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for task in tasks:
                task.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(
    policy: Policy | PolicyInForce, background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
) -> ASGIApp:
    """The ASGI app. `/validate`, `/healthz`, `/readyz` and `/metrics` are plain ASGI; FastAPI (webhook/admission/
    api.py) answers everything else, and is imported on the first such request: its import cost ~200 ms, most of
    the start-up, and nothing on the way to ready needs it. A `PolicyInForce` may be swapped while serving (the
    policy reloader); a bare `Policy` is fixed."""
    in_force = policy if isinstance(policy, PolicyInForce) else PolicyInForce(policy, "")
    validate = validate_endpoint(in_force)
    api: ASGIApp | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal api
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, background)
            return
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if path == VALIDATE_PATH:
                await validate(scope, receive, send)
                return
            if method == "GET" and path in _PLAIN:
                if path == "/readyz" and not readiness.ready():  # runtime/readiness.py: the caBundle not yet published
                    await _send(send, 503, b'{"status":"not ready: caBundle not yet published"}')
                    return
                await _send(send, 200, _PLAIN[path])
                return
            if method == "GET" and path == "/metrics":
                body, content_type = metrics.exposition()
                await _send_typed(send, 200, body, content_type)
                return
        if api is None:
            from webhook.admission.api import create_api

            api = create_api()
        await api(scope, receive, send)

    return app
