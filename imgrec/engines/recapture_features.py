"""Features that separate a first-hand photo from a photo of a screen or of a print.

Recapture leaves periodic structure that a camera photo of a real scene lacks: a display's subpixel grid
and its moiré with the camera's sensor, a print's halftone dot screen; and it changes tone (glare, flattened
contrast, raised black level). We measure:
- spectral peakiness of the high-passed luminance and of the chroma differences (R-G, B-G) in six radial
  bands: log(max / median) and the share of energy in the top 0.2% of bins (periodic patterns make sharp peaks);
- the noise residual's spread and tails; Laplacian sharpness;
- tone: black level, highlight clipping, contrast, saturation, and a smooth-illumination (glare) gradient.
The same function feeds training (training/train_recapture_head.py) and the engine.
"""
from __future__ import annotations

import numpy as np

PATCH = 256
BANDS = (0.04, 0.08, 0.14, 0.22, 0.32, 0.42, 0.5)  # radial frequency band edges, cycles/pixel


def _radius_grid(n: int) -> np.ndarray:
    f = np.fft.fftfreq(n)
    return np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)


_RADIUS = _radius_grid(PATCH)
_WINDOW = np.outer(np.hanning(PATCH), np.hanning(PATCH)).astype(np.float32)
# Each band's bins of a patch's spectrum (flat indices) and how many make its top 0.2%: computed once
_BAND_BINS = [np.flatnonzero((_RADIUS >= lo) & (_RADIUS < hi)) for lo, hi in zip(BANDS, BANDS[1:])]
_TOP = [max(1, bins.size // 500) for bins in _BAND_BINS]


def _patches(img: np.ndarray, count: int = 4) -> list[np.ndarray]:
    h, w = img.shape[:2]
    if h < PATCH or w < PATCH:
        import cv2

        # Each side up to at least PATCH, neither beyond its own length or 4 patches: a 4096 x 1 strip (the
        # reference allows a 1-px side) must not become a 1,048,576-px-wide array.
        scale = PATCH / min(h, w)
        img = cv2.resize(img, (min(max(PATCH, round(w * scale)), max(PATCH, w, 4 * PATCH)),
                               min(max(PATCH, round(h * scale)), max(PATCH, h, 4 * PATCH))),
                         interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
    ys = np.linspace(0, h - PATCH, 2).astype(int)
    xs = np.linspace(0, w - PATCH, 2).astype(int)
    return [img[y:y + PATCH, x:x + PATCH] for y in ys for x in xs][:count]


def _spectral(channel_patches: list[np.ndarray]) -> list[float]:
    """Per band, log(max / median) and the top 0.2% bins' share of the band's energy, of the windowed power
    spectrum of every patch (float32 FFT, all patches at once), the strongest over the patches."""
    import scipy.fft

    stack = np.stack(channel_patches).astype(np.float32)
    stack -= stack.mean(axis=(1, 2), keepdims=True)
    spectrum = scipy.fft.fft2(stack * _WINDOW, workers=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2 + 1e-9).reshape(len(channel_patches), -1)
    feats = np.zeros((len(channel_patches), 2 * (len(BANDS) - 1)), np.float32)
    for b, (bins, top) in enumerate(zip(_BAND_BINS, _TOP)):
        band = power[:, bins]
        # one partial sort: the median and the top 0.2%, instead of a full sort plus a median's own
        middle = bins.size // 2
        order = np.partition(band, (middle - 1, middle, bins.size - top), axis=1)
        median = order[:, middle] if bins.size % 2 else (order[:, middle - 1] + order[:, middle]) / 2
        peaks = order[:, bins.size - top:]
        feats[:, 2 * b] = np.log(peaks.max(axis=1) / median)
        feats[:, 2 * b + 1] = peaks.sum(axis=1) / band.sum(axis=1)
    return list(feats.max(axis=0))  # the strongest periodicity anywhere in the image


def features(rgb: np.ndarray) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = 768 / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    img = rgb.astype(np.float32)
    np.divide(img, np.float32(255.0), out=img)
    # the channels' mean, summed as img.mean(axis=2) sums them (the same float32s), 15x faster than its
    # strided reduction
    gray = (img[..., 0] + img[..., 1] + img[..., 2]) / np.float32(3)
    high = gray - cv2.GaussianBlur(gray, (0, 0), 2.0)
    rg = img[..., 0] - img[..., 1]
    bg = img[..., 2] - img[..., 1]
    out: list[float] = []
    out += _spectral(_patches(high))
    out += _spectral(_patches(rg - cv2.GaussianBlur(rg, (0, 0), 2.0)))
    out += _spectral(_patches(bg - cv2.GaussianBlur(bg, (0, 0), 2.0)))
    residual = gray - cv2.medianBlur((gray * 255).astype(np.uint8), 3).astype(np.float32) / 255.0
    r_std = float(residual.std()) + 1e-6
    out += [np.log(r_std), float(np.mean(np.abs(residual) > 3 * r_std)),
            float(np.log(cv2.Laplacian(gray, cv2.CV_32F).var() + 1e-9))]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32) / 255.0
    lo, hi = np.percentile(gray, [1, 99])
    illumination = cv2.resize(cv2.resize(gray, (8, 8), interpolation=cv2.INTER_AREA), (8, 8))
    out += [float(lo), float(hi), float(hi - lo), float((gray > 0.98).mean()), float(hsv[..., 1].mean()),
            float(hsv[..., 1].std()), float(illumination.max() - illumination.min())]
    return np.asarray(out, np.float32)
