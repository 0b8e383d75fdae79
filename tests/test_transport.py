"""The lean keep-alive transport against raw loopback servers that misbehave on purpose: framing, reuse,
servers closing at every moment, timeouts, TLS, and the pool limit."""
from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from imgrec.connectors.transport import KeepAliveTransport

TIMEOUT = {"connect": 2.0, "read": 2.0}


class RawServer:
    """A TCP server whose `handle(reader, writer)` is the test's script; counts connections."""

    def __init__(self, handle, tls: ssl.SSLContext | None = None):
        self._handle = handle
        self._tls = tls
        self.connections = 0
        self.live = 0
        self.max_live = 0

    async def __aenter__(self) -> "RawServer":
        async def on_connect(reader, writer):
            self.connections += 1
            self.live += 1
            self.max_live = max(self.max_live, self.live)
            try:
                await self._handle(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self.live -= 1
                writer.close()

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=self._tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    def url(self, path: str = "/x", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def reply(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status.encode(), len(body), extra, body)


async def post(transport: KeepAliveTransport, url: str, body: bytes = b"{}", timeout=TIMEOUT) -> httpx.Response:
    request = httpx.Request("POST", url, content=body, headers={"Content-Type": "application/json"},
                            extensions={"timeout": timeout})
    response = await transport.handle_async_request(request)
    await response.aread()
    return response


async def echo_forever(reader, writer):
    while True:
        head, body = await read_request(reader)
        writer.write(reply(body, extra=b"X-Path: " + head.split(b" ")[1] + b"\r\n"))
        await writer.drain()


async def test_keep_alive_reuses_one_connection_and_round_trips_big_bodies():
    big = bytes(range(256)) * 8192  # 2 MiB
    async with RawServer(echo_forever) as server:
        transport = KeepAliveTransport(4)
        for i in range(5):
            response = await post(transport, server.url(f"/v2/p/image/{i}?q=1"), big if i == 2 else b"%d" % i)
            assert response.status_code == 200
            assert response.content == (big if i == 2 else b"%d" % i)
            assert response.headers["X-Path"] == f"/v2/p/image/{i}?q=1"
        await transport.aclose()
    assert server.connections == 1


async def test_chunked_gzip_no_content_and_read_until_close_bodies():
    async def script(reader, writer):
        await read_request(reader)
        packed = gzip.compress(b'{"result": "chunked"}')
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (10, packed[:10]) + b"%x\r\n%s\r\n" % (len(packed) - 10, packed[10:])
                     + b"0\r\n\r\n")
        await read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no body, no length, and still keep-alive
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")  # no length: the close ends the body
        await writer.drain()

    async with RawServer(script) as server:
        transport = KeepAliveTransport(2)
        first = await post(transport, server.url())
        assert first.json() == {"result": "chunked"}
        assert (await post(transport, server.url())).status_code == 204
        last = await post(transport, server.url())
        assert last.content == b"until the end"
        await transport.aclose()
    assert server.connections == 1


async def test_connection_close_and_idle_close_by_the_server_open_a_new_connection():
    async def script(reader, writer):
        head, _ = await read_request(reader)
        if b"/close-now" in head:
            writer.write(reply(b"bye", extra=b"Connection: close\r\n"))
        else:
            writer.write(reply(b"ok"))
            await writer.drain()
            await asyncio.sleep(0.05)  # then drop the idle keep-alive connection, as uvicorn does after 5 s
        await writer.drain()

    async with RawServer(script) as server:
        transport = KeepAliveTransport(2)
        assert (await post(transport, server.url("/close-now"))).content == b"bye"
        assert (await post(transport, server.url("/idle"))).content == b"ok"
        await asyncio.sleep(0.3)
        assert (await post(transport, server.url("/idle"))).content == b"ok"  # not a reset: a fresh connection
        await transport.aclose()
    assert server.connections == 3


@pytest.mark.parametrize("behaviour, error", [
    ("close-before-reply", httpx.RemoteProtocolError),
    ("close-mid-body", httpx.RemoteProtocolError),
    ("garbage", httpx.RemoteProtocolError),
    ("silence", httpx.ReadTimeout),
])
async def test_broken_replies_raise_httpx_errors_and_the_connection_is_dropped(behaviour, error):
    async def script(reader, writer):
        await read_request(reader)
        if behaviour == "close-mid-body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        elif behaviour == "garbage":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        elif behaviour == "silence":
            await asyncio.sleep(5)
        await writer.drain()

    async with RawServer(script) as server:
        transport = KeepAliveTransport(1)
        started = time.monotonic()
        with pytest.raises(error):
            await post(transport, server.url(), timeout={"connect": 1.0, "read": 0.5})
        assert time.monotonic() - started < 2.0
        assert not transport._idle.get(("http", "127.0.0.1", server.port))
        await transport.aclose()


async def test_read_timeout_is_inactivity_not_total_time():
    async def script(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"steady":
            await writer.drain()
            await asyncio.sleep(0.15)
            writer.write(bytes([byte]))
        await writer.drain()

    async with RawServer(script) as server:
        transport = KeepAliveTransport(1)
        started = time.monotonic()
        response = await post(transport, server.url(), timeout={"connect": 1.0, "read": 0.4})
        assert response.content == b"steady" and time.monotonic() - started > 0.8
        await transport.aclose()


async def test_refused_connection_is_a_connect_error():
    async with RawServer(echo_forever) as server:
        port = server.port
    transport = KeepAliveTransport(1)
    with pytest.raises(httpx.ConnectError):
        await post(transport, f"http://127.0.0.1:{port}/x")


async def test_pool_limit_and_cancellation():
    async def slow_echo(reader, writer):
        while True:
            _, body = await read_request(reader)
            await asyncio.sleep(0.02)
            writer.write(reply(body))
            await writer.drain()

    async with RawServer(slow_echo) as server:
        transport = KeepAliveTransport(3)
        bodies = [b"%d" % i for i in range(30)]
        responses = await asyncio.gather(*(post(transport, server.url(), b) for b in bodies))
        assert [r.content for r in responses] == bodies
        assert server.max_live <= 3
        # A cancelled exchange must not leave its connection to be reused mid-reply.
        task = asyncio.ensure_future(post(transport, server.url(), b"cancelled"))
        await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await post(transport, server.url(), b"after")).content == b"after"
        await transport.aclose()


def _self_signed() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    folder = Path(tempfile.mkdtemp())
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(key_pem)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    return server, client


async def test_tls_verifies_the_server_certificate():
    server_ctx, client_ctx = _self_signed()
    async with RawServer(echo_forever, tls=server_ctx) as server:
        trusting = KeepAliveTransport(1, verify=client_ctx)
        assert (await post(trusting, server.url(scheme="https"), b"secret")).content == b"secret"
        await trusting.aclose()
        default = KeepAliveTransport(1)  # the system's CAs do not know this self-signed certificate
        with pytest.raises(httpx.ConnectError):
            await post(default, server.url(scheme="https"))
        await default.aclose()
