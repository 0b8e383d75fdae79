"""Recapture detection: is this a first-hand photo, or a photo of a screen or a print?

A small MLP over spectral, noise and tone features (recapture_features.py), trained by this project on
recaptures it synthesises from real photographs (training/train_recapture.py; weights in weights/).
p = P(recapture). With the request's threshold t (default 0.95): p >= t -> "false" (recaptured);
1 - p >= t -> "true" (genuine); otherwise "uncertainty". `score` is the confidence of that verdict,
`detail` carries p itself, as the reference defines them.
"""
from __future__ import annotations

from pathlib import Path

from imgrec.schemas import recapture_detect as schema
from imgrec.schemas.common import ParsedRequest
from imgrec.schemas.errors import ApiError

from .base import image_info
from .imaging import decode
from .recapture_features import Classifier, features

WEIGHTS = Path(__file__).parent / "weights" / "recapture_mlp.npz"


def verdict(p: float, threshold: float) -> tuple[str, str, float]:
    if p >= threshold:
        return "false", "recapture", p
    if 1.0 - p >= threshold:
        return "true", "", 1.0 - p
    return "uncertainty", "recapture", max(p, 1.0 - p)


class RecaptureDetectEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        if not WEIGHTS.exists():
            raise ApiError.of("AIS.0007", f"{WEIGHTS.name} is missing")
        self.classifier = Classifier.load(WEIGHTS)

    @staticmethod
    def problem(settings) -> str | None:
        return None if WEIGHTS.is_file() else f"{WEIGHTS} is missing"

    def probability(self, rgb) -> float:
        return float(self.classifier.probability(features(rgb))[0])

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        p = self.probability(decode(data, image_info(data, request, self.spec), max_side=1536))
        suggestion, category, score = verdict(p, request.params["threshold"])
        return schema.Response(result=schema.Result(
            suggestion=suggestion, category=category, score=f"{score:.4f}",
            detail=[schema.Detail(label="recapture", confidence=f"{p:.4f}")]))
