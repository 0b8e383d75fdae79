"""Client CPU per HTTP request: httpx's AsyncClient and transport vs our keep-alive transport.

    .venv/bin/python bench/transport.py [--requests 3000] [--in-flight 16]

The same JSON POST (a 7 KB image, base64) to the simulated service at 0 ms, `--in-flight`
requests at a time, in this process; figures are this process's CPU per request after a warm-up, so the
service's own CPU is not in them. All three run in the same invocation, against the same server.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import ROOT, table

sys.path.insert(0, str(ROOT))
import httpx  # noqa: E402

from imgrec.connectors.transport import KeepAliveTransport  # noqa: E402
from tests.helpers import PROJECT, ServiceProcess, write_config  # noqa: E402


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(send, requests: int, in_flight: int) -> tuple[float, float, Counter]:
    slots = asyncio.Semaphore(in_flight)

    async def one() -> int:
        async with slots:
            return await send()

    await asyncio.gather(*(one() for _ in range(100)))  # warm-up: connections open, code paths hot
    cpu0, wall0 = cpu_s(), time.perf_counter()
    codes = await asyncio.gather(*(one() for _ in range(requests)))
    return (cpu_s() - cpu0) / requests * 1000, (time.perf_counter() - wall0) / requests * 1000, Counter(codes)


async def run(url: str, payload: bytes, requests: int, in_flight: int) -> list[list]:
    headers = {"Content-Type": "application/json;charset=UTF-8"}
    timeout = httpx.Timeout(60, connect=10)
    rows = []

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=in_flight), timeout=timeout) as client:
        async def via_client() -> int:
            return (await client.post(url, content=payload, headers=headers)).status_code
        rows.append(["httpx.AsyncClient", *await measure(via_client, requests, in_flight)])

    for name, transport in (("httpx.AsyncHTTPTransport", httpx.AsyncHTTPTransport(
                                limits=httpx.Limits(max_connections=in_flight))),
                            ("KeepAliveTransport (ours)", KeepAliveTransport(max_connections=in_flight))):
        async def via_transport(transport=transport) -> int:
            request = httpx.Request("POST", url, content=payload, headers=headers,
                                    extensions={"timeout": timeout.as_dict()})
            response = await transport.handle_async_request(request)
            await response.aread()
            await response.aclose()
            return response.status_code
        rows.append([name, *await measure(via_transport, requests, in_flight)])
        await transport.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgrec-transport-"))
    config = write_config(work, extra="\n[auth]\nenabled = false\n[simulate]\nenabled = true\nlatency_ms = 0\n")
    service = ServiceProcess(config, work / "service.log")
    try:
        payload = json.dumps({"image": base64.b64encode(bytes(range(256)) * 28).decode()}).encode()
        url = f"{service.base_url}/v2/{PROJECT}/image/celebrity-recognition"
        rows = asyncio.run(run(url, payload, args.requests, args.in_flight))
    finally:
        service.stop()
    for name, _, _, codes in rows:
        assert set(codes) == {200}, (name, codes)
    ours = rows[-1][1]
    print(table(f"Client CPU per request ({args.requests} POSTs, {args.in_flight} in flight)",
                ["transport", "CPU ms/request", "wall ms/request", "CPU vs ours"],
                [[n, f"{c:.3f}", f"{w:.3f}", f"{c / ours:.1f} x"] for n, c, w, _ in rows]))
    print(f"\nKeepAliveTransport: {ours:.3f} ms CPU per request = {ours / rows[1][1]:.2f} x httpx's transport, "
          f"{ours / rows[0][1]:.2f} x httpx.AsyncClient")


if __name__ == "__main__":
    main()
