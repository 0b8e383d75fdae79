"""Throughput against the simulated service: the pipeline vs the reference's sequential sample approach vs
the official SDK in a thread pool of the same concurrency.

    .venv/bin/python bench/throughput.py [--images 600] [--latency-ms 100] [--limit 20] [--concurrency 10]

The service runs in simulation mode (no model work; fixed latency) with a gateway limit that answers 429
APIG.0308 above `--limit` requests per second. Every figure is measured in this run.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from common import ROOT, table

sys.path.insert(0, str(ROOT))
from tests.helpers import AK, PROJECT, SK, ServiceProcess, encode, write_config  # noqa: E402

API_PATH = f"/v2/{PROJECT}/image/celebrity-recognition"


def make_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img-{i:05d}.jpg"
        path.write_bytes(encode(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)))
        paths.append(path)
    return paths


def sequential_sample(base_url: str, token: str, paths: list[Path]) -> dict:
    """The reference's Python sample (requests, X-Auth-Token), one image after another."""
    import requests

    ok = throttled = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for path in paths:
        data = {"image": base64.b64encode(path.read_bytes()).decode("utf-8")}
        response = requests.post(base_url + API_PATH, headers={"Content-Type": "application/json",
                                                                "X-Auth-Token": token}, json=data)
        ok += response.status_code == 200
        throttled += response.status_code == 429
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - cpu0, "ok": ok, "throttled": throttled}


def sdk_pool(base_url: str, paths: list[Path], workers: int) -> dict:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdkimage.v2 import CelebrityRecognitionReq, ImageClient, RunCelebrityRecognitionRequest

    client = ImageClient.new_builder().with_credentials(BasicCredentials(AK, SK, PROJECT)).with_endpoint(base_url).build()
    counts = {"ok": 0, "throttled": 0}

    def one(path: Path) -> None:
        body = CelebrityRecognitionReq(image=base64.b64encode(path.read_bytes()).decode())
        try:
            client.run_celebrity_recognition(RunCelebrityRecognitionRequest(body=body))
            counts["ok"] += 1
        except ClientRequestException as exc:
            if exc.status_code == 429:
                counts["throttled"] += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, paths))
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - cpu0, **counts}


def prefect_server(work: Path) -> tuple[subprocess.Popen, str]:
    """A real `prefect server`, as deployments use: the pipeline's CPU then excludes the server's."""
    from tests.helpers import free_port

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(180):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError("prefect server did not start")


def pipeline(base_url: str, folder: Path, out: Path, rate: float, concurrency: int, prefect_url: str) -> dict:
    env = {**os.environ, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK, "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": prefect_url}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "imgrec"), "run", str(folder), "--out", str(out),
                           "--backend", "http", "--endpoint", base_url, "--apis", "celebrity_recognition",
                           "--rate", str(rate), "--concurrency", str(concurrency), "--shard-size", "200"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    report = json.loads(next((out / "reports").glob("*.json")).read_text())
    import duckdb

    first, last, n = duckdb.sql(f"SELECT min(processed_at), max(processed_at), count(*) FROM "
                                f"read_parquet('{out}/images/**/*.parquet') WHERE status = 'ok'").fetchall()[0]
    steady = (n - 1) / max((last - first).total_seconds(), 1e-9)
    errors = report["error_codes"]
    return {"wall": wall, "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "ok": report["status"]["ok"], "throttled_left": errors.get("APIG.0308", 0), "steady": steady,
            "retries": report["retries"], "run_s": report["duration_s"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--limit", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgrec-throughput-"))
    paths = make_images(work / "images", args.images)
    extra = (f"\n[service]\nrate_limit_per_second = {args.limit}\n\n[simulate]\nenabled = true\n"
             f"latency_ms = {args.latency_ms}\n")
    service = ServiceProcess(write_config(work, extra=extra), work / "service.log")
    prefect, prefect_url = prefect_server(work)
    try:
        from tests.test_service import token_body

        token = httpx.post(service.base_url + "/v3/auth/tokens", json=token_body()).headers["X-Subject-Token"]
        sample_n = max(50, args.images // 6)
        seq = sequential_sample(service.base_url, token, paths[:sample_n])
        time.sleep(1.5)
        pool = sdk_pool(service.base_url, paths, args.concurrency)
        time.sleep(1.5)
        pipe = pipeline(service.base_url, work / "images", work / "out", args.limit, args.concurrency, prefect_url)
    finally:
        service.stop()
        prefect.terminate()
    ceiling = min(args.limit, args.concurrency / (args.latency_ms / 1000))
    rows = [
        ["reference sample, sequential", sample_n, seq["ok"], f"{seq['ok'] / seq['wall']:.2f}", "-",
         f"{seq['ok'] / max(seq['cpu'], 1e-9):.0f}", seq["throttled"]],
        [f"official SDK, {args.concurrency} threads", args.images, pool["ok"], f"{pool['ok'] / pool['wall']:.2f}", "-",
         f"{pool['ok'] / max(pool['cpu'], 1e-9):.0f}", pool["throttled"]],
        [f"imgrec pipeline, concurrency {args.concurrency}", args.images, pipe["ok"],
         f"{pipe['ok'] / pipe['wall']:.2f}", f"{pipe['steady']:.2f}", f"{pipe['ok'] / max(pipe['cpu'], 1e-9):.0f}",
         pipe["throttled_left"]],
    ]
    print(table(f"Throughput: simulated service {args.latency_ms:.0f} ms, limit {args.limit:.0f}/s",
                ["approach", "images", "ok", "images/s (wall)", "images/s (steady)", "ok images per CPU-s",
                 "throttled (429 left)"], rows))
    pool_per_cpu = pool["ok"] / max(pool["cpu"], 1e-9)
    pipe_per_cpu = pipe["ok"] / max(pipe["cpu"], 1e-9)
    print(f"pipeline process: {pipe['cpu']:.1f} CPU-s for {pipe['ok']} images = {pipe['cpu'] / pipe['ok'] * 1000:.2f} "
          f"ms per image, Python start-up and imports included")
    print(f"\nceiling min(limit, concurrency/latency) = {ceiling:.1f}/s; pipeline steady {pipe['steady']:.2f}/s = "
          f"{pipe['steady'] / ceiling:.3f} x ceiling (target >= 0.95); whole run incl. Prefect start-up "
          f"{pipe['ok'] / pipe['wall'] / ceiling:.3f} x")
    print(f"ok images per CPU-second: pipeline {pipe_per_cpu:.0f} vs SDK pool {pool_per_cpu:.0f} = "
          f"{pipe_per_cpu / max(pool_per_cpu, 1e-9):.2f} x (target >= 3); pipeline retries {pipe['retries']}, "
          f"throttling errors left unretried {pipe['throttled_left']} (target 0)")


if __name__ == "__main__":
    main()
