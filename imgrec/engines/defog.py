"""Defog: dark channel prior (He, Sun, Tang 2009) with guided-filter transmission refinement.

`natural_look` keeps a trace of haze (omega 0.85 instead of 0.95, a higher transmission floor) so distant
objects stay readable as distant; `gamma` is the output gamma correction the reference names (1.5 default):
dehazed images come out dark, and J**(1/gamma) lifts them.
"""
from __future__ import annotations

import numpy as np

from imgrec.schemas import defog as schema
from imgrec.schemas.common import ParsedRequest

from .base import ImageOutput, transform_image
from .imaging import banded, full_size_map, guided_filter, radius_for, to_float, work_copy


def dark_channel(img: np.ndarray, patch: int) -> np.ndarray:
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(img.min(axis=2), kernel)


def atmospheric_light(img: np.ndarray, dark: np.ndarray) -> np.ndarray:
    flat = dark.ravel()
    count = max(1, flat.size // 1000)  # the brightest 0.1% of the dark channel
    idx = np.argpartition(flat, -count)[-count:]
    return img.reshape(-1, 3)[idx].mean(axis=0).clip(0.05, 1.0)


def defog(rgb: np.ndarray, gamma: float, natural_look: bool) -> np.ndarray:
    # Airlight and transmission are estimated on a work copy of at most 2 MP (the transmission is smooth
    # after the guided filter) and applied to the full image band by band.
    img = to_float(work_copy(rgb))
    patch = max(3, radius_for(img.shape, 0.01, 3, 15) * 2 + 1)
    air = atmospheric_light(img, dark_channel(img, patch))
    omega, floor = (0.85, 0.2) if natural_look else (0.95, 0.1)
    transmission = 1.0 - omega * dark_channel(img / air, patch)
    transmission = guided_filter(img.mean(axis=2), transmission, radius_for(img.shape, 0.03, 8, 60), 1e-3)
    transmission = full_size_map(np.clip(transmission, floor, 1.0), *rgb.shape[:2])

    def recover(band: np.ndarray, rows: slice) -> np.ndarray:
        scene = (band - air) / transmission[rows, :, None] + air
        return np.clip(scene, 0.0, 1.0) ** (1.0 / gamma)

    return banded(rgb, recover)


class DefogEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        pass  # no model: the method is the dark channel prior

    def run(self, data: bytes, request: ParsedRequest) -> ImageOutput:
        p = request.params
        return transform_image(data, request, self.spec, lambda rgb: defog(rgb, p["gamma"], p["natural_look"]))
