"""The low-light engine's steps around its network: the exposure gamma before it, the noise-adaptive
denoising after it.

Numpy and OpenCV only (no package imports), so training/train_low_light.py trains and cross-validates with
this very code.
"""
from __future__ import annotations

import numpy as np

TARGET_MEAN = 0.4  # the mean the exposure gamma brings a dark work copy to; the network corrects from there
NOISE_FLOOR = 6.0  # grey levels: below it fine texture, not noise, dominates the estimate (clean photos: 2-5)


def exposure_gamma(img: np.ndarray) -> float:
    """The gamma (<= 1: never darkening) that brings the mean of `img` (float, [0, 1]) to TARGET_MEAN: a
    per-pixel tone curve, lifting shadows more than highlights, which a smooth gain map cannot be."""
    if img.mean() >= TARGET_MEAN:
        return 1.0
    lo, hi = 0.2, 1.0
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float((img ** mid).mean()) > TARGET_MEAN else (lo, mid)
    return (lo + hi) / 2


def noise_sigma(grey: np.ndarray) -> float:
    """Immerkaer (1996): the noise's standard deviation from a Laplacian-difference filter, in grey levels."""
    import cv2

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = np.abs(cv2.filter2D(grey.astype(np.float32), -1, kernel)[1:-1, 1:-1])
    return float(np.sqrt(np.pi / 2) * response.mean() / 6)


def denoise(rgb: np.ndarray) -> np.ndarray:
    import cv2

    sigma = noise_sigma(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    if sigma < NOISE_FLOOR:
        return rgb
    return cv2.fastNlMeansDenoisingColored(rgb, None, sigma, sigma, 5, 11)
