"""A small asyncio load generator: keep-alive HTTPS connections that post AdmissionReviews like kube-apiserver."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {self.errors} errors, {self.rate:,.0f} req/s, "
            f"p50 {self.percentile(50) * 1000:.2f} ms, p99 {self.percentile(99) * 1000:.2f} ms, "
            f"mean {statistics.fmean(self.latencies) * 1000 if self.latencies else float('nan'):.2f} ms"
        )


def _request(body: bytes, host: str) -> bytes:
    return (
        f"POST /validate?timeout=10s HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, */*\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _connect(port: int, context: ssl.SSLContext, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=name)


def _requests(body: bytes | Sequence[bytes], host: str) -> Iterator[bytes]:
    """The requests to send, in turn: one body again and again, or each of several in a cycle."""
    bodies = [body] if isinstance(body, bytes) else list(body)
    return itertools.cycle([_request(b, host) for b in bodies])


async def closed_loop(
    port: int, context: ssl.SSLContext, name: str, body: bytes | Sequence[bytes], connections: int, seconds: float
) -> Result:
    """Each connection sends its next request as soon as the last answer is in: the server's top speed."""
    requests = _requests(body, name)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await _connect(port, context, name)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(next(requests))
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return Result(len(latencies), errors, time.perf_counter() - started, latencies)


async def open_loop(
    port: int,
    context: ssl.SSLContext,
    name: str,
    body: bytes | Sequence[bytes],
    rate: float,
    seconds: float,
    connections: int = 8,
) -> Result:
    """Requests start on a fixed schedule (`rate` per second) whatever the answers do: latency at a given load."""
    requests = _requests(body, name)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await _connect(port, context, name))
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)

    async def one(at: float) -> None:
        nonlocal errors
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        reader, writer = await pool.get()
        try:
            writer.write(next(requests))
            status = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            return
        finally:
            pool.put_nowait((reader, writer))
        latencies.append(time.perf_counter() - at)  # from the scheduled start: queueing counts
        errors += status != 200

    start = time.perf_counter() + 0.05
    began = time.perf_counter()
    await asyncio.gather(*(one(start + i / rate) for i in range(total)))
    elapsed = time.perf_counter() - began
    while not pool.empty():
        pool.get_nowait()[1].close()
    return Result(len(latencies), errors, elapsed, latencies)
