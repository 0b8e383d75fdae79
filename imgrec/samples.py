"""Write a small demo catalog from scikit-image's sample photographs (no download: the package ships them).

    python -m imgrec.samples DIR   ->  DIR/catalog/*.{jpg,png,webp}, DIR/gallery/<person>/, DIR/imgrec.toml
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "camera", "rocket", "hubble_deep_field", "immunohistochemistry")


def write_samples(root: Path) -> Path:
    from skimage import data

    catalog, gallery = root / "catalog", root / "gallery" / "Eileen Collins"
    catalog.mkdir(parents=True, exist_ok=True)
    gallery.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(PHOTOS):
        img = getattr(data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        fmt, suffix = [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")][i % 3]
        Image.fromarray(img.astype(np.uint8)).save(catalog / f"{name}{suffix}", format=fmt)
    # The gallery knows the astronaut (Eileen Collins) from a different crop than the catalog's photo.
    Image.fromarray(data.astronaut()[0:300, 100:400]).save(gallery / "portrait.jpg")
    (catalog / "not-an-image.jpg").write_bytes(b"a text file under an image name: reported as an error row")
    config = root / "imgrec.toml"
    config.write_text('[celebrity]\ngallery = "gallery"\n')
    return config


if __name__ == "__main__":
    print(write_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "samples")))
