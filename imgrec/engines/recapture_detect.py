"""Recapture detection: is this a first-hand photo, or a photo of a screen or a print?

A logistic head over the classifier's embedding of the photo (what it shows) and the spectral, noise and
tone features of recapture_features.py (how it was captured: moiré, subpixel grids, halftone, glare),
trained on real recaptures (phone photos of screens, webcam shots of printed faces) against genuine photos
and calibrated so that its output p = P(recaptured) is a frequency (training/train_recapture_head.py;
weights/recapture_head.npz). With the request's threshold t (default 0.95): p >= t -> "false"
(recaptured); 1 - p >= t -> "true" (genuine); otherwise "uncertainty". A higher threshold asks for more
certainty before either verdict. `score` is the confidence of that verdict, `detail` carries p itself, as
the reference defines them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from imgrec.schemas import recapture_detect as schema
from imgrec.schemas.common import ParsedRequest
from imgrec.schemas.errors import ApiError

from .base import WEIGHTS, image_info, weights_problem
from .imaging import decode
from .recapture_features import features

HEAD = WEIGHTS / "recapture_head.npz"


# The features' decode: at most this long a side (a phone photo's moiré and subpixel grid survive it).
FEATURE_SIDE = 1536


def engine_features(data: bytes, info, models_dir, analyser=None, tenant: str = "") -> np.ndarray:
    """What the head reads: the classifier's 1280-d embedding of the whole photo (what it shows: a screen's
    bezel, a print's paper and edges) and the spectral / noise / tone features (how it was captured).
    With an `analyser`, the embedding and (for a photo no larger than the work image) the pixels are the
    ones the image's other APIs use."""
    from .analysis import Analyser
    from .imaging import WORK_SIDE

    analyser = analyser or Analyser(capacity=0, models_dir=models_dir)
    embedding = analyser.classified(data, info, tenant).embedding
    if max(info.width, info.height) <= WORK_SIDE:  # decoded whole either way: the same pixels
        rgb = analyser.pixels(data, info, tenant)[0]
    else:
        rgb = decode(data, info, max_side=FEATURE_SIDE)
    return np.concatenate([embedding, features(rgb)]).astype(np.float32)


def verdict(p: float, threshold: float) -> tuple[str, str, float]:
    if p >= threshold:
        return "false", "recapture", p
    if 1.0 - p >= threshold:
        return "true", "", 1.0 - p
    return "uncertainty", "recapture", max(p, 1.0 - p)


class RecaptureDetectEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        if not HEAD.exists():
            raise ApiError.of("AIS.0007", f"{HEAD.name} is missing")
        with np.load(HEAD) as head:
            self.weight, self.bias = head["weight"], float(head["bias"])
            self.mean, self.scale = head["mean"], head["scale"]
        self.models_dir = registry.settings.models_dir
        self.analyser = registry.analyser

    @staticmethod
    def problem(settings) -> str | None:
        from .classifier import MODEL_FILE

        if (missing := weights_problem(HEAD.name)) is not None:
            return missing
        model = Path(settings.models_dir) / MODEL_FILE
        return None if model.is_file() else f"model {model} is not set up: run scripts/setup.sh"

    def probability(self, x: np.ndarray) -> float:
        z = float(((x - self.mean) / self.scale) @ self.weight + self.bias)
        return 1.0 / (1.0 + np.exp(-z))

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        info = image_info(data, request, self.spec)
        p = self.probability(engine_features(data, info, self.models_dir, self.analyser, request.tenant))
        suggestion, category, score = verdict(p, request.params["threshold"])
        return schema.Response(result=schema.Result(
            suggestion=suggestion, category=category, score=f"{score:.4f}",
            detail=[schema.Detail(label="recapture", confidence=f"{p:.4f}")]))
