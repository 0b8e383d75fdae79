"""The service's RSS across rounds of large photos: an allocator's high-water mark stays, a leak grows.

Three rounds of 24 photos of 3000 x 2000 (tagging and recapture, 8 at once), each followed by 20 s idle;
prints the service's RSS after each. `MALLOC_ARENA_MAX=N` as the first argument runs the service with it.

    .venv/bin/python bench/highwater.py [ARENA_MAX]
"""
from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from common import ROOT

sys.path.insert(0, str(ROOT))
from tests.helpers import PROJECT, ServiceProcess, encode, write_config  # noqa: E402
from soak import service_rss  # noqa: E402


def large_photos(count: int = 12) -> list[str]:
    rng = np.random.default_rng(1)
    return [base64.b64encode(encode(np.asarray(Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
                                               .resize((3000, 2000), Image.BILINEAR)))).decode()
            for _ in range(count)]


async def one_round(base_url: str, photos: list[str], offset: int) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:
        slots = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with slots:
                for path in ("image/tagging", "image/recapture-detect"):
                    answer = await http.post(f"/v2/{PROJECT}/{path}", json={"image": photos[i % len(photos)]})
                    assert answer.status_code == 200, answer.text

        await asyncio.gather(*(one(i + offset) for i in range(24)))


def main() -> None:
    photos = large_photos()
    work = Path(tempfile.mkdtemp(prefix="imgrec-highwater-"))
    env = {"MALLOC_ARENA_MAX": sys.argv[1]} if len(sys.argv) > 1 else {}
    service = ServiceProcess(write_config(work, extra="\n[auth]\nenabled = false\n"), work / "service.log", env=env)
    proc = psutil.Process(service.proc.pid)
    try:
        print(f"start: {service_rss(proc) / 1e6:.0f} MB" + (f" (MALLOC_ARENA_MAX={sys.argv[1]})" if env else ""))
        for n in range(3):
            asyncio.run(one_round(service.base_url, photos, n * 7))
            after = service_rss(proc) / 1e6
            time.sleep(20)
            print(f"round {n + 1}: {after:.0f} MB, after 20 s idle {service_rss(proc) / 1e6:.0f} MB")
    finally:
        service.stop()


if __name__ == "__main__":
    main()
