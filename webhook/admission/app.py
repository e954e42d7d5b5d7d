"""Answering one /validate body: parse it, judge it (through the verdict cache), log and count the decision.

The HTTP around it (routes, content type, body limit, error bodies, lifespan) is FastAPI's: webhook/admission/
routes.py and api.py. This is the hot path; benchmarks/README.md has what each part of it costs.
"""

from __future__ import annotations

import json
import logging
import os
import time

import orjson

from webhook.admission import review as admission
from webhook.admission.decide import Decision, decide, error_response
from webhook.admission.review import BadReview
from webhook.admission.verdict_cache import CachedAnswer, VerdictCache, serialize
from webhook.core.policy import Policy
from webhook.runtime import logs, metrics

# An UPDATE review carries `object` and `oldObject`, each up to kube-apiserver's 3 MiB request limit, plus the
# envelope: 7 MiB, as controller-runtime's webhook server allows (pkg/webhook/admission/http.go).
MAX_BODY_BYTES = 7 * 1024 * 1024
log = logging.getLogger("apiserver_tls_guard")


def problem_body(status: int, message: str) -> bytes:
    """A JSON problem body (`{"error", "status"}`) for a non-200 answer; counts it in the metrics."""
    metrics.BAD_REQUESTS.labels(str(status)).inc()
    return json.dumps({"error": message, "status": status}).encode()


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
        response, outcome = error_response(review, policy)  # fails closed where a control enforces
        metrics.evaluation_error(response.allowed)
        fields = logs.fields(uid=review.uid, error=type(err).__name__, allowed=response.allowed)
        log.error("could not evaluate", extra=fields)
        payload = serialize(response, review.api_version)
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
