"""Low-light enhancement: an exposure gamma, then a learned illumination (gain) map, Retinex-style
(training/train_low_light.py), then noise-adaptive denoising.

On a work copy of the photo (long side 128 px: the whole scene, its exposure and colour cast at once) the
exposure gamma brings the mean to 0.4 (`low_light_steps.py`); a small network reads the result and answers a
smooth per-pixel, per-channel log-gain that corrects it locally. At full size the gamma and the upsampled map
are applied band by band (a power and a multiply per pixel), then the noise the lift made visible is removed
as far as it stands out. `brightness` in [0, 1] scales the whole change in log exposure: 0.9 (the default)
applies it as trained, 0 leaves the photo as it is, 1 lifts a little more. A photo that is not dark gets
gamma 1 and a gain near 1.
"""
from __future__ import annotations

import numpy as np

from imgrec.schemas import dark_enhance as schema
from .base import ImageOutEngine, weights_session
from .imaging import banded, long_side
from .low_light_steps import denoise, exposure_gamma

NETWORK = "low_light.onnx"
WORK_SIDE = 128  # as trained
TRAINED_BRIGHTNESS = 0.9  # the default brightness applies the correction as trained


def correction(rgb: np.ndarray, brightness: float) -> tuple[float, np.ndarray]:
    """(gamma, gain map at full size) for this photo and brightness."""
    import cv2

    h, w = rgb.shape[:2]
    work = long_side(rgb, WORK_SIDE).astype(np.float32) / 255
    gamma = exposure_gamma(work)
    x = np.ascontiguousarray((work ** gamma).transpose(2, 0, 1)[None])
    log_gain = weights_session(NETWORK).run(None, {"rgb": x})[0][0].transpose(1, 2, 0)
    share = brightness / TRAINED_BRIGHTNESS
    gain = np.exp(log_gain * share).astype(np.float32)
    return gamma ** share, cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float16)


def enhance(rgb: np.ndarray, brightness: float) -> np.ndarray:
    if brightness == 0:
        return rgb.copy()
    gamma, gain = correction(rgb, brightness)
    return denoise(banded(rgb, lambda band, rows: band ** gamma * gain[rows]))


class DarkEnhanceEngine(ImageOutEngine):
    spec = schema.SPEC
    networks = (NETWORK,)

    @staticmethod
    def transform(rgb: np.ndarray, params: dict) -> np.ndarray:
        return enhance(rgb, params["brightness"])
