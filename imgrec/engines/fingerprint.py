"""An image's fingerprint for near-duplicate search (schemas/similar.py says what it is).

The analysis pass makes one from the classification it already has (`of_pixels`); an image no analysing API
saw is decoded and classified here (`of_bytes`), the same way, so both give the same vector for the same bytes.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from imgrec.schemas import similar
from imgrec.schemas.common import ImageInfo

from .base import WEIGHTS
from .classifier import Classification, classifier
from .imaging import work_image

PROJECTION = WEIGHTS / "fingerprint_projection.npz"  # training/make_fingerprint_projection.py
BORDER_SPREAD = 4.0  # grey levels: a row or column flatter than this is padding, not picture
THUMB, LOW = 32, 12


@functools.cache
def _projection() -> np.ndarray:
    return np.load(PROJECTION)["projection"]


def joined(classification: Classification) -> np.ndarray:
    """The classifier's two poolings of one photo, each unit length, weighted as the fingerprint weighs them
    (2560): the input of the projection."""
    share = similar.GEM_SHARE
    return np.concatenate([np.sqrt(share) * _unit(np.asarray(classification.gem, np.float32)),
                           np.sqrt(1 - share) * _unit(np.asarray(classification.embedding, np.float32))])


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-9 else v


def _trimmed(grey: np.ndarray) -> np.ndarray:
    """Without uniform borders (letterboxing, a pad to a square), unless that would leave under a quarter."""
    rows = np.flatnonzero(grey.std(axis=1) > BORDER_SPREAD)
    cols = np.flatnonzero(grey.std(axis=0) > BORDER_SPREAD)
    if len(rows) > grey.shape[0] // 4 and len(cols) > grey.shape[1] // 4:
        return grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return grey


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def structure(rgb: np.ndarray) -> np.ndarray:
    """Low frequencies of the trimmed grey image, mirror-invariant, unit length (similar.STRUCTURE)."""
    import cv2

    thumb = cv2.resize(_trimmed(_grey(rgb)), (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    low = cv2.dct(thumb)[:LOW, :LOW].copy()
    low[:, 1::2] = np.abs(low[:, 1::2])  # a mirror flips the sign of odd horizontal frequencies
    return _unit(low.flatten()[1:])  # the DC term is the mean brightness: recolouring moves it


def phash(rgb: np.ndarray) -> int:
    """A 64-bit DCT perceptual hash as pHash defines it (32 x 32 grey, Lanczos; the 8 x 8 lowest frequencies
    above their median), as a signed int64. Computed with OpenCV: not bit-identical to imagehash's."""
    import cv2

    thumb = cv2.resize(_grey(rgb), (THUMB, THUMB), interpolation=cv2.INTER_LANCZOS4)
    low = cv2.dct(thumb)[:8, :8]
    bits = (low > np.median(low)).flatten()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def fingerprint_problem(settings) -> str | None:
    """Fingerprints need the converted classifier (whatever the run's backend) and the projection."""
    from imgrec.models.fetch import model_problem

    from .classifier import MODEL_FILE

    if not PROJECTION.is_file():
        return f"{PROJECTION} is missing (training/make_fingerprint_projection.py makes it)"
    return model_problem(Path(settings.models_dir) / MODEL_FILE)


def of_pixels(rgb: np.ndarray, classification: Classification, data: bytes) -> similar.Fingerprint:
    """The fingerprint of the work image `rgb`, from the classifier's pass over it."""
    semantic = _unit(joined(classification) @ _projection())
    w = similar.SEMANTIC_WEIGHT
    vector = np.concatenate([np.sqrt(w) * semantic, np.sqrt(1 - w) * structure(rgb)]).astype(np.float32)
    return similar.Fingerprint(_unit(vector), phash(rgb), hashlib.sha256(data).hexdigest())


def of_bytes(data: bytes, info: ImageInfo, models_dir: Path | None = None) -> similar.Fingerprint:
    """Decode and classify as the analysis pass does (an image no analysing API saw)."""
    rgb, _ = work_image(data, info)
    return of_pixels(rgb, classifier(models_dir).predict(rgb), data)
