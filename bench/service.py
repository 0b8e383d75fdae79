"""The service's own cost: each engine's latency through HTTP vs calling the engine directly (target
<= 1.2x), and images per second with the service's worker setting on this machine.

Two clients, each timed per request around the whole call (JSON and base64 in, the reply read and parsed):
imgrec's own HTTP backend (`connectors.client.ApiClient`, what the pipeline uses against the service), and a
generic `httpx.Client`, whose own cost (~3 ms per 50 KB request here, pure-Python HTTP) shows how much of a
ratio is the client's rather than the service's.

    .venv/bin/python bench/service.py [--workers 2] [--requests 60]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from common import ROOT, table

sys.path.insert(0, str(ROOT))
from imgrec.connectors.client import ApiClient  # noqa: E402
from imgrec.connectors.endpoints import Endpoints  # noqa: E402
from tests.helpers import PROJECT, ServiceProcess, encode, photo, write_config  # noqa: E402

CASES = {  # api -> (path, extra params)
    "image_tagging": (f"/v2/{PROJECT}/image/tagging", {}),
    "media_tagging_det": (f"/v2/{PROJECT}/image/media-tagging-det", {}),
    "main_object_detection": (f"/v3/{PROJECT}/image/main-object-detection", {}),
    "celebrity_recognition": (f"/v2/{PROJECT}/image/celebrity-recognition", {}),
    "recapture_detect": (f"/v2/{PROJECT}/image/recapture-detect", {}),
    "dark_enhance": ("/v1.0/vision/dark-enhance", {}),
    "super_resolution": ("/v1.0/vision/super-resolution", {"scale": 3}),
}


_serial = itertools.count()


def variants(array: np.ndarray, count: int) -> list[bytes]:
    """`count` JPEGs of one photo, no two alike in this run: a serial number in binary, one black or white
    8x8 block (a JPEG block, so quantisation cannot blur it away) per bit, along the top edge."""
    out = []
    for _ in range(count):
        n, marked = next(_serial), array.copy()
        for bit in range(12):
            marked[:8, 8 * bit:8 * bit + 8] = 255 if n >> bit & 1 else 0
        out.append(encode(marked))
    assert len(set(out)) == len(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=15)
    args = parser.parse_args()
    from imgrec import schemas
    from imgrec.engines import EngineRegistry
    from imgrec.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="imgrec-service-bench-"))
    gallery = work / "gallery" / "Eileen Collins"
    gallery.mkdir(parents=True)
    (gallery / "a.jpg").write_bytes(encode(photo("astronaut")))
    # A different image for every call: the tagging engines analyse an image once and reuse the pass for
    # the next API asking about the same bytes, and this bench times passes.
    rounds = args.requests + 1
    registry = EngineRegistry(Settings(celebrity={"gallery": str(work / "gallery")}))
    service = ServiceProcess(write_config(work, work / "gallery", "\n[auth]\nenabled = false\n"), work / "s.log",
                             workers=args.workers)
    rows = []
    direct_ms: dict[str, float] = {}
    try:
        with httpx.Client(base_url=service.base_url, timeout=120) as http:
            loop = asyncio.new_event_loop()
            client = ApiClient(Endpoints.self_hosted(service.base_url), project_id=PROJECT, concurrency=1,
                               timeout=120)
            for api, (path, extra) in CASES.items():
                base = photo("astronaut")[::4, ::4] if api == "super_resolution" else photo("astronaut")
                images = iter(variants(base, 3 * rounds))
                spec, engine = schemas.spec(api), registry.get(api)

                def via_imgrec(data: bytes):
                    loop.run_until_complete(client.call(api, image=data, **extra))

                def via_httpx(data: bytes):
                    resp = http.post(path, json={"image": base64.b64encode(data).decode(), **extra})
                    assert resp.status_code == 200, resp.text
                    resp.json()

                ways = [lambda data: engine.run(data, spec.request(extra, image=data)), via_imgrec, via_httpx]
                samples: list[list[float]] = [[] for _ in ways]
                for _ in range(rounds):  # interleaved, so drifts in machine speed hit all three
                    for way, times in zip(ways, samples):
                        data = next(images)
                        t = time.perf_counter()
                        way(data)
                        times.append(time.perf_counter() - t)
                d, c, h = (statistics.median(times[1:]) * 1000 for times in samples)  # [0]: warm-up
                direct_ms[api] = d
                rows.append([api, f"{d:.0f}", f"{c:.0f}", f"{c / d:.2f}", f"{h:.0f}", f"{h / d:.2f}"])
            loop.run_until_complete(client.aclose())
            loop.close()

            async def load(images: list[bytes], clients: int) -> float:
                async with httpx.AsyncClient(base_url=service.base_url, timeout=120) as client:
                    sem = asyncio.Semaphore(clients)

                    async def one(data: bytes):
                        async with sem:
                            body = {"image": base64.b64encode(data).decode()}
                            r = await client.post(CASES["media_tagging_det"][0], json=body)
                            assert r.status_code == 200

                    started = time.perf_counter()
                    await asyncio.gather(*[one(data) for data in images])
                    return len(images) / (time.perf_counter() - started)

            throughput = asyncio.run(load(variants(photo("astronaut"), 80), 8))
    finally:
        service.stop()
    print(table("Service overhead: engine directly vs through HTTP (median of sequential requests, 512-px photo)",
                ["API", "direct ms", "imgrec client ms", "ratio (target <= 1.2)", "httpx.Client ms", "ratio"],
                rows))
    cores = len(os.sched_getaffinity(0))
    ceiling = min(cores, args.workers) * 1000 / direct_ms["media_tagging_det"]
    print(f"\nmedia-tagging-det through the service with {args.workers} worker processes, 8 concurrent clients: "
          f"{throughput:.1f} images/s on {cores} cores = {throughput / ceiling:.2f} x the engine's ceiling "
          f"min(cores, workers) / direct latency = {ceiling:.1f}/s")


if __name__ == "__main__":
    main()
