"""Recaptures made from genuine photos: the photo shown on a screen or printed, then photographed.

What the recapture head must learn is how a picture was captured, not what it shows, so every genuine
photo of the training set also appears as a screen recapture, a print recapture and a re-saved genuine copy
(the same content in both classes). Each step imitates the physics of the artefact, with random parameters:
- screen: the photo on a panel of 160-700 pixels a side, each pixel three subpixel stripes (RGB or BGR,
  vertical or horizontal) with a dark matrix between rows; the panel's own tone curve; the camera sees it
  rotated and in perspective at 0.9-4 camera pixels per panel pixel, through a lens blur, and samples it
  (that sampling makes the moire), through a Bayer colour filter and a demosaic; refresh bands, glare,
  ambient light on the glass, sensor noise, a sharpening ISP, JPEG;
- print: the photo as CMYK ink on paper, amplitude-modulated dot screens (random ruling, the classic
  15/75/0/45 degree angles turned by a random amount) or stochastic / ordered dither (inkjets), dot gain,
  ink that cannot reach paper white or true black, paper tint and fibre texture; then the same camera with
  uneven light and, on glossy paper, glare;
- genuine: the photo re-sampled, noised and re-compressed as a camera or a website would.
Some of each are downsized afterwards (datasets publish resized copies). Nothing here reads the network.

    .venv/bin/python training/recaptures.py OUT [--data ../shared/eval] [--seed 0]   (~5 min on 2 cores)

Not yet behind the shipped head: trained with it (the classifier's embedding and recapture_features.py,
logistic), real natural-photo screens never trained on were caught far more often, but genuine photos lost
their "true" verdict (see the issue notes); the hand features do not separate the two well enough.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("genuine", "screen", "print")


def encoded(rgb: np.ndarray, rng) -> bytes:
    """The bytes a camera or a site would store: JPEG mostly, PNG sometimes."""
    buf = io.BytesIO()
    if rng.random() < 0.15:
        Image.fromarray(rgb).save(buf, format="PNG")
    else:
        Image.fromarray(rgb).save(buf, format="JPEG", quality=int(rng.integers(70, 97)))
    return buf.getvalue()


def content(rgb: np.ndarray, rng) -> np.ndarray:
    """A random crop (60-100% of each side) of the photo, mirrored half the time."""
    h, w = rgb.shape[:2]
    ch, cw = max(8, int(h * rng.uniform(0.6, 1.0))), max(8, int(w * rng.uniform(0.6, 1.0)))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = rgb[top:top + ch, left:left + cw]
    return out[:, ::-1] if rng.random() < 0.5 else out


def _resize(img: np.ndarray, long_side: int, interpolation=None) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    if interpolation is None:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, size, interpolation=interpolation)


def _blob(h: int, w: int, rng) -> np.ndarray:
    """A smooth light spot (glare, uneven lighting) anywhere in the frame, peak 1."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
    radius = rng.uniform(0.15, 0.7) * max(h, w)
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2)).astype(np.float32)


def _view(surface: np.ndarray, pixels_per_unit: float, unit: float, rng) -> np.ndarray:
    """The camera's optics and geometry: `surface` (float RGB, `unit` of its pixels per panel pixel or
    halftone cell) seen at `pixels_per_unit` camera pixels per unit, slightly rotated and in perspective,
    blurred by the lens, then point-sampled (the sensor's grid beating against the surface's: moire)."""
    import cv2

    h, w = surface.shape[:2]
    scale = pixels_per_unit / unit
    out_w, out_h = max(16, round(w * scale)), max(16, round(h * scale))
    angle = np.deg2rad(rng.uniform(-6, 6))
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-0.03, 0.03, (4, 2)) * np.float32([out_w, out_h])
    centre = np.float32([out_w / 2, out_h / 2])
    rotation = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # zoomed in enough that the surface fills the frame, but a fifth show a dark surround (a bezel, a table)
    zoom = rng.uniform(0.88, 1.0) if rng.random() < 0.2 else rng.uniform(1.04, 1.12) + 1.3 * abs(np.sin(angle))
    target = ((corners * scale - centre) @ rotation.T) * zoom + centre + jitter
    matrix = cv2.getPerspectiveTransform(corners, target.astype(np.float32))
    lens = rng.uniform(0.35, 1.3) / scale  # the blur in surface pixels, 0.35-1.3 camera pixels
    surface = cv2.GaussianBlur(surface, (0, 0), lens)
    return cv2.warpPerspective(surface, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0.03, 0.03, 0.03))


