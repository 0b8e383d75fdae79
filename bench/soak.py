"""Soak: the service under a long mixed load, its memory sampled; does RSS stay flat after warm-up?

Mixed load, as an attack pass and a busy night would send it, from `--clients` concurrent clients on loopback:
tagging and recapture of a different photo every call (token auth), celebrity recognition (AK/SK signed),
2 MB bodies of invalid JSON, bad base64, wrong passwords, requests without credentials. Then an idle
minute (`--mix hostile`: only 2 MB bodies of invalid JSON, a long string or a million values). The service's
RSS (all its processes) is sampled every 5 s.

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 20] [--mix mixed|hostile] [--arena-max N]

Prints RSS per period, the growth after warm-up (the first fifth) in MB per 10 minutes, and RSS after the
idle minute. `--arena-max N` runs the service with MALLOC_ARENA_MAX=N (glibc's per-thread heaps), to tell
an allocator's high-water mark from a leak.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from common import ROOT, table

sys.path.insert(0, str(ROOT))
from imgrec.connectors import signer  # noqa: E402
from tests.helpers import AK, PROJECT, SK, ServiceProcess, encode, photo, write_config  # noqa: E402
from tests.test_service import token_body  # noqa: E402


def service_rss(proc: psutil.Process) -> int:
    try:
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


def photos(count: int) -> list[str]:
    """`count` different photos as base64 (no two alike: the analysis cache must not answer)."""
    rng = np.random.default_rng(0)
    bases = [photo(name)[::2, ::2] for name in ("coffee", "chelsea", "astronaut", "rocket")]
    out = []
    for i in range(count):
        image = bases[i % len(bases)].copy()
        image[:8, :64] = rng.integers(0, 255, (8, 64) + image.shape[2:], dtype=np.uint8)
        out.append(base64.b64encode(encode(image)).decode())
    return out


MIXED = ("tagging", "recapture", "celebrity", "bad_json", "bad_base64", "wrong_password", "anonymous")
HOSTILE = ("bad_json", "bad_json_values")  # --mix hostile: only 2 MB bodies of invalid JSON, of two shapes


async def client(http: httpx.AsyncClient, token: str, images: list[str], deadline: float, counts: dict, n: int,
                 kinds: tuple[str, ...] = MIXED):
    bad_json = b'{"image": "' + b"A" * 2_000_000 + b'", ['
    bad_json_values = b'{"image": [' + b"1," * 1_000_000 + b"}"  # a million values, invalid at the end
    i = n
    while time.monotonic() < deadline:
        i += 1
        kind = kinds[i % len(kinds)]
        try:
            if kind in ("tagging", "recapture"):
                path = f"/v2/{PROJECT}/image/{'tagging' if kind == 'tagging' else 'recapture-detect'}"
                r = await http.post(path, json={"image": images[i % len(images)]}, headers={"X-Auth-Token": token})
            elif kind == "celebrity":
                path = f"/v2/{PROJECT}/image/celebrity-recognition"
                body = ('{"image": "%s"}' % images[i % len(images)]).encode()
                host = http.base_url.netloc.decode()
                unsigned = {"Content-Type": "application/json", "Host": host,
                            signer.HEADER_CONTENT: hashlib.sha256(body).hexdigest()}
                headers = signer.sign("POST", path, unsigned, body, AK, SK)
                r = await http.post(path, content=body, headers=headers)
            elif kind in ("bad_json", "bad_json_values"):
                r = await http.post(f"/v2/{PROJECT}/image/tagging",
                                    content=bad_json if kind == "bad_json" else bad_json_values,
                                    headers={"X-Auth-Token": token, "Content-Type": "application/json"})
            elif kind == "bad_base64":
                r = await http.post(f"/v2/{PROJECT}/image/tagging", json={"image": "!!notbase64!!" * 1000},
                                    headers={"X-Auth-Token": token})
            elif kind == "wrong_password":
                body = token_body()
                body["auth"]["identity"]["password"]["user"]["password"] = "guess"
                r = await http.post("/v3/auth/tokens", json=body)
            else:
                r = await http.post(f"/v2/{PROJECT}/image/tagging", json={"image": images[0]})
            counts[r.status_code] = counts.get(r.status_code, 0) + 1
        except httpx.HTTPError as exc:
            counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1


async def soak(base_url: str, proc: psutil.Process, minutes: float, clients: int,
               kinds: tuple[str, ...] = MIXED) -> tuple[list, dict]:
    images = photos(400)
    samples: list[tuple[float, int]] = []
    counts: dict = {}
    started = time.monotonic()
    deadline = started + minutes * 60

    async def sampler(until: float):
        while time.monotonic() < until:
            samples.append((time.monotonic() - started, service_rss(proc)))
            await asyncio.sleep(5)

    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        token = (await http.post("/v3/auth/tokens", json=token_body())).headers["X-Subject-Token"]
        await asyncio.gather(sampler(deadline + 60), *(client(http, token, images, deadline, counts, n, kinds)
                                                        for n in range(clients)))
    return samples, counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--arena-max", type=int, default=None)
    parser.add_argument("--mix", choices=["mixed", "hostile"], default="mixed")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgrec-soak-"))
    gallery = work / "gallery" / "Eileen Collins"
    gallery.mkdir(parents=True)
    (gallery / "a.jpg").write_bytes(encode(photo("astronaut")))
    env = {"MALLOC_ARENA_MAX": str(args.arena_max)} if args.arena_max else {}
    service = ServiceProcess(write_config(work, work / "gallery"), work / "service.log", env=env)
    try:
        samples, counts = asyncio.run(soak(service.base_url, psutil.Process(service.proc.pid), args.minutes,
                                           args.clients, HOSTILE if args.mix == "hostile" else MIXED))
    finally:
        service.stop()
    loaded = [(t, rss) for t, rss in samples if t <= args.minutes * 60]
    idle = [rss for t, rss in samples if t > args.minutes * 60 + 50]
    warm = [(t, rss) for t, rss in loaded if t >= args.minutes * 60 / 5]
    slope = np.polyfit([t for t, _ in warm], [rss for _, rss in warm], 1)[0] * 600 / 1e6 if len(warm) > 2 else 0.0
    periods = np.array_split(np.array(loaded, dtype=float), min(10, len(loaded)))
    rows = [[f"{p[0, 0] / 60:.1f}-{p[-1, 0] / 60:.1f}", f"{p[:, 1].mean() / 1e6:.0f}", f"{p[:, 1].max() / 1e6:.0f}"]
            for p in periods if len(p)]
    print(table(f"Service RSS under {args.mix} load: {args.clients} clients, {args.minutes:g} min"
                + (f", MALLOC_ARENA_MAX={args.arena_max}" if args.arena_max else ""),
                ["minutes", "mean RSS MB", "max RSS MB"], rows))
    print(f"\nresponses: {dict(sorted(counts.items(), key=str))}")
    print(f"growth after warm-up: {slope:+.1f} MB per 10 min; RSS at the end of the load "
          f"{loaded[-1][1] / 1e6:.0f} MB, after an idle minute {idle[-1] / 1e6 if idle else float('nan'):.0f} MB; "
          f"cores: {len(os.sched_getaffinity(0))}")


if __name__ == "__main__":
    main()
