"""Wall time of `imgrec run` on a one-image folder, command to exit: with Prefect's temporary server (no
PREFECT_API_URL, nothing running) vs with the server `imgrec server start` keeps running.

    .venv/bin/python bench/startup.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, table

sys.path.insert(0, str(ROOT))
from tests.helpers import encode, free_port, photo  # noqa: E402

IMGREC = str(ROOT / ".venv" / "bin" / "imgrec")


def timed_run(source: Path, out: Path, env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run([IMGREC, "run", str(source), "--out", str(out), "--apis", "image_tagging", "--force"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgrec-startup-"))
    (work / "src").mkdir()
    (work / "src" / "coffee.jpg").write_bytes(encode(photo("coffee")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(IMGREC_STATE_DIR=str(work / "state"), PREFECT_HOME=str(work / "prefect-home"))
    temporary = [timed_run(work / "src", work / "out-a", env) for _ in range(args.runs)]
    started = time.perf_counter()
    subprocess.run([IMGREC, "server", "start", "--port", str(free_port())], env=env, check=True, capture_output=True)
    server_start = time.perf_counter() - started
    try:
        kept = [timed_run(work / "src", work / "out-b", env) for _ in range(args.runs)]
    finally:
        subprocess.run([IMGREC, "server", "stop"], env=env, capture_output=True)
    rows = [["temporary Prefect server (old path)", f"{statistics.median(temporary):.1f}"],
            ["`imgrec server` kept running (new path)", f"{statistics.median(kept):.1f}"]]
    print(table(f"`imgrec run` on a 1-image folder, wall s (median of {args.runs})", ["path", "wall s"], rows))
    print(f"\nnew / old: {statistics.median(kept) / statistics.median(temporary):.2f} x (goal: <= 5 s); "
          f"`imgrec server start` itself took {server_start:.1f} s, once")


if __name__ == "__main__":
    main()
