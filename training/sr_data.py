"""Super-resolution data: luminance patches from scikit-image's bundled photographs.

Train and held-out photographs are disjoint; the held-out ones (astronaut, chelsea, coffee) are what the
benchmark reports PSNR/SSIM on.
"""
from __future__ import annotations

import numpy as np

TRAIN = ("brick", "camera", "cell", "clock", "coins", "grass", "gravel", "hubble_deep_field",
         "immunohistochemistry", "moon", "retina", "rocket", "page", "text", "colorwheel")
HELD_OUT = ("astronaut", "chelsea", "coffee")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y in [0, 1] (what the ESPCN and SRCNN papers train on)."""
    rgb = rgb.astype(np.float32) / 255.0
    return 16 / 255 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def load(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3].astype(np.uint8)


def bicubic(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(y, size, interpolation=cv2.INTER_CUBIC)


def degrade(y: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(low-res, high-res) with the high-res cropped to a multiple of the scale."""
    h, w = (y.shape[0] // scale) * scale, (y.shape[1] // scale) * scale
    hr = y[:h, :w]
    lr = bicubic(hr, (w // scale, h // scale))
    return lr, hr


def patches(names, scale: int, lr_size: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [luminance(load(n)) for n in names]
    lrs, hrs = [], []
    for i in range(count):
        y = images[i % len(images)]
        if rng.random() < 0.5:
            y = y[:, ::-1]
        if rng.random() < 0.5:
            y = y.T
        hr_size = lr_size * scale
        top = rng.integers(0, y.shape[0] - hr_size + 1)
        left = rng.integers(0, y.shape[1] - hr_size + 1)
        hr = np.ascontiguousarray(y[top:top + hr_size, left:left + hr_size])
        lr = bicubic(hr, (lr_size, lr_size))
        lrs.append(lr)
        hrs.append(hr)
    return np.stack(lrs)[:, None].astype(np.float32), np.stack(hrs)[:, None].astype(np.float32)
