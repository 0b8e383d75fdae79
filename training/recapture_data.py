"""Synthesised recaptures of real photographs, for training and measuring the recapture classifier.

Every sample starts as a crop of a scikit-image photograph. "Genuine" samples go through a plain camera
pipeline (resample, sensor noise, JPEG). Recaptures go through a display or a print first:
- screen: each source pixel becomes an RGB subpixel triplet with a dark gap (the panel), the camera sees the
  panel slightly rotated and defocused and resamples it (moiré), with a brightness/gamma shift and glare;
- print: CMYK halftone screens at the classic angles (15/75/0/45 degrees), paper tint, then the camera.
Held-out photographs never appear in training.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

TRAIN = ("brick", "camera", "cell", "clock", "coins", "grass", "gravel", "hubble_deep_field",
         "immunohistochemistry", "moon", "retina", "rocket", "page", "colorwheel", "text")
HELD_OUT = ("astronaut", "chelsea", "coffee")


def load(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3].astype(np.uint8)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _camera(rgb: np.ndarray, rng, out_side: int) -> np.ndarray:
    """What any camera does: resample to its resolution, add sensor noise, JPEG-compress."""
    import cv2

    h, w = rgb.shape[:2]
    scale = out_side / max(h, w)
    img = cv2.resize(rgb, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    img = img.astype(np.float32) + rng.normal(0, rng.uniform(0.5, 3.0), img.shape)  # float in: light, unclipped
    return _jpeg(np.clip(img, 0, 255).astype(np.uint8), rng.integers(70, 96))


def colourise(rgb: np.ndarray, rng) -> np.ndarray:
    """Grey sources get a smooth random colour cast, so "has colour" cannot stand in for "recaptured"."""
    if np.abs(rgb[..., 0].astype(int) - rgb[..., 1]).mean() > 2:
        return rgb
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.stack([np.sin(xx / rng.uniform(40, 200) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(40, 200))
                      for _ in range(3)], axis=-1)
    gains = 1.0 + rng.uniform(0.1, 0.45) * field + rng.uniform(-0.15, 0.15, 3)
    return np.clip(rgb.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def crop(rgb: np.ndarray, rng) -> np.ndarray:
    rgb = colourise(rgb, rng) if rng.random() < 0.7 else rgb
    h, w = rgb.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(h, w))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    out = rgb[top:top + side, left:left + side]
    return out[:, ::-1] if rng.random() < 0.5 else out


def genuine(rgb: np.ndarray, rng) -> np.ndarray:
    return _camera(crop(rgb, rng), rng, int(rng.integers(300, 640)))


def _view(panel: np.ndarray, rng, out_side: int, blur: float) -> np.ndarray:
    """The camera looks at a panel or print: small rotation and perspective, defocus, resampling."""
    import cv2

    h, w = panel.shape[:2]
    angle = rng.uniform(-4, 4)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, rng.uniform(1.02, 1.1))
    warped = cv2.warpAffine(panel, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if blur > 0:
        warped = cv2.GaussianBlur(warped, (0, 0), blur)
    return _camera(warped, rng, out_side)


def screen(rgb: np.ndarray, rng) -> np.ndarray:
    import cv2

    src = crop(rgb, rng)
    pitch = int(rng.integers(3, 6))  # panel pixels per source pixel
    side = min(src.shape[0], 1600 // pitch)
    src = cv2.resize(src, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    src = src ** rng.uniform(0.8, 1.25)  # the display's own tone curve
    panel = np.repeat(np.repeat(src, pitch, axis=0), pitch, axis=1)
    mask = np.zeros((pitch, pitch, 3), np.float32)
    stripe = max(1, pitch // 3)
    for c in range(3):
        mask[: pitch - 1, c * stripe:(c + 1) * stripe, c] = 1.0
    coverage = (pitch - 1) / pitch * stripe / pitch
    # Emitted light: subpixels are brighter than the pixel they draw; the camera integrates them.
    panel = panel * np.tile(mask, (side, side, 1)) * (rng.uniform(0.75, 1.05) / coverage)
    yy, xx = np.mgrid[0:panel.shape[0], 0:panel.shape[1]].astype(np.float32) / panel.shape[0]
    cy, cx = rng.uniform(0, 1, 2)
    glare = rng.uniform(0, 0.35) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(0.02, 0.2))
    panel = (panel + glare[..., None] + rng.uniform(0.02, 0.08)) * 255.0
    return _view(panel.astype(np.float32), rng, int(rng.integers(300, 640)), rng.uniform(0.6, 1.6))


def _halftone(channel: np.ndarray, cell: int, angle: float) -> np.ndarray:
    """Ink coverage 0-1 -> printed dots on a rotated grid."""
    h, w = channel.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(angle)
    u = (xx * np.cos(a) + yy * np.sin(a)) / cell
    v = (-xx * np.sin(a) + yy * np.cos(a)) / cell
    du, dv = u - np.round(u), v - np.round(v)
    distance = np.sqrt(du ** 2 + dv ** 2)  # 0 at a dot centre, ~0.707 at the cell corner
    radius = np.sqrt(channel / np.pi)  # dot area == coverage
    return (distance < radius).astype(np.float32)


def print_copy(rgb: np.ndarray, rng) -> np.ndarray:
    import cv2

    src = crop(rgb, rng)
    cell = int(rng.integers(3, 7))
    side = min(1400, src.shape[0] * int(rng.integers(2, 4)))
    src = cv2.resize(src, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    k = 1 - src.max(axis=2)
    cmy = (1 - src - k[..., None]) / np.clip(1 - k[..., None], 1e-3, None)
    inks = [_halftone(cmy[..., i], cell, ang) for i, ang in enumerate((15, 75, 0))]
    key = _halftone(k, cell, 45)
    paper = np.array([rng.uniform(0.9, 1.0), rng.uniform(0.88, 1.0), rng.uniform(0.8, 0.98)], np.float32)
    out = paper * (1 - key[..., None])
    for i in range(3):
        out[..., i] *= 1 - 0.9 * inks[i]
    out = (np.clip(out, 0, 1) * 255).astype(np.uint8)
    return _view(out, rng, int(rng.integers(300, 640)), rng.uniform(0.4, 1.5))


def dataset(names, count: int, seed: int):
    """Balanced (genuine / screen / print) samples: (features, labels 0/1, kinds)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from imgrec.engines.recapture_features import features

    rng = np.random.default_rng(seed)
    photos = [load(n) for n in names]
    xs, ys, kinds = [], [], []
    for i in range(count):
        photo = photos[i % len(photos)]
        kind = ("genuine", "genuine", "screen", "print")[i % 4]  # half genuine, half recaptured
        img = {"genuine": genuine, "screen": screen, "print": print_copy}[kind](photo, rng)
        xs.append(features(img))
        ys.append(0 if kind == "genuine" else 1)
        kinds.append(kind)
    return np.stack(xs), np.asarray(ys, np.float32), kinds
