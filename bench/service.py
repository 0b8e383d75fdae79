"""The service's own cost: each engine's latency through HTTP vs calling the engine directly (target
<= 1.2x), and images per second with the service's worker setting on this machine.

    .venv/bin/python bench/service.py [--workers 2] [--requests 60]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import ROOT, table

sys.path.insert(0, str(ROOT))
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=15)
    args = parser.parse_args()
    import schemas
    from imgrec.engines import EngineRegistry
    from imgrec.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="imgrec-service-bench-"))
    gallery = work / "gallery" / "Eileen Collins"
    gallery.mkdir(parents=True)
    (gallery / "a.jpg").write_bytes(encode(photo("astronaut")))
    image = encode(photo("astronaut"))
    small = encode(photo("astronaut")[::4, ::4].copy())
    registry = EngineRegistry(Settings(celebrity={"gallery": str(work / "gallery")}))
    service = ServiceProcess(write_config(work, work / "gallery", "\n[auth]\nenabled = false\n"), work / "s.log",
                             workers=args.workers)
    rows = []
    try:
        with httpx.Client(base_url=service.base_url, timeout=120) as http:
            for api, (path, extra) in CASES.items():
                data = small if api == "super_resolution" else image
                body = {"image": base64.b64encode(data).decode(), **extra}
                parsed = schemas.spec(api).parse(body)
                engine = registry.get(api)
                engine.run(data, parsed)
                http.post(path, json=body)  # warm both
                direct, over_http = [], []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    engine.run(data, parsed)
                    direct.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    resp = http.post(path, json=body)
                    over_http.append(time.perf_counter() - t)
                    assert resp.status_code == 200, resp.text
                d, h = statistics.median(direct) * 1000, statistics.median(over_http) * 1000
                rows.append([api, f"{d:.0f}", f"{h:.0f}", f"{h / d:.2f}"])

            async def load(n: int, clients: int) -> float:
                body = {"image": base64.b64encode(image).decode()}
                async with httpx.AsyncClient(base_url=service.base_url, timeout=120) as client:
                    sem = asyncio.Semaphore(clients)

                    async def one():
                        async with sem:
                            r = await client.post(CASES["media_tagging_det"][0], json=body)
                            assert r.status_code == 200

                    started = time.perf_counter()
                    await asyncio.gather(*[one() for _ in range(n)])
                    return n / (time.perf_counter() - started)

            throughput = asyncio.run(load(80, 8))
    finally:
        service.stop()
    print(table("Service overhead: engine directly vs through HTTP (median of sequential requests, 512-px photo)",
                ["API", "direct ms", "HTTP ms", "ratio (target <= 1.2)"], rows))
    print(f"\nmedia-tagging-det through the service with {args.workers} worker processes, 8 concurrent clients: "
          f"{throughput:.1f} images/s on {len(__import__('os').sched_getaffinity(0))} cores")


if __name__ == "__main__":
    main()
