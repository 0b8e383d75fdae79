"""Low-light enhancement: Retinex-style illumination estimation (LIME, Guo et al. 2017).

The illumination map is the per-pixel max over RGB, smoothed edge-aware with a guided filter; the image is
divided by illumination**g. `brightness` in [0, 1] sets g: 0 barely lifts the shadows, 1 normalises the
illumination almost fully. Colours keep their ratios because all channels share one map.
"""
from __future__ import annotations

import numpy as np

from imgrec.schemas import dark_enhance as schema
from imgrec.schemas.common import ParsedRequest

from .base import ImageOutput, transform_image
from .imaging import guided_filter, radius_for, to_float, to_uint8


def enhance(rgb: np.ndarray, brightness: float) -> np.ndarray:
    img = to_float(rgb)
    illumination = img.max(axis=2)
    grey = img.mean(axis=2)
    illumination = guided_filter(grey, illumination, radius_for(img.shape), 1e-3)
    illumination = np.clip(illumination, 0.02, 1.0)
    exponent = 0.15 + 0.75 * brightness
    out = img / (illumination[..., None] ** exponent)
    return to_uint8(out)


class DarkEnhanceEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        pass  # no model: the method is Retinex illumination estimation

    @staticmethod
    def problem(settings) -> str | None:
        return None  # nothing to load

    def run(self, data: bytes, request: ParsedRequest) -> ImageOutput:
        return transform_image(data, request, self.spec, lambda rgb: enhance(rgb, request.params["brightness"]))
