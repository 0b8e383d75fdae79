"""Super-resolution: ESPCN and SRCNN (x3, x4), trained by this project (training/train_sr.py), served by
onnxruntime from imgrec/engines/weights/.

The networks refine luminance (Y); chroma is upscaled bicubically, as in both papers. Both graphs take the
low-resolution Y (SRCNN's bicubic upscale is inside its graph) and add their output to a bicubic upscale. Work is tiled
(128 low-res pixels a side, with an overlap wider than the receptive field), so a 2048-px input costs
bounded memory whatever the network's width.
"""
from __future__ import annotations

import numpy as np

from imgrec.schemas import super_resolution as schema
from .base import ImageOutEngine, weights_session

TILE = 128
OVERLAP = 8  # low-res pixels; both receptive fields are narrower


def network(model: str, scale: int) -> str:
    return f"sr_{model.lower()}_x{scale}.onnx"


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32) / 255.0
    y = 16 / 255 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255
    cb = 128 / 255 + (-37.797 * x[..., 0] - 74.203 * x[..., 1] + 112.0 * x[..., 2]) / 255
    cr = 128 / 255 + (112.0 * x[..., 0] - 93.786 * x[..., 1] - 18.214 * x[..., 2]) / 255
    return np.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    y, cb, cr = ycc[..., 0] - 16 / 255, ycc[..., 1] - 128 / 255, ycc[..., 2] - 128 / 255
    r = 1.164383 * y + 1.596027 * cr
    g = 1.164383 * y - 0.391762 * cb - 0.812968 * cr
    b = 1.164383 * y + 2.017232 * cb
    return (np.clip(np.stack([r, g, b], axis=-1), 0, 1) * 255 + 0.5).astype(np.uint8)


def _bicubic(img: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC)


def upscale_y(y: np.ndarray, model: str, scale: int) -> np.ndarray:
    sess = weights_session(network(model, scale))
    h, w = y.shape
    out = np.zeros((h * scale, w * scale), np.float32)
    for top in range(0, h, TILE):
        for left in range(0, w, TILE):
            t0, l0 = max(0, top - OVERLAP), max(0, left - OVERLAP)
            t1, l1 = min(h, top + TILE + OVERLAP), min(w, left + TILE + OVERLAP)
            tile = y[t0:t1, l0:l1]
            result = sess.run(None, {"y": tile[None, None].astype(np.float32)})[0][0, 0]
            ct, cl = (top - t0) * scale, (left - l0) * scale
            bh, bw = (min(h, top + TILE) - top) * scale, (min(w, left + TILE) - left) * scale
            out[top * scale:top * scale + bh, left * scale:left * scale + bw] = result[ct:ct + bh, cl:cl + bw]
    return np.clip(out, 0, 1)


def super_resolve(rgb: np.ndarray, model: str, scale: int) -> np.ndarray:
    ycc = rgb_to_ycbcr(rgb)
    h, w = rgb.shape[:2]
    y = upscale_y(ycc[..., 0], model, scale)
    chroma = _bicubic(ycc[..., 1:], w * scale, h * scale)
    return ycbcr_to_rgb(np.concatenate([y[..., None], chroma], axis=-1))


class SuperResolutionEngine(ImageOutEngine):
    spec = schema.SPEC
    networks = tuple(network(m, s) for m in ("ESPCN", "SRCNN") for s in (3, 4))

    @staticmethod
    def transform(rgb: np.ndarray, params: dict) -> np.ndarray:
        return super_resolve(rgb, params["model"], params["scale"])
