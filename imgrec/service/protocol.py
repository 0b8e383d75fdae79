"""uvicorn's HTTP protocol (httptools) with the limits a public endpoint needs, which uvicorn lacks:

- a request's line and headers at most `[service] max_header_bytes` (431 and the connection closed);
- the line and headers complete within `header_timeout_seconds` of the connection or of the previous
  request (a slowloris client that sends a byte a minute is closed, not kept forever);
- a body that stops arriving for `body_idle_timeout_seconds` is abandoned (the connection closed).
Past `[service] max_connections` connections a new one is answered 503 and closed at once (uvicorn's own
`limit_concurrency` check waits for complete headers, which a slow client never sends).
"""
from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..settings import Settings


@functools.cache
def _limits() -> tuple[int, float, float]:
    service = Settings.load().service  # a worker process: IMGREC_CONFIG names the file `imgrec serve` read
    return service.max_header_bytes, service.header_timeout_seconds, service.body_idle_timeout_seconds


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_limit, self._header_timeout, self._body_timeout = _limits()
        self._header_bytes = 0
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            # uvicorn's own check waits for complete headers, which a slowloris client never sends
            self._refuse(b"503 Service Unavailable")
            return
        self._arm(self._header_timeout)  # the first request's headers must come in time too

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()  # headers or body too slow: nobody is waiting for an answer

    def _refuse(self, status: bytes) -> None:
        self._refused = True
        self._disarm()
        self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm(self._header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._refused:
            super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._header_limit and not self._refused:
            self._refuse(b"431 Request Header Fields Too Large")

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._arm(self._body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._arm(self._body_timeout)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
