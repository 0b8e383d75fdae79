"""boto3's CPU per object GET, against moto's server (which closes every connection, as bench/overhead.py
--source s3 sees it) and against a keep-alive HTTP server answering the same bytes (as OBS or S3 would keep
the connection), measured in one run. Tells how much of a bucket run's per-image cost is the test server's.

    .venv/bin/python bench/s3_get.py [--objects 500] [--size 30000]
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time

from common import ROOT, table

sys.path.insert(0, str(ROOT))
from tests.helpers import free_port  # noqa: E402

KEEPALIVE_SERVER = textwrap.dedent("""
    import sys, uvicorn
    body = b"x" * int(sys.argv[2])
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"binary/octet-stream"), (b"content-length", str(len(body)).encode()),
            (b"etag", b'"0"')]})
        await send({"type": "http.response.body", "body": body})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(argv: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{argv[0]} did not start")


def get_all(port: int, objects: int, size: int, upload: bool) -> tuple[float, float]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="bench",
                      aws_secret_access_key="bench-secret", region_name="us-east-1")
    if upload:
        s3.create_bucket(Bucket="bench-bucket")
        for i in range(objects):
            s3.put_object(Bucket="bench-bucket", Key=f"k{i}", Body=os.urandom(size))
    for i in range(10):  # warm: imports, endpoint resolution, the first connection
        s3.get_object(Bucket="bench-bucket", Key=f"k{i}")["Body"].read()
    cpu, wall = cpu_s(), time.perf_counter()
    for i in range(objects):
        assert len(s3.get_object(Bucket="bench-bucket", Key=f"k{i}")["Body"].read()) == size
    return (cpu_s() - cpu) / objects * 1000, (time.perf_counter() - wall) / objects * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--size", type=int, default=30000)
    args = parser.parse_args()
    rows = []
    moto_port, keepalive_port = free_port(), free_port()
    moto = serve([str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], moto_port)
    try:
        rows.append(["moto server (a connection per request)", *get_all(moto_port, args.objects, args.size, True)])
    finally:
        moto.kill()
    stub = serve([sys.executable, "-c", KEEPALIVE_SERVER, str(keepalive_port), str(args.size)], keepalive_port)
    try:
        rows.append(["keep-alive server", *get_all(keepalive_port, args.objects, args.size, False)])
    finally:
        stub.kill()
    print(table(f"boto3 get_object, {args.objects} objects of {args.size} bytes",
                ["server", "client CPU ms per GET", "wall ms per GET"],
                [[name, f"{c:.2f}", f"{w:.2f}"] for name, c, w in rows]))
    print(f"\nkeep-alive / moto client CPU per GET: {rows[1][1] / rows[0][1]:.2f} x")


if __name__ == "__main__":
    main()
