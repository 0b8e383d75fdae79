"""MATLAB's `imresize(img, 1/s, 'bicubic')` in numpy: the degradation the SR benchmarks were made with.

MATLAB widens the cubic kernel (a = -0.5) by the scale when shrinking, which anti-aliases; OpenCV's INTER_CUBIC
does not, and a network trained on OpenCV's pairs learns the wrong inverse (issue 14). Borders are mirrored
(symmetric padding), as MATLAB does.
"""
from __future__ import annotations

import math

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _weights(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    width = 4.0 / scale if scale < 1 else 4.0  # kernel widened when shrinking: the anti-aliasing
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    idx = idx - 1  # to 0-based, then mirror out-of-range taps
    idx = np.where(idx < 0, -idx - 1, idx)
    idx = np.where(idx >= in_len, 2 * in_len - idx - 1, idx)
    return w, idx.astype(np.int64)


def _resize_axis(img: np.ndarray, out_len: int, scale: float, axis: int) -> np.ndarray:
    w, idx = _weights(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)
    out = np.einsum("ot,ot...->o...", w, moved[idx])
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize by `scale` (e.g. 1/3) like MATLAB; float in, float out (no rounding)."""
    x = img.astype(np.float64)
    h, w = x.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    # MATLAB resizes the dimension with the smaller scale first; equal here, so rows first.
    x = _resize_axis(x, out_h, scale, 0)
    return _resize_axis(x, out_w, scale, 1)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
