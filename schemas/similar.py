"""Near-duplicates: an image's fingerprint, how two are compared, and the name of the work in the ledger.

A fingerprint is one L2-normalised float32 vector of `DIMENSIONS` numbers: the classifier's features (what
the photo shows: their generalised-mean and average poolings, `GEM_SHARE` to the rest, projected to
`SEMANTIC` numbers) and a structure descriptor (where its light and dark lie; `STRUCTURE` numbers), each
normalised and weighted so that the cosine of two fingerprints is `SEMANTIC_WEIGHT` x the features' cosine +
the rest x the structures'. Resizing, recompressing, recolouring and small text move the structure little;
crops and mirroring move the features little (the GeM pooling, led by the strongest local features, least):
together they separate copies from other photos of the same kind better than either (bench/quality.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORK = "fingerprint"  # the ledger's name for this work: planned, skipped and retried like an API's calls
MODEL = "efficientnet-lite0-gem+average+dct-structure"
VERSION = "2"  # part of the ledger's parameters hash: a new version fingerprints the catalog again
PREPROCESSING = ("decoded at most 1280 px on the long side; features: short side 256 (bicubic), centre "
                 "224 x 224, the head's 7 x 7 x 1280 map pooled by generalised mean (p 3) and by average, each "
                 "unit length, weighted 0.75 / 0.25, projected to 128 by principal axes "
                 "(fingerprint_projection.npz); structure: grey, uniform borders trimmed, 32 x 32 (area), DCT "
                 "12 x 12 without the DC term, odd horizontal frequencies as magnitudes (mirror-invariant)")
SEMANTIC, STRUCTURE = 128, 143
DIMENSIONS = SEMANTIC + STRUCTURE
SEMANTIC_WEIGHT = 0.8
GEM_SHARE = 0.75  # of the features' weight: the GeM pooling's
# Pairs at or above this cosine are near-duplicates (`imgrec run --similar-threshold`). On copies of the
# eval photos (bench/quality.py) it keeps pair precision at 0.99 or better, chosen on half of the photos and
# holding on the other half (0.86 would pair ~1.7x as many photos that are not copies).
THRESHOLD = 0.87
NEIGHBOURS = 10  # candidates the index returns per new image before the threshold


@dataclass(frozen=True)
class Fingerprint:
    vector: np.ndarray  # float32 (DIMENSIONS,), unit length
    phash: int  # 64-bit DCT perceptual hash (pHash), as a signed int64: for BI queries by Hamming distance
    digest: str  # SHA-256 of the bytes: equal digests are exact copies


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The documented similarity of two fingerprints: their cosine, clipped to 0..1."""
    return float(min(1.0, max(0.0, float(np.dot(a, b)))))
