"""The hot path in process: CPU µs per POST /validate inside the ASGI app, the webhook against the bare FastAPI app.

No TLS, no uvicorn, no load generator: each app is called as uvicorn calls it (scope, receive, send) on one event
loop, in interleaved rounds, and timed with the process's CPU clock, so other work on the shared machine does not
count. What uvicorn and TLS cost per request (the same for both) is measured by benchmarks/e2e.py; this one says
what the webhook adds to FastAPI, and `--profile` says where that goes. The webhook runs as `serve` runs it:
decision log at info level as JSON (written to /dev/null), metrics on, verdict cache on.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import itertools
import os
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from benchmarks import bare_fastapi
from benchmarks.e2e import never_seen, review_body
from webhook.admission.api import create_app
from webhook.core.policy import load_policy
from webhook.runtime import logs

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/validate",
        "raw_path": b"/validate",
        "query_string": b"timeout=10s",
        "root_path": "",
        "headers": [
            (b"host", b"apiserver-tls-guard.apiserver-tls-guard.svc"),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, */*"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8443),
        "state": {},
    }


async def _drive(app: App, bodies: Iterator[bytes], count: int) -> None:
    """`count` requests, one after the other, with the next bodies; each must be answered 200."""
    for _ in range(count):
        body = next(bodies)
        statuses: list[int] = []

        async def receive(body: bytes = body) -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message, statuses: list[int] = statuses) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(_scope(body), receive, send)
        if statuses != [200]:
            raise RuntimeError(f"answered {statuses}")


def cpu_us(app: App, bodies: Iterator[bytes], count: int) -> float:
    """CPU µs per request for `count` requests."""
    started = time.process_time()
    asyncio.run(_drive(app, bodies, count))
    return (time.process_time() - started) / count * 1e6


def _quiet_json_log() -> None:
    """The decision log as `serve` writes it (JSON at info level), into /dev/null."""
    logs.configure("info", "json")
    handler = logs._JSON_HANDLER
    assert handler is not None
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the whole run


def profile(app: App, bodies: Iterator[bytes], count: int, top: int) -> str:
    """cProfile of `count` requests: the functions with the most time of their own, and the share of each part."""
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_drive(app, bodies, count))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    parts: dict[str, float] = {}
    total = 0.0
    for (path, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += own
        part = next((name for name, marker in _PARTS if marker in path), "other (builtins, C calls)")
        parts[part] = parts.get(part, 0.0) + own
    lines = [f"  {part}: {own / total:.0%} ({own / count * 1e6:.1f} µs a request)" for part, own in sorted(
        parts.items(), key=lambda item: -item[1])]  # fmt: skip
    return "own time by part (profiled, so slower than unprofiled):\n" + "\n".join(lines) + "\n" + out.getvalue()


_PARTS = (
    ("fastapi", "site-packages/fastapi/"),
    ("starlette", "site-packages/starlette/"),
    ("pydantic", "site-packages/pydantic"),
    ("prometheus_client (metrics)", "site-packages/prometheus_client/"),
    ("webhook/runtime (log, metrics)", "/webhook/runtime/"),
    ("webhook/admission", "/webhook/admission/"),
    ("webhook/core + cmdline (engine)", "/webhook/core/"),
    ("webhook/core + cmdline (engine)", "/webhook/cmdline/"),
    ("logging, json", "/logging/"),
    ("asyncio", "/asyncio/"),
    ("benchmark driver", "/benchmarks/"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also profile the webhook (repeated and fresh pods)")
    parser.add_argument("--top", type=int, default=20, help="functions in each profile")
    args = parser.parse_args()

    _quiet_json_log()
    body = review_body()
    fresh = never_seen(body)
    bare = bare_fastapi.build()
    webhook = create_app(load_policy(None, mode="enforce"))
    # One cycle per run, kept across rounds: the never-seen pods stay never seen (more of them than the cache holds).
    runs: list[tuple[str, App, Iterator[bytes]]] = [
        ("bare FastAPI app", bare, itertools.repeat(body)),
        ("webhook, a pod seen before", webhook, itertools.repeat(body)),
        ("webhook, pods never seen", webhook, itertools.cycle(fresh)),
    ]
    for _, app, bodies in runs:  # warm-up: first calls build the middleware stack, fill caches
        cpu_us(app, bodies, 200)
    times: dict[str, list[float]] = {label: [] for label, *_ in runs}
    for _ in range(args.rounds):
        for label, app, bodies in runs:
            times[label].append(cpu_us(app, bodies, args.requests))
    floor = times[runs[0][0]]
    print(f"CPU µs per request inside the app, {args.rounds} interleaved rounds of {args.requests} (median):")
    for label, values in times.items():
        ratios = sorted(f / v for f, v in zip(floor, values, strict=True))
        print(
            f"  {label}: {statistics.median(values):.1f} µs (rounds {', '.join(f'{v:.1f}' for v in values)}); "
            f"bare / this {statistics.median(ratios):.2f}x"
        )
    added = statistics.median(times[runs[1][0]]) - statistics.median(floor)
    added_fresh = statistics.median(times[runs[2][0]]) - statistics.median(floor)
    print(f"  the webhook adds {added:.1f} µs to FastAPI for a pod seen before, {added_fresh:.1f} µs for a new one")
    if args.profile:
        for label, app, bodies in runs:
            print(f"\n== profile: {label} ==")
            print(profile(app, bodies, args.requests, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