def _sensor(light: np.ndarray, rng) -> np.ndarray:
    """Light (float RGB, ~0-1) -> the stored image: Bayer mosaic with shot and read noise, demosaic, white
    balance, the camera's tone curve, sharpening; uint8."""
    import cv2

    h, w = light.shape[:2]
    h, w = h - h % 2, w - w % 2
    light = np.clip(light[:h, :w], 0, 1)
    mosaic = np.zeros((h, w), np.float32)
    mosaic[0::2, 0::2] = light[0::2, 0::2, 2]  # B G / G R (cv2's BayerBG)
    mosaic[0::2, 1::2] = light[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = light[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = light[1::2, 1::2, 0]
    gain = rng.uniform(0.5, 4.0)  # ISO: more gain, more visible noise
    mosaic = mosaic + rng.normal(0, 1, mosaic.shape).astype(np.float32) * np.sqrt(
        mosaic * 0.0004 * gain + (0.002 * gain) ** 2)
    raw = (np.clip(mosaic, 0, 1) * 255).astype(np.uint8)
    code = (cv2.COLOR_BayerBG2RGB, cv2.COLOR_BayerBG2RGB_EA, cv2.COLOR_BayerBG2RGB_VNG)[rng.integers(0, 3)]
    rgb = cv2.cvtColor(raw, code).astype(np.float32) / 255.0
    rgb *= rng.uniform(0.9, 1.1, 3).astype(np.float32)  # white balance off by a little
    rgb = np.clip(rgb, 0, 1) ** rng.uniform(0.85, 1.15)
    if rng.random() < 0.6:  # the ISP's unsharp mask
        rgb = rgb + rng.uniform(0.2, 0.9) * (rgb - cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.8, 2.0)))
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def _published(rgb: np.ndarray, rng) -> np.ndarray:
    """A third of the images are downsized afterwards (published copies: 256-1024 px a side)."""
    if rng.random() < 0.33 and max(rgb.shape[:2]) > 300:
        return _resize(rgb, int(rng.integers(256, min(1024, max(rgb.shape[:2])) + 1)))
    return rgb


def screen(rgb: np.ndarray, rng) -> np.ndarray:
    """The photo displayed on a panel and photographed (uint8 RGB)."""
    src = content(rgb, rng)
    pitch = rng.uniform(0.9, 4.0)  # camera pixels per panel pixel
    side = int(rng.integers(160, 701))
    side = min(side, int(2400 / pitch))  # the photo's long side at most ~2400 camera pixels
    shown = _resize(src, side).astype(np.float32) / 255.0
    shown = np.clip(shown, 0, 1) ** rng.uniform(0.8, 1.3) * rng.uniform(0.7, 1.0)  # the panel's tone
    h, w = shown.shape[:2]
    sub = 3  # surface pixels per panel pixel: one per subpixel stripe
    panel = np.repeat(np.repeat(shown, sub, axis=0), sub, axis=1)
    mask = np.zeros((sub, sub, 3), np.float32)
    order = (0, 1, 2) if rng.random() < 0.7 else (2, 1, 0)
    for column, channel in enumerate(order):
        mask[:, column, channel] = 3.0  # a stripe emits the pixel's light in a third of its area
    mask[sub - 1] *= rng.uniform(0.0, 0.6)  # the black matrix between rows of pixels
    if rng.random() < 0.15:
        mask = mask.transpose(1, 0, 2)  # horizontal stripes (a panel turned to portrait)
    panel *= np.tile(mask, (h, w, 1))
    light = _view(panel, pitch, sub, rng)
    oh, ow = light.shape[:2]
    if rng.random() < 0.3:  # refresh / PWM bands across the rows of a rolling shutter
        rows = np.arange(oh, dtype=np.float32)[:, None, None]
        light *= 1 - rng.uniform(0.03, 0.15) * (0.5 + 0.5 * np.sin(2 * np.pi * rows / rng.uniform(20, 200)
                                                                 + rng.uniform(0, 6.3)))
    glare = rng.uniform(0, 0.25) * _blob(oh, ow, rng)[..., None] if rng.random() < 0.6 else 0.0
    light = light + glare + rng.uniform(0.005, 0.06)  # glare and ambient light off the glass
    return _published(_sensor(light * rng.uniform(0.8, 1.2), rng), rng)


