"""Defog: the atmospheric scattering model I = J t + A (1 - t) with a learned transmission (DehazeNet's idea,
training/train_defog.py), refined by a guided filter.

The airlight A is the mean of the haziest 0.1% of a work copy (long side 320 px; dark channel, He et al.);
the network reads that copy divided by A and answers t, which is upsampled, refined edge-aware against the
image (guided filter on a copy of at most 2 MP) and applied at full size band by band: J = (I - A) / t + A.
- `natural_look` (default true) keeps the network's t, trained to restore the haze-free photo; false removes
  more (t**1.3): the reference's "only pursue the defog effect, may look unnatural".
- `gamma` is an output gamma correction, relative to the reference's default 1.5: the output is
  J ** (1.5 / gamma), so the default returns the restored photo as it is, a higher gamma lifts the mid-tones
  and a lower one deepens them.
"""
from __future__ import annotations

import numpy as np

from imgrec.schemas import defog as schema
from imgrec.schemas.common import ParsedRequest

from .base import ImageOutput, transform_image, weights_problem, weights_session
from .imaging import banded, full_size_map, guided_filter, long_side, radius_for, to_float, work_copy

NETWORK = "defog_transmission.onnx"
WORK_SIDE = 320  # as trained
REFERENCE_GAMMA = 1.5  # the reference's default gamma: no correction


def dark_channel(img: np.ndarray, patch: int) -> np.ndarray:
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(img.min(axis=2), kernel)


def atmospheric_light(img: np.ndarray) -> np.ndarray:
    """The mean colour of the brightest 0.1% of the dark channel (15 px patches at the work size)."""
    flat = dark_channel(img, 15).ravel()
    count = max(1, flat.size // 1000)
    idx = np.argpartition(flat, -count)[-count:]
    return img.reshape(-1, 3)[idx].mean(axis=0).clip(0.05, 1.0)


def transmission(rgb: np.ndarray, natural_look: bool) -> tuple[np.ndarray, np.ndarray]:
    """(airlight, t at the size of the guided-filter copy)."""
    import cv2

    guide = to_float(work_copy(rgb))
    h, w = guide.shape[:2]
    small = long_side(guide, WORK_SIDE)
    air = atmospheric_light(small)
    x = np.ascontiguousarray((small / air).astype(np.float32).transpose(2, 0, 1)[None])
    t = weights_session(NETWORK).run(None, {"rgb_over_airlight": x})[0][0, 0]
    t = cv2.resize(t, (w, h), interpolation=cv2.INTER_LINEAR)
    t = guided_filter(guide.mean(axis=2), t, radius_for(guide.shape, 0.02, 4, 40), 1e-3)
    t = np.clip(t, 0.05, 1.0)
    return air.astype(np.float32), t if natural_look else t ** 1.3


def defog(rgb: np.ndarray, gamma: float, natural_look: bool) -> np.ndarray:
    air, t = transmission(rgb, natural_look)
    t = full_size_map(t, *rgb.shape[:2])
    exponent = REFERENCE_GAMMA / gamma

    def recover(band: np.ndarray, rows: slice) -> np.ndarray:
        scene = np.clip((band - air) / t[rows, :, None] + air, 0.0, 1.0)
        return scene if exponent == 1.0 else scene ** exponent

    return banded(rgb, recover)


class DefogEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        pass  # the network loads on first use (weights_session)

    @staticmethod
    def problem(settings) -> str | None:
        return weights_problem(NETWORK)

    def run(self, data: bytes, request: ParsedRequest) -> ImageOutput:
        p = request.params
        return transform_image(data, request, self.spec, lambda rgb: defog(rgb, p["gamma"], p["natural_look"]))
