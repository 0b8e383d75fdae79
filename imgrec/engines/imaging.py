"""Small image helpers the engines share (float conversion, guided filter)."""
from __future__ import annotations

import numpy as np


def to_float(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of `src` steered by `guide` (He et al.), via OpenCV's ximgproc."""
    import cv2

    return cv2.ximgproc.guidedFilter(guide.astype(np.float32), src.astype(np.float32), radius, eps)


def radius_for(shape: tuple[int, ...], fraction: float = 0.02, lo: int = 4, hi: int = 60) -> int:
    return int(np.clip(round(min(shape[:2]) * fraction), lo, hi))