def _halftone(coverage: np.ndarray, cell: float, angle: float, rng, kind: str) -> np.ndarray:
    """Ink coverage 0-1 -> inked (1) or bare paper (0), per surface pixel."""
    import cv2

    h, w = coverage.shape
    if kind == "stochastic":  # inkjet-like error-diffusion look: a blue-ish noise threshold
        noise = rng.random((h, w)).astype(np.float32)
        from scipy.special import ndtr

        noise = noise - cv2.GaussianBlur(noise, (0, 0), 1.5)
        return (coverage > ndtr(noise / (noise.std() + 1e-6))).astype(np.float32)  # ~uniform thresholds
    if kind == "ordered":  # a 4 x 4 Bayer dither matrix, one entry per surface pixel
        bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32)
        threshold = (np.tile(bayer, (h // 4 + 1, w // 4 + 1))[:h, :w] + 0.5) / 16
        return (coverage > threshold).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(angle)
    u = (xx * np.cos(a) + yy * np.sin(a)) / cell
    v = (-xx * np.sin(a) + yy * np.cos(a)) / cell
    distance = np.sqrt((u - np.round(u)) ** 2 + (v - np.round(v)) ** 2)  # 0 at a dot's centre
    return (distance < np.sqrt(np.clip(coverage, 0, 1) / np.pi)).astype(np.float32)  # dot area = coverage


INKS = np.array([[0.05, 0.62, 0.92], [0.90, 0.08, 0.55], [1.00, 0.92, 0.05], [0.10, 0.10, 0.12]], np.float32)


def printed(rgb: np.ndarray, rng) -> np.ndarray:
    """The photo printed in CMYK on paper and photographed (uint8 RGB)."""
    import cv2

    src = content(rgb, rng)
    kind = ("am", "am", "stochastic", "ordered")[rng.integers(0, 4)]
    cell = rng.uniform(4.0, 8.0) if kind == "am" else 1.0  # surface pixels per halftone cell
    per_cell = rng.uniform(0.7, 4.0) if kind == "am" else rng.uniform(0.25, 1.2)  # camera pixels per cell
    long_side = min(2400, int(rng.integers(300, 1400) / per_cell * cell))
    img = np.clip(_resize(src, max(64, long_side)).astype(np.float32) / 255.0, 0, 1)
    key = (1 - img.max(axis=2)) * rng.uniform(0.6, 1.0)  # grey component replacement
    cmy = np.clip((1 - img - key[..., None]) / np.clip(1 - key[..., None], 1e-3, None), 0, 1)
    turn = rng.uniform(0, 90)
    angles = [15 + turn, 75 + turn, turn, 45 + turn]
    coverage = [cmy[..., 0], cmy[..., 1], cmy[..., 2], key]
    paper = np.array([rng.uniform(0.9, 1.0), rng.uniform(0.9, 1.0), rng.uniform(0.82, 0.98)], np.float32)
    out = np.ones_like(img) * paper
    gain = rng.uniform(0.3, 1.0) * cell / 4  # dot gain: ink spreads into the paper
    for ink, (cover, angle) in enumerate(zip(coverage, angles)):
        dots = cv2.GaussianBlur(_halftone(cover, cell, angle, rng, kind), (0, 0), gain)
        out *= 1 - dots[..., None] * (1 - INKS[ink]) * rng.uniform(0.8, 0.95)
    fibre = cv2.GaussianBlur(rng.normal(0, 1, out.shape[:2]).astype(np.float32), (0, 0), rng.uniform(1, 4))
    out *= (1 + rng.uniform(0.01, 0.05) * fibre / (fibre.std() + 1e-6))[..., None]
    light = _view(out, per_cell, cell, rng)
    oh, ow = light.shape[:2]
    light *= (rng.uniform(0.6, 0.95) + rng.uniform(0.05, 0.4) * _blob(oh, ow, rng))[..., None]  # uneven light
    if rng.random() < 0.4:  # glossy paper
        light += rng.uniform(0.05, 0.3) * _blob(oh, ow, rng)[..., None]
    return _published(_sensor(light, rng), rng)


def genuine(rgb: np.ndarray, rng) -> np.ndarray:
    """The photo as a camera or a site would store it again: resampled, sometimes noised, re-compressed."""
    import cv2

    src = content(rgb, rng)
    h, w = src.shape[:2]
    img = _resize(src, max(16, int(max(h, w) * rng.uniform(0.5, 1.6))))
    if rng.random() < 0.5:
        img = np.clip(img.astype(np.float32) + rng.normal(0, rng.uniform(0.5, 3.0), img.shape), 0, 255)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.4, 1.2))
    return _published(np.clip(img, 0, 255).astype(np.uint8), rng)


def make(rgb: np.ndarray, kind: str, rng) -> bytes:
    """One training image of `kind` (genuine / screen / print) made from the genuine photo `rgb`, encoded."""
    image = {"genuine": genuine, "screen": screen, "print": printed}[kind](rgb, rng)
    return encoded(image, rng)


def sources(data: Path) -> list[Path]:
    """The genuine photos recaptures are made from: every photo of the eval sets that is neither a recapture
    nor a test of one (imagenet-dev, coco-dev, scene-dev, lol-dev/high, haze-dev/gt)."""
    return (sorted((data / "imagenet-dev").glob("*.JPEG")) + sorted((data / "coco-dev" / "images").glob("*.jpg"))
            + sorted((data / "scene-dev").rglob("*.jpg")) + sorted((data / "lol-dev" / "high").glob("*.png"))
            + sorted((data / "haze-dev" / "gt").glob("*.png")))


def _write(job: tuple[int, str, str, int]) -> None:
    index, source, out, seed = job
    rgb = np.asarray(Image.open(source).convert("RGB"))
    for k, kind in enumerate(KINDS):
        data = make(rgb, kind, np.random.default_rng([seed, index, k]))
        ext = "png" if data[:4] == b"\x89PNG" else "jpg"
        (Path(out) / kind).mkdir(parents=True, exist_ok=True)
        (Path(out) / kind / f"{index:04d}.{ext}").write_bytes(data)


def main() -> int:
    """Write one genuine copy, one screen and one print recapture of every source photo to OUT/<kind>/NNNN.*
    (NNNN: the photo's index in OUT/sources.txt)."""
    import argparse
    from multiprocessing import Pool

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "eval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    found = sources(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sources.txt").write_text("\n".join(str(p) for p in found) + "\n")
    with Pool(args.workers) as pool:
        pool.map(_write, [(i, str(p), str(args.out), args.seed) for i, p in enumerate(found)], chunksize=4)
    print(f"wrote {3 * len(found)} images of {len(found)} photos to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
