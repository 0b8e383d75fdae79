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
from .imaging import banded, full_size_map, guided_filter, radius_for, to_float, work_copy


def enhance(rgb: np.ndarray, brightness: float) -> np.ndarray:
    # The illumination map is smooth: estimated on a work copy of at most 2 MP, applied band by band.
    img = to_float(work_copy(rgb))
    illumination = img.max(axis=2)
    grey = img.mean(axis=2)
    illumination = guided_filter(grey, illumination, radius_for(img.shape), 1e-3)
    illumination = np.clip(illumination, 0.02, 1.0)
    exponent = 0.15 + 0.75 * brightness
    gain = full_size_map(illumination ** -exponent, *rgb.shape[:2])
    return banded(rgb, lambda band, rows: band * gain[rows, :, None])


class DarkEnhanceEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        pass  # no model: the method is Retinex illumination estimation

    def run(self, data: bytes, request: ParsedRequest) -> ImageOutput:
        return transform_image(data, request, self.spec, lambda rgb: enhance(rgb, request.params["brightness"]))
