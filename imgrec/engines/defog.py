"""Defog: the atmospheric scattering model I = J t + A (1 - t), the transmission t the mean of two estimates,
a learned one (DehazeNet's idea, training/train_defog.py) and the dark channel prior's (He et al.), each
refined by a guided filter.

The airlight A is the mean of the haziest 0.1% of a work copy (long side 320 px; dark channel); the network
reads that copy divided by A and answers t. The dark channel prior's t = 1 - 0.95 * dark_channel(I / A) (He et
al.'s omega) on a copy of at most 2 MP. The two fail differently (the prior on bright surfaces, the network
where its synthetic haze did not look like the photo's), so their mean is better than either: on haze-dev
(SOTS-indoor) 21.12 dB vs 19.84 (network) and 17.35 (prior), better than both on 10 of the 12 photos, and
21.13 with omega 0.85, so not a tuned figure. t is applied at full size band by band: J = (I - A) / t + A.
- `natural_look` (default true) keeps that t, which restores the haze-free photo; false removes
  more (t**1.3): the reference's "only pursue the defog effect, may look unnatural".
- `gamma` is an output gamma correction, relative to the reference's default 1.5: the output is
  J ** (1.5 / gamma), so the default returns the restored photo as it is, a higher gamma lifts the mid-tones
  and a lower one deepens them.
"""
from __future__ import annotations

import numpy as np

from imgrec.schemas import defog as schema
from .base import ImageOutEngine, weights_session
from .imaging import banded, full_size_map, guided_filter, long_side, radius_for, to_float, work_copy

NETWORK = "defog_transmission.onnx"
WORK_SIDE = 320  # as trained
REFERENCE_GAMMA = 1.5  # the reference's default gamma: no correction
OMEGA = 0.95  # the dark channel prior's share of haze removed (He et al.)


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
    grey = guide.mean(axis=2)
    learned = guided_filter(grey, t, radius_for(guide.shape, 0.02, 4, 40), 1e-3)
    patch = max(3, radius_for(guide.shape, 0.01, 3, 15) * 2 + 1)
    prior = guided_filter(grey, 1.0 - OMEGA * dark_channel(guide / air, patch), radius_for(guide.shape, 0.03, 8, 60),
                          1e-3)
    t = (np.clip(learned, 0.05, 1.0) + np.clip(prior, 0.05, 1.0)) / 2
    return air.astype(np.float32), t if natural_look else t ** 1.3


def defog(rgb: np.ndarray, gamma: float, natural_look: bool) -> np.ndarray:
    air, t = transmission(rgb, natural_look)
    t = full_size_map(t, *rgb.shape[:2])
    exponent = REFERENCE_GAMMA / gamma

    def recover(band: np.ndarray, rows: slice) -> np.ndarray:
        scene = np.clip((band - air) / t[rows, :, None] + air, 0.0, 1.0)
        return scene if exponent == 1.0 else scene ** exponent

    return banded(rgb, recover)


class DefogEngine(ImageOutEngine):
    spec = schema.SPEC
    networks = (NETWORK,)

    @staticmethod
    def transform(rgb: np.ndarray, params: dict) -> np.ndarray:
        return defog(rgb, params["gamma"], params["natural_look"])
