"""Pictures that hold no COCO object, and the COCO object tags image tagging v2 gives them anyway.

The pictures come from packages or are drawn here (none is fitted on): scikit-image's bundled textures,
microscopy, astronomy, scans and logos (`skimage.data`; the ones showing a COCO class, such as the camera
man, the cat, the clock or the horse, are left out), and charts, a colour square, noise and a gradient drawn
with PIL and numpy. A COCO object tag is one named by one of the detector's 80 classes (the classifier's COCO
words included), at the v2 default threshold (60).
"""
from __future__ import annotations

import numpy as np

PACKAGE_PICTURES = ["moon", "text", "checkerboard", "brick", "grass", "gravel", "colorwheel", "retina",
                    "immunohistochemistry", "hubble_deep_field", "cell", "page", "coins", "microaneurysms",
                    "binary_blobs", "logo", "shepp_logan_phantom", "rocket"]


def _rgb(image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (255 * (a.astype(np.float64) - a.min()) / max(float(a.max() - a.min()), 1e-9)).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def _drawn() -> dict[str, np.ndarray]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    bars = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(bars)
    draw.line([(60, 420), (600, 420)], fill="black", width=2)
    draw.line([(60, 40), (60, 420)], fill="black", width=2)
    for n, height in enumerate(rng.uniform(60, 340, 8)):
        draw.rectangle([80 + 64 * n, 420 - height, 120 + 64 * n, 420], fill=(40, 90 + 15 * n, 200))
    pie = Image.new("RGB", (480, 480), "white")
    draw = ImageDraw.Draw(pie)
    start = 0.0
    for n, share in enumerate(rng.dirichlet(np.ones(5))):
        draw.pieslice([40, 40, 440, 440], start, start + 360 * share, fill=((50 * n) % 255, 120, 255 - 40 * n))
        start += 360 * share
    line = Image.new("RGB", (640, 400), "white")
    draw = ImageDraw.Draw(line)
    for y in range(40, 400, 40):
        draw.line([(40, y), (620, y)], fill=(220, 220, 220))
    points = [(40 + 20 * n, 200 + 120 * np.sin(n / 4) + rng.normal(0, 10)) for n in range(30)]
    draw.line(points, fill=(200, 30, 30), width=3)
    gradient = np.linspace(0, 255, 512)[None, :, None] * np.ones((384, 1, 3))
    return {"bar chart": np.asarray(bars), "pie chart": np.asarray(pie), "line chart": np.asarray(line),
            "green square 10 px": np.full((10, 10, 3), (0, 160, 0), np.uint8),
            "noise": rng.integers(0, 256, (400, 400, 3), dtype=np.uint8),
            "gradient": gradient.astype(np.uint8)}


def pictures() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in PACKAGE_PICTURES:
        try:
            out[name] = _rgb(getattr(data, name)())
        except Exception:  # noqa: BLE001  a picture this scikit-image release does not bundle
            continue
    return out | _drawn()


def figures(run) -> list[tuple[str, str, str, str]]:
    """`run(api, bytes, **params)` answers as the engines do (bench/quality.py's Engines.run)."""
    from engines import jpeg  # bench/engines.py's encoder

    from imgrec.engines.labels import COCO

    coco = {en for en, _, _ in COCO}
    tagged = {}
    shown = pictures()
    for name, rgb in shown.items():
        tags = run("image_tagging", jpeg(rgb, "PNG"), language="en")["tags"]
        found = [f"{t['i18n_tag']['en']} {float(t['confidence']):.0f}" for t in tags if t["i18n_tag"]["en"] in coco]
        if found:
            tagged[name] = found
    listed = "; ".join(f"{name}: {', '.join(found)}" for name, found in tagged.items())
    return [("no-COCO", f"pictures given a COCO object tag at the default threshold, of {len(shown)} (textures, "
             f"microscopy, astronomy, scans, charts)", f"{len(tagged)}", f"goal 0 ({listed})" if tagged else "goal 0")]
