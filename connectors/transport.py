"""A lean HTTP/1.1 keep-alive transport for httpx, for the API client's hot path.

httpx's default transport (httpcore over anyio, h11 in pure Python) costs ~2.9 ms of CPU per request on this
machine with 16 requests in flight, ~0.9 ms even with one httpcore connection per slot; this one ~0.33 ms,
httpx's Request/Response objects included (bench/transport.py, BENCHMARKS.md). It plugs in behind httpx's own transport interface, so callers still build `httpx.Request`s,
get `httpx.Response`s and see httpx's exception classes (ConnectError, ReadTimeout, RemoteProtocolError...).

Scope, on purpose: HTTP/1.1 (and 1.0 replies) over plain TCP or TLS, one request per connection at a time,
keep-alive, Content-Length / chunked / read-until-close bodies (httptools, the C parser uvicorn uses),
connect and inactivity timeouts, idle connections dropped as soon as the server closes them. No proxies,
no HTTP/2, no HEAD (its replies carry no body, which the parser cannot be told), no request streaming.
"""
from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict

import httptools
import httpx

_NO_BODY_STATUS = frozenset({204, 304})


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one exchange in flight. Parses replies as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._last_buffered = -1
        self._reset_reply()
        self.last_activity = 0.0

    def _reset_reply(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the reply ends by itself, not at close
        self._status = 0

    # -- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._loop.time()
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP reply: {type(exc).__name__}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and not self._framed:
                self._finish(keep_alive=False)  # the close delimits the body
            elif self._headers_done:
                self._waiter.set_exception(httpx.RemoteProtocolError("the server closed the connection mid-reply"))
            else:
                self._waiter.set_exception(httpx.RemoteProtocolError("the server closed the connection"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lname = name.lower()
        if lname == b"content-length" or (lname == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        if self._status in _NO_BODY_STATUS:
            self._framed = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # interim reply (100 Continue...): the real one follows
            self._reset_reply()
            return
        self._finish(keep_alive=self._parser.should_keep_alive())

    # -- exchange
    def _finish(self, keep_alive: bool) -> None:
        reply = (self._status, self._headers, b"".join(self._body), keep_alive)
        self._reset_reply()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(reply)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    async def exchange(self, head: bytes, body: bytes, read_timeout: float | None):
        if self.closed:
            raise httpx.RemoteProtocolError("the server closed the connection")
        self._waiter = self._loop.create_future()
        self.last_activity = self._loop.time()
        self.transport.writelines((head, body) if body else (head,))
        self._last_buffered = self.transport.get_write_buffer_size()
        if read_timeout:
            self._watchdog = self._loop.call_later(read_timeout, self._check_idle, read_timeout)
        try:
            return await self._waiter
        finally:
            self._waiter = None
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None

    def _check_idle(self, timeout: float) -> None:
        """Inactivity timeout: bytes read, or the send buffer draining, count as activity."""
        buffered = self.transport.get_write_buffer_size()
        if buffered != self._last_buffered:
            self._last_buffered = buffered
            self.last_activity = self._loop.time()
        idle = self._loop.time() - self.last_activity
        if idle >= timeout:
            self._watchdog = None
            self._fail(httpx.ReadTimeout(f"no reply activity for {timeout:g} s"))
        else:
            self._watchdog = self._loop.call_later(timeout - idle, self._check_idle, timeout)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncBaseTransport` with a per-origin pool of at most `max_connections` keep-alive connections."""

    def __init__(self, max_connections: int = 10, verify: bool | str | ssl.SSLContext = True):
        self._max = max(1, max_connections)
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int], list[_Connection]] = defaultdict(list)
        self._slots: asyncio.Semaphore | None = None
        self._open: set[_Connection] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            raise httpx.UnsupportedProtocol("KeepAliveTransport does not send HEAD requests")
        scheme = request.url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        timeouts = request.extensions.get("timeout", {})
        body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
        head = b"".join((request.method.encode(), b" ", request.url.raw_path, b" HTTP/1.1\r\n",
                         *(b"%s: %s\r\n" % pair for pair in request.headers.raw), b"\r\n"))
        origin = (scheme, request.url.host, request.url.port or (443 if scheme == "https" else 80))
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        async with self._slots:
            conn = self._take_idle(origin) or await self._connect(origin, timeouts.get("connect"))
            try:
                status, headers, content, keep_alive = await conn.exchange(head, body, timeouts.get("read"))
            except BaseException:
                conn.close()  # a half-done exchange leaves the connection in an unknown state
                self._open.discard(conn)
                raise
            if keep_alive and not conn.closed:
                self._idle[origin].append(conn)
            else:
                conn.close()
                self._open.discard(conn)
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content), request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    def _take_idle(self, origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # most recently used first: the likeliest to be still open
            if not conn.closed:
                return conn
            self._open.discard(conn)
        return None

    async def _connect(self, origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = (self._verify if isinstance(self._verify, ssl.SSLContext)
                             else httpx.create_ssl_context(verify=self._verify))
            tls = self._ssl
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), host, port, ssl=tls,
                                       server_hostname=host if tls else None), timeout)
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc.strerror or type(exc).__name__}") from None
        self._open.add(conn)
        return conn

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
