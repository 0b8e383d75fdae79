"""Where results land, what it costs: 10,000 images written to a folder vs a bucket, as Parquet vs Iceberg.

    .venv/bin/python bench/warehouse.py [--images 10000] [--api image_tagging]

Every run is the same `imgrec run` of a folder of images against the simulated service (another process, zero
latency), so the pipeline process's CPU is the pipeline's own and the only difference between rows is the
output: `--out DIR` vs `--out s3://...` (moto's S3 server, another process), `--table-format parquet` vs
`iceberg` (SQLite catalog). Baseline: the same command on an empty folder, measured in this run. The simulated
service answers empty results, so each image writes its `images` row and its ledger row (the per-image part
of every output) and nothing else. Then each output's `images` table is read back whole through
`imgrec.warehouse` (DuckDB / pyarrow / pyiceberg) and timed.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from common import ROOT, table

import sys

sys.path.insert(0, str(ROOT))
from bench.overhead import run_pipeline, s3_server  # noqa: E402
from bench.throughput import make_images, prefect_server  # noqa: E402
from tests.helpers import ServiceProcess, write_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--api", default="image_tagging")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgrec-warehouse-"))
    make_images(work / "images", args.images)
    (work / "empty").mkdir()
    service = ServiceProcess(write_config(work, extra="\n[simulate]\nenabled = true\nlatency_ms = 0\n"),
                             work / "service.log")
    prefect, prefect_url = prefect_server(work)
    moto, s3_env = s3_server(work, None, buckets=("parquet-out", "iceberg-out"))
    os.environ.update(s3_env)
    catalog = f"sqlite:///{work / 'bucket-catalog.db'}"
    variants = [  # (name, out folder for the log, --out, extra arguments)
        ("folder, Parquet", work / "folder-parquet", None, []),
        ("bucket, Parquet", work / "bucket-parquet", "s3://parquet-out/imgrec", []),
        ("folder, Iceberg", work / "folder-iceberg", None, ["--table-format", "iceberg"]),
        ("bucket, Iceberg", work / "bucket-iceberg", "s3://iceberg-out/imgrec",
         ["--table-format", "iceberg", "--iceberg-catalog", catalog]),
    ]
    rows = []
    try:
        options = {"api": args.api, "concurrency": 16, "extra_env": s3_env}
        base_cpu, base_wall, _ = run_pipeline(service.base_url, str(work / "empty"), work / "empty-out", prefect_url,
                                              **options)
        rows.append(["empty folder (baseline)", f"{base_cpu:.2f}", f"{base_wall:.1f}", "-", "-", "-"])
        import imgrec.warehouse

        for name, folder, uri, extra in variants:
            cpu, wall, rss = run_pipeline(service.base_url, str(work / "images"), folder, prefect_url, out_uri=uri,
                                          extra_args=extra, **options)
            started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            warehouse = imgrec.warehouse.open(uri or folder, iceberg_catalog=catalog if uri and extra else None)
            images = warehouse.arrow("images")
            after = resource.getrusage(resource.RUSAGE_SELF)
            read_s = time.perf_counter() - started
            read_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            assert images.num_rows == args.images, (name, images.num_rows)
            rows.append([name, f"{cpu:.2f}", f"{wall:.1f}", f"{(cpu - base_cpu) / args.images * 1000:.3f}",
                         f"{(wall - base_wall) / args.images * 1000:.3f}",
                         f"{read_s:.2f} s, {read_cpu:.2f} s CPU"])
    finally:
        service.stop()
        prefect.terminate()
        moto.terminate()
    print(table(f"{args.images} images, {args.api}, simulated service at 0 ms: the output's cost",
                ["output", "CPU s", "wall s", "CPU ms per image", "wall ms per image", "read `images` back"],
                rows))
    base = float(rows[1][3])
    for row in rows[2:]:
        print(f"{row[0]}: {float(row[3]) / base:.2f} x the CPU per image of a folder of Parquet files")


if __name__ == "__main__":
    main()
