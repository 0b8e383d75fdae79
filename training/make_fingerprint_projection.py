"""Make the fingerprint's projection (imgrec/engines/weights/fingerprint_projection.npz): a random orthogonal
1280 -> 256 matrix, seeded, fitted to nothing. It shrinks the classifier's embedding for the near-duplicate
index while keeping cosines (bench/quality.py's near-duplicate figures: 1280 vs 256 dimensions within 0.01).

    .venv/bin/python training/make_fingerprint_projection.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SEED, FROM, TO = 20261207, 1280, 256
OUT = Path(__file__).resolve().parents[1] / "imgrec" / "engines" / "weights" / "fingerprint_projection.npz"


def main() -> None:
    gaussian = np.random.default_rng(SEED).standard_normal((FROM, TO))
    q, _ = np.linalg.qr(gaussian)  # orthonormal columns: dot products kept in expectation
    np.savez_compressed(OUT, projection=q.astype(np.float32), seed=SEED)
    print(f"wrote {OUT} ({FROM} -> {TO}, seed {SEED})")


if __name__ == "__main__":
    main()
