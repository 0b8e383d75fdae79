"""Inputs that attack memory or the parser: compressed URL bombs, huge dimensions in tiny files, malformed URLs
and redirects (issue 18)."""
from __future__ import annotations

import asyncio
import gzip
import zlib
from pathlib import Path

import pytest

from imgrec.connectors import urlfetch
from imgrec.schemas.errors import ApiError
from tests.helpers import encode, photo

MB = 1 << 20


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


def _peak_rss_mb() -> float:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def _current_rss_mb() -> float:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


async def _serve_once(headers: list[tuple[str, str]], body: bytes):
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        head = "".join(f"{k}: {v}\r\n" for k, v in headers + [("Content-Length", str(len(body))),
                                                               ("Connection", "close")])
        writer.write(f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _deflated_zeros(size: int, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(MB)
    return b"".join(packer.compress(chunk) for _ in range(size // MB)) + packer.flush()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    one_layer = _deflated_zeros(512 * MB, 16 + zlib.MAX_WBITS)  # 512 MB of zeros in ~0.5 MB of gzip
    return {"gzip": one_layer, "gzip, gzip": gzip.compress(one_layer, 9),
            "deflate": _deflated_zeros(512 * MB, zlib.MAX_WBITS)}


@pytest.mark.parametrize("encoding,code", [("gzip", "AIS.0023"), ("deflate", "AIS.0023"),
                                           ("gzip, gzip", "AIS.0029"), ("br", "AIS.0029")])
async def test_compressed_bombs_cost_no_memory(bombs, encoding, code):
    server, port = await _serve_once([("Content-Encoding", encoding)], bombs.get(encoding, b"\x00" * 100))
    fetcher = urlfetch.UrlFetcher(allow=["127.0.0.1"], timeout=20)
    base = _current_rss_mb()
    _peak_rss_reset()
    try:
        with pytest.raises(ApiError) as info:
            await fetcher.fetch(f"http://127.0.0.1:{port}/bomb.jpg", 10 * MB)
    finally:
        server.close()
    assert info.value.code == code
    assert _peak_rss_mb() - base < 100  # the cap counts decoded bytes as they inflate, one layer at most


async def test_a_gzipped_image_within_the_cap_is_fetched():
    body = encode(photo("coffee"))
    server, port = await _serve_once([("Content-Encoding", "gzip")], gzip.compress(body))
    try:
        data = await urlfetch.UrlFetcher(allow=["127.0.0.1"], timeout=5).fetch(f"http://127.0.0.1:{port}/c.jpg", 10 * MB)
    finally:
        server.close()
    assert data == body


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080\t/img", "http://127.0.0.1:8080 /img",
                                 "http://[::1/img", "http://127.0.0.1:99999/x"])
async def test_malformed_urls_are_ais_0022_not_500(url):
    with pytest.raises(ApiError) as info:
        await urlfetch.UrlFetcher(allow=["127.0.0.1", "127.0.0.1:8080"], timeout=5).fetch(url, 10 * MB)
    assert info.value.code == "AIS.0022"


async def test_a_redirect_to_a_malformed_location_is_ais_0022():
    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: http:127.0.0.1:1/x\tabc\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ApiError) as info:
            await urlfetch.UrlFetcher(allow=["127.0.0.1"], timeout=5).fetch(f"http://127.0.0.1:{port}/r", 10 * MB)
    finally:
        server.close()
    assert info.value.code in ("AIS.0022", "AIS.0029")


# ------------------------------------------------------------------------------ memory per request
def _webp(side: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 200)).save(buf, "WEBP", lossless=True)  # a few KB whatever the side
    return buf.getvalue()


@pytest.fixture(scope="module")
def recognizer():
    from imgrec.recognizer import Recognizer
    from imgrec.settings import Settings

    return Recognizer(Settings())


@pytest.mark.parametrize("api,side,outcome", [
    ("defog", 10000, "AIS.0205"), ("media_tagging", 10000, "AIS.0205"), ("dark_enhance", 10000, "AIS.0205"),
    ("defog", 6300, "ok"), ("media_tagging", 6300, "ok")])  # 6300 x 6300: the largest image decoded whole
async def test_a_tiny_file_of_huge_dimensions_costs_bounded_memory(recognizer, api, side, outcome):
    import time

    from imgrec import schemas

    data = _webp(side)
    assert len(data) < 20_000
    small = _webp(64)
    await recognizer.execute(schemas.spec(api).request({}, image=small))  # engines and models loaded first
    base = _current_rss_mb()
    _peak_rss_reset()
    started = time.monotonic()
    try:
        await recognizer.execute(schemas.spec(api).request({}, image=data))
        result = "ok"
    except ApiError as err:
        result = err.code
    assert result == outcome
    assert time.monotonic() - started < 30
    assert _peak_rss_mb() - base < 1000


async def test_a_16_bit_png_is_decoded_without_a_float_copy(recognizer):
    import io

    import numpy as np
    from PIL import Image

    from imgrec import schemas

    arr = np.zeros((6000, 6000), np.uint16)
    arr[::7, ::5] = 65535
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    base = _current_rss_mb()
    _peak_rss_reset()
    await recognizer.execute(schemas.spec("media_tagging").request({}, image=buf.getvalue()))
    assert _peak_rss_mb() - base < 400  # 72 MB of 16-bit pixels; the float64 path took 8 bytes a pixel
