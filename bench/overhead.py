"""Pipeline CPU per image, backend excluded: 10,000 images against the simulated service at zero latency.

    .venv/bin/python bench/overhead.py [--images 10000] [--source folder|s3] [--no-compare] [--py-spy]
                                       [--latency-ms 0] [--api celebrity_recognition] [--concurrency 16]

`--source s3` puts the images in a moto S3 server (another process) instead of a folder: the figure then
includes boto3's GETs.

The service is another process, so the pipeline process's CPU is the pipeline's own: listing, planning,
reading, pre-validation, base64, signing, HTTP, parsing, normalising, Parquet, Prefect. The baseline is
the same command on an empty folder (start-up, imports, Prefect flow bookkeeping), measured in this run.
Each run also reports the pipeline process's peak RSS: run with --images 100000 to see it stay flat.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, table

sys.path.insert(0, str(ROOT))
from bench.throughput import make_images, prefect_server  # noqa: E402
from tests.helpers import AK, PROJECT, SK, ServiceProcess, write_config  # noqa: E402


def run_pipeline(base_url: str, source: str, out: Path, prefect_url: str, profile: Path | None = None,
                 transport: str = "keepalive", extra_env: dict | None = None, api: str = "celebrity_recognition",
                 concurrency: int = 16, out_uri: str | None = None,
                 extra_args: list[str] | None = None) -> tuple[float, float, float]:
    """One `imgrec run` in its own process: its CPU seconds, wall seconds and peak RSS in MB. `out_uri`
    (s3://...) replaces the folder `out` as --out; the log still goes beside `out`."""
    env = {**os.environ, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK, "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
           "DO_NOT_TRACK": "1", "PREFECT_API_URL": prefect_url, "IMGREC_CLIENT__TRANSPORT": transport,
           **(extra_env or {})}
    cmd = [str(ROOT / ".venv" / "bin" / "imgrec"), "run", source, "--out", out_uri or str(out), "--backend", "http",
           "--endpoint", base_url, "--apis", api, "--concurrency", str(concurrency), "--shard-size", "500",
           *(extra_args or [])]
    if profile and profile.suffix == ".prof":
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), *cmd]
    elif profile:  # sampled stacks; cheaper than cProfile, so the shares stay honest
        cmd = [str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--format", "raw", "--rate", "250", "--nonblocking", "--gil",
               "-o", str(profile), "--", *cmd]
    log = out.with_suffix(".log")
    started = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU and peak RSS
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, or it waits again
    if proc.returncode != 0:
        raise RuntimeError(log.read_text()[-6000:])
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def s3_server(work: Path, images: Path, buckets: tuple[str, ...] = ("images", "empty")) -> tuple[subprocess.Popen, dict]:
    """moto's S3 server in its own process (its CPU is not the pipeline's), holding bucket "images" with the
    images (when `images` is given) and the other `buckets` empty (e.g. "empty" for the baseline)."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    import httpx

    from tests.helpers import free_port

    port = free_port()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    for _ in range(100):
        try:
            httpx.get(env["AWS_ENDPOINT_URL_S3"], timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    if images is not None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda p: s3.put_object(Bucket="images", Key=p.name, Body=p.read_bytes()),
                          sorted(images.iterdir())))
    return proc, env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--profile", action="store_true", help="cProfile the run (slows it; CPU figures inflate)")
    parser.add_argument("--source", choices=["folder", "s3"], default="folder")
    parser.add_argument("--no-compare", action="store_true", help="skip the run with httpx's own transport")
    parser.add_argument("--py-spy", action="store_true", help="sample the run with py-spy; prints top frames")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the simulated service's latency")
    parser.add_argument("--api", default="celebrity_recognition")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    options = {"api": args.api, "concurrency": args.concurrency}
    work = Path(tempfile.mkdtemp(prefix="imgrec-overhead-"))
    make_images(work / "images", args.images)
    (work / "empty").mkdir()
    extra = f"\n[simulate]\nenabled = true\nlatency_ms = {args.latency_ms}\n"
    service = ServiceProcess(write_config(work, extra=extra), work / "service.log")
    prefect, prefect_url = prefect_server(work)
    moto, env = s3_server(work, work / "images") if args.source == "s3" else (None, {})
    images, empty = ("s3://images/", "s3://empty/") if moto else (str(work / "images"), str(work / "empty"))
    try:
        base_cpu, base_wall, base_rss = run_pipeline(service.base_url, empty, work / "out-empty", prefect_url,
                                                     extra_env=env, **options)
        cpu, wall, rss = run_pipeline(service.base_url, images, work / "out", prefect_url,
                                      work / "pipeline.prof" if args.profile else
                                      work / "pipeline.stacks" if args.py_spy else None, extra_env=env, **options)
        compare = None if args.no_compare else run_pipeline(service.base_url, images, work / "out-httpx",
                                                            prefect_url, transport="httpx", extra_env=env,
                                                            **options)
    finally:
        service.stop()
        prefect.terminate()
        if moto:
            moto.terminate()
    per_image = (cpu - base_cpu) / args.images * 1000
    print(table(f"Pipeline overhead over {args.images} images from a {args.source} ({args.api}, concurrency "
                f"{args.concurrency}, simulated service, {args.latency_ms:g} ms)",
                ["run", "CPU s", "wall s", "CPU ms per image", "peak RSS MB"],
                [["empty folder (baseline)", f"{base_cpu:.2f}", f"{base_wall:.1f}", "-", f"{base_rss:.0f}"],
                 [f"{args.images} images", f"{cpu:.2f}", f"{wall:.1f}", f"{cpu / args.images * 1000:.3f}",
                  f"{rss:.0f}"],
                 ["difference", f"{cpu - base_cpu:.2f}", f"{wall - base_wall:.1f}", f"{per_image:.3f}",
                  f"{rss - base_rss:+.0f}"],
                 *([[f"{args.images} images, httpx's own transport", f"{compare[0]:.2f}", f"{compare[1]:.1f}",
                     f"{compare[0] / args.images * 1000:.3f}", f"{compare[2]:.0f}"]] if compare else [])]))
    print(f"\npipeline CPU per image excluding start-up and backend: {per_image:.3f} ms (target <= 2 ms); "
          f"{args.images / (wall - base_wall):.0f} images/s")
    if compare:
        httpx_per_image = (compare[0] - base_cpu) / args.images * 1000
        print(f"with httpx's own transport: {httpx_per_image:.3f} ms per image; the keep-alive transport uses "
              f"{per_image / httpx_per_image:.2f} x its CPU")
    if args.profile:
        import pstats

        pstats.Stats(str(work / "pipeline.prof")).sort_stats("cumulative").print_stats(25)
    if args.py_spy:
        print(f"\nstacks: {work / 'pipeline.stacks'}")


if __name__ == "__main__":
    main()
