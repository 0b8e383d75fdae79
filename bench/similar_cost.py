"""What near-duplicates cost a tagging run: CPU per image with them on (the default) and off (--no-similar).

    .venv/bin/python bench/similar_cost.py [--images 80] [--apis image_tagging] [--rounds 2]

Real eval photos (imagenet-dev, coco-dev) in a folder, the embedded default (in-process engines), each run
a fresh `imgrec run` into a fresh output, on and off alternated `--rounds` times (the best of each kept:
load on this machine only ever adds). A run on an empty folder is the start-up baseline, subtracted. "On"
pays the fingerprint's rows (the embeddings table) and the index step after the shards; the fingerprint
itself rides on the tagging pass's analysis (its embedding plus a 32 x 32 DCT), also when off.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, table

sys.path.insert(0, str(ROOT))
from bench.throughput import prefect_server  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"


def one_run(source: Path, out: Path, prefect_url: str, apis: str, *extra: str) -> tuple[float, float]:
    """CPU seconds (the run's process and its children) and wall seconds of one `imgrec run`."""
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_API_URL": prefect_url}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([str(ROOT / ".venv" / "bin" / "imgrec"), "run", str(source), "--out", str(out), "--apis", apis,
                    *extra], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=80)
    parser.add_argument("--apis", default="image_tagging")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    photos = (sorted((EVAL / "imagenet-dev").glob("*.JPEG")) + sorted((EVAL / "coco-dev" / "images").glob("*.jpg")))
    photos = photos[::max(1, len(photos) // args.images)][:args.images]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source, empty = work / "src", work / "empty"
        source.mkdir()
        empty.mkdir()
        for path in photos:
            shutil.copy(path, source / path.name)
        server, url = prefect_server(work)
        try:
            runs = {"start-up (empty folder)": [], "off (--no-similar)": [], "on (default)": []}
            for n in range(args.rounds):
                runs["start-up (empty folder)"].append(one_run(empty, work / f"e{n}", url, args.apis))
                runs["off (--no-similar)"].append(one_run(source, work / f"off{n}", url, args.apis, "--no-similar"))
                runs["on (default)"].append(one_run(source, work / f"on{n}", url, args.apis))
        finally:
            server.terminate()
    best = {name: (min(c for c, _ in r), min(w for _, w in r)) for name, r in runs.items()}
    base_cpu, base_wall = best["start-up (empty folder)"]
    per_image = {name: ((c - base_cpu) / len(photos) * 1000, (w - base_wall) / len(photos) * 1000)
                 for name, (c, w) in best.items() if name != "start-up (empty folder)"}
    off_cpu, off_wall = per_image["off (--no-similar)"]
    rows = [["start-up (empty folder)", f"{base_cpu:.1f} s", f"{base_wall:.1f} s", ""]]
    rows += [[name, f"{cpu:.1f} ms", f"{wall:.1f} ms", f"{cpu / off_cpu - 1:+.1%} CPU, {wall / off_wall - 1:+.1%} wall"]
             for name, (cpu, wall) in per_image.items()]
    print(table(f"Near-duplicates on vs off: {len(photos)} eval photos, --apis {args.apis}, in-process, best of "
                f"{args.rounds}", ["run", "CPU per image", "wall per image", "vs off (goal <= +5%)"], rows))


if __name__ == "__main__":
    main()
