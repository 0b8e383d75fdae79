"""The near-duplicate index at catalog scale: 1,000,000 fingerprints of the real distribution.

    .venv/bin/python bench/similar.py [--vectors 1000000]

The fingerprints of the eval photos (imagenet-dev, coco-dev, scene-dev; the engine's own path) are the
distribution; each of the N vectors is one of them plus Gaussian noise of the same norm, renormalised (two
vectors from one photo have a cosine near 0.5: neighbours, not copies). The index is the pipeline's own
(tasks/similar.CatalogIndex: usearch HNSW over the fingerprints in float16),
built in a child process whose peak RSS is the figure; a second child loads the saved index and queries it
(the RSS a nightly run or `imgrec similar` holds). Recall@10 is against exact search over the float32
vectors. Query latency: one query at a time on one thread.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, table

EVAL = ROOT.parent / "shared" / "eval"
BATCH = 50_000
NOISE = 1.0  # the noise's norm, relative to the unit fingerprint


def fingerprints(limit: int) -> np.ndarray:
    from imgrec.engines import fingerprint
    from imgrec.schemas.common import ANY_IMAGE, inspect_image

    files = sorted(p for split in ("imagenet-dev", "coco-dev", "scene-dev") for p in (EVAL / split).rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    out = []
    for path in files:
        data = path.read_bytes()
        out.append(fingerprint.of_bytes(data, inspect_image(data, ANY_IMAGE)).vector)
    return np.stack(out)


def batch(base: np.ndarray, start: int, size: int) -> np.ndarray:
    """Vectors start..start+size-1, the same every time they are asked for."""
    rng = np.random.default_rng(start)
    picked = base[np.arange(start, start + size) % len(base)]
    noise = rng.standard_normal(picked.shape).astype(np.float32)
    noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    v = picked + noise
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def index_child(base_file: str, total: int, save_to: str) -> dict:
    """Run in a fresh process: build, query, add, save, load; return the figures."""
    sys.path.insert(0, str(ROOT))
    from imgrec.tasks.similar import CatalogIndex

    base = np.load(base_file)
    index = CatalogIndex()
    started = time.perf_counter()
    for start in range(0, total, BATCH):
        size = min(BATCH, total - start)
        index.add([f"k{n}" for n in range(start, start + size)], [None] * size, batch(base, start, size))
    build_s = time.perf_counter() - started
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rng = np.random.default_rng(7)
    queries = batch(base, total + 10_000, 1000)  # new vectors of the same distribution
    samples = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], 10)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()

    held = rng.choice(1000, 200, replace=False)
    found = index.search(queries[held], 10)[0]
    best = np.full((len(held), 10), -1, np.int64)
    best_sims = np.full((len(held), 10), -2.0, np.float32)
    for start in range(0, total, BATCH):  # exact top 10 over the float vectors
        size = min(BATCH, total - start)
        sims = queries[held] @ batch(base, start, size).T
        merged = np.concatenate([best_sims, sims], 1)
        labels = np.concatenate([best, np.arange(start, start + size)[None, :].repeat(len(held), 0)], 1)
        top = np.argsort(-merged, 1)[:, :10]
        best_sims, best = np.take_along_axis(merged, top, 1), np.take_along_axis(labels, top, 1)
    recall = float(np.mean([len(set(f) & set(b)) / 10 for f, b in zip(found, best)]))

    extra = batch(base, total + 20_000, 10_000)
    t = time.perf_counter()
    index.add([f"new{n}" for n in range(10_000)], [None] * 10_000, extra)
    add_s = time.perf_counter() - t

    from imgrec.connectors.output import FolderOutput

    output = FolderOutput(Path(save_to) / "out")
    t = time.perf_counter()
    index.save(output, Path(save_to))
    save_s = time.perf_counter() - t
    size_mb = sum(p.stat().st_size for p in (Path(save_to) / "out" / "_index").iterdir()) / 2**20
    return {"vectors": total, "build_s": build_s, "rss_mb": rss_built, "p50_ms": samples[len(samples) // 2],
            "p99_ms": samples[int(len(samples) * 0.99)], "recall10": recall, "add_10k_s": add_s,
            "save_s": save_s, "file_mb": size_mb,
            "rss_end_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def load_child(out: str) -> dict:
    """Run in a fresh process: load the saved index and query it; its peak RSS."""
    sys.path.insert(0, str(ROOT))
    from imgrec.connectors.output import FolderOutput
    from imgrec.schemas import similar
    from imgrec.tasks.similar import CatalogIndex

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        index = CatalogIndex.load(FolderOutput(Path(out)), Path(tmp))
        load_s = time.perf_counter() - t
        rng = np.random.default_rng(3)
        for _ in range(1000):
            q = rng.standard_normal(similar.DIMENSIONS).astype(np.float32)
            index.search(q[None, :] / np.linalg.norm(q), 10)
    return {"load_s": load_s, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--save-to", help=argparse.SUPPRESS)
    parser.add_argument("--fingerprint-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fingerprint_to:  # a child: the models' memory stays out of the index children's figures
        np.save(args.fingerprint_to, fingerprints(args.photos))
        return
    if args.load:
        print(json.dumps(load_child(args.load)))
        return
    if args.child:
        print(json.dumps(index_child(args.child, args.vectors, args.save_to)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--photos", str(args.photos), "--fingerprint-to",
                        f"{tmp}/base.npy"], check=True)
        print(f"{len(np.load(f'{tmp}/base.npy'))} eval photos fingerprinted in {time.perf_counter() - t:.0f} s")
        done = subprocess.run([sys.executable, __file__, "--vectors", str(args.vectors), "--child",
                               f"{tmp}/base.npy", "--save-to", tmp], capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        # from this small process: a child's peak RSS starts at its parent's
        loaded = subprocess.run([sys.executable, __file__, "--load", f"{tmp}/out"], capture_output=True, text=True,
                                check=True)
        r.update({f"{k}_loaded": v for k, v in json.loads(loaded.stdout.strip().splitlines()[-1]).items()})
    rows = [
        ["vectors", f"{r['vectors']:,}", ""],
        ["build (2 cores)", f"{r['build_s']:.0f} s", ""],
        ["peak RSS after the build", f"{r['rss_mb']:.0f} MB", "<= 1024 MB"],
        ["query top 10, one thread: p50", f"{r['p50_ms']:.2f} ms", ""],
        ["query top 10, one thread: p99", f"{r['p99_ms']:.2f} ms", "<= 5 ms"],
        ["recall@10 against exact (float) search", f"{r['recall10']:.3f}", ">= 0.98"],
        ["add 10,000 to the index", f"{r['add_10k_s']:.1f} s", "<= 10 s"],
        ["save / load the index", f"{r['save_s']:.1f} / {r['load_s_loaded']:.1f} s", ""],
        ["index files (graph, keys, float16 vectors)", f"{r['file_mb']:.0f} MB", ""],
        ["peak RSS: the saved index loaded, 1,000 queries", f"{r['rss_mb_loaded']:.0f} MB", "<= 1024 MB"],
        ["peak RSS at the end", f"{r['rss_end_mb']:.0f} MB", ""],
    ]
    print(table(f"Near-duplicate index, {r['vectors']:,} fingerprints", ["figure", "measured", "goal"], rows))


if __name__ == "__main__":
    main()
