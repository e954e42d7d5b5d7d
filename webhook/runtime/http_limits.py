"""uvicorn's httptools protocol with the bounds a webhook in front of kube-system needs.

httptools (llhttp) puts no limit on header size, and uvicorn none on how long a client may take to send a
request: one client sending 64 MiB of headers grew the server by that much, and hundreds of connections trickling
headers were held open for as long as they liked. Here:
- request head (request line and headers): at most MAX_HEAD_BYTES and MAX_HEADERS, else 431 and close;
- a request must arrive whole (head and body) within REQUEST_READ_SECONDS of its first byte (or of the TLS
  connection, for the first request), else the connection is closed. kube-apiserver sends a review in one go,
  well inside its own timeout (10 s by default, at most 30 s), so only a client that trickles is cut off.
An idle keep-alive connection between requests is governed by --keep-alive, not by these.

On SIGTERM an idle keep-alive connection is drained, not closed at once (_DrainOnShutdown, for httptools and h11).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("apiserver_tls_guard")

# kube-apiserver's own requests carry a dozen short headers; Go's server allows 1 MiB, nginx 8-32 KiB.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
REQUEST_READ_SECONDS = 10.0
# Well below --shutdown-timeout (25 s) and the chart's terminationGracePeriodSeconds: the exit waits this long at most
# for an idle connection, while a connection kube-apiserver is using sees its next review within milliseconds.
DRAIN_IDLE_SECONDS = 2.0


class _DrainOnShutdown:
    """On shutdown, an idle keep-alive connection stays open for a drain window instead of being closed at once.

    uvicorn's Server.shutdown calls each connection's shutdown(); its protocols close an idle one there and then.
    kube-apiserver may be writing a review on that pooled connection at that very moment, and nothing retries it:
    Go's Transport retries on a reused connection only a request it wrote nothing of, or a replayable one
    (net/http transport.go, persistConn.shouldRetryRequest; request.go, Request.isReplayable: GET, HEAD, OPTIONS,
    TRACE or an Idempotency-Key header; a review is a POST), and client-go retries on EOF or a reset only GETs
    (rest/request.go, Request.request: `if r.verb != "GET"`). With failurePolicy Fail that is a denial. kube-proxy's
    conntrack keeps an existing connection on the old pod after its endpoint is gone, so they do arrive.
    Here a review arriving on a draining connection is answered as usual with `connection: close` (uvicorn's own way
    for a request in flight at shutdown: cycle.keep_alive = False), and the client dials afresh, to a live replica.
    A connection still idle at the end of the window is closed then, by the framework's own shutdown(). This shrinks
    the race, it cannot remove it: a review written just as the window closes still meets EOF.
    """

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any  # uvicorn's RequestResponseCycle of the protocol (httptools or h11)

    def __init__(self, *args: Any, drain_idle: float = DRAIN_IDLE_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drain_idle = drain_idle
        self._draining: asyncio.TimerHandle | None = None

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            super().shutdown()  # type: ignore[misc]  # in flight: uvicorn closes once it is answered
        elif self._draining is None and not self.transport.is_closing():
            self._draining = self.loop.call_later(self._drain_idle, self._drained)

    def _drained(self) -> None:
        if not self.transport.is_closing():
            super().shutdown()  # type: ignore[misc]  # idle (closed the framework's way) or in flight (close after)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        # The request's task has not run yet (it is only scheduled): no byte of the answer is written.
        if self._draining is not None and self.cycle is not None and not self.cycle.response_complete:
            self._answer_then_close()

    def _answer_then_close(self) -> None:
        self.cycle.keep_alive = False  # httptools' cycle then writes `connection: close` and closes after

    def connection_lost(self, exc: Exception | None) -> None:
        if self._draining is not None:
            self._draining.cancel()
        super().connection_lost(exc)  # type: ignore[misc]


class DrainingH11Protocol(_DrainOnShutdown, H11Protocol):
    """uvicorn's h11 protocol, draining idle connections on shutdown (its head bound is h11's own option)."""

    def _answer_then_close(self) -> None:
        # h11's cycle closes when keep_alive is off but says nothing; it writes `connection: close` (and h11 then
        # closes) when the request asked for it (h11_impl.RequestResponseCycle.send: CLOSE_HEADER), so ask for it.
        super()._answer_then_close()
        self.cycle.scope["headers"].append((b"connection", b"close"))


class BoundedHttpToolsProtocol(_DrainOnShutdown, HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the request head (MAX_HEAD_BYTES, MAX_HEADERS) and on the time a
    request takes to arrive (REQUEST_READ_SECONDS), draining idle connections on shutdown.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(REQUEST_READ_SECONDS, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.warning("request not received in time; connection closed")
            self.transport.close()

    def _refuse_head(self, why: str) -> None:
        log.warning("request head refused", extra={"fields": {"reason": why}})
        body = why.encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            + b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )  # fmt: skip
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused already: whatever else arrives is dropped unread
        counting = self._in_head
        super().data_received(data)
        # A read that completes the head may carry much of the body too; only a head still unfinished counts.
        if counting and self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse_head(f"request head larger than {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._in_head = 0, True
        self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            self._refuse_head(f"more than {MAX_HEADERS} headers")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self.transport.is_closing():
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
