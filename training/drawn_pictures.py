"""Pictures without any COCO object, drawn at random: the presence model's negatives from beyond COCO.

    pictures(count, seed) -> [(kind, rgb uint8 array)]

A catalog holds textures, microscopy, astronomy, scans, charts, logos and flat graphics, where the detector
still finds "umbrellas" and "kites". Nothing here is copied from the benchmark's pictures (bench/no_coco.py,
scikit-image's files and its own drawings): every picture is drawn from random parameters of its kind, at a
random size, some saved as JPEG. No shape is drawn that is one of COCO's things (no octagon, no clock face).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _size(rng: np.random.Generator, low: int = 96, high: int = 1024) -> tuple[int, int]:
    w = int(rng.integers(low, high))
    return w, int(np.clip(w * rng.uniform(0.5, 1.6), low, high))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _field(rng: np.random.Generator, w: int, h: int, beta: float | None = None) -> np.ndarray:
    """Fractal (1/f^beta) noise in [0, 1], shape (h, w)."""
    beta = rng.uniform(1.0, 3.2) if beta is None else beta
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spectrum[0, 0] = 0
    x = np.fft.irfft2(spectrum, s=(h, w))
    return (x - x.min()) / max(float(np.ptp(x)), 1e-9)


def _palette(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """A [0, 1] field coloured by a random ramp of 2-4 colours."""
    stops = np.array([_colour(rng) for _ in range(int(rng.integers(2, 5)))], float)
    at = np.linspace(0, 1, len(stops))
    return np.stack([np.interp(x, at, stops[:, c]) for c in range(3)], axis=-1)


def texture(rng):
    w, h = _size(rng)
    x = _field(rng, w, h)
    if rng.random() < 0.4:
        return np.repeat((x * 255)[..., None], 3, axis=2)
    return _palette(rng, x)


def microscopy(rng):
    w, h = _size(rng, 128)
    dark = rng.random() < 0.4  # fluorescence on black, else a stained slide on light
    base = (0, 0, 0) if dark else tuple(int(v) for v in rng.integers(200, 256, 3))
    image = Image.new("RGB", (w, h), base)
    draw = ImageDraw.Draw(image)
    stain = _colour(rng)
    for _ in range(int(rng.integers(5, 400))):
        r = rng.uniform(3, max(4, min(w, h) / rng.uniform(6, 40)))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        e = rng.uniform(0.6, 1.4)
        tint = tuple(int(np.clip(s + rng.normal(0, 25), 0, 255)) for s in stain)
        draw.ellipse([cx - r, cy - r * e, cx + r, cy + r * e], fill=tint)
        if rng.random() < 0.6:
            n = r * rng.uniform(0.3, 0.6)
            draw.ellipse([cx - n, cy - n, cx + n, cy + n], fill=tuple(int(v * 0.5) for v in tint))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))
    a = np.asarray(image, float) * (0.85 + 0.3 * _field(rng, w, h)[..., None])
    return a


def astronomy(rng):
    w, h = _size(rng, 128)
    a = np.zeros((h, w, 3))
    if rng.random() < 0.5:  # nebula
        a += _palette(rng, _field(rng, w, h, 2.5)) * rng.uniform(0.1, 0.6) * _field(rng, w, h, 2.0)[..., None]
    n = int(rng.integers(20, 2000))
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    a[ys, xs] = rng.pareto(2.0, (n, 1)) * 120 * rng.uniform(0.7, 1.0, (n, 3))
    image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 12))):  # small galaxies
        r = rng.uniform(2, 14)
        cx, cy, e = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.2, 1)
        draw.ellipse([cx - r, cy - r * e, cx + r, cy + r * e], fill=_colour(rng))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5))), float)


def surface(rng):
    """A cratered or rough surface, lit from one side (planetary, rock, sand)."""
    w, h = _size(rng, 128)
    z = _field(rng, w, h, rng.uniform(1.8, 3.0))
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(0, 40))):
        r = rng.uniform(3, min(w, h) / 6)
        d = np.hypot(xx - rng.uniform(0, w), yy - rng.uniform(0, h)) / r
        z -= 0.3 * np.exp(-d ** 4) * rng.uniform(0.3, 1)
    gy, gx = np.gradient(z)
    angle = rng.uniform(0, 2 * np.pi)
    shade = 0.5 + 8 * (gx * np.cos(angle) + gy * np.sin(angle)) * max(w, h) / 100
    grey = np.clip(0.6 * shade + 0.4 * z, 0, 1)
    tint = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.6 else rng.uniform(0.6, 1.0, 3)
    return grey[..., None] * 255 * tint


def _words(rng, n: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(list(letters), int(rng.integers(1, 10)))) for _ in range(n))


def document(rng):
    w, h = _size(rng, 200)
    paper = tuple(int(v) for v in rng.integers(225, 256, 3))
    image = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(image)
    ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    margin, y = int(rng.uniform(0.03, 0.12) * w), int(rng.uniform(0.03, 0.1) * h)
    step = int(rng.integers(10, 22))
    while y < h - margin:
        if rng.random() < 0.08:  # a table
            rows, cols = int(rng.integers(2, 6)), int(rng.integers(2, 6))
            cell = (w - 2 * margin) / cols
            for r in range(rows + 1):
                draw.line([(margin, y + r * step), (w - margin, y + r * step)], fill=ink)
            for c in range(cols + 1):
                draw.line([(margin + c * cell, y), (margin + c * cell, y + rows * step)], fill=ink)
            y += rows * step + step
            continue
        draw.text((margin, y), _words(rng, int(rng.integers(3, 14))), fill=ink)
        y += step + (step if rng.random() < 0.15 else 0)
    a = np.asarray(image.rotate(rng.uniform(-3, 3), fillcolor=paper), float)
    return a + rng.normal(0, rng.uniform(0, 8), a.shape)


def chart(rng):
    w, h = _size(rng, 200)
    image = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(235, 256, 3)))
    draw = ImageDraw.Draw(image)
    left, bottom, right, top = 0.1 * w, 0.88 * h, 0.95 * w, 0.08 * h
    kind = rng.choice(["bars", "lines", "scatter", "pie", "area"])
    colours = [_colour(rng) for _ in range(6)]
    if kind != "pie":
        for k in range(int(rng.integers(0, 9))):
            y = bottom - (bottom - top) * k / 8
            draw.line([(left, y), (right, y)], fill=(215, 215, 215))
            draw.text((2, y - 5), f"{int(rng.integers(0, 1000))}", fill=(60, 60, 60))
        draw.line([(left, bottom), (right, bottom)], fill=(0, 0, 0), width=int(rng.integers(1, 3)))
        draw.line([(left, bottom), (left, top)], fill=(0, 0, 0), width=int(rng.integers(1, 3)))
    if kind == "bars":
        n = int(rng.integers(2, 25))
        slot = (right - left) / n
        for i in range(n):
            v = rng.uniform(0.05, 1)
            draw.rectangle([left + i * slot + slot * 0.15, bottom - v * (bottom - top), left + (i + 0.85) * slot,
                            bottom], fill=colours[i % int(rng.integers(1, 4))])
    elif kind in ("lines", "area"):
        for s in range(int(rng.integers(1, 5))):
            n = int(rng.integers(5, 200))
            walk = np.cumsum(rng.normal(0, 1, n))
            walk = (walk - walk.min()) / max(float(np.ptp(walk)), 1e-9)
            pts = [(left + (right - left) * i / (n - 1), bottom - (0.1 + 0.8 * v) * (bottom - top))
                   for i, v in enumerate(walk)]
            if kind == "area":
                draw.polygon(pts + [(right, bottom), (left, bottom)], fill=colours[s])
            else:
                draw.line(pts, fill=colours[s], width=int(rng.integers(1, 5)))
    elif kind == "scatter":
        for s in range(int(rng.integers(1, 4))):
            for _ in range(int(rng.integers(10, 400))):
                x, y = rng.uniform(left, right), rng.uniform(top, bottom)
                r = rng.uniform(1, 5)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colours[s])
    else:
        r = min(w, h) * rng.uniform(0.25, 0.45)
        cx, cy = w * rng.uniform(0.35, 0.65), h / 2
        start = rng.uniform(0, 360)
        for i, share in enumerate(rng.dirichlet(np.ones(int(rng.integers(2, 8))))):
            draw.pieslice([cx - r, cy - r, cx + r, cy + r], start, start + 360 * share, fill=colours[i % 6])
            start += 360 * share
        if rng.random() < 0.4:  # a doughnut chart
            hole = r * rng.uniform(0.3, 0.7)
            draw.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=(255, 255, 255))
    if rng.random() < 0.7:
        draw.text((w * 0.3, 2), _words(rng, int(rng.integers(1, 5))), fill=(0, 0, 0))
    return np.asarray(image, float)


def graphic(rng):
    """Flat shapes and lettering: a logo, a banner, an icon."""
    w, h = _size(rng, 64)
    image = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 8))):
        x, y = rng.uniform(0, w, 2), rng.uniform(0, h, 2)
        box = [min(x), min(y), max(x), max(y)]
        shape = rng.choice(["rectangle", "ellipse", "triangle", "line"])
        if shape == "rectangle":
            draw.rectangle(box, fill=_colour(rng))
        elif shape == "ellipse":
            draw.ellipse(box, fill=_colour(rng))
        elif shape == "triangle":
            draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) / 2, box[1])], fill=_colour(rng))
        else:
            draw.line(box, fill=_colour(rng), width=int(rng.integers(1, 12)))
    if rng.random() < 0.6:
        draw.text((rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.8)), _words(rng, int(rng.integers(1, 4))).upper(),
                  fill=_colour(rng))
    return np.asarray(image, float)


def plain(rng):
    """A solid colour, a gradient or noise, from 8 px up."""
    w, h = _size(rng, 8, 900)
    kind = rng.choice(["solid", "linear", "radial", "noise"])
    if kind == "solid":
        return np.full((h, w, 3), _colour(rng), float)
    if kind == "noise":
        return rng.uniform(0, 255, (h, w, 3)) if rng.random() < 0.5 else np.repeat(
            rng.uniform(0, 255, (h, w, 1)), 3, axis=2)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    if kind == "linear":
        angle = rng.uniform(0, np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
    else:
        t = np.hypot(xx - rng.uniform(0, 1), yy - rng.uniform(0, 1))
    return _palette(rng, (t - t.min()) / max(float(np.ptp(t)), 1e-9))


def pattern(rng):
    """Stripes, checks, tiles, weaves at a random period and angle."""
    w, h = _size(rng, 96)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 80)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    kind = rng.choice(["stripes", "checks", "tiles", "waves"])
    if kind == "stripes":
        t = (u / period) % 1 < rng.uniform(0.2, 0.8)
    elif kind == "checks":
        t = ((u // period) + (v // period)) % 2 == 0
    elif kind == "tiles":  # offset rows of bricks or tiles with mortar
        row = v // period
        t = (((u + (row % 2) * period) % (2 * period)) > period * 0.1) & ((v % period) > period * 0.1)
    else:
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + 3 * np.sin(2 * np.pi * v / (period * rng.uniform(2, 8))))
    t = np.asarray(t, float) * (0.8 + 0.2 * _field(rng, w, h))
    return _palette(rng, t)


def granular(rng):
    """Many small pieces: gravel, sand, grains, leaves, fibres."""
    w, h = _size(rng, 128, 800)
    image = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(image)
    base = np.array(_colour(rng), float)
    lines = rng.random() < 0.4
    for _ in range(int(rng.integers(200, 3000))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(1, max(2, min(w, h) / 30))
        tint = tuple(int(v) for v in np.clip(base + rng.normal(0, 40, 3), 0, 255))
        if lines:
            a = rng.normal(np.pi / 2, 0.5)
            draw.line([(x, y), (x + 3 * r * np.cos(a), y - 3 * r * np.sin(a))], fill=tint, width=int(rng.integers(1, 4)))
        else:
            draw.ellipse([x - r, y - r * rng.uniform(0.5, 1), x + r, y + r], fill=tint)
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2))), float)


def vessels(rng):
    """A lit disc with branching lines (a fundus photo, a leaf, a map of rivers)."""
    w, h = _size(rng, 160)
    image = Image.new("RGB", (w, h), (0, 0, 0) if rng.random() < 0.6 else _colour(rng))
    draw = ImageDraw.Draw(image)
    r = min(w, h) * rng.uniform(0.35, 0.6)
    cx, cy = w / 2, h / 2
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_colour(rng))
    ink = _colour(rng)

    def branch(x, y, angle, length, width, depth):
        if depth == 0 or length < 3:
            return
        x2, y2 = x + length * np.cos(angle), y + length * np.sin(angle)
        draw.line([(x, y), (x2, y2)], fill=ink, width=max(1, int(width)))
        for turn in (-1, 1):
            branch(x2, y2, angle + turn * rng.uniform(0.2, 0.8), length * rng.uniform(0.6, 0.85), width * 0.7, depth - 1)

    for _ in range(int(rng.integers(2, 6))):
        branch(cx + rng.normal(0, r / 6), cy + rng.normal(0, r / 6), rng.uniform(0, 2 * np.pi), r / 3, 5, 6)
    return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5))), float)


KINDS = {f.__name__: f for f in (texture, microscopy, astronomy, surface, document, chart, graphic, plain, pattern,
                                 granular, vessels)}


def pictures(count: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """`count` pictures, the kinds in turn, each from its own random parameters."""
    rng = np.random.default_rng(seed)
    names = sorted(KINDS)
    out = []
    for i in range(count):
        kind = names[i % len(names)]
        rgb = np.clip(KINDS[kind](rng), 0, 255).astype(np.uint8)
        if rng.random() < 0.3:  # as a JPEG
            buffer = io.BytesIO()
            Image.fromarray(rgb).save(buffer, "JPEG", quality=int(rng.integers(40, 95)))
            rgb = np.asarray(Image.open(buffer).convert("RGB"))
        out.append((kind, rgb))
    return out
