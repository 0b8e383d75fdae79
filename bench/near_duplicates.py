"""Near-duplicate quality on copies of the eval photos, as two nightly runs would find them.

The photos of imagenet-dev, coco-dev and scene-dev are the catalog (distractors: other photos of the same
class or scene); every third gets ten edits a shop makes (half size, JPEG quality 25, a 10% crop, a mirror,
recoloured, grey, sale text, a watermark, padded to a square, rotated 4 degrees). Run 1 indexes the originals,
run 2 the copies; each run's images are searched against the index as the pipeline does
(tasks/similar.pairs_of, the default threshold). A pair is right when both images come from one photo.
Figures: pair precision, recall of copy-original pairs (overall and per edit).
"""
from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np

EDIT_EVERY = 3


def _jpeg(im, quality: int):
    from PIL import Image

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _text(im, words: str, size: float, where: tuple[float, float], fill) -> object:
    from PIL import Image, ImageDraw, ImageFont

    base = im.copy().convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    font = ImageFont.load_default(size=max(12, int(base.height * size)))
    ImageDraw.Draw(layer).text((base.width * where[0], base.height * where[1]), words, fill=fill, font=font)
    return Image.alpha_composite(base, layer).convert("RGB")


def _pad(im):
    from PIL import Image

    side = max(im.size)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas


def edits() -> dict:
    from PIL import Image, ImageEnhance, ImageOps

    return {
        "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.BICUBIC),
        "jpeg q25": lambda im: _jpeg(im, 25),
        "crop 10%": lambda im: im.crop((im.width // 10, im.height // 10, im.width * 9 // 10, im.height * 9 // 10)),
        "mirror": ImageOps.mirror,
        "recolour": lambda im: ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.2)).enhance(1.5),
        "grey": lambda im: ImageOps.grayscale(im).convert("RGB"),
        "sale text": lambda im: _text(im, "SALE -50%", 0.1, (0.05, 0.75), (255, 0, 0, 255)),
        "watermark": lambda im: _text(im, "(c) shop", 1 / 6, (0.2, 0.4), (255, 255, 255, 110)),
        "pad square": _pad,
        "rotate 4": lambda im: im.rotate(4, resample=Image.BICUBIC, fillcolor=(0, 0, 0)),
    }


def photos(data: Path, limit: int | None) -> list[Path]:
    files = sorted(data.glob("imagenet-dev/*")) + sorted(data.glob("coco-dev/images/*")) + \
        sorted(data.glob("scene-dev/*/*"))
    return [f for f in files if f.suffix.lower() in (".jpg", ".jpeg", ".png")][:limit]


def figures(data: Path, limit: int | None = None) -> list[tuple[str, str, str, str]]:
    from PIL import Image

    from imgrec.engines import fingerprint
    from imgrec.schemas import similar
    from imgrec.schemas.common import ANY_IMAGE, inspect_image
    from imgrec.tasks.similar import CatalogIndex, pairs_of

    def vector(im) -> np.ndarray:
        """The fingerprint the pipeline makes of the image's bytes (PNG: lossless, the edit the only change)."""
        buf = io.BytesIO()
        im.save(buf, "PNG")
        data_ = buf.getvalue()
        return fingerprint.of_bytes(data_, inspect_image(data_, ANY_IMAGE)).vector

    originals, copies, origin, edit_of = [], [], [], []
    for n, path in enumerate(photos(data, limit)):
        im = Image.open(path).convert("RGB")
        originals.append(vector(im))
        if n % EDIT_EVERY == 0:
            for name, fn in edits().items():
                copies.append(vector(fn(im)))
                origin.append(n)
                edit_of.append(name)
    index = CatalogIndex()
    keys_1 = [f"o{n}" for n in range(len(originals))]
    labels = index.add(keys_1, [None] * len(keys_1), np.stack(originals))
    found = pairs_of(index, labels, np.stack(originals), similar.THRESHOLD)  # run 1
    keys_2 = [f"c{n}-{origin[n]}" for n in range(len(copies))]
    labels = index.add(keys_2, [None] * len(keys_2), np.stack(copies))
    found |= pairs_of(index, labels, np.stack(copies), similar.THRESHOLD)  # run 2

    def photo_of(key: str) -> str:
        return key[1:] if key[0] == "o" else key.split("-")[1]

    right = sum(1 for a, b in found if photo_of(a) == photo_of(b))
    hit = Counter()
    for n, key in enumerate(keys_2):
        if tuple(sorted((key, f"o{origin[n]}"))) in found:
            hit[edit_of[n]] += 1
    per_edit = Counter(edit_of)
    rows = [("near-dup", f"pair precision, {len(originals)} photos + {len(copies)} copies, threshold "
             f"{similar.THRESHOLD}", f"{right / max(1, len(found)):.3f}", "goal >= 0.99"),
            ("near-dup", "copies paired with their original (recall)", f"{sum(hit.values()) / len(copies):.3f}",
             "goal >= 0.95")]
    rows += [("near-dup", f"  recall, {name}", f"{hit[name] / per_edit[name]:.3f}", f"{per_edit[name]} copies")
             for name in per_edit]
    return rows
