"""Listing and planning at scale: 100,000 objects in moto's S3 server; peak RSS at 10,000 and 100,000
objects (flat = streaming) and objects listed per second.

The objects are put straight into the moto server's store (an HTTP PUT each took 17 minutes for 100,000);
the pipeline lists and plans them over the S3 protocol, in a child process whose peak RSS is measured.

    .venv/bin/python bench/scale.py [--objects 100000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from common import ROOT, table

sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[4])
from imgrec.connectors.source import open_source
from imgrec.tasks.job import Job
from imgrec.tasks.listing import list_objects
from imgrec.tasks.planning import plan_shards
job = Job(run_id="bench", flow="bench", source=sys.argv[1], out=sys.argv[2], apis=["image_tagging"], prefix=sys.argv[3],
          shard_size=200)
t = time.perf_counter(); listed = list_objects(open_source(job.source), job); t_list = time.perf_counter() - t
t = time.perf_counter(); shards = plan_shards(job); t_plan = time.perf_counter() - t
# VmHWM, not ru_maxrss: after fork+exec, ru_maxrss still counts the forked parent's pages (moto's data).
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"listed": listed, "shards": len(shards), "list_s": t_list, "plan_s": t_plan,
                  "peak_rss_mb": hwm / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=100_000)
    args = parser.parse_args()
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL_S3": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="scale")
    small = args.objects // 10
    keys = [f"{'small' if i < small else 'rest'}/{i % 97:02d}/img-{i:07d}.jpg" for i in range(args.objects)]
    started = time.perf_counter()
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    store = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]  # the server thread's own store, in this process
    for key in keys:
        store.put_object("scale", key, b"x")
    assert s3.head_object(Bucket="scale", Key=keys[-1])["ContentLength"] == 1  # visible over HTTP
    print(f"stored {len(keys)} objects in {time.perf_counter() - started:.0f}s", flush=True)
    rows = []
    for label, prefix, expected in ((f"{small:,}", "small/", small), (f"{args.objects:,}", "", args.objects)):
        out = tempfile.mkdtemp(prefix="imgrec-scale-")
        proc = subprocess.run([sys.executable, "-c", CHILD, "s3://scale/", out, prefix, str(ROOT)],
                              env={**os.environ, **env}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        assert r["listed"] == expected, r
        rows.append([label, r["shards"], f"{r['list_s']:.1f}", f"{r['listed'] / r['list_s']:.0f}",
                     f"{r['plan_s']:.1f}", f"{r['peak_rss_mb']:.0f}"])
    server.stop()
    print(table("Listing and planning from moto's S3 server", ["objects", "shards", "list s", "objects listed/s",
                "plan s", "peak RSS MB"], rows))
    print(f"\npeak RSS ratio {args.objects:,} / {small:,} objects: {float(rows[1][5]) / float(rows[0][5]):.2f} "
          f"(target: flat, ~1)")


if __name__ == "__main__":
    main()
