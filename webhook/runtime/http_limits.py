"""uvicorn's httptools protocol with the bounds a webhook in front of kube-system needs.

httptools (llhttp) puts no limit on header size, and uvicorn none on how long a client may take to send a
request: one client sending 64 MiB of headers grew the server by that much, and hundreds of connections trickling
headers were held open for as long as they liked. Here:
- request head (request line and headers): at most MAX_HEAD_BYTES and MAX_HEADERS, else 431 and close;
- a request must arrive whole (head and body) within REQUEST_READ_SECONDS of its first byte (or of the TLS
  connection, for the first request), else the connection is closed. kube-apiserver sends a review in one go,
  well inside its own timeout (10 s by default, at most 30 s), so only a client that trickles is cut off.
An idle keep-alive connection between requests is governed by --keep-alive, not by these.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("apiserver_tls_guard")

# kube-apiserver's own requests carry a dozen short headers; Go's server allows 1 MiB, nginx 8-32 KiB.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
REQUEST_READ_SECONDS = 10.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the request head (MAX_HEAD_BYTES, MAX_HEADERS) and on the time a
    request takes to arrive (REQUEST_READ_SECONDS).
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
